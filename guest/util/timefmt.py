"""Docker's time formats: the arguments it accepts (`since`, `until`, ...) and the RFC 3339 it prints."""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone

from skiffbox.guest.errors import InvalidParameter

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
    try:
        return now - parse_go_duration(v) / 1e9  # moby's GetTimestamp: time.ParseDuration, e.g. "1h30m"
    except ValueError:
        pass
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
