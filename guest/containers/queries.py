"""Read-only questions about the containers: `ps` (with its filters), inspect, sizes, counts for `info`, and
what other services ask (is an image in use, disk usage)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skiffbox.guest.containers import links, views
from skiffbox.guest.errors import EngineError
from skiffbox.guest.images.layers import dir_size

if TYPE_CHECKING:
    from skiffbox.guest.containers.service import ContainerService
    from skiffbox.guest.containers.store import Container


async def sizes(c: Container) -> tuple[int, int]:
    """(SizeRw, SizeRootFs): the container's own layer, and that plus its image's layers."""
    rw = await asyncio.to_thread(dir_size, c.upper)
    base = 0
    for d in c.skiff.get("LowerDirs") or []:
        base += await asyncio.to_thread(dir_size, Path(d))
    return rw, rw + base


def counts(svc: ContainerService) -> dict[str, int]:
    running = paused = stopped = 0
    for c in svc.store.all():
        s = views.state_name(c)
        if s == "paused":
            paused += 1
        elif s in ("running", "restarting"):
            running += 1
        else:
            stopped += 1
    total = running + paused + stopped
    return {"Containers": total, "ContainersRunning": running, "ContainersPaused": paused,
            "ContainersStopped": stopped}


def image_users(svc: ContainerService, image_id: str) -> list[tuple[str, bool]]:
    """(container id, running) of every container made from the image: what `rmi` must refuse or force past."""
    return [(c.id, c.running) for c in svc.store.all() if c.rec.get("Image") == image_id]


async def disk_usage(svc: ContainerService) -> dict[str, Any]:
    out = []
    for c in svc.store.all():
        out.append(views.summary(c, await sizes(c)))
    return {"Containers": out}


async def list_(svc: ContainerService, *, all_: bool, limit: int | None, size: bool,
                filters: dict[str, list[str]]) -> list[dict[str, Any]]:
    views.validate_filters(filters)
    image_ids = await _ancestor_ids(svc, filters["ancestor"]) if "ancestor" in filters else None
    before = since = None
    if filters.get("before"):
        before = views.created_ts(svc.get(filters["before"][0]))
    if filters.get("since"):
        since = views.created_ts(svc.get(filters["since"][0]))
    if limit is not None and limit > 0:
        all_ = True
    show_all = all_ or bool(set(filters) & {"status", "exited"})
    ctrs = sorted(svc.store.all(), key=views.created_ts, reverse=True)
    out = []
    for c in ctrs:
        if not show_all and views.state_name(c) not in ("running", "paused", "restarting"):
            continue
        if not views.matches(c, filters, image_ids, before, since):
            continue
        out.append(views.summary(c, await sizes(c) if size else None))
        if limit is not None and limit > 0 and len(out) >= limit:
            break
    return out


async def _ancestor_ids(svc: ContainerService, refs: list[str]) -> set[Any]:
    """The `ancestor` filter's image ids: each ref resolved by the image store, or (an image since removed)
    the ids of containers created from that ref."""
    image_ids: set[Any] = set()  # record fields: ids as strings
    for ref in refs:
        try:
            img = await svc.images.resolve(ref)
            image_ids.add(img.id)
            continue
        except EngineError:
            pass
        image_ids.update(c.rec.get("Image") for c in svc.store.all() if c.config.get("Image") == ref)
    return image_ids


async def inspect(svc: ContainerService, ref: str, size: bool = False) -> dict[str, Any]:
    c = svc.get(ref)
    return views.inspect(c, await sizes(c) if size else None, sorted(c.exec_ids) or None,
                         links.inspect_links(c, svc.get))
