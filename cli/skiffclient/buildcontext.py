"""A build context as a tar stream: `.dockerignore` applied on the client, files read in chunks as the
upload proceeds (a context of any size needs no more memory than one chunk).

The pattern rules are moby's (patternmatcher + ignorefile): Go `filepath.Match` syntax plus `**`, `!`
exceptions where the last matching pattern wins, a path excluded when it or a parent directory matches.
The engine has the same matcher (guest/build/dockerignore.py); it is re-implemented here, compactly,
because the client and the engine are separate installs and `cli` must not import `guest`. Both are
checked against the same cases in tests/client/test_build_vs_docker.py, and the engine filters the context
it receives again, so the client's copy only decides what is worth uploading.

As the docker CLI does: the Dockerfile and .dockerignore are always sent (they are re-included if a pattern
excludes them), entries are owned by 0:0, and a directory excluded with no `!` pattern that could
re-include something below it is not walked at all.
"""

from __future__ import annotations

import os
import re
import stat
import tarfile

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

CHUNK = 256 * 1024


class ContextError(Exception):
    pass


def clean(path: str) -> str:
    """Go's filepath.Clean on '/'-separated paths."""
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
    s = ("/" if rooted else "") + "/".join(out)
    return s or "."


def read_dockerignore(text: str) -> list[str]:
    """ignorefile.ReadAll: comments and blank lines dropped, each pattern cleaned and made relative."""
    text = text[1:] if text.startswith("\ufeff") else text
    out = []
    for raw in text.splitlines():
        if raw.startswith("#"):
            continue
        p = raw.strip()
        if not p:
            continue
        neg = p.startswith("!")
        p = p[1:].strip() if neg else p
        if p:
            p = clean(p)
            if len(p) > 1 and p.startswith("/"):
                p = p[1:]
        out.append("!" + p if neg else p)
    return out


def _regex(pattern: str) -> re.Pattern[str]:
    """patternmatcher's translation of one pattern to an anchored regular expression."""
    rx, i, n = "^", 0, len(pattern)
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            if i < n and pattern[i] == "*":
                i += 1
                if i < n and pattern[i] == "/":
                    i += 1
                rx += ".*" if i >= n else "(.*/)?"
            else:
                rx += "[^/]*"
        elif ch == "?":
            rx += "[^/]"
        elif ch == "\\":
            rx += re.escape(pattern[i]) if i < n else "\\\\"
            i += 1
        elif ch in ".+()|{}$":
            rx += "\\" + ch
        else:
            rx += ch  # classes and literals pass through, as patternmatcher hands them to Go's regexp
    try:
        return re.compile(rx + "$", re.S)
    except re.error:
        raise ContextError(f"syntax error in pattern: {pattern}") from None


class Ignore:
    """`excluded(path)` for '/'-separated paths relative to the context root."""

    def __init__(self, patterns: list[str]) -> None:
        self.rules: list[tuple[bool, str, re.Pattern[str]]] = []
        for p in patterns:
            p = clean(p.strip()) if p.strip() else ""
            if not p:
                continue
            neg = p.startswith("!")
            if neg:
                if len(p) == 1:
                    raise ContextError('illegal exclusion pattern: "!"')
                p = p[1:]
            self.rules.append((neg, p, _regex(p)))
        self.has_exceptions = any(neg for neg, _, _ in self.rules)

    def excluded(self, path: str) -> bool:
        path = clean(path)
        parents = path.split("/")[:-1]
        prefixes = ["/".join(parents[: i + 1]) for i in range(len(parents))]
        matched = False
        for neg, _, rx in self.rules:
            if neg != matched:  # an exception only matters once matched, a pattern only while unmatched
                continue
            if rx.match(path) or any(rx.match(p) for p in prefixes):
                matched = not neg
        return matched

    def may_reinclude_below(self, dirpath: str) -> bool:
        """Whether some `!` pattern could match inside an excluded directory (docker walks it then)."""
        if not self.has_exceptions:
            return False
        prefix = dirpath + "/"
        for neg, p, _ in self.rules:
            if neg and (p.startswith(prefix) or any(c in p for c in "*?[\\")):
                return True
        return False


def _tarinfo(full: str, name: str, st: os.stat_result) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.mode = stat.S_IMODE(st.st_mode)
    ti.mtime = int(st.st_mtime)
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    if stat.S_ISDIR(st.st_mode):
        ti.type = tarfile.DIRTYPE
        ti.name = name + "/"
    elif stat.S_ISLNK(st.st_mode):
        ti.type = tarfile.SYMTYPE
        ti.linkname = os.readlink(full)
    elif stat.S_ISREG(st.st_mode):
        ti.type = tarfile.REGTYPE
        ti.size = st.st_size
    else:
        raise ValueError("special file")
    return ti


def _file_entry(ti: tarfile.TarInfo, full: str) -> Iterator[bytes]:
    yield ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    if ti.type != tarfile.REGTYPE:
        return
    left = ti.size
    with open(full, "rb") as f:
        while left > 0:
            data = f.read(min(CHUNK, left))
            if not data:  # the file shrank while we read it: pad, as the header promised
                data = b"\0" * min(CHUNK, left)
            data = data[:left]
            left -= len(data)
            yield data
    pad = (-ti.size) % tarfile.BLOCKSIZE
    if pad:
        yield b"\0" * pad


def tar_context(root: str, ignore: Ignore, keep: list[str], extra: list[tuple[str, bytes]] | None = None,
                on_bytes: Callable[[int], None] | None = None) -> Iterator[bytes]:
    """The context directory `root` as tar chunks. `keep`: paths sent even when excluded (the Dockerfile,
    .dockerignore). `extra`: (name, content) entries appended (a Dockerfile from outside the context)."""
    keep_set = {clean(k) for k in keep}

    def emit(chunks: Iterator[bytes]) -> Iterator[bytes]:
        for c in chunks:
            if on_bytes:
                on_bytes(len(c))
            yield c

    def walk(rel: str) -> Iterator[bytes]:
        full = os.path.join(root, rel) if rel else root
        try:
            names = sorted(os.listdir(full))
        except OSError as e:
            raise ContextError(f"error checking context: can't stat '{full}': {e.strerror}") from None
        for name in names:
            r = f"{rel}/{name}" if rel else name
            p = os.path.join(root, r)
            try:
                st = os.lstat(p)
            except OSError:
                continue
            is_dir = stat.S_ISDIR(st.st_mode)
            if ignore.excluded(r) and r not in keep_set:
                if is_dir and (ignore.may_reinclude_below(r) or any(k.startswith(r + "/") for k in keep_set)):
                    yield from walk(r)
                continue
            try:
                ti = _tarinfo(p, r, st)
            except ValueError:
                continue  # sockets, fifos, devices: docker skips them too
            except OSError as e:
                raise ContextError(f"error checking context: can't stat '{p}': {e.strerror}") from None
            if ti.type == tarfile.REGTYPE and not os.access(p, os.R_OK):
                raise ContextError(f"error checking context: no permission to read from '{p}'")
            yield from emit(_file_entry(ti, p))
            if is_dir:
                yield from walk(r)

    yield from walk("")
    import time

    for name, data in extra or []:
        ti = tarfile.TarInfo(name)
        ti.size, ti.mode, ti.mtime = len(data), 0o600, int(time.time())
        yield from emit(iter([ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"), data,
                              b"\0" * ((-len(data)) % tarfile.BLOCKSIZE)]))
    yield from emit(iter([b"\0" * (2 * tarfile.BLOCKSIZE)]))
