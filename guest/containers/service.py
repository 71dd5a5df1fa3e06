"""ContainerService: the container lifecycle over conmon + runc/crun + overlayfs (the facade; the work is in the
modules named in the class docstring).

Contracts with the other services (they call exactly these; the container engine calls exactly theirs):

Images (`images`, guest/contracts.py ImagesForContainers):
    `await images.resolve(ref_or_id) -> Image` (raises `no_such_image`), `Image.id`, `Image.config` (the image
    config's `config` dict), `Image.repo_tags`, `Image.layer_dirs() -> list[Path]` (lowest first);
    `await images.create_from_diff(diff_tar_path, parent, config, history_entry, tags) -> Image` (commit);
    `guest.images.layers.write_tar(src, out, convert_whiteouts=True, exclude=None)`.
    Provided to images: `containers.image_users(image_id) -> list[(container_id, running)]`.

Networks (`networks`, NetworksForContainers):
    Before the runtime starts a container whose NetworkMode is not `none`/`host`/`container:…`, the engine
    creates a netns file (with guest/network/netns.py) and calls
        `await networks.setup(ctr, netns_path) -> {"resolv_conf": str|None, "hosts": [(ip, [names])],
                                                  "networks": {name: EndpointSettings}, "ports": {"80/tcp": [...]}}`
    and, after the container has stopped (or when it is removed if that already happened),
        `await networks.teardown(ctr, netns_path)`.
    `ctr` is a `guest.containers.store.Container`: `.id`, `.name`, `.config`, `.host_config`, `.rec`
    (`rec["NetworkSettings"]["Networks"]` holds the create request's EndpointsConfig, keyed by network name),
    `.netns_path`, `.running`. `docker network connect/disconnect` (guest/api/networks.py)
    look the container up with `containers.get(ref)`, let the network service update `rec["NetworkSettings"]`
    and save it with `containers.save(ctr)`.

Volumes (`volumes`, VolumesForContainers):
    `await volumes.prepare(ctr)` at create (named volumes created, anonymous ones named, VolumesFrom resolved),
    `await volumes.mounts_for(ctr, rootfs) -> list[OCI mount dict]` at every start (copy-up into new volumes),
    `await volumes.release(ctr)` after the container stopped, `await volumes.forget(ctr, remove_anonymous)` at
    removal, `volumes.mountpoints(ctr)` for inspect's `Mounts`. Plain binds and tmpfs are mounted here (spec.py).

Build: `create(body, name)`, `start(ref)`, `wait(ref, "next-exit")`, `logs(...)`, `remove(ref, force=True)`.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

from skiffbox.guest import hostinfo
from skiffbox.guest.config import DaemonConfig
from skiffbox.guest.containers import (cgroups, create, lifecycle, mounts, queries, recovery, sandbox, streams,
                                       teardown)
from skiffbox.guest.containers.exec import ExecManager
from skiffbox.guest.containers.runtime import Runtime, choose
from skiffbox.guest.containers.store import Container, ContainerStore
from skiffbox.guest.contracts import EventSink, ImagesForContainers, NetworksForContainers, VolumesForContainers

log = logging.getLogger("skiffd.containers")


class ContainerService:
    """The containers' one entry point (engine hooks, the API's calls, other services' calls) and the state they
    share; each operation is the module's named after its concept:
        create.py     the record and its dirs          run.py        start steps, exit, restart policy
        lifecycle.py  stop/kill/restart/…/remove       teardown.py   what a stopped container gives back
        sandbox.py    netns, network service, /etc     mounts.py     the rootfs overlay (runs, cp, export)
        recovery.py   adoption at daemon start         queries.py    ps, inspect, counts, sizes
        streams.py    waits, attach socket, logs       exec.py       exec sessions (`self.execs`)
    """

    def __init__(self, cfg: DaemonConfig, root: Path, run_root: Path, events: EventSink,
                 images: ImagesForContainers, volumes: VolumesForContainers, networks: NetworksForContainers) -> None:
        self.root, self.run_root = root, run_root
        self.events = events
        self.images, self.volumes, self.networks = images, volumes, networks
        self.store = ContainerStore(root, run_root)
        self.runtime: Runtime = choose(cfg.runtime, run_root)
        self.cgroup_v2 = hostinfo.cgroup_version() == "2"
        self.cgroup_parent = cfg.cgroup_parent
        self.monitor_cgroup: Path | None = cgroups.monitor_cgroup(self.cgroup_v2, self.cgroup_parent)
        self.active = 0  # containers starting or running: cgroup parents are only removed at zero
        self._tasks: set[asyncio.Task[Any]] = set()
        self.execs = ExecManager(self)
        log.info("OCI runtime: %s %s (%s)%s", self.runtime.name, self.runtime.version, self.runtime.path,
                 " with the hybrid-cgroup workaround" if self.runtime.wrap_create else "")

    # -- engine hooks ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Re-adopt running containers (their conmon survived us), finish interrupted work, apply restart policies."""
        await recovery.recover_all(self)

    async def close(self) -> None:
        # Containers keep running (live restore); only our own watchers stop.
        for c in self.store.all():
            if c.watch is not None:
                c.watch.close()
            for t in (c.exit_task, c.health_task, c.restart_task):
                if t is not None and not t.done():
                    t.cancel()
        for t in list(self._tasks):
            t.cancel()
        await self.execs.close()
        teardown.cleanup_cgroup_parents(self)

    # -- shared by the concept modules ------------------------------------------------------------

    def get(self, ref: str) -> Container:
        return self.store.get(ref)

    def save(self, c: Container) -> None:
        self.store.save(c)

    def refresh_resolv_conf(self, c: Container) -> None:
        sandbox.refresh_resolv_conf(self, c)

    def event(self, c: Container, action: str, **attrs: str) -> None:
        self.events.publish("container", action, c.id, c.attributes(**attrs))

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """A background task the service owns (cancelled at close)."""
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)
        return t

    # -- queries (queries.py) ------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        return queries.counts(self)

    def image_users(self, image_id: str) -> builtins.list[tuple[str, bool]]:
        return queries.image_users(self, image_id)

    async def disk_usage(self) -> dict[str, Any]:
        return await queries.disk_usage(self)

    async def list(self, *, all_: bool, limit: int | None, size: bool,
                   filters: dict[str, builtins.list[str]]) -> builtins.list[dict[str, Any]]:
        return await queries.list_(self, all_=all_, limit=limit, size=size, filters=filters)

    async def inspect(self, ref: str, size: bool = False) -> dict[str, Any]:
        return await queries.inspect(self, ref, size)

    # -- lifecycle (create.py, lifecycle.py) ---------------------------------------------------------

    async def create(self, body: dict[str, Any], name: str | None = None,
                     platform: str | None = None) -> tuple[Container, builtins.list[str]]:
        return await create.create(self, body, name, platform)

    async def start_container(self, ref: str) -> None:
        await lifecycle.start(self, ref)

    async def stop(self, ref: str, timeout: int | None = None, sig: str | None = None) -> None:
        await lifecycle.stop(self, ref, timeout, sig)

    async def kill(self, ref: str, sig: str | None = None) -> None:
        await lifecycle.kill(self, ref, sig)

    async def restart(self, ref: str, timeout: int | None = None, sig: str | None = None) -> None:
        await lifecycle.restart(self, ref, timeout, sig)

    async def pause(self, ref: str) -> None:
        await lifecycle.pause(self, ref)

    async def unpause(self, ref: str) -> None:
        await lifecycle.unpause(self, ref)

    async def rename(self, ref: str, new_name: str) -> None:
        lifecycle.rename(self, ref, new_name)

    def remove_link(self, ref: str, alias: str) -> None:
        lifecycle.remove_link(self, ref, alias)

    async def update(self, ref: str, body: dict[str, Any]) -> builtins.list[str]:
        return await lifecycle.update(self, ref, body)

    async def remove(self, ref: str, force: bool = False, volumes: bool = False, background: bool = False) -> None:
        await lifecycle.remove(self, ref, force, volumes, background)

    async def prune(self, filters: dict[str, builtins.list[str]]) -> dict[str, Any]:
        return await lifecycle.prune(self, filters)

    # -- waits and streams (streams.py) ----------------------------------------------------------------

    def wait_future(self, ref: str, condition: str | None) -> asyncio.Future[dict[str, Any]]:
        return streams.wait_future(self.get(ref), condition)

    def exit_future(self, c: Container) -> asyncio.Future[dict[str, Any]]:
        return streams.exit_future(c)

    async def attach_socket(self, c: Container) -> asyncio.Future[Any]:
        return await streams.attach_socket(c)

    def log_entries(self, c: Container, *, stdout: bool, stderr: bool, follow: bool, tail: int | None,
                    since: float | None, until: float | None) -> AsyncIterator[Any]:
        return streams.log_entries(c, stdout=stdout, stderr=stderr, follow=follow, tail=tail, since=since,
                                   until=until)

    async def resize(self, ref: str, h: int, w: int) -> None:
        c = self.get(ref)
        streams.resize(c, h, w)
        self.event(c, "resize", height=str(h), width=str(w))

    # -- rootfs of a stopped container for cp, export, commit (mounts.py) ----------------------------

    async def acquire_rootfs(self, c: Container) -> Path:
        return await mounts.acquire(self, c)

    async def release_rootfs(self, c: Container) -> None:
        await mounts.release(c)
