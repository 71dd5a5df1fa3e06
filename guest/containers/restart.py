"""Restart policies (`no`, `always`, `unless-stopped`, `on-failure[:N]`) with Docker's back-off:
100 ms doubling per consecutive restart, capped at one minute, reset after a run of 10 s or more."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

MIN_DELAY = 0.1
MAX_DELAY = 60.0
RESET_AFTER = 10.0


def _ran_for(state: dict[str, Any]) -> float:
    try:
        started = datetime.fromisoformat(state["StartedAt"].rstrip("Z")[:26] + "+00:00").timestamp()
    except (KeyError, ValueError):
        return 0.0
    return time.time() - started


def restart_delay(c: Any, code: int, manual: bool) -> float | None:
    """Seconds to wait before restarting after an exit with `code`, or None for no restart."""
    pol = (c.host_config.get("RestartPolicy") or {})
    name = pol.get("Name") or "no"
    if manual or c.removed or name == "no":
        return None
    if name == "on-failure":
        if code == 0:
            return None
        limit = int(pol.get("MaximumRetryCount") or 0)
        if limit and int(c.rec.get("RestartCount") or 0) >= limit:
            return None
    elif name not in ("always", "unless-stopped"):
        return None
    sk = c.skiff
    if _ran_for(c.state) >= RESET_AFTER:
        sk["RestartDelay"] = 0.0
    prev = float(sk.get("RestartDelay") or 0.0)
    delay = MIN_DELAY if prev <= 0 else min(prev * 2, MAX_DELAY)
    sk["RestartDelay"] = delay
    return delay
