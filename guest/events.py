"""The engine's event bus: what `/events` streams (image, container, network, volume events)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

from skiffbox.guest.util.filters import match_labels


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

    def listeners(self) -> int:
        """How many `/events` streams are open (`NEventsListener` in `/info`)."""
        return len(self._subs)


def matches(ev: dict[str, Any], flt: dict[str, list[str]]) -> bool:
    """Docker's event filters: type, event, container/image/network/volume (ID, ID prefix or name), label, scope."""
    if not flt:
        return True
    attrs = ev["Actor"]["Attributes"]
    if "type" in flt and ev["Type"] not in flt["type"]:
        return False
    if "event" in flt and ev["Action"].split(":")[0] not in flt["event"] and ev["Action"] not in flt["event"]:
        return False
    for kind in ("container", "image", "network", "volume"):
        if kind in flt:
            if ev["Type"] != kind:
                return False
            ident = {ev["Actor"]["ID"], attrs.get("name", "")}
            if not any(v in ident or ev["Actor"]["ID"].startswith(v) for v in flt[kind]):
                return False
    if "label" in flt and not match_labels(attrs, flt["label"]):
        return False
    if "scope" in flt and ev.get("scope") not in flt["scope"]:
        return False
    return True
