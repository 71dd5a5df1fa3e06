"""A small subset of Go's text/template, enough for docker-machine's `inspect --format` and `ls --format`.

Supported: literal text, `{{.}}`, `{{.A.B}}` (map keys or attributes), functions `json`, `upper`,
`lower`, `title`, `len`, `print` as `{{json .X}}` or pipelines `{{.X | json}}`, the `table ` prefix
(tab-aligned output with a header row, like docker's formatter), and `\\t` / `\\n` escapes typed on a
command line. `{{range}}`/`{{if}}` are not supported and raise TemplateError.

API (stdlib only):
    render(fmt, obj) -> str
    render_table(fmt, rows, headers) -> str            # fmt without the "table " prefix
    tabwrite(lines) -> str                             # Go tabwriter(minwidth 5, padding 3), as ls uses
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterable, Mapping, Sequence

_ACTION = re.compile(r"{{-?\s*(.*?)\s*-?}}", re.S)
_NO_VALUE = "<no value>"


class TemplateError(ValueError):
    pass


def unescape(fmt: str) -> str:
    return fmt.replace("\\t", "\t").replace("\\n", "\n")


def _lookup(obj: Any, path: str) -> Any:
    if path == ".":
        return obj
    if not path.startswith("."):
        raise TemplateError(f"unsupported template expression {path!r} (only .Field paths)")
    cur = obj
    for part in path[1:].split("."):
        if not part:
            raise TemplateError(f"bad field path {path!r}")
        if isinstance(cur, Mapping):
            if part not in cur:
                return _Missing
            cur = cur[part]
        elif hasattr(cur, part):
            cur = getattr(cur, part)
        else:
            return _Missing
    return cur


class _MissingType:
    pass


_Missing = _MissingType()


def gostr(v: Any) -> str:
    """Print a value the way Go's fmt %v does for JSON-decoded data."""
    if v is _Missing:
        return _NO_VALUE
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(gostr(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "map[" + " ".join(f"{k}:{gostr(v[k])}" for k in sorted(v)) + "]"
    return str(v)


def _apply(fn: str, v: Any) -> Any:
    if fn == "json":
        return json.dumps(None if v is _Missing else v, separators=(",", ":"), default=str)
    if fn == "upper":
        return gostr(v).upper()
    if fn == "lower":
        return gostr(v).lower()
    if fn == "title":
        return gostr(v).title()
    if fn == "len":
        return len(v) if hasattr(v, "__len__") else 0
    if fn == "print":
        return gostr(v)
    raise TemplateError(f'function "{fn}" not defined')


def _eval(expr: str, obj: Any) -> str:
    stages = [s.strip() for s in expr.split("|")]
    value: Any = None
    for i, stage in enumerate(stages):
        words = stage.split()
        if not words:
            raise TemplateError(f"empty pipeline stage in {{{{{expr}}}}}")
        if words[0] in ("range", "if", "with", "end", "else", "define", "template", "block"):
            raise TemplateError(f"{{{{{words[0]}}}}} is not supported in --format")
        if words[0].startswith("."):
            if len(words) != 1:
                raise TemplateError(f"can't give argument to non-function {words[0]}")
            value = _lookup(obj, words[0])
        else:
            args = [_lookup(obj, w) for w in words[1:]]
            if i > 0:
                args.append(value)
            if len(args) != 1:
                raise TemplateError(f"wrong number of args for {words[0]}: want 1 got {len(args)}")
            value = _apply(words[0], args[0])
    return value if isinstance(value, str) else gostr(value)


def render(fmt: str, obj: Any) -> str:
    fmt = unescape(fmt)
    out: list[str] = []
    pos = 0
    for m in _ACTION.finditer(fmt):
        out.append(fmt[pos : m.start()])
        out.append(_eval(m.group(1), obj))
        pos = m.end()
    tail = fmt[pos:]
    if "{{" in tail or "}}" in tail:
        raise TemplateError(f"unclosed action in template {fmt!r}")
    out.append(tail)
    return "".join(out)


def header_for(fmt: str, headers: Mapping[str, str]) -> str:
    """Replace each {{.Field}} by its column header (docker's `table` behaviour)."""

    def sub(m: re.Match[str]) -> str:
        words = m.group(1).replace("|", " ").split()
        field = next((w for w in words if w.startswith(".")), ".")
        key = field.lstrip(".").split(".")[-1]
        return headers.get(key, key.upper())

    return _ACTION.sub(sub, unescape(fmt))


def tabwrite(lines: Iterable[str], minwidth: int = 5, padding: int = 3) -> str:
    """Align tab-separated cells like Go's text/tabwriter; the last cell of a row is not padded."""
    rows = [ln.split("\t") for ln in lines]
    widths: dict[int, int] = {}
    for r in rows:
        for i, cell in enumerate(r[:-1]):
            widths[i] = max(widths.get(i, 0), len(cell))
    out = []
    for r in rows:
        parts = [cell.ljust(max(minwidth, widths[i] + padding)) for i, cell in enumerate(r[:-1])]
        parts.append(r[-1])
        out.append("".join(parts))
    return "".join(line + "\n" for line in out)


def render_table(fmt: str, rows: Sequence[Any], headers: Mapping[str, str]) -> str:
    lines = [header_for(fmt, headers)] + [render(fmt, r) for r in rows]
    return tabwrite(lines)
