"""A container's mount points, parsed from its create body the way Docker reads them.

Sources, by precedence: the container's own `HostConfig.Binds` and `HostConfig.Mounts`, then `--volumes-from`
(for destinations not taken yet), then anonymous volumes for `Config.Volumes` (and the image's `VOLUME`s) that
nothing else covers. Plain bind mounts and tmpfs are mounted by spec.py (containers); they appear here only so
that inspect's `Mounts` and the anonymous-volume rule see them. Volumes (named and anonymous) and everything
inherited with `--volumes-from` are this package's to mount.
"""

from __future__ import annotations

import posixpath
from dataclasses import asdict, dataclass, field
from typing import Any

from skiffbox.guest.errors import InvalidParameter

_PROPAGATIONS = ("private", "rprivate", "shared", "rshared", "slave", "rslave")


@dataclass
class MountPoint:
    Type: str  # volume | bind | tmpfs
    Destination: str
    Source: str = ""
    Name: str = ""
    Driver: str = ""
    Mode: str = ""
    RW: bool = True
    Propagation: str = ""
    # private bookkeeping
    copy: bool = True  # copy image content into the volume at first start (Docker's default; `nocopy` turns it off)
    anonymous: bool = False
    origin: str = "own"  # own | from:<container id>
    labels: dict[str, str] = field(default_factory=dict)
    driver_opts: dict[str, str] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        d = {"Type": self.Type, "Name": self.Name, "Source": self.Source, "Destination": self.Destination,
             "Driver": self.Driver, "Mode": self.Mode, "RW": self.RW, "Propagation": self.Propagation}
        if self.Type != "volume":
            d.pop("Name")
            d.pop("Driver")
        return d

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "MountPoint":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def _clean_dest(dst: str, spec: str) -> str:
    if not dst or not dst.startswith("/"):
        raise InvalidParameter(f"invalid volume specification: '{spec}': invalid mount config for type \"volume\": "
                               f"invalid mount path: '{dst}' mount path must be absolute")
    d = posixpath.normpath(dst)
    if d == "/":
        raise InvalidParameter(f"invalid volume specification: '{spec}': invalid mount config: destination can't be '/'")
    return d


def parse_bind(spec: str) -> MountPoint:
    """`-v` syntax: `name:/dst[:opts]`, `/host:/dst[:opts]`; opts are ro|rw, z|Z, nocopy and a propagation."""
    parts = spec.split(":")
    if len(parts) < 2 or len(parts) > 3 or not parts[0] or not parts[1]:
        raise InvalidParameter(f"invalid volume specification: '{spec}'")
    src, dst = parts[0], _clean_dest(parts[1], spec)
    mode = parts[2] if len(parts) == 3 else ""
    flags = [f for f in mode.split(",") if f]
    for f in flags:
        if f not in ("ro", "rw", "z", "Z", "nocopy", "copy") + _PROPAGATIONS:
            raise InvalidParameter(f"invalid mode: {mode}")
    rw = "ro" not in flags
    prop = next((f for f in flags if f in _PROPAGATIONS), "")
    if src.startswith("/"):
        return MountPoint("bind", dst, Source=posixpath.normpath(src), Mode=mode, RW=rw, Propagation=prop or "rprivate")
    if "nocopy" in flags and src.startswith("."):
        raise InvalidParameter(f"invalid volume specification: '{spec}'")
    return MountPoint("volume", dst, Name=src, Driver="local", Mode=mode, RW=rw, copy="nocopy" not in flags)


def parse_mount(m: dict[str, Any]) -> MountPoint:
    """`--mount` (HostConfig.Mounts) entries."""
    typ = (m.get("Type") or "volume").lower()
    dst = m.get("Target") or m.get("Destination") or ""
    spec = f"{typ}:{dst}"
    if not dst:
        raise InvalidParameter("invalid mount config: mount target is required")
    dst = _clean_dest(dst, spec)
    ro = bool(m.get("ReadOnly"))
    if typ == "volume":
        vo = m.get("VolumeOptions") or {}
        dc = vo.get("DriverConfig") or {}
        if (dc.get("Name") or "local") != "local":
            raise InvalidParameter(f"volume driver {dc.get('Name')!r} is not supported (only 'local')")
        return MountPoint("volume", dst, Name=m.get("Source") or "", Driver="local", RW=not ro,
                          copy=not vo.get("NoCopy"), labels=dict(vo.get("Labels") or {}),
                          driver_opts={str(k): str(v) for k, v in (dc.get("Options") or {}).items()})
    if typ == "bind":
        prop = ((m.get("BindOptions") or {}).get("Propagation")) or "rprivate"
        return MountPoint("bind", dst, Source=m.get("Source") or "", RW=not ro, Propagation=prop)
    if typ == "tmpfs":
        return MountPoint("tmpfs", dst, RW=not ro)
    raise InvalidParameter(f"mount type {typ!r} is not supported")


def own_mounts(host_config: dict[str, Any]) -> list[MountPoint]:
    """The container's own mounts (Binds, Mounts, Tmpfs) with duplicate destinations refused, as Docker does."""
    out: list[MountPoint] = []
    seen: set[str] = set()

    def add(mp: MountPoint) -> None:
        if mp.Destination in seen:
            raise InvalidParameter(f"Duplicate mount point: {mp.Destination}")
        seen.add(mp.Destination)
        out.append(mp)

    for b in host_config.get("Binds") or []:
        add(parse_bind(b))
    for m in host_config.get("Mounts") or []:
        add(parse_mount(m))
    for dst in (host_config.get("Tmpfs") or {}):
        add(MountPoint("tmpfs", _clean_dest(dst, dst)))
    return out


def parse_volumes_from(spec: str) -> tuple[str, str | None]:
    """`ctr[:ro|:rw]` → (container ref, forced mode or None)."""
    ref, _, mode = spec.partition(":")
    if mode and mode not in ("ro", "rw"):
        raise InvalidParameter(f"invalid mode for volumes-from: {mode}")
    if not ref:
        raise InvalidParameter(f"invalid volumes-from: {spec!r}")
    return ref, mode or None


def oci_mount(mp: MountPoint) -> dict[str, Any]:
    opts = ["rbind", mp.Propagation or "rprivate", "rw" if mp.RW else "ro"]
    return {"destination": mp.Destination, "type": "bind", "source": mp.Source, "options": opts}
