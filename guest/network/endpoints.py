"""Runtime endpoint records: what was set up for each container (and each bridge anchor), so teardown can hand
netavark exactly the JSON that setup used, and inspect/ls can show who is attached where.

They live under the exec root: they last as long as the netns they describe (a daemon restart keeps them, a VM
reboot drops them, and a record whose netns file is gone is stale).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from skiffbox.guest.network.store import read_json
from skiffbox.guest.util.atomicfile import atomic_write_json

Endpoint = dict[str, Any]


class EndpointStore:
    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir / "endpoints"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._recs: dict[str, Endpoint] = {}
        for p in self.dir.glob("*.json"):
            try:
                rec = read_json(p)
            except (OSError, ValueError):
                continue
            self._recs[rec["Id"]] = rec

    def all(self) -> list[Endpoint]:
        return list(self._recs.values())

    def get(self, owner: str) -> Endpoint | None:
        return self._recs.get(owner)

    def save(self, rec: Endpoint) -> None:
        atomic_write_json(self.dir / f"{rec['Id']}.json", rec, 0o600, durable=False)
        self._recs[rec["Id"]] = rec

    def delete(self, owner: str) -> None:
        self._recs.pop(owner, None)
        try:
            os.unlink(self.dir / f"{owner}.json")
        except FileNotFoundError:
            pass

    def on_network(self, net_name: str, include_anchors: bool = False) -> list[Endpoint]:
        return [r for r in self._recs.values()
                if net_name in (r.get("networks") or {}) and (include_anchors or not r.get("anchor"))]
