"""The Dockerfile parser: text -> instructions, with Docker's rules for directives, escapes and forms.

Written here rather than taken from PyPI: `dockerfile-parse` (the maintained Python parser) reads
instructions for inspection, but it does not model what a builder needs — the `# escape` directive's
effect on continuations and words, builder flags (`--from=…`), Docker's JSON-vs-shell decision, ENV's
two syntaxes with quotes kept for later expansion, or per-line errors — and its own variable
substitution differs from Docker's. The rules below follow moby/buildkit's `frontend/dockerfile/parser`
and `instructions` packages (which Docker's classic builder uses), in a few hundred lines.

Two layers: `parse()` turns text into `Node`s (one per instruction, continuation lines joined, comments
dropped); `parse_stages()` turns nodes into typed `Instruction`s grouped into global ARGs and stages.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

DEFAULT_ESCAPE = "\\"
_DIRECTIVE = re.compile(r"^#[ \t]*([a-zA-Z][a-zA-Z0-9]*)[ \t]*=[ \t]*(.+?)[ \t]*$")
_KNOWN_DIRECTIVES = {"syntax", "escape", "check"}
_STAGE_NAME = re.compile(r"^[a-z][a-z0-9\-_.]*$")
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
        rest, flags = _extract_flags(parts[1])
    node = Node(cmd.lower(), trimmed, start, end, flags, rest, [])
    try:
        _FORMS.get(node.cmd, _form_ignore)(node, escape)
    except DockerfileError as e:
        raise DockerfileError(e.detail, start) from None
    return node


def _extract_flags(line: str) -> tuple[str, list[str]]:
    """Leading `--flag[=value]` words (quotes and backslashes processed) and the rest of the line."""
    words: list[str] = []
    word = ""
    blank_ok = False
    phase = "spaces"
    quote = ""
    pos = 0
    n = len(line)
    while pos <= n:
        ch = line[pos] if pos < n else ""
        if phase == "spaces":
            if pos == n:
                break
            if ch.isspace():
                pos += 1
                continue
            if ch != "-" or pos + 1 == n or line[pos + 1] != "-":
                return line[pos:], words
            phase = "word"
        if pos == n:
            if word != "--" and (blank_ok or word):
                words.append(word)
            break
        if phase == "word":
            if ch.isspace():
                phase = "spaces"
                if word == "--":
                    return line[pos:], words
                if blank_ok or word:
                    words.append(word)
                word, blank_ok = "", False
                pos += 1
                continue
            if ch in ("'", '"'):
                quote, blank_ok, phase = ch, True, "quote"
                pos += 1
                continue
            if ch == "\\":
                if pos + 1 == n:
                    pos += 1
                    continue
                pos += 1
                ch = line[pos]
            word += ch
            pos += 1
            continue
        # in a quote
        if ch == quote:
            phase = "word"
            pos += 1
            continue
        if ch == "\\":
            if pos + 1 == n:
                phase = "word"
                pos += 1
                continue
            pos += 1
            ch = line[pos]
        word += ch
        pos += 1
    return "", words


def parse_words(rest: str, escape: str) -> list[str]:
    """Split on whitespace honouring quotes and escapes, keeping both in the words (they are removed
    later by variable expansion). Used by ENV, LABEL and ARG."""
    words: list[str] = []
    word = ""
    blank_ok = False
    phase = "spaces"
    quote = ""
    pos = 0
    n = len(rest)
    while pos <= n:
        ch = rest[pos] if pos < n else ""
        if phase == "spaces":
            if pos == n:
                break
            if ch.isspace():
                pos += 1
                continue
            phase = "word"
        if pos == n:
            if blank_ok or word:
                words.append(word)
            break
        if phase == "word":
            if ch.isspace():
                phase = "spaces"
                if blank_ok or word:
                    words.append(word)
                word, blank_ok = "", False
                pos += 1
                continue
            if ch in ("'", '"'):
                quote, blank_ok, phase = ch, True, "quote"
            if ch == escape:
                if pos + 1 == n:
                    pos += 1
                    continue
                word += ch
                pos += 1
                ch = rest[pos]
            word += ch
            pos += 1
            continue
        if ch == quote:
            phase = "word"
        if ch == escape and quote != "'":
            if pos + 1 == n:
                phase = "word"
                pos += 1
                continue
            word += ch
            pos += 1
            ch = rest[pos]
        word += ch
        pos += 1
    return words


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
    words = parse_words(node.rest, escape)
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
    node.args = parse_words(node.rest, escape)


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


# ---------------------------------------------------------------------------------------------
# Nodes -> typed instructions and stages
# ---------------------------------------------------------------------------------------------

# Flags each instruction accepts (a flag the classic builder cannot honour is rejected by the builder
# with a clear message, not here, so the Dockerfile still parses like Docker parses it).
_FLAGS: dict[str, dict[str, str]] = {
    "from": {"platform": "string"},
    "copy": {"from": "string", "chown": "string", "chmod": "string", "link": "bool", "parents": "bool",
             "exclude": "strings"},
    "add": {"chown": "string", "chmod": "string", "link": "bool", "keep-git-dir": "bool", "checksum": "string",
            "exclude": "strings", "unpack": "bool"},
    "run": {"mount": "strings", "network": "string", "security": "string"},
    "healthcheck": {"interval": "string", "timeout": "string", "start-period": "string",
                    "start-interval": "string", "retries": "string"},
}


def parse_flags(cmd: str, raw: list[str]) -> dict[str, object]:
    spec = _FLAGS.get(cmd, {})
    out: dict[str, object] = {}
    for arg in raw:
        if not arg.startswith("--"):
            raise DockerfileError(f"arg should start with -- : {arg}")
        if arg == "--":
            break
        name, has_value, value = arg[2:].partition("=")
        kind = spec.get(name)
        if kind is None:
            raise DockerfileError(f"unknown flag: {name}")
        if name in out and kind != "strings":
            raise DockerfileError(f"duplicate flag specified: {name}")
        if kind == "bool":
            if not has_value:
                out[name] = True
            elif value.lower() in ("true", "false"):
                out[name] = value.lower() == "true"
            else:
                raise DockerfileError(f"expecting boolean value for flag {name}, not: {value}")
        elif kind == "strings":
            if not has_value:
                raise DockerfileError(f"missing a value on flag: {name}")
            values = out.setdefault(name, [])
            assert isinstance(values, list)  # a "strings" flag only ever holds a list
            values.append(value)
        else:
            if not has_value:
                raise DockerfileError(f"missing a value on flag: {name}")
            out[name] = value
    return out


@dataclass
class Instruction:
    """A typed instruction. Which fields are set depends on `cmd`; words are still unexpanded."""

    cmd: str
    node: Node
    flags: dict[str, object]
    args: list[str] = field(default_factory=list)  # RUN/CMD/ENTRYPOINT/SHELL argv, COPY/ADD sources+dest, …
    json: bool = False
    kv: list[tuple[str, str | None]] = field(default_factory=list)  # ENV, LABEL, ARG (value None = no default)
    health: dict[str, object] | None = None
    trigger: str = ""  # ONBUILD's expression

    @property
    def line(self) -> int:
        return self.node.start_line

    @property
    def text(self) -> str:
        return self.node.original


@dataclass
class Stage:
    base: str  # unexpanded image reference or stage name
    name: str  # lower-cased `AS` name, "" if none
    platform: str
    node: Node
    index: int
    instructions: list[Instruction] = field(default_factory=list)


@dataclass
class Plan:
    meta_args: list[Instruction]
    stages: list[Stage]
    escape: str
    warnings: list[str]

    @property
    def total_steps(self) -> int:
        return len(self.meta_args) + sum(1 + len(s.instructions) for s in self.stages)

    def stage_index(self, name: str) -> int | None:
        """A stage by `AS` name (case-insensitive) or by number."""
        low = name.lower()
        for s in self.stages:
            if s.name and s.name == low:
                return s.index
        if name.isdigit() and int(name) < len(self.stages):
            return int(name)
        return None


def _need_args(ins: Instruction, n: int = 1) -> None:
    if len(ins.args) < n:
        word = "argument" if n == 1 else "arguments"
        raise DockerfileError(f"{ins.cmd.upper()} requires at least {'one' if n == 1 else 'two'} {word}")


_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
            "m": 60_000_000_000, "h": 3_600_000_000_000}


def parse_go_duration(text: str) -> int:
    """Go's time.ParseDuration, in nanoseconds ("1m30s", "300ms", "0")."""
    s = text
    sign = 1
    if s[:1] in "+-" and s:
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise ValueError(f'time: invalid duration "{text}"')
    total = 0.0
    pos = 0
    while pos < len(s):
        m = _GO_DURATION.match(s, pos)
        if not m:
            raise ValueError(f'time: invalid duration "{text}"')
        total += float(m.group(1)) * _UNIT_NS[m.group(2)]
        pos = m.end()
    return sign * int(total)


