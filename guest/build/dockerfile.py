"""The Dockerfile parser: text -> instructions, with Docker's rules for directives, escapes and forms.

Written here rather than taken from PyPI: `dockerfile-parse` (the maintained Python parser) reads
instructions for inspection, but it does not model what a builder needs — the `# escape` directive's
effect on continuations and words, builder flags (`--from=…`), Docker's JSON-vs-shell decision, ENV's
two syntaxes with quotes kept for later expansion, or per-line errors — and its own variable
substitution differs from Docker's. The rules below follow moby/buildkit's `frontend/dockerfile/parser`
and `instructions` packages (which Docker's classic builder uses), in a few hundred lines.

Two layers: here `parse()` turns text into `Node`s (one per instruction, continuation lines joined,
comments dropped, arguments in the instruction's form); guest/build/instructions.py turns nodes into typed
`Instruction`s grouped into global ARGs and stages (`load()` does both).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

DEFAULT_ESCAPE = "\\"
_DIRECTIVE = re.compile(r"^#[ \t]*([a-zA-Z][a-zA-Z0-9]*)[ \t]*=[ \t]*(.+?)[ \t]*$")
_KNOWN_DIRECTIVES = {"syntax", "escape", "check"}
_WS = re.compile(r"[ \t\r\n\v\f]+")


class DockerfileError(ValueError):
    """A Dockerfile the builder cannot run; `line` is 1-based (0 when it is not about one line)."""

    def __init__(self, message: str, line: int = 0) -> None:
        super().__init__(f"dockerfile parse error on line {line}: {message}" if line else message)
        self.line = line
        self.detail = message


@dataclass
class Node:
    """One instruction as the parser saw it."""

    cmd: str  # lower-case keyword
    original: str  # the instruction's text, continuation lines joined (what "Step N/M :" prints)
    start_line: int
    end_line: int
    flags: list[str]  # raw builder flags, "--name=value"
    rest: str  # the text after the flags
    args: list[str]  # arguments in the instruction's form (see _FORMS)
    json: bool = False  # exec/JSON form
    child: "Node | None" = None  # ONBUILD's trigger
    kv: list[tuple[str, str]] = field(default_factory=list)  # ENV / LABEL pairs, still unexpanded


@dataclass
class ParsedFile:
    nodes: list[Node]
    escape: str
    directives: dict[str, str]
    warnings: list[str]


# ---------------------------------------------------------------------------------------------
# Text -> nodes
# ---------------------------------------------------------------------------------------------


def _is_comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def parse(text: str | bytes) -> ParsedFile:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    lines = [l[:-1] if l.endswith("\r") else l for l in lines]

    escape = DEFAULT_ESCAPE
    directives: dict[str, str] = {}
    looking = True
    nodes: list[Node] = []
    warnings: list[str] = []

    def directive(line: str, lineno: int) -> None:
        nonlocal looking, escape
        if not looking:
            return
        if lineno == 1 and line.startswith("#!"):
            return
        m = _DIRECTIVE.match(line)
        if not m or m.group(1).lower() not in _KNOWN_DIRECTIVES:
            looking = False
            return
        key, value = m.group(1).lower(), m.group(2)
        if key in directives:
            raise DockerfileError(f"only one {key} parser directive can be used", lineno)
        directives[key] = value
        if key == "escape":
            if value not in ("`", "\\"):
                raise DockerfileError(f"invalid escape token '{value}' does not match ` or \\", lineno)
            escape = value

    def continuation(line: str) -> tuple[str, bool]:
        """(line without its trailing escape token, whether the instruction ends here)."""
        stripped = line.rstrip(" \t")
        if stripped.endswith(escape):
            return stripped[: -len(escape)], False
        return line, True

    i = 0
    while i < len(lines):
        raw = lines[i]
        i += 1
        start = i
        first = raw.lstrip()
        directive(first, start)
        if _is_comment(first):
            first = ""
        line, done = continuation(first)
        if done and line == "":
            continue
        empty_cont = False
        while not done and i < len(lines):
            nxt = lines[i]
            i += 1
            directive(nxt, i)
            if _is_comment(nxt):
                continue
            if nxt.strip() == "":
                empty_cont = True
                continue
            part, done = continuation(nxt)
            line += part
        if not line.strip():  # only continuations ("\\" and nothing after): no instruction, as moby's parser
            continue
        if empty_cont:
            warnings.append(f"empty continuation line found in: {line.strip()}")
        nodes.append(_node_from_line(line, start, i, escape))
    return ParsedFile(nodes, escape, directives, warnings)


def _node_from_line(line: str, start: int, end: int, escape: str) -> Node:
    trimmed = line.strip()
    parts = _WS.split(trimmed, maxsplit=1)
    cmd = parts[0]
    flags: list[str] = []
    rest = ""
    if len(parts) == 2:
        flags, rest = split_words(parts[1], escape, flags=True)
    node = Node(cmd.lower(), trimmed, start, end, flags, rest, [])
    try:
        _FORMS.get(node.cmd, _form_ignore)(node, escape)
    except DockerfileError as e:
        raise DockerfileError(e.detail, start) from None
    return node


def split_words(line: str, escape: str, flags: bool = False) -> tuple[list[str], str]:
    """Split on whitespace honouring quotes and the escape token: moby's two word splitters in one.

    Arguments (ENV, LABEL, ARG; `flags=False`): quotes and escape tokens stay in the words for variable
    expansion to remove later, and inside single quotes the escape token is a plain character.
    Builder flags (`flags=True`): only the leading `--name[=value]` words, with quotes and backslashes
    removed here (the `# escape` directive does not apply to flags, and a backslash escapes inside either
    kind of quote); a word not starting with `--`, or a lone `--`, ends them.
    Returns (words, the rest of the line after the flags; "" for arguments)."""
    keep = not flags
    esc = "\\" if flags else escape
    words: list[str] = []
    word = ""
    in_word = False
    blank_ok = False  # a quoted empty string is still a word
    quote = ""  # the open quote character, "" outside quotes
    pos, n = 0, len(line)
    while pos < n:
        ch = line[pos]
        if not in_word:
            if ch.isspace():
                pos += 1
                continue
            if flags and not line.startswith("--", pos):
                return words, line[pos:]
            in_word = True
        if not quote:
            if ch.isspace():
                if flags and word == "--":
                    return words, line[pos:]
                if blank_ok or word:
                    words.append(word)
                word, in_word, blank_ok = "", False, False
                pos += 1
                continue
            if ch in ("'", '"'):
                quote, blank_ok = ch, True
                word += ch if keep else ""
                pos += 1
                continue
        elif ch == quote:
            quote = ""
            word += ch if keep else ""
            pos += 1
            continue
        elif keep and quote == "'":
            word += ch
            pos += 1
            continue
        if ch == esc:
            pos += 1
            if pos == n:  # a trailing escape token is dropped
                break
            word += ch if keep else ""
            ch = line[pos]
        word += ch
        pos += 1
    if in_word and (blank_ok or word) and not (flags and word == "--"):
        words.append(word)
    return words, ""


class _NotStringArray(DockerfileError):
    pass


def _parse_json(rest: str) -> list[str] | None:
    rest = rest.lstrip()
    if not rest.startswith("["):
        return None
    try:
        val = json.loads(rest)
    except ValueError:
        return None
    if not isinstance(val, list):
        return None
    if not all(isinstance(v, str) for v in val):
        raise _NotStringArray("when using JSON array syntax, arrays must be comprised of strings only")
    return val


def _form_maybe_json(node: Node, escape: str) -> None:
    if not node.rest:
        return
    arr = _parse_json(node.rest)
    if arr is not None:
        node.args, node.json = arr, True
    else:
        node.args = [node.rest]


def _form_maybe_json_to_list(node: Node, escape: str) -> None:
    arr = _parse_json(node.rest)
    if arr is not None:
        node.args, node.json = arr, True
    else:
        _form_whitespace_list(node, escape)


def _form_whitespace_list(node: Node, escape: str) -> None:
    node.args = [w for w in _WS.split(node.rest.strip()) if w]


def _form_string(node: Node, escape: str) -> None:
    node.args = [node.rest] if node.rest else []


def _form_name_val(node: Node, escape: str) -> None:
    words = split_words(node.rest, escape)[0]
    if not words:
        return
    if "=" not in words[0]:
        # Legacy `ENV name value…`: the whole rest of the line is the value.
        parts = _WS.split(node.rest.strip(), maxsplit=1)
        if len(parts) < 2:
            raise DockerfileError(f"{node.cmd.upper()} must have two arguments")
        node.kv = [(parts[0], parts[1])]
        return
    for w in words:
        if "=" not in w:
            raise DockerfileError(f"Syntax error - can't find = in {w!r}. Must be of the form: name=value")
        k, _, v = w.partition("=")
        node.kv.append((k, v))


def _form_name_or_name_val(node: Node, escape: str) -> None:
    node.args = split_words(node.rest, escape)[0]


def _form_health(node: Node, escape: str) -> None:
    rest = node.rest
    m = re.match(r"(\S+)\s*(.*)$", rest, re.S)
    if not m:
        return
    typ, cmd = m.group(1), m.group(2)
    sub = Node(node.cmd, node.original, node.start_line, node.end_line, [], cmd, [])
    _form_maybe_json(sub, escape)
    node.args = [typ, *sub.args]
    node.json = sub.json


def _form_onbuild(node: Node, escape: str) -> None:
    if node.rest:
        node.child = _node_from_line(node.rest, node.start_line, node.end_line, escape)


def _form_ignore(node: Node, escape: str) -> None:
    node.args = [node.rest] if node.rest else []


_FORMS = {
    "add": _form_maybe_json_to_list,
    "arg": _form_name_or_name_val,
    "cmd": _form_maybe_json,
    "copy": _form_maybe_json_to_list,
    "entrypoint": _form_maybe_json,
    "env": _form_name_val,
    "expose": _form_whitespace_list,
    "from": _form_whitespace_list,
    "healthcheck": _form_health,
    "label": _form_name_val,
    "maintainer": _form_string,
    "onbuild": _form_onbuild,
    "run": _form_maybe_json,
    "shell": _form_maybe_json,
    "stopsignal": _form_string,
    "user": _form_string,
    "volume": _form_maybe_json_to_list,
    "workdir": _form_string,
}

# The instructions the parser knows (anything else is "unknown instruction" in guest/build/instructions.py).
INSTRUCTIONS = frozenset(_FORMS)
