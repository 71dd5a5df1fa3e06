"""Where a container's cgroup lives, conmon's own cgroup, and removing the dirs runc/crun leave behind."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from skiffbox.guest.containers.store import Container

_ROOT = Path("/sys/fs/cgroup")


def container_path(c: Container, default_parent: str) -> str:
    """The cgroup path the runtime is given (`CgroupParent`, else the daemon's --cgroup-parent, then the id)."""
    parent = c.host_config.get("CgroupParent") or default_parent
    if not parent.startswith("/"):
        parent = "/" + parent
    return f"{parent.rstrip('/')}/{c.id}"


def monitor_cgroup(v2: bool, parent: str) -> Path | None:
    """conmon lives in <parent>/conmon: the unified hierarchy on v2, systemd's named one on v1 (what systemd
    uses to find a unit's processes), so that restarting the daemon's unit leaves the monitors alone."""
    if v2:
        return _ROOT / parent.strip("/") / "conmon"
    sysd = _ROOT / "systemd"
    return sysd / parent.strip("/") / "conmon" if sysd.is_dir() else None


def remove(path: str, v2: bool) -> bool:
    """rmdir the cgroup in every hierarchy (runc/crun leave the parents); True if one is still busy."""
    rel = path.strip("/")
    busy = False
    for b in _bases(v2):
        d = b / rel
        try:
            os.rmdir(d)
        except FileNotFoundError:
            pass
        except OSError as e:
            busy = busy or e.errno == errno.EBUSY
    return busy


def _bases(v2: bool) -> list[Path]:
    """The hierarchies: the unified one on v2; on v1 each controller's (and the named and unified ones of a
    hybrid host, where runc/crun make the container's cgroup too)."""
    if v2:
        return [_ROOT]
    try:
        return [p for p in _ROOT.iterdir() if p.is_dir() and not p.is_symlink()]
    except OSError:
        return []


def remove_parents(monitor: Path | None, v2: bool, parent: str) -> None:
    """conmon's cgroup and the daemon's parent (`skiff`), once nothing runs in them, with what is left in the
    parent: a container cgroup still busy when its container was torn down is empty by now. (A busy one stays:
    rmdir refuses it.)"""
    if monitor is not None:
        try:
            monitor.rmdir()
        except OSError:
            pass
    for base in _bases(v2):
        try:
            children = [d for d in (base / parent.strip("/")).iterdir() if d.is_dir()]
        except OSError:
            continue
        for d in children:
            try:
                os.rmdir(d)
            except OSError:
                pass
    remove(parent, v2)
