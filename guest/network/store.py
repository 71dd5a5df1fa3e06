"""Network definitions on disk: one JSON file per network under `<data-root>/networks/`, written atomically.

A record is Docker's `Network` shape (what `GET /networks/{id}` returns, minus `Containers`, which is live state)
plus a few private keys starting with `_` (the bridge device name) that never leave the engine.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

from skiffbox.guest.contracts import ContainerLike
from skiffbox.guest.util.atomicfile import atomic_write_json

NetworkRecord = dict[str, Any]

DEFAULT_BRIDGE = "bridge"
PREDEFINED = ("bridge", "host", "none")
# Drivers realised as a bridge in this machine (on one node an overlay network is one: guest/network/overlay.py).
BRIDGED = ("bridge", "overlay")


def read_json(path: Path) -> Any:
    with open(path) as f:
        return json.load(f)


def container_field(ctr: ContainerLike, key: str, default: Any = None) -> Any:
    """A top-level field of a container record (Docker's shape: Id, Name, Config, HostConfig, …), whether the
    containers service hands us its `Container` object (fields in `.rec`) or a plain dict."""
    rec = ctr if isinstance(ctr, dict) else getattr(ctr, "rec", None)
    v = rec.get(key, default) if isinstance(rec, dict) else getattr(ctr, key, default)
    return default if v is None else v


cget = container_field


def ctr_name(ctr: ContainerLike) -> str:
    return str(cget(ctr, "Name", "")).lstrip("/")


def normalize_mode(mode: str | None) -> str:
    mode = (mode or "").strip()
    return DEFAULT_BRIDGE if mode in ("", "default") else mode


def address_configs(rec: NetworkRecord) -> list[dict[str, Any]]:
    """The IPAM configs a network hands addresses out of: IPv4 always, IPv6 only with EnableIPv6. An IPv6
    subnet given without it stays in `IPAM.Config` (dockerd 20.10 takes it) but is neither reserved nor
    assigned from: no IPv6 on the bridge or in containers, whose `IPAMConfig.IPv6Address` is only recorded
    (libnetwork honours enableIPv6 on allocation, moby/libnetwork#967)."""
    v6 = bool(rec.get("EnableIPv6"))
    return [c for c in rec["IPAM"]["Config"] if v6 or ":" not in c["Subnet"]]


def user_subnet(rec: NetworkRecord, version: int) -> bool:
    """Whether the user gave this network a subnet of that IP version (a fixed address needs one)."""
    given = rec.get("_user_subnets")
    if given is None:  # a record from before the per-version list
        return bool(rec.get("_user_subnet"))
    return any((":" in s) == (version == 6) for s in given)


def new_id() -> str:
    return secrets.token_hex(32)


class NetworkStore:
    """All network records, cached in memory; the files are the truth across restarts."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "networks"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._by_id: dict[str, NetworkRecord] = {}
        for p in sorted(self.dir.glob("*.json")):
            try:
                rec = read_json(p)
            except (OSError, ValueError):
                continue  # a torn temp file never has this name; a corrupt one is skipped rather than fatal
            self._by_id[rec["Id"]] = rec

    def all(self) -> list[NetworkRecord]:
        return sorted(self._by_id.values(), key=lambda r: (r.get("_created", 0.0), r["Name"]))

    def get_id(self, nid: str) -> NetworkRecord | None:
        return self._by_id.get(nid)

    def by_name(self, name: str) -> NetworkRecord | None:
        for rec in self._by_id.values():
            if rec["Name"] == name:
                return rec
        return None

    def find(self, ref: str) -> NetworkRecord | None:
        """Docker's lookup order: exact ID, exact name, then a unique ID prefix."""
        if ref in self._by_id:
            return self._by_id[ref]
        rec = self.by_name(ref)
        if rec is not None:
            return rec
        matches = [r for nid, r in self._by_id.items() if nid.startswith(ref)]
        return matches[0] if len(matches) == 1 else None

    def save(self, rec: NetworkRecord) -> None:
        rec.setdefault("_created", time.time())
        atomic_write_json(self.dir / f"{rec['Id']}.json", rec)
        self._by_id[rec["Id"]] = rec

    def delete(self, nid: str) -> None:
        self._by_id.pop(nid, None)
        try:
            os.unlink(self.dir / f"{nid}.json")
        except FileNotFoundError:
            pass
