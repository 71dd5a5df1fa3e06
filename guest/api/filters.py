"""Docker's `filters` query parameter and time arguments, parsed in one place."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timezone

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


def bool_filter(vals: list[str], name: str) -> bool | None:
    if not vals:
        return None
    v = vals[-1].lower()
    if v in ("1", "true"):
        return True
    if v in ("0", "false"):
        return False
    raise InvalidParameter(f"invalid filter '{name}={vals[-1]}'")


_DUR = re.compile(r"^(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)$")
_DUR_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_time(value: str | None, now: float | None = None) -> float | None:
    """Docker's timestamp forms: Unix seconds (with fraction), RFC 3339, or a Go duration ago ("10m")."""
    if value is None or value == "":
        return None
    now = time.time() if now is None else now
    v = value.strip()
    try:
        return float(v)
    except ValueError:
        pass
    m = _DUR.match(v)
    if m:
        return now - float(m.group(1)) * _DUR_UNITS[m.group(2)]
    try:
        s = v.replace("Z", "+00:00")
        # Python parses at most microseconds; trim nanoseconds.
        s = re.sub(r"(\.\d{6})\d+", r"\1", s)
        dt = datetime.fromisoformat(s)
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        return dt.timestamp()
    except ValueError:
        raise InvalidParameter(f"invalid time value {value!r}") from None


def rfc3339(ts: float | None) -> str:
    """Docker's RFC 3339 with nanoseconds; the zero time for 'never'."""
    if not ts:
        return "0001-01-01T00:00:00Z"
    dt = datetime.fromtimestamp(ts, tz=timezone.utc)
    ns = int(round((ts - int(ts)) * 1e9))
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{ns:09d}Z"
