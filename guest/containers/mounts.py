"""A container's root filesystem: the overlay mounted for a run, and for cp/export/commit of a stopped container
(counted in `Container.mount_refs`, so a run's teardown or the last reader unmounts it, not the first)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from skiffbox.guest.containers import rootfs
from skiffbox.guest.containers.store import Container

if TYPE_CHECKING:
    from skiffbox.guest.containers.service import ContainerService

log = logging.getLogger("skiffd.containers")


async def mount(svc: ContainerService, c: Container) -> None:
    if rootfs.is_mountpoint(c.rootfs):
        return
    lowers = [Path(p) for p in c.skiff.get("LowerDirs") or []]
    if lowers and not all(p.is_dir() for p in lowers):
        # The image store may have moved things: ask it again.
        img = await svc.images.resolve(c.rec["Image"])
        lowers = list(img.layer_dirs())
        c.skiff["LowerDirs"] = [str(p) for p in lowers]
    c.bundle.mkdir(parents=True, exist_ok=True)
    rootfs.mount_overlay(lowers + [c.init_layer], c.upper, c.work, c.rootfs, c.dir / "fs" / "empty")


def unmount(c: Container) -> None:
    if c.mount_refs > 0:
        return
    try:
        rootfs.umount(str(c.rootfs))
    except OSError as e:
        log.warning("unmounting %s: %s", c.rootfs, e)


async def acquire(svc: ContainerService, c: Container) -> Path:
    """The rootfs, mounted if the container is stopped; each call is paired with a `release`."""
    async with c.lock:
        if not rootfs.is_mountpoint(c.rootfs):
            await mount(svc, c)
        c.mount_refs += 1
    return c.rootfs


async def release(c: Container) -> None:
    async with c.lock:
        c.mount_refs = max(0, c.mount_refs - 1)
        if c.mount_refs == 0 and not c.running and not c.removed:
            unmount(c)
