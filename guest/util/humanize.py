"""Durations as Docker prints them ("Up 3 hours", "Exited (0) 2 days ago"): go-units' HumanDuration.

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
