"""Request bodies checked against the types the Engine API documents, before any handler sees them.

One layer for every endpoint: the App hands each decoded JSON body to `BodyValidator.check` with the
request's method and path, and a body whose types disagree with the spec is refused with a 400 worded like
dockerd's Go decoder ("json: cannot unmarshal string into Go struct field HostConfig.Memory of type
int64"). Nothing half-checked reaches the engine, so nothing is stored that later reads would choke on.

The schemas are request_schemas.json, extracted from the spec by scripts/gen_request_schemas.py. The
checks follow Go's encoding/json rather than JSON Schema to the letter, as dockerd does: null fits any
type, unknown fields are ignored, integers must be whole and in range, and the fields dockerd declares as
strslice (Cmd, Entrypoint, Shell) take a single string as well as a list. Values the types cannot express
(port keys) get a semantic check here too, so the engine never stores a container it cannot list.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from collections.abc import Callable
from typing import Any

from skiffbox.guest.errors import InvalidParameter
from skiffbox.guest.network.ports import parse_port_key
from skiffbox.guest.util.filters import parse_filters

_INT_RANGES = {
    "int8": (-(2**7), 2**7 - 1), "int16": (-(2**15), 2**15 - 1), "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1), "uint8": (0, 2**8 - 1), "uint16": (0, 2**16 - 1),
    "uint32": (0, 2**32 - 1), "uint64": (0, 2**64 - 1),
}
_ZEROS: dict[str, Any] = {"string": "", "integer": 0, "number": 0, "boolean": False}
# Fields dockerd declares as strslice.StrSlice: a JSON string is taken as a one-element list.
_STRSLICE = {("ContainerConfig", "Cmd"), ("ContainerConfig", "Entrypoint"), ("ContainerConfig", "Shell")}


def decode_json(raw: bytes) -> Any:
    """Parse a request body; malformed or absurdly nested JSON is the client's error, never a 500. (The C decoder
    stops at the interpreter's recursion limit, ~1000 levels, with a RecursionError: deeper than any real request.)"""
    try:
        return json.loads(raw, object_pairs_hook=_last_key_last)
    except RecursionError:
        raise InvalidParameter("invalid JSON body: nested too deeply") from None
    except ValueError as e:
        raise InvalidParameter(f"invalid JSON body: {e}") from None