def _health(ins: Instruction) -> dict[str, object]:
    if not ins.args:
        raise DockerfileError("HEALTHCHECK requires at least one argument")
    typ = ins.args[0].upper()
    rest = ins.args[1:]
    if typ == "NONE":
        if rest:
            raise DockerfileError("HEALTHCHECK NONE takes no arguments")
        return {"Test": ["NONE"]}
    if typ != "CMD":
        raise DockerfileError(f'Unknown type "{typ}" in HEALTHCHECK (try CMD)')
    if not rest or (len(rest) == 1 and not rest[0]):
        raise DockerfileError("Missing command after HEALTHCHECK CMD")
    test = ["CMD", *rest] if ins.json else ["CMD-SHELL", *rest]
    health: dict[str, object] = {"Test": test}
    for flag, key in (("interval", "Interval"), ("timeout", "Timeout"), ("start-period", "StartPeriod"),
                      ("start-interval", "StartInterval")):
        v = ins.flags.get(flag)
        if not v:
            continue
        try:
            d = parse_go_duration(str(v))
        except ValueError as e:
            raise DockerfileError(str(e)) from None
        if d != 0 and d < 1_000_000:
            raise DockerfileError(f'Interval "{flag}" cannot be less than 1ms')
        if d < 0:
            raise DockerfileError(f'Interval "{flag}" cannot be negative')
        health[key] = d
    r = ins.flags.get("retries")
    if r:
        try:
            retries = int(str(r))
        except ValueError:
            raise DockerfileError(f'strconv.ParseInt: parsing "{r}": invalid syntax') from None
        if retries < 0:
            raise DockerfileError(f"--retries cannot be negative ({retries})")
        health["Retries"] = retries
    return health


