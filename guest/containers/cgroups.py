"""Where a container's cgroup lives, conmon's own cgroup, and removing the dirs runc/crun leave behind."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from skiffbox.guest.containers.store import Container

CGROUP_PARENT = "skiff"
_ROOT = Path("/sys/fs/cgroup")


def container_path(c: Container) -> str:
    """The cgroup path the runtime is given (`CgroupParent`, default `/skiff`, then the container id)."""
    parent = c.host_config.get("CgroupParent") or f"/{CGROUP_PARENT}"
    if not parent.startswith("/"):
        parent = "/" + parent
    return f"{parent.rstrip('/')}/{c.id}"


def monitor_cgroup(v2: bool) -> Path | None:
    """conmon lives in <parent>/conmon: the unified hierarchy on v2, systemd's named one on v1 (what systemd
    uses to find a unit's processes), so that restarting the daemon's unit leaves the monitors alone."""
    if v2:
        return _ROOT / CGROUP_PARENT / "conmon"
    sysd = _ROOT / "systemd"
    return sysd / CGROUP_PARENT / "conmon" if sysd.is_dir() else None


def remove(path: str, v2: bool) -> bool:
    """rmdir the cgroup in every hierarchy (runc/crun leave the parents); True if one is still busy."""
    rel = path.strip("/")
    if v2:
        bases = [_ROOT]
    else:
        try:
            bases = [p for p in _ROOT.iterdir() if p.is_dir() and not p.is_symlink()]
        except OSError:
            bases = []
    busy = False
    for b in bases:
        d = b / rel
        try:
            os.rmdir(d)
        except FileNotFoundError:
            pass
        except OSError as e:
            busy = busy or e.errno == errno.EBUSY
    return busy


def remove_parents(monitor: Path | None, v2: bool) -> None:
    """conmon's cgroup and the `skiff` parent, once nothing runs in them."""
    if monitor is not None:
        try:
            monitor.rmdir()
        except OSError:
            pass
    remove(f"/{CGROUP_PARENT}", v2)
