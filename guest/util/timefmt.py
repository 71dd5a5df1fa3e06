"""Docker's time formats: the arguments it accepts (`since`, `until`, ...) and the RFC 3339 it prints."""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone

from skiffbox.guest.errors import InvalidParameter

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
    ns = min(int(round((ts - int(ts)) * 1e9)), 999_999_999)  # .9999999999 must not round up to ten digits
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{ns:09d}Z"


def now_rfc3339() -> str:
    return rfc3339(time.time())
