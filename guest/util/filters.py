"""Docker's `filters` argument: its two JSON encodings, label and boolean matches (one place for all resources)."""

from __future__ import annotations

import json

from skiffbox.guest.errors import InvalidParameter

Filters = dict[str, list[str]]


def parse_filters(raw: str | None, allowed: set[str] | None = None) -> Filters:
    """Accept both encodings: the Go client's `{"k":{"v":true}}` and docker-py's `{"k":["v"]}`."""
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise InvalidParameter(f"invalid filters: {raw!r} is not JSON") from None
    if not isinstance(data, dict):
        raise InvalidParameter("invalid filters: expected a JSON object")
    out: Filters = {}
    for key, val in data.items():
        if allowed is not None and key not in allowed:
            raise InvalidParameter(f"invalid filter '{key}'")
        if isinstance(val, dict):
            out[key] = [k for k, on in val.items() if on]
        elif isinstance(val, list):
            out[key] = [str(v) for v in val]
        elif isinstance(val, str):
            out[key] = [val]
        else:
            raise InvalidParameter(f"invalid filter value for '{key}'")
    return out


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
