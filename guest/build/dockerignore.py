"""`.dockerignore`: reading the file and matching paths, with moby's rules (`patternmatcher`,
`ignorefile`) — Go `filepath.Match` syntax plus `**`, `!` exceptions where the last match wins, and a
path excluded when it or any parent directory matches. The one matcher for the engine (which filters the
context it receives) and the `skiff build` client (which decides what to upload, cli/skiffclient/buildcontext.py).
"""

from __future__ import annotations

import re

from skiffbox.guest.build.dockerfile import DockerfileError


def go_clean(path: str) -> str:
    """Go's filepath.Clean (POSIX): collapse slashes, drop `.`, resolve `..` lexically."""
    if path == "":
        return "."
    rooted = path.startswith("/")
    out: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append("..")
            continue
        out.append(part)
    s = "/".join(out)
    if rooted:
        return "/" + s
    return s or "."


def read_patterns(text: str | bytes) -> list[str]:
    """The patterns of a .dockerignore file (comments and blanks dropped, paths cleaned and made relative)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    out: list[str] = []
    for raw in text.split("\n"):
        if raw.endswith("\r"):
            raw = raw[:-1]
        if raw.startswith("#"):
            continue
        p = raw.strip()
        if not p:
            continue
        invert = p.startswith("!")
        if invert:
            p = p[1:].strip()
        if p:
            p = go_clean(p)
            if len(p) > 1 and p.startswith("/"):
                p = p[1:]
        out.append("!" + p if invert else p)
    return out


_EXACT, _PREFIX, _SUFFIX, _REGEXP = range(4)


class _Pattern:
    def __init__(self, pattern: str, exclusion: bool) -> None:
        self.cleaned = pattern
        self.exclusion = exclusion
        self.kind = _EXACT
        self.rx: re.Pattern[str] | None = None
        self._compile()

    def _compile(self) -> None:
        p = self.cleaned
        rx = "^"
        i = 0
        n = len(p)
        step = 0
        while i < n:
            ch = p[i]
            i += 1
            if ch == "*":
                if i < n and p[i] == "*":
                    i += 1
                    if i < n and p[i] == "/":  # "**/" is "**"
                        i += 1
                    if i >= n:  # "**" at the end matches everything below
                        if self.kind == _EXACT:
                            self.kind = _PREFIX
                        else:
                            rx += ".*"
                            self.kind = _REGEXP
                    else:
                        rx += "(.*/)?"
                        self.kind = _REGEXP
                    if step == 0:
                        self.kind = _SUFFIX
                else:
                    rx += "[^/]*"
                    self.kind = _REGEXP
            elif ch == "?":
                rx += "[^/]"
                self.kind = _REGEXP
            elif ch in ".+()|{}$":
                rx += "\\" + ch
            elif ch == "\\":
                if i < n:
                    rx += re.escape(p[i])
                    i += 1
                else:
                    rx += "\\\\"
            elif ch in "[]":
                rx += ch
                self.kind = _REGEXP
            else:
                rx += ch  # literal in both Go's and Python's regex syntax
            step += 1
        if self.kind == _REGEXP:
            try:
                self.rx = re.compile(rx + "$", re.S)
            except re.error:
                raise DockerfileError(f"syntax error in .dockerignore pattern: {self.cleaned!r}") from None

    def match(self, path: str) -> bool:
        if self.kind == _EXACT:
            return path == self.cleaned
        if self.kind == _PREFIX:
            return path.startswith(self.cleaned[:-2])
        if self.kind == _SUFFIX:
            suffix = self.cleaned[2:]
            if path.endswith(suffix):
                return True
            return suffix.startswith("/") and path == suffix[1:]
        assert self.rx is not None
        return self.rx.match(path) is not None


class Matcher:
    """Decides whether a context path is excluded (`matches`)."""

    def __init__(self, patterns: list[str]) -> None:
        self.patterns: list[_Pattern] = []
        for p in patterns:
            p = p.strip()
            if not p:
                continue
            p = go_clean(p)
            excl = p.startswith("!")
            if excl:
                if len(p) == 1:
                    raise DockerfileError('illegal exclusion pattern: "!"')
                p = p[1:]
            self.patterns.append(_Pattern(p, excl))

    def __bool__(self) -> bool:
        return bool(self.patterns)

    @property
    def has_exceptions(self) -> bool:
        return any(p.exclusion for p in self.patterns)

    def may_reinclude_below(self, dirpath: str) -> bool:
        """Whether some `!` pattern could match below the excluded directory `dirpath`, which must then still
        be walked (the docker CLI skips an excluded directory otherwise)."""
        prefix = dirpath + "/"
        return any(p.exclusion and (p.cleaned.startswith(prefix) or any(c in p.cleaned for c in "*?[\\"))
                   for p in self.patterns)

    def matches(self, path: str) -> bool:
        """`path` is relative to the context root, with '/' separators."""
        path = go_clean(path)
        parent = path.rpartition("/")[0] or "."
        parents = parent.split("/") if parent != "." else []
        matched = False
        for pat in self.patterns:
            # An inclusion only matters while unmatched, an exclusion only once matched.
            if pat.exclusion != matched:
                continue
            hit = pat.match(path)
            if not hit and parents:
                for i in range(len(parents)):
                    if pat.match("/".join(parents[: i + 1])):
                        hit = True
                        break
            if hit:
                matched = not pat.exclusion
        return matched


def has_wildcards(name: str) -> bool:
    """Whether a COPY/ADD source is a pattern (Go's rules: `*`, `?`, `[`; a backslash escapes)."""
    i = 0
    while i < len(name):
        ch = name[i]
        if ch == "\\":
            i += 2
            continue
        if ch in "*?[":
            return True
        i += 1
    return False


_match_cache: dict[str, re.Pattern[str]] = {}


def go_match(pattern: str, name: str) -> bool:
    """Go's filepath.Match: `*` and `?` never match '/', `[…]` classes with `^` negation, `\\` escapes."""
    rx = _match_cache.get(pattern)
    if rx is None:
        out: list[str] = []
        i, n = 0, len(pattern)
        while i < n:
            ch = pattern[i]
            i += 1
            if ch == "*":
                out.append("[^/]*")
            elif ch == "?":
                out.append("[^/]")
            elif ch == "\\":
                if i >= n:
                    raise DockerfileError(f"syntax error in pattern {pattern!r}")
                out.append(re.escape(pattern[i]))
                i += 1
            elif ch == "[":
                j = i
                cls = ["["]
                if j < n and pattern[j] == "^":
                    cls.append("^")
                    j += 1
                start = j
                while j < n and (pattern[j] != "]" or j == start):
                    c = pattern[j]
                    if c == "\\" and j + 1 < n:
                        cls.append(re.escape(pattern[j + 1]))
                        j += 2
                        continue
                    cls.append(c if c == "-" else re.escape(c))
                    j += 1
                if j >= n:
                    raise DockerfileError(f"syntax error in pattern {pattern!r}")
                cls.append("]")
                out.append("".join(cls))
                i = j + 1
            else:
                out.append(re.escape(ch))
        rx = re.compile("".join(out) + r"\Z", re.S)
        _match_cache[pattern] = rx
    return rx.match(name) is not None
