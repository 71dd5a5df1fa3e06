"""Docker's variable expansion for Dockerfile words (`$VAR`, `${VAR}`, `${VAR:-x}`, quotes, escapes).

This follows the shell lexer Docker's builders share (buildkit `frontend/dockerfile/shell`): quotes are
removed, single quotes are literal, inside double quotes only `"`, `$` and the escape token can be
escaped, an unquoted escape token makes the next character literal, and `${…}` supports
`-`, `+`, `?` (with or without `:`), `#`/`##`, `%`/`%%` and `/`/`//`. Unset variables expand to "".
`process_words` also splits the result into words after expansion (only EXPOSE uses that).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_EOF = ""
_SPECIAL_PARAMS = "@*#?-$!0"


class ExpansionError(ValueError):
    pass


class _Words:
    """Tracks word boundaries: text from `$` expansions and unquoted characters splits on whitespace,
    quoted and escaped text does not."""

    def __init__(self) -> None:
        self.word = ""
        self.words: list[str] = []
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if ch.isspace():
            if self.in_word and self.word:
                self.words.append(self.word)
                self.word = ""
                self.in_word = False
        else:
            self.add_raw(ch)

    def add_string(self, s: str) -> None:
        for ch in s:
            self.add_char(ch)

    def add_raw(self, s: str) -> None:
        self.word += s
        self.in_word = True

    def result(self) -> list[str]:
        if self.word:
            self.words.append(self.word)
            self.word = ""
            self.in_word = False
        return self.words


class _Scanner:
    def __init__(self, text: str, env: Mapping[str, str], escape: str) -> None:
        self.s = text
        self.i = 0
        self.env = env
        self.escape = escape
        self.raw_escapes = False

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else _EOF

    def next(self) -> str:
        if self.i >= len(self.s):
            return _EOF
        ch = self.s[self.i]
        self.i += 1
        return ch

    def get(self, name: str) -> tuple[str, bool]:
        if name in self.env:
            return self.env[name], True
        return "", False

    # -----------------------------------------------------------------------------------------
    def stop_on(self, stop: str, raw_escapes: bool) -> tuple[str, list[str]]:
        saved, self.raw_escapes = self.raw_escapes, raw_escapes
        try:
            return self._stop_on(stop)
        finally:
            self.raw_escapes = saved

    def _stop_on(self, stop: str) -> tuple[str, list[str]]:
        out: list[str] = []
        words = _Words()
        while self.peek() != _EOF:
            ch = self.peek()
            if stop and ch == stop:
                self.next()
                return "".join(out), words.result()
            if ch == "$":
                tmp = self.dollar()
                out.append(tmp)
                words.add_string(tmp)
            elif ch == "'":
                tmp = self.single_quote()
                out.append(tmp)
                words.add_raw(tmp)
            elif ch == '"':
                tmp = self.double_quote()
                out.append(tmp)
                words.add_raw(tmp)
            else:
                ch = self.next()
                if ch == self.escape:
                    if self.raw_escapes:
                        words.add_raw(ch)
                        out.append(ch)
                    ch = self.next()
                    if ch == _EOF:  # an escape at the very end is dropped
                        break
                    words.add_raw(ch)
                else:
                    words.add_char(ch)
                out.append(ch)
        if stop:
            raise ExpansionError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(out), words.result()

    def single_quote(self) -> str:
        self.next()
        out: list[str] = []
        while True:
            ch = self.next()
            if ch == _EOF:
                raise ExpansionError("unexpected end of statement while looking for matching single-quote")
            if ch == "'":
                return "".join(out)
            out.append(ch)

    def double_quote(self) -> str:
        self.next()
        out: list[str] = []
        while True:
            ch = self.peek()
            if ch == _EOF:
                raise ExpansionError("unexpected end of statement while looking for matching double-quote")
            if ch == '"':
                self.next()
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
                continue
            ch = self.next()
            if ch == self.escape:
                if self.raw_escapes:
                    out.append(ch)
                nxt = self.peek()
                if nxt == _EOF:
                    continue
                if nxt in ('"', "$", self.escape):
                    ch = self.next()
            out.append(ch)

    def name(self) -> str:
        out: list[str] = []
        while self.peek() != _EOF:
            ch = self.peek()
            if not out and ch.isdigit():
                while self.peek() != _EOF and self.peek().isdigit():
                    out.append(self.next())
                return "".join(out)
            if not out and ch in _SPECIAL_PARAMS:
                return self.next()
            if not (ch.isalpha() or ch.isdigit() or ch == "_"):
                break
            out.append(self.next())
        return "".join(out)

    def dollar(self) -> str:
        self.next()
        if self.peek() != "{":
            name = self.name()
            if not name:
                return "$"
            return self.get(name)[0]
        self.next()
        if self.peek() == _EOF:
            raise ExpansionError("syntax error: missing '}'")
        if self.peek() in "{}:":
            raise ExpansionError("syntax error: bad substitution")
        name = self.name()
        ch = self.next()
        if ch == _EOF:
            raise ExpansionError("syntax error: missing '}'")
        chs = ch
        null_is_unset = False
        if ch == "}":
            return self.get(name)[0]
        if ch == ":":
            null_is_unset = True
            ch = self.next()
            chs += ch
            if ch not in "+-?#%" or ch == _EOF:
                raise ExpansionError(f"unsupported modifier ({chs}) in substitution")
        if ch in ("+", "-", "?", "#", "%") and ch != _EOF:
            try:
                word, _ = self.stop_on("}", raw_escapes=ch in "#%")
            except ExpansionError:
                if self.peek() == _EOF:
                    raise ExpansionError("syntax error: missing '}'") from None
                raise
            value, is_set = self.get(name)
            empty = not is_set or (null_is_unset and value == "")
            if ch == "-":
                return word if empty else value
            if ch == "+":
                return "" if empty else word
            if ch == "?":
                if not is_set:
                    raise ExpansionError(f"{name}: {word or 'is not allowed to be unset'}")
                if null_is_unset and value == "":
                    raise ExpansionError(f"{name}: {word or 'is not allowed to be empty'}")
                return value
            greedy = word.startswith(ch)
            if greedy:
                word = word[1:]
            return _trim_suffix(word, value, greedy) if ch == "%" else _trim_prefix(word, value, greedy)
        if ch == "/":
            replace_all = self.peek() == "/"
            if replace_all:
                self.next()
            try:
                pattern, _ = self.stop_on("/", raw_escapes=True)
            except ExpansionError:
                if self.peek() == _EOF:
                    raise ExpansionError("syntax error: missing '/' in ${}") from None
                raise
            try:
                repl, _ = self.stop_on("}", raw_escapes=True)
            except ExpansionError:
                if self.peek() == _EOF:
                    raise ExpansionError("syntax error: missing '}'") from None
                raise
            value, _ = self.get(name)
            rx = _pattern_regex(pattern, greedy=True, anchored=False)
            return rx.sub(lambda _m: repl, value, count=0 if replace_all else 1)
        raise ExpansionError(f"unsupported modifier ({chs}) in substitution")


def _pattern_regex(pattern: str, greedy: bool, anchored: bool) -> re.Pattern[str]:
    """A shell wildcard pattern (`*`, `?`, escapes; no brackets) as a regex."""
    out = ["^"] if anchored else []
    star = ".*" if greedy else ".*?"
    i = 0
    while i < len(pattern):
        tok = pattern[i]
        i += 1
        if tok == "*":
            out.append(star)
        elif tok == "?":
            out.append(".")
        elif tok == "\\":
            if i < len(pattern) and pattern[i] in "}/":
                continue
            nxt = pattern[i] if i < len(pattern) else ""
            i += 1
            if nxt not in ("*", "?", "\\"):
                raise ExpansionError(f"invalid pattern ({pattern}) in substitution: invalid escape '\\{nxt}'")
            out.append(re.escape(nxt))
        else:
            out.append(re.escape(tok))
    return re.compile("".join(out))


def _trim_prefix(word: str, value: str, greedy: bool) -> str:
    m = _pattern_regex(word, greedy, anchored=True).match(value)
    return value[m.end():] if m else value


def _trim_suffix(word: str, value: str, greedy: bool) -> str:
    # Match the reversed pattern against the reversed value: the shortest/longest suffix.
    rev = _reverse_pattern(word)
    m = _pattern_regex(rev, greedy, anchored=True).match(value[::-1])
    return value[: len(value) - m.end()] if m else value


def _reverse_pattern(pattern: str) -> str:
    """Reverse a pattern keeping escapes attached to the character they escape (`a\\*c` -> `c\\*a`)."""
    toks: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\" and i + 1 < len(pattern):
            toks.append(pattern[i : i + 2])
            i += 2
        else:
            toks.append(pattern[i])
            i += 1
    return "".join(reversed(toks))


class Lexer:
    """Expands Dockerfile words against an environment, with the Dockerfile's escape token."""

    def __init__(self, escape: str = "\\") -> None:
        self.escape = escape

    def _run(self, word: str, env: Mapping[str, str]) -> tuple[str, list[str]]:
        sc = _Scanner(word, env, self.escape)
        try:
            return sc.stop_on(_EOF, raw_escapes=False)
        except ExpansionError as e:
            raise ExpansionError(f'failed to process "{word}": {e}') from None

    def process_word(self, word: str, env: Mapping[str, str]) -> str:
        return self._run(word, env)[0]

    def process_words(self, word: str, env: Mapping[str, str]) -> list[str]:
        return self._run(word, env)[1]


def env_map(env: list[str] | None) -> dict[str, str]:
    """`["K=V", …]` as a dict; later entries win, like Docker's BuildEnvs."""
    out: dict[str, str] = {}
    for e in env or []:
        k, sep, v = e.partition("=")
        out[k] = v if sep else ""
    return out
