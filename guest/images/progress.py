"""Docker's JSON progress messages (pkg/jsonmessage), built in one place.

The CLI renders them: in a terminal each `id` gets a line with a bar from `progressDetail`; without a
terminal, messages with a non-empty `progressDetail` are skipped and the others print as `id: status`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

Progress = Callable[[dict[str, Any]], None]


def _units(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.4g}{unit}" if unit != "B" else f"{int(n)}B"
        n /= 1000
    return f"{n}B"


def bar(current: int, total: int, width: int = 50) -> str:
    """The deprecated `progress` string, which some clients (docker-py users, compose v1) still print."""
    if total <= 0:
        return f"{_units(current):>8}"
    pct = min(current / total, 1.0)
    filled = int(pct * width)
    arrow = "=" * max(filled - 1, 0) + (">" if filled < width else "=")
    return f"[{arrow:<{width}}] {_units(current):>8}/{_units(total)}"


def status(text: str, id: str | None = None, *, current: int | None = None, total: int | None = None) -> dict[str, Any]:
    m: dict[str, Any] = {"status": text}
    if current is not None:
        detail: dict[str, int] = {"current": current}
        if total is not None and total > 0:
            detail["total"] = total
        m["progressDetail"] = detail
        m["progress"] = bar(current, total or 0)
    elif id is not None:
        m["progressDetail"] = {}
    if id is not None:
        m["id"] = id
    return m


def stream(text: str) -> dict[str, Any]:
    return {"stream": text}


def aux(obj: dict[str, Any]) -> dict[str, Any]:
    return {"progressDetail": {}, "aux": obj}


def error(message: str) -> dict[str, Any]:
    return {"errorDetail": {"message": message}, "error": message}


class Throttle:
    """At most one progress update per `interval` seconds (plus the final one), per transfer."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self._last = 0.0

    def ready(self) -> bool:
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            return True
        return False


def null_progress(_: dict[str, Any]) -> None:
    return None
