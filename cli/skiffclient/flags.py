"""Command-line flags with the docker CLI's (spf13/pflag) semantics and messages.

Why not argparse: docker's grammar differs where scripts notice it — `-it`, `-p80:80`, `--rm=false`,
`run IMAGE CMD -flags` (flags stop at the first argument), errors like `unknown flag: --foo` with exit
status 125 and the `Usage:` block. Matching that with argparse takes more code than this parser.

A command declares `Flag`s; `parse(cmd, argv)` returns (values by flag name, positional args) or raises
`FlagError` (status 125) / `ArgsError` (status 1), whose text is what docker prints.
"""

from __future__ import annotations

TYPE_CHECKING = False  # no runtime `typing` import: it costs startup time and annotations are strings
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

PROG = "skiff"


class FlagError(Exception):
    status = 125


class ArgsError(Exception):
    status = 1


class Flag:
    """One flag: `kind` is bool | string | int | list | float; `check` raises ValueError(reason) for a bad
    value, as a pflag.Value's Set does. (Plain class: dataclasses cost startup time.)"""

    def __init__(self, name: str, short: str = "", kind: str = "bool", default: Any = None, help: str = "",
                 metavar: str = "", hidden: bool = False, check: Callable[[str], None] | None = None) -> None:
        self.name, self.short, self.kind, self.default = name, short, kind, default
        self.help, self.metavar, self.hidden, self.check = help, metavar, hidden, check

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")

    def initial(self) -> Any:
        if self.kind == "list":
            return list(self.default or [])
        if self.default is not None:
            return self.default
        return {"bool": False, "string": "", "int": 0, "float": 0.0}[self.kind]

    def label(self) -> str:
        return f"-{self.short}, --{self.name}" if self.short else f"--{self.name}"


class Command:
    """`path` is "ps", "image ls", …; `usage` the part after it ("[OPTIONS] IMAGE [COMMAND] [ARG...]");
    interspersed=False: flags end at the first positional argument (run, exec)."""

    def __init__(self, path: str, usage: str, short: str, run: Callable[..., int | None] | None = None,
                 flags: list[Flag] | None = None, min_args: int = 0, max_args: int | None = None,
                 exact_args: int | None = None, interspersed: bool = True, aliases: Sequence[str] = ()) -> None:
        self.path, self.usage, self.short, self.run = path, usage, short, run
        self.flags = flags or []
        self.min_args, self.max_args, self.exact_args = min_args, max_args, exact_args
        self.interspersed, self.aliases = interspersed, aliases

    def usage_line(self) -> str:
        return f"Usage:  {PROG} {self.path} {self.usage}".rstrip()

    def help_text(self) -> str:
        out = [self.usage_line(), "", self.short, ""]
        if self.aliases:
            out += ["Aliases:", "  " + ", ".join(f"{PROG} {a}" for a in self.aliases), ""]
        visible = [f for f in self.flags if not f.hidden]
        if visible:  # docker prints no Options block for a command without flags of its own
            visible.append(Flag("help", kind="bool", help="Print usage"))
            out.append("Options:")
            rows = []
            for f in visible:
                left = ("-" + f.short + ", " if f.short else "    ") + "--" + f.name
                if f.kind != "bool":
                    left += " " + (f.metavar or {"int": "int", "float": "float", "list": "list"}.get(f.kind, "string"))
                rows.append((left, f.help))
            width = max(len(r[0]) for r in rows)
            out += [f"  {l.ljust(width)}   {h}".rstrip() for l, h in rows]
        elif out[-1] == "":
            out.pop()
        return "\n".join(out) + "\n"


def _usage_tail(cmd: Command) -> str:
    return f"\n\n{cmd.usage_line()}\n\nRun '{PROG} {cmd.path} --help' for more information"


def _convert(f: Flag, raw: str) -> Any:
    try:
        if f.kind == "int":
            return int(raw, 0) if raw.lower().startswith(("0x", "0o", "0b")) else int(raw)
        if f.kind == "float":
            return float(raw)
    except ValueError:
        syntax = "strconv.ParseInt" if f.kind == "int" else "strconv.ParseFloat"
        raise ValueError(f'{syntax}: parsing "{raw}": invalid syntax') from None
    return raw


def _bool(raw: str) -> bool:
    v = raw.lower()
    if v in ("1", "t", "true"):
        return True
    if v in ("0", "f", "false"):
        return False
    raise ValueError(f'strconv.ParseBool: parsing "{raw}": invalid syntax')


