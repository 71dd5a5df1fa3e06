"""The engine's event bus: what `/events` streams (image, container, network, volume events)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any


class EventBus:
    """Publish/subscribe with a bounded history so `since` can replay recent events."""

    def __init__(self, history: int = 1024) -> None:
        self._subs: set[asyncio.Queue[dict[str, Any]]] = set()
        self._history: deque[dict[str, Any]] = deque(maxlen=history)

    def publish(self, type_: str, action: str, actor_id: str, attributes: dict[str, str] | None = None,
                scope: str = "local") -> dict[str, Any]:
        now = time.time_ns()
        ev: dict[str, Any] = {
            "Type": type_,
            "Action": action,
            "Actor": {"ID": actor_id, "Attributes": dict(attributes or {})},
            "scope": scope,
            "time": now // 1_000_000_000,
            "timeNano": now,
        }
        # Legacy fields older clients still read (docker-py's events() decoding, API < 1.22 shapes).
        if type_ in ("container", "image"):
            ev["status"] = action
            ev["id"] = actor_id
            if "image" in ev["Actor"]["Attributes"] and type_ == "container":
                ev["from"] = ev["Actor"]["Attributes"]["image"]
        self._history.append(ev)
        for q in list(self._subs):
            try:
                q.put_nowait(ev)
            except asyncio.QueueFull:
                pass
        return ev

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=10000)
        self._subs.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any]]) -> None:
        self._subs.discard(q)

    def history(self) -> list[dict[str, Any]]:
        return list(self._history)
