"""Docker's `filters` argument: its two JSON encodings, label and boolean matches (one place for all resources)."""

from __future__ import annotations

import json

from skiffbox.guest.errors import InvalidParameter

Filters = dict[str, list[str]]


def parse_filters(raw: str | None, allowed: set[str] | None = None) -> Filters:
    """Docker's two JSON forms, as moby's filters.FromJSON reads them: the Go client's `{"k": {"v": true}}` (every
    key of the inner object counts, whatever its boolean, as Args.Get returns them), else the legacy
    `{"k": ["v"]}` (docker-py's); null stands for an empty object, list or string. Anything else, a mix of both
    forms included, is "invalid filter", a 400."""
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        data = _INVALID
    data = {} if data is None else data
    vals = list(data.values()) if isinstance(data, dict) else [_INVALID]
    if all(v is None or (isinstance(v, dict) and all(b is None or isinstance(b, bool) for b in v.values()))
           for v in vals):
        out = {k: list(v or {}) for k, v in data.items()}
    elif all(v is None or (isinstance(v, list) and all(x is None or isinstance(x, str) for x in v)) for v in vals):
        out = {k: [x or "" for x in v or []] for k, v in data.items()}
    else:
        raise InvalidParameter(f"invalid filter: {raw!r} is neither {{\"name\": {{\"value\": true}}}} nor "
                               f"{{\"name\": [\"value\"]}} (JSON)")
    for key in out:
        if allowed is not None and key not in allowed:
            raise InvalidParameter(f"invalid filter '{key}'")
    return out


_INVALID = object()


def match_labels(labels: dict[str, str] | None, wanted: list[str]) -> bool:
    """`label=key` or `label=key=value`; every wanted label must match."""
    labels = labels or {}
    for w in wanted:
        k, sep, v = w.partition("=")
        if k not in labels:
            return False
        if sep and labels[k] != v:
            return False
    return True


def bool_filter(vals: list[str] | None, name: str, default: bool | None = None) -> bool | None:
    """The last of `name=true|false|1|0`; `default` when the filter is absent."""
    if not vals:
        return default
    v = vals[-1].strip().lower()
    if v in ("1", "true"):
        return True
    if v in ("0", "false"):
        return False
    raise InvalidParameter(f"invalid filter '{name}={vals[-1]}'")