def to_instruction(node: Node) -> Instruction:
    cmd = node.cmd
    if cmd not in _FORMS:
        raise DockerfileError(f"unknown instruction: {node.original.split()[0].upper()}", node.start_line)
    try:
        ins = Instruction(cmd, node, parse_flags(cmd, node.flags), list(node.args), node.json)
        if cmd in ("env", "label"):
            if not node.kv:
                raise DockerfileError(f"{cmd.upper()} requires at least one argument")
            ins.kv = list(node.kv)
        elif cmd == "arg":
            if not ins.args:
                raise DockerfileError("ARG requires at least one argument")
            for w in ins.args:
                k, sep, v = w.partition("=")
                ins.kv.append((k, v if sep else None))
        elif cmd in ("copy", "add"):
            _need_args(ins, 2)
        elif cmd in ("run", "cmd", "entrypoint"):
            if cmd == "run":
                _need_args(ins, 1)
        elif cmd == "shell":
            if not ins.json:
                raise DockerfileError("SHELL requires the arguments to be in JSON form")
            _need_args(ins, 1)
        elif cmd in ("workdir", "user", "stopsignal", "maintainer"):
            if len(ins.args) != 1 or not ins.args[0]:
                raise DockerfileError(f"{cmd.upper()} requires exactly one argument")
        elif cmd in ("expose", "volume"):
            _need_args(ins, 1)
            if cmd == "volume" and any(not v.strip() for v in ins.args):
                raise DockerfileError("VOLUME specified can not be an empty string")
        elif cmd == "healthcheck":
            ins.health = _health(ins)
        elif cmd == "onbuild":
            if node.child is None:
                raise DockerfileError("ONBUILD requires at least one argument")
            trig = node.child.cmd.upper()
            if trig == "ONBUILD":
                raise DockerfileError("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
            if trig in ("MAINTAINER", "FROM"):
                raise DockerfileError(f"{trig} isn't allowed as an ONBUILD trigger")
            to_instruction(node.child)  # validate the trigger now, like Docker does
            ins.trigger = re.sub(r"(?i)^\s*ONBUILD\s*", "", node.original)
    except DockerfileError as e:
        raise DockerfileError(e.detail, node.start_line) from None
    return ins


def parse_stages(pf: ParsedFile) -> Plan:
    if not pf.nodes:
        raise DockerfileError("file with no instructions")
    meta: list[Instruction] = []
    stages: list[Stage] = []
    for node in pf.nodes:
        if node.cmd == "from":
            try:
                flags = parse_flags("from", node.flags)
                args = node.args
                if len(args) == 3 and args[1].lower() == "as":
                    name = args[2].lower()
                    if not _STAGE_NAME.match(name):
                        raise DockerfileError(
                            f'invalid name for build stage: "{args[2]}", name can\'t start with a number or contain symbols')
                elif len(args) != 1:
                    raise DockerfileError("FROM requires either one or three arguments")
                else:
                    name = ""
                if name and any(s.name == name for s in stages):
                    raise DockerfileError(f'duplicate stage name "{name}"')
            except DockerfileError as e:
                raise DockerfileError(e.detail, node.start_line) from None
            stages.append(Stage(args[0], name, str(flags.get("platform", "")), node, len(stages)))
            continue
        ins = to_instruction(node)
        if not stages:
            if ins.cmd == "arg":
                meta.append(ins)
                continue
            raise DockerfileError("no build stage in current context", node.start_line)
        stages[-1].instructions.append(ins)
    if not stages:
        raise DockerfileError("no build stage in current context")
    return Plan(meta, stages, pf.escape, pf.warnings)


def load(text: str | bytes) -> Plan:
    return parse_stages(parse(text))
