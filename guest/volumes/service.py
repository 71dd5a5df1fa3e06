"""VolumeService: Docker's volumes with the `local` driver.

Layout (Docker's): `<data-root>/volumes/<name>/_data` is the volume, `<name>/volume.json` its record (written
atomically). Each container's resolved mount points live in `<data-root>/volumes/_mounts/<container id>.json`:
they are decided once, at create (named volumes created, anonymous ones named), so a restarted container gets the
same anonymous volumes back, `volume rm` can answer 409 for a volume any container still references, and inspect
shows Docker's `Mounts`.

Container hooks (called by the containers service): `prepare(ctr)` at create, `mounts_for(ctr, rootfs)` at start
(copy-up, option mounts, OCI mounts), `release(ctr)` after stop, `forget(ctr, remove_anonymous)` at removal,
`mountpoints(ctr)` for inspect.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from skiffbox.guest.contracts import ContainerLike, ContainerRef, EventSink
from skiffbox.guest.errors import Conflict, InvalidParameter, NotFound
from skiffbox.guest.network.store import container_field, read_json
from skiffbox.guest.util.atomicfile import atomic_write_json
from skiffbox.guest.util.filters import bool_filter, match_labels
from skiffbox.guest.volumes import local
from skiffbox.guest.volumes.mounts import MountPoint, oci_mount, own_mounts, parse_volumes_from

log = logging.getLogger("skiffd.volumes")

ANON_LABEL = "com.docker.volume.anonymous"
Volume = dict[str, Any]


cget = container_field


def _created_at(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


class VolumeService:
    def __init__(self, root: Path, events: EventSink, find_container: Callable[[str], ContainerRef]) -> None:
        """`find_container(ref)` looks a container up (raising NotFound): for VolumesFrom, and to drop the mount
        records of containers that are gone. The containers service is built after this one, so the engine
        passes a function that reaches it when called."""
        self.events = events
        self.find_container = find_container
        self.dir = Path(root) / "volumes"
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o701)
        self.mounts_dir = self.dir / "_mounts"
        self.mounts_dir.mkdir(exist_ok=True)
        self._vols: dict[str, Volume] = {}
        self._mps: dict[str, list[MountPoint]] = {}
        self._users: dict[str, set[str]] = {}  # option-mounted volume → running containers using it
        self._lock = asyncio.Lock()
        for d in self.dir.iterdir():
            if d.name.startswith("_") or not (d / "volume.json").exists():
                continue
            try:
                v = read_json(d / "volume.json")
            except (OSError, ValueError):
                continue
            self._vols[v["Name"]] = v
        for p in self.mounts_dir.glob("*.json"):
            try:
                self._mps[p.stem] = [MountPoint.from_json(m) for m in read_json(p)]
            except (OSError, ValueError, TypeError):
                continue

    # ------------------------------------------------------------------------------------------
    # lifecycle
    # ------------------------------------------------------------------------------------------
    def _container_gone(self, cid: str) -> bool:
        """A mount record whose container no longer exists (removed while we were down, or a removal that never
        reached forget()): it must not keep volumes "in use" forever."""
        try:
            self.find_container(cid)
            return False
        except NotFound:
            return True
        except Exception:
            return False

    async def close(self) -> None:
        """Unmount option volumes in the daemon's namespace; running containers keep their own copies of the mounts."""
        for name in list(self._users):
            v = self._vols.get(name)
            if v is not None:
                local.unmount(self._data(name))
        self._users.clear()

    # ------------------------------------------------------------------------------------------
    # records
    # ------------------------------------------------------------------------------------------
    def _data(self, name: str) -> Path:
        return self.dir / name / "_data"

    def _save(self, v: Volume) -> None:
        atomic_write_json(self.dir / v["Name"] / "volume.json", v, 0o600)
        self._vols[v["Name"]] = v

    def public(self, v: Volume, usage: dict[str, int] | None = None) -> dict[str, Any]:
        out = {k: val for k, val in v.items() if not k.startswith("_")}
        out["Mountpoint"] = str(self._data(v["Name"]))
        if usage is not None:
            out["UsageData"] = usage
        return out

    def get(self, name: str) -> Volume:
        v = self._vols.get(name)
        if v is None:
            raise NotFound(f"get {name}: no such volume")
        return v

    def inspect(self, name: str) -> dict[str, Any]:
        return self.public(self.get(name))

    def _users_of(self, name: str) -> list[str]:
        users = [cid for cid, mps in self._mps.items() if any(m.Type == "volume" and m.Name == name for m in mps)]
        for cid in [c for c in users if self._container_gone(c)]:
            self._drop_record(cid)
            users.remove(cid)
        return users

    def create(self, name: str | None, driver: str | None = "local", driver_opts: dict[str, str] | None = None,
               labels: dict[str, str] | None = None, anonymous: bool = False) -> Volume:
        driver = driver or "local"
        if driver != "local":
            raise NotFound(f'error looking up volume plugin {driver}: plugin "{driver}" not found')
        opts = {str(k): str(v) for k, v in (driver_opts or {}).items()}
        local.validate_opts(opts)
        if not name:
            name = secrets.token_hex(32)
        local.validate_name(name)
        existing = self._vols.get(name)
        if existing is not None:
            if opts and existing.get("Options") != opts:
                raise Conflict(f"volume {name} already exists with different options")
            return existing
        labels = {str(k): str(v) for k, v in (labels or {}).items()}
        if anonymous:
            labels.setdefault(ANON_LABEL, "")
        now = time.time()
        data = self._data(name)
        data.mkdir(parents=True, exist_ok=True)
        os.chmod(data.parent, 0o701)
        v: Volume = {"CreatedAt": _created_at(now), "Driver": "local", "Labels": labels, "Mountpoint": str(data),
                     "Name": name, "Options": opts, "Scope": "local", "_created": now, "_anonymous": anonymous}
        try:
            self._save(v)
        except BaseException:  # a full disk: no half-made volume is left, in memory or on disk
            shutil.rmtree(data.parent, ignore_errors=True)
            raise
        self.events.publish("volume", "create", name, {"driver": "local"})
        return v

    def remove(self, name: str, force: bool = False) -> None:
        v = self._vols.get(name)
        if v is None:
            if force:
                return
            raise NotFound(f"get {name}: no such volume")
        users = self._users_of(name)
        if users:
            raise Conflict(f"remove {name}: volume is in use - [{', '.join(users)}]")
        self._destroy(v)

    def _destroy(self, v: Volume) -> int:
        name = v["Name"]
        data = self._data(name)
        local.unmount(data)
        if local.is_mounted(data):  # never rm -r through a mount (a bind-type volume would lose its device's files)
            raise Conflict(f"remove {name}: volume is still mounted at {data}")
        size = local.dir_size(data) if not local.needs_mount(v.get("Options") or {}) else 0
        self._vols.pop(name, None)
        local.remove_tree(self.dir / name)
        self.events.publish("volume", "destroy", name, {"driver": "local"})
        return size

    def _matches(self, v: Volume, f: dict[str, list[str]]) -> bool:
        if f.get("name") and not any(n in v["Name"] for n in f["name"]):
            return False
        if f.get("driver") and v["Driver"] not in f["driver"]:
            return False
        if f.get("label") and not match_labels(v.get("Labels"), f["label"]):
            return False
        if f.get("label!") and any(match_labels(v.get("Labels"), [lbl]) for lbl in f["label!"]):
            return False
        dangling = bool_filter(f.get("dangling", []), "dangling")
        if dangling is not None and dangling == bool(self._users_of(v["Name"])):
            return False
        return True

    def ls(self, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
        vols = sorted(self._vols.values(), key=lambda v: v.get("_created", 0))
        return [self.public(v) for v in vols if self._matches(v, filters)]

    def prune(self, filters: dict[str, list[str]], all_volumes: bool) -> tuple[list[str], int]:
        """Unused volumes: only anonymous ones unless `all` (Docker ≥ API 1.42)."""
        f = dict(filters)
        everything = bool_filter(f.pop("all", []), "all") or all_volumes
        gone: list[str] = []
        reclaimed = 0
        for v in list(self._vols.values()):
            if self._users_of(v["Name"]):
                continue
            if not everything and not v.get("_anonymous"):
                continue
            if not self._matches(v, f):
                continue
            reclaimed += self._destroy(v)
            gone.append(v["Name"])
        return gone, reclaimed

    async def disk_usage(self) -> dict[str, Any]:
        out = []
        for v in sorted(self._vols.values(), key=lambda v: v.get("_created", 0)):
            size = await asyncio.to_thread(local.dir_size, self._data(v["Name"]))
            out.append(self.public(v, {"Size": size, "RefCount": len(self._users_of(v["Name"]))}))
        return {"Volumes": out}

    # ------------------------------------------------------------------------------------------
    # containers
    # ------------------------------------------------------------------------------------------
    def _save_mps(self, cid: str, mps: list[MountPoint]) -> None:
        atomic_write_json(self.mounts_dir / f"{cid}.json", [m.to_json() for m in mps], 0o600)
        self._mps[cid] = mps

    def _drop_record(self, cid: str) -> None:
        self._mps.pop(cid, None)
        try:
            os.unlink(self.mounts_dir / f"{cid}.json")
        except FileNotFoundError:
            pass

    async def _other_container_id(self, ref: str) -> str:
        if ref in self._mps:
            return ref
        return self.find_container(ref).id

    async def prepare(self, ctr: ContainerLike, image_volumes: dict[str, Any] | None = None) -> list[MountPoint]:
        """Resolve and record the container's mount points (at create). Idempotent."""
        cid = str(cget(ctr, "Id"))
        if cid in self._mps:
            return self._mps[cid]
        hc = cget(ctr, "HostConfig", {}) or {}
        config = cget(ctr, "Config", {}) or {}
        async with self._lock:
            mps = own_mounts(hc)
            taken = {m.Destination for m in mps}
            for spec in hc.get("VolumesFrom") or []:
                ref, mode = parse_volumes_from(spec)
                other = await self._other_container_id(ref)
                for m in self._mps.get(other, []):
                    if m.Type == "tmpfs" or m.Destination in taken:
                        continue
                    inherited = MountPoint.from_json(m.to_json())
                    inherited.origin = f"from:{other}"
                    inherited.anonymous = False  # removing this container must not remove the other's volume
                    if mode is not None:
                        inherited.RW = mode == "rw"
                        inherited.Mode = mode
                    mps.append(inherited)
                    taken.add(m.Destination)
            wanted = dict(image_volumes or {})
            wanted.update(config.get("Volumes") or {})
            for dst in sorted(wanted):
                d = os.path.normpath(dst) if dst.startswith("/") else None
                if d is None:
                    raise InvalidParameter(f"invalid volume specification: '{dst}'")
                if d in taken:
                    continue
                mps.append(MountPoint("volume", d, Driver="local", anonymous=True))
                taken.add(d)
            for m in mps:
                if m.Type != "volume" or m.origin != "own":
                    continue
                anon = not m.Name
                v = self.create(m.Name or None, "local", m.driver_opts or None, m.labels or None, anonymous=anon)
                m.Name = v["Name"]
                m.anonymous = anon
                m.Source = str(self._data(v["Name"]))
            self._save_mps(cid, mps)
            return mps

    async def mounts_for(self, ctr: ContainerLike, rootfs: str | Path | None = None) -> list[dict[str, Any]]:
        """OCI mounts for the container's volumes and inherited mounts, at start. Mounts option volumes and copies
        image content into new empty volumes (once per container, as Docker does at create)."""
        cid = str(cget(ctr, "Id"))
        mps = self._mps.get(cid)
        if mps is None:
            mps = await self.prepare(ctr)
        out: list[dict[str, Any]] = []
        changed = False
        async with self._lock:
            for m in mps:
                if m.Type == "volume":
                    v = self._vols.get(m.Name)
                    if v is None:  # removed by force or by hand: Docker recreates named volumes on demand
                        v = self.create(m.Name, "local", m.driver_opts or None, m.labels or None, anonymous=m.anonymous)
                    data = self._data(m.Name)
                    m.Source = str(data)
                    opts = v.get("Options") or {}
                    if local.needs_mount(opts):
                        if not local.is_mounted(data):
                            local.mount(opts, data)
                        self._users.setdefault(m.Name, set()).add(cid)
                    if m.copy and m.origin == "own" and rootfs is not None:
                        src = Path(rootfs) / m.Destination.lstrip("/")
                        await asyncio.to_thread(local.copy_up, src, data)
                        m.copy = False
                        changed = True
                    self.events.publish("volume", "mount", m.Name, {
                        "container": cid, "destination": m.Destination, "driver": "local",
                        "propagation": m.Propagation, "read/write": "true" if m.RW else "false"})
                elif m.origin == "own":
                    continue  # plain binds and tmpfs: spec.py mounts them
                out.append(oci_mount(m))
            if changed:
                self._save_mps(cid, mps)
        out.sort(key=lambda o: o["destination"].rstrip("/").count("/"))
        return out

    async def release(self, ctr: ContainerLike) -> None:
        """After the container stopped: unmount option volumes it was the last user of."""
        cid = str(cget(ctr, "Id"))
        async with self._lock:
            for name, users in list(self._users.items()):
                if cid in users:
                    users.discard(cid)
                    if not users:
                        local.unmount(self._data(name))
                        del self._users[name]
            for m in self._mps.get(cid, []):
                if m.Type == "volume":
                    self.events.publish("volume", "unmount", m.Name, {"container": cid, "driver": "local"})

    async def forget(self, ctr: ContainerLike, remove_anonymous: bool = False) -> None:
        """At container removal; `docker rm -v` and `--rm` also remove its anonymous volumes (if nobody else uses them)."""
        cid = str(cget(ctr, "Id"))
        await self.release(ctr)
        async with self._lock:
            mps = self._mps.get(cid, [])
            self._drop_record(cid)
            if remove_anonymous:
                for m in mps:
                    v = self._vols.get(m.Name) if m.Type == "volume" and m.origin == "own" else None
                    if v is not None and v.get("_anonymous") and not self._users_of(m.Name):
                        self._destroy(v)

    def mountpoints(self, ctr: ContainerLike) -> list[dict[str, Any]]:
        """Docker's inspect `Mounts` (volumes, binds and --mount tmpfs; `--tmpfs` is not listed, as in Docker)."""
        cid = str(cget(ctr, "Id"))
        mps = self._mps.get(cid)
        if mps is None:
            hc = cget(ctr, "HostConfig", {}) or {}
            try:
                mps = own_mounts(hc)
            except InvalidParameter:
                return []
        tmpfs_flag = set((cget(ctr, "HostConfig", {}) or {}).get("Tmpfs") or {})
        return [m.public() for m in mps if not (m.Type == "tmpfs" and m.Destination in tmpfs_flag)]

    def uses(self, ctr_id: str, volume: str) -> bool:
        """For the `volume=` filter of containers/json: by volume name or by mount destination."""
        return any((m.Type == "volume" and m.Name == volume) or m.Destination == volume for m in self._mps.get(ctr_id, []))

