"""Durations as Docker prints them: go-units' HumanDuration ("Up 3 hours", "Exited (0) 2 days ago") and Go's
time.Duration String() ("1m30s", "500ms": HEALTHCHECK history lines, the time left of a progress bar).

The one implementation for the engine (container Status) and the client (`skiff ps`, `images`, ...): the host
install carries skiffbox.guest too, and this module imports nothing, so the client pays no start-up cost for it.
"""

from __future__ import annotations


def human_duration(seconds: float) -> str:
    """go-units HumanDuration. Hours round half up (int(h + 0.5)), so 9,000 s is "3 hours"; years count whole
    hours, as Go's int(d.Hours())."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def go_duration(ns: int) -> str:
    """Go's time.Duration String(): "0s", "1.5s", "1m0s", "1h2m3.5s", "500ms", "1.5µs", "-2s"."""
    if ns == 0:
        return "0s"
    sign, u = ("-" if ns < 0 else ""), abs(ns)
    if u < 1_000:
        return f"{sign}{u}ns"
    if u < 1_000_000_000:  # below a second: one unit, with a fraction
        unit, scale, digits = ("µs", 1_000, 3) if u < 1_000_000 else ("ms", 1_000_000, 6)
        return sign + _with_fraction(u, scale, digits) + unit
    secs = u // 1_000_000_000
    h, rem = divmod(secs, 3600)
    m = rem // 60
    text = _with_fraction(u % 60_000_000_000, 1_000_000_000, 9) + "s"
    if h or m:
        text = f"{m}m" + text
    if h:
        text = f"{h}h" + text
    return sign + text


def _with_fraction(n: int, scale: int, digits: int) -> str:
    whole, rest = divmod(n, scale)
    return f"{whole}" + (("." + f"{rest:0{digits}d}".rstrip("0")) if rest else "")