class HelpRequested(Exception):
    pass


def parse(cmd: Command, argv: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
    """Values by flag dest (plus "_given": the dests set on the command line) and the positional args."""
    by_long = {f.name: f for f in cmd.flags}
    by_short = {f.short: f for f in cmd.flags if f.short}
    values: dict[str, Any] = {f.dest: f.initial() for f in cmd.flags}
    given: set[str] = set()
    args: list[str] = []

    def store(f: Flag, raw: str | None, shown: str) -> None:
        if f.check is not None and raw is not None:
            try:
                f.check(raw)
            except ValueError as e:
                raise FlagError(f'invalid argument "{raw}" for "{shown}" flag: {e}{_usage_tail(cmd)}') from None
        if f.kind == "list":
            if f.dest not in given:
                values[f.dest] = []  # a given list flag replaces its default
            values[f.dest].append(raw)
        else:
            try:
                if f.kind == "bool":
                    values[f.dest] = True if raw is None else _bool(raw)
                else:
                    values[f.dest] = _convert(f, raw or "")
            except ValueError as e:
                raise FlagError(f'invalid argument "{raw}" for "{shown}" flag: {e}{_usage_tail(cmd)}') from None
        given.add(f.dest)

    argv = list(argv)
    i = 0
    while i < len(argv):
        a = argv[i]
        i += 1
        if a == "--":
            args.extend(argv[i:])
            break
        if a.startswith("--") and len(a) > 2:
            name, eq, raw = a[2:].partition("=")
            if name == "help" and name not in by_long:
                raise HelpRequested()
            f = by_long.get(name)
            if f is None:
                raise FlagError(f"unknown flag: --{name}{_usage_tail(cmd)}")
            if f.kind == "bool":
                store(f, raw if eq else None, f.label())
                continue
            if not eq:
                if i >= len(argv):
                    raise FlagError(f"flag needs an argument: --{name}{_usage_tail(cmd)}")
                raw = argv[i]
                i += 1
            store(f, raw, f.label())
            continue
        if a.startswith("-") and len(a) > 1:
            j = 1
            while j < len(a):
                c = a[j]
                j += 1
                if c == "h" and "h" not in by_short:
                    raise HelpRequested()
                f = by_short.get(c)
                if f is None:
                    raise FlagError(f"unknown shorthand flag: '{c}' in {a}{_usage_tail(cmd)}")
                if f.kind == "bool":
                    if j < len(a) and a[j] == "=":
                        store(f, a[j + 1:], f.label())
                        break
                    store(f, None, f.label())
                    continue
                if j < len(a):
                    raw = a[j + 1:] if a[j] == "=" else a[j:]
                elif i < len(argv):
                    raw = argv[i]
                    i += 1
                else:
                    raise FlagError(f"flag needs an argument: '{c}' in {a}{_usage_tail(cmd)}")
                store(f, raw, f.label())
                break
            continue
        args.append(a)
        if not cmd.interspersed:
            args.extend(argv[i:])
            break
    check_args(cmd, args)
    values["_given"] = given
    return values, args


def check_args(cmd: Command, args: list[str]) -> None:
    """cobra argument checks with docker's wording (cli/required.go), "See"/"Run" and all."""
    n = len(args)

    def fail(what: str, hint: str = "Run") -> None:
        raise ArgsError(f"{PROG}: '{PROG} {cmd.path}' {what}\n\n{cmd.usage_line()}\n\n"
                        f"{hint} '{PROG} {cmd.path} --help' for more information")

    def plural(k: int) -> str:
        return f"{k} argument" + ("" if k == 1 else "s")

    if cmd.exact_args is not None:
        if n != cmd.exact_args:
            fail(f"requires {plural(cmd.exact_args)}")
        return
    if cmd.max_args == 0:
        if n:
            fail("accepts no arguments")
        return
    if cmd.min_args and cmd.max_args is not None:
        if n < cmd.min_args or n > cmd.max_args:
            fail(f"requires at least {cmd.min_args} and at most {plural(cmd.max_args)}")
        return
    if n < cmd.min_args:
        fail(f"requires at least {plural(cmd.min_args)}", "See")
    if cmd.max_args is not None and n > cmd.max_args:
        fail(f"requires at most {plural(cmd.max_args)}", "SRun")  # sic: docker 28 prints "SRun"