def _last_key_last(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose repeated key sits where it was last given, so that renaming keys to fields in order
    (_go_field_names) lets the last of {"A": 1, "a": 2, "A": 3} win, as Go's decoder does."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        obj = {}
        for k, v in pairs:
            obj.pop(k, None)
            obj[k] = v
    return obj


def _json_kind(v: Any) -> str:
    """The JSON kind as Go's decoder names it in its errors."""
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def _path_rx(path: str) -> re.Pattern[str]:
    # {name} may hold slashes (image and plugin references)
    return re.compile("^" + re.sub(r"\\\{[A-Za-z_]+\\\}", ".+?", re.escape(path)) + "$")


class BodyValidator:
    def __init__(self, doc: dict[str, Any]) -> None:
        self._defs: dict[str, Any] = doc["definitions"]
        self._ops: list[tuple[str, str, re.Pattern[str], str, dict[str, Any]]] = []
        for key, op in doc["operations"].items():
            method, path = key.split(" ", 1)
            self._ops.append((key, method, _path_rx(path), self._top_name(op["schema"]), op["schema"]))
        # Literal paths before templates, so /images/json is never taken for /images/{name}.
        self._queries = sorted(((key.split(" ", 1)[0], _path_rx(key.split(" ", 1)[1]), key, params)
                                for key, params in doc.get("queries", {}).items()), key=lambda q: q[2].count("{"))

    @classmethod
    def load(cls) -> "BodyValidator":
        text = resources.files("skiffbox.guest.api").joinpath("request_schemas.json").read_text()
        doc: dict[str, Any] = json.loads(text)
        return cls(doc)

    def check(self, method: str, path: str, body: Any) -> None:
        """Raise InvalidParameter when `body` (decoded JSON) does not fit what `method path` documents.

        A strslice given as a string is turned into its one-element list in place, as dockerd decodes it."""
        for key, m, rx, top, schema in self._ops:
            if m == method and rx.match(path):
                if body is not None:
                    self._check(schema, body, top, [], top)
                    _SEMANTIC.get(key, _no_check)(body)
                return

    def check_query(self, method: str, path: str, query: dict[str, list[str]]) -> None:
        """Raise InvalidParameter for a query parameter dockerd would refuse: an integer strconv cannot parse, or
        filters that are neither of its two JSON forms. dockerd reads the first value of a repeated parameter,
        and takes any value for its booleans (httputils.BoolValue), so those are never refused."""
        for m, rx, key, params in self._queries:
            if m == method and rx.match(path):
                for name, spec in params.items():
                    values, how = query.get(name), _QUERY_INTS.get((key, name), "int")
                    if name == "filters":
                        if values:
                            parse_filters(values[0])
                    elif spec.get("type") == "integer" and (how == "required" or (how == "int" and values and values[0])):
                        value = values[0] if values else ""
                        go_parse_int(value, _QUERY_INT_WRAP.get((key, name), "{error}").replace("{value}", value))
                return

    # -- the walk --------------------------------------------------------------------------------------
    def _top_name(self, schema: dict[str, Any]) -> str:
        if "title" in schema:
            return str(schema["title"])
        if "$ref" in schema:
            return str(schema["$ref"]).rsplit("/", 1)[-1]
        for part in schema.get("allOf", []):
            if "$ref" in part:
                return str(part["$ref"]).rsplit("/", 1)[-1]
        return "body"

    def _resolve(self, schema: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        ref = schema.get("$ref")
        if ref is None:
            return schema, None
        name = str(ref).rsplit("/", 1)[-1]
        return self._defs[name], name

    def _properties(self, schema: dict[str, Any], owner: str) -> dict[str, tuple[dict[str, Any], str]]:
        """Property name → (schema, the definition declaring it), across allOf."""
        out: dict[str, tuple[dict[str, Any], str]] = {}
        for part in [schema, *schema.get("allOf", [])]:
            part, name = self._resolve(part)
            owner_here = name or owner
            if "allOf" in part and part is not schema:
                out.update(self._properties(part, owner_here))
            for k, s in (part.get("properties") or {}).items():
                out[k] = (s, owner_here)
        return out

    def _go_type(self, schema: dict[str, Any]) -> str:
        schema, name = self._resolve(schema)
        if name:
            return name
        t = schema.get("type")
        if t == "integer":
            return str(schema.get("format") or "int")
        if t == "number":
            return "float64"
        if t == "boolean":
            return "bool"
        if t == "string":
            return "string"
        if t == "array":
            return "[]" + (self._go_type(schema["items"]) if "items" in schema else "interface {}")
        if isinstance(schema.get("additionalProperties"), dict):
            return "map[string]" + self._go_type(schema["additionalProperties"])
        if schema.get("properties") or schema.get("allOf"):
            return str(schema.get("title") or "struct")
        return "map[string]interface {}"

    def _fail(self, value: Any, schema: dict[str, Any], top: str, path: list[str]) -> InvalidParameter:
        kind = _json_kind(value)
        if kind == "number":
            kind = f"number {json.dumps(value)}"
        where = f"Go struct field {top}.{'.'.join(path)}" if path else "Go value"
        gotype = self._go_type(schema) if path else top
        return InvalidParameter(f"json: cannot unmarshal {kind} into {where} of type {gotype}")

    def _check(self, schema: dict[str, Any], value: Any, top: str, path: list[str], owner: str) -> None:
        if value is None:
            return
        resolved, name = self._resolve(schema)
        t = resolved.get("type")
        if t is None and ("properties" in resolved or "allOf" in resolved):
            t = "object"
        if t == "integer":
            lo, hi = _INT_RANGES.get(str(resolved.get("format")), _INT_RANGES["int64"])
            if not (isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi):
                raise self._fail(value, schema, top, path)
        elif t == "number":
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise self._fail(value, schema, top, path)
        elif t == "boolean":
            if not isinstance(value, bool):
                raise self._fail(value, schema, top, path)
        elif t == "string":
            if not isinstance(value, str):
                raise self._fail(value, schema, top, path)
        elif t == "array":
            if isinstance(value, str) and path and (owner, path[-1]) in _STRSLICE:
                return
            if not isinstance(value, list):
                raise self._fail(value, schema, top, path)
            if "items" in resolved:
                zero = self._zero(resolved["items"])
                for i, item in enumerate(value):
                    if item is None and zero is not None:
                        value[i] = zero  # Go decodes null into a string element as ""
                    self._check(resolved["items"], item, top, path, owner)
        elif t == "object":
            if not isinstance(value, dict):
                raise self._fail(value, schema, top, path)
            props = self._properties(resolved, name or owner)
            if props:
                _go_field_names(value, props)
            for k, v in value.items():
                if k in props:
                    sub, sub_owner = props[k]
                    self._check(sub, v, top, [*path, k], sub_owner)
                    if isinstance(v, str) and (sub_owner, k) in _STRSLICE:
                        value[k] = [v]  # what dockerd stores for it
            extra = resolved.get("additionalProperties")
            if isinstance(extra, dict) and not props:
                zero = self._zero(extra)
                for k, v in value.items():
                    if v is None and zero is not None:
                        value[k] = zero  # likewise a map's value
                    self._check(extra, v, top, path, owner)

    def _zero(self, schema: dict[str, Any]) -> Any:
        """The zero value Go leaves in a collection's element for a JSON null (None where Go leaves nil)."""
        return _ZEROS.get(str(self._resolve(schema)[0].get("type")))


# -- query parameters ---------------------------------------------------------------------------------------
# How dockerd reads an integer parameter where that is not "strconv.Atoi of a non-empty value": "required" (resize
# parses even an absent h or w), "handler" (Unix timestamps with a fraction; junk read as 0 by Int64ValueOrZero;
# the swarm and cluster-volume versions, which their handlers parse with their own messages).
_QUERY_INTS: dict[tuple[str, str], str] = {
    ("POST /containers/{id}/resize", "h"): "required", ("POST /containers/{id}/resize", "w"): "required",
    ("POST /exec/{id}/resize", "h"): "required", ("POST /exec/{id}/resize", "w"): "required",
    ("GET /containers/{id}/logs", "since"): "handler", ("GET /containers/{id}/logs", "until"): "handler",
    ("GET /services/{id}/logs", "since"): "handler", ("GET /tasks/{id}/logs", "since"): "handler",
    **{("POST /build", n): "handler" for n in ("memory", "memswap", "cpushares", "cpuperiod", "cpuquota")},
    **{(op, "version"): "handler" for op in ("PUT /volumes/{name}", "POST /nodes/{id}/update", "POST /swarm/update",
                                             "POST /services/{id}/update", "POST /secrets/{id}/update",
                                             "POST /configs/{id}/update")},
}
# dockerd's words around strconv's error, where it has some.
_QUERY_INT_WRAP = {
    ("GET /images/search", "limit"): "invalid limit specified: {error}",
    **{("POST /build/prune", n): n + " is in bytes and expects an integer, got {value}: {error}"
       for n in ("keep-storage", "reserved-space", "max-used-space", "min-free-space")},
}


def go_parse_int(value: str, wrap: str = "{error}") -> int:
    """`value` as Go's strconv.Atoi reads it (an optional sign and ASCII digits, nothing else), or InvalidParameter
    with its error ("strconv.Atoi: parsing \"x\": invalid syntax"). Where dockerd returns that error unwrapped
    (limit, t) it answers 500; a 400 says the same and blames the right party."""
    digits = value[1:] if value[:1] in ("+", "-") else value
    limit = 2**63 - (0 if value[:1] == "-" else 1)  # Atoi's int is 64 bits wide here
    n, problem = 0, "invalid syntax" if not digits else ""
    for c in digits:  # Go reports whichever it meets first: an overflow, or a character that is no digit
        if not "0" <= c <= "9":
            problem = "invalid syntax"
            break
        n = n * 10 + ord(c) - 48
        if n > limit:
            problem = "value out of range"
            break
    if problem:
        quoted = json.dumps(value, ensure_ascii=False)
        raise InvalidParameter(wrap.replace("{error}", f"strconv.Atoi: parsing {quoted}: {problem}"))
    return -n if value[:1] == "-" else n


# -- Go's field matching ----------------------------------------------------------------------------------
def go_fold(name: str) -> str:
    """A key folded as encoding/json folds it: two names match when their folds are equal. ASCII letters fold to
    upper case; of the rest only KELVIN SIGN and LONG S fold into ASCII (to K and S, the smallest runes of their
    case orbits); any other rune cannot match a field name, which is ASCII, so it is kept as it is."""
    return name.upper() if name.isascii() else "".join(
        c.upper() if c.isascii() else {"\u212a": "K", "\u017f": "S"}.get(c, c) for c in name)


def _go_field_names(obj: dict[str, Any], fields: dict[str, Any]) -> None:
    """Rename `obj`'s keys to the struct fields Go would decode them into: the field of that exact name, else the
    first field (in declaration order) whose name matches case-insensitively (docker-py sends CPURealtimeRuntime
    for the documented CpuRealtimeRuntime, and dockerd takes it). Keys matching no field stay (Go ignores them).
    Keys landing on one field are decoded in order, the later value winning, as Go overwrites the field."""
    if all(k in fields for k in obj):
        return
    folded: dict[str, str] = {}
    for f in fields:
        folded.setdefault(go_fold(f), f)
    items = list(obj.items())
    obj.clear()
    for k, v in items:
        canon = k if k in fields else folded.get(go_fold(k), k)
        obj.pop(canon, None)
        obj[canon] = v


# -- what the types cannot say ---------------------------------------------------------------------------
def _no_check(body: Any) -> None:
    return None


def _port_keys(config: Any, host_config: Any = None) -> None:
    """Port keys ("80", "53/udp") in ExposedPorts and PortBindings: list and inspect parse them later."""
    for key in [*(config.get("ExposedPorts") or {}), *((host_config or {}).get("PortBindings") or {})]:
        parse_port_key(key)


def _container_create(body: Any) -> None:
    _port_keys(body, body.get("HostConfig"))


_SEMANTIC: dict[str, Callable[[Any], None]] = {"POST /containers/create": _container_create, "POST /commit": _port_keys}
