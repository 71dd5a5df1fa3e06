"""Dockerfile nodes -> typed instructions grouped into global ARGs and stages (the `Plan` a build runs).

The second layer of the parser (guest/build/dockerfile.py turns text into `Node`s): builder flags checked
against what each instruction accepts, argument counts, HEALTHCHECK options, ONBUILD triggers validated up
front and `FROM … AS name` stages, with moby/buildkit's `instructions` package's messages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from skiffbox.guest.build.dockerfile import INSTRUCTIONS, DockerfileError, Node, ParsedFile, parse
from skiffbox.guest.util.timefmt import parse_go_duration

_STAGE_NAME = re.compile(r"^[a-z][a-z0-9\-_.]*$")

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
    if cmd not in INSTRUCTIONS:
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
