"""The user's operations on a container's life: start, stop, kill, restart, pause/unpause, rename, update,
remove and prune. The start and exit themselves are run.py's; what a stopped container gives back, teardown.py's."""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal as _signal
from typing import TYPE_CHECKING, Any

from skiffbox.guest.containers import queries, run, spec, streams, views
from skiffbox.guest.containers.runtime import RuntimeError_, signal_pid
from skiffbox.guest.containers.store import Container
from skiffbox.guest.containers.teardown import cleanup_cgroup_parents, teardown
from skiffbox.guest.errors import Conflict, InvalidParameter, NotFound, NotModified
from skiffbox.guest.util.filters import match_labels
from skiffbox.guest.util.timefmt import parse_time

if TYPE_CHECKING:
    from skiffbox.guest.containers.service import ContainerService

log = logging.getLogger("skiffd.containers")

DEFAULT_STOP_TIMEOUT = 10
# `docker update` resource fields; a 0 leaves the old value (except PidsLimit, where 0 means unlimited).
_RESOURCE_KEYS = ("Memory", "MemorySwap", "MemoryReservation", "NanoCpus", "CpuShares", "CpuPeriod", "CpuQuota",
                  "CpusetCpus", "CpusetMems", "PidsLimit", "BlkioWeight")


async def start(svc: ContainerService, ref: str) -> None:
    c = svc.get(ref)
    async with c.lock:
        if c.removed or c.state.get("Status") == "removing":
            raise Conflict(f"container {c.id} is marked for removal and cannot be started")
        if c.paused:
            raise Conflict("cannot start a paused container, try unpause instead")
        if c.running:
            raise NotModified("container already started")
        c.skiff.pop("ManualStop", None)
        await run.start_locked(svc, c)


async def _signal_ctr(svc: ContainerService, c: Container, sig: int) -> None:
    pid = int(c.state.get("Pid") or 0)
    if not (pid and signal_pid(pid, sig)):
        try:
            await svc.runtime.kill(c.id, sig)
        except RuntimeError_ as e:
            # The process exited between the check and the kill (its exit is being handled): nothing to signal,
            # as dockerd's kill of a container that stops meanwhile. (crun: "open pidfd: No such process".)
            if "no such process" not in str(e).lower() and "not running" not in str(e).lower():
                raise
    if c.paused and sig == _signal.SIGKILL:
        await svc.runtime.resume(c.id)


async def stop(svc: ContainerService, ref: str, timeout: int | None = None, sig: str | None = None) -> None:
    c = svc.get(ref)
    async with c.lock:
        # ManualStop (no restart policy applies) is on disk before anything is stopped: a failed write stops nothing.
        if c.restart_task is not None and not c.restart_task.done() and not c.running:
            svc.store.save_changes(c, State={**c.state, "Status": "exited", "Restarting": False},
                                   Skiff={**c.skiff, "ManualStop": True})
            c.restart_task.cancel()
            return
        if not c.running:
            raise NotModified("container already stopped")
        svc.store.save_changes(c, Skiff={**c.skiff, "ManualStop": True})
        stop_sig = spec.parse_signal(sig or c.config.get("StopSignal"), _signal.SIGTERM)
        if timeout is None:
            timeout = c.config.get("StopTimeout")
        if timeout is None:
            timeout = DEFAULT_STOP_TIMEOUT
        fut = streams.exit_future(c)
        await _signal_ctr(svc, c, stop_sig)
        if c.paused:
            await svc.runtime.resume(c.id)
        svc.event(c, "kill", signal=str(stop_sig))
    try:
        if timeout < 0:
            await fut
        else:
            await asyncio.wait_for(asyncio.shield(fut), timeout)
    except asyncio.TimeoutError:
        log.info("container %s did not stop after %ss, killing it", c.id[:12], timeout)
        async with c.lock:
            if c.running:
                await _signal_ctr(svc, c, _signal.SIGKILL)
                svc.event(c, "kill", signal=str(int(_signal.SIGKILL)))
        await fut
    svc.event(c, "stop")


async def kill(svc: ContainerService, ref: str, sig: str | None = None) -> None:
    c = svc.get(ref)
    async with c.lock:
        if not c.running:
            raise Conflict(f"cannot kill container: {c.id}: container {c.id} is not running")
        s = spec.parse_signal(sig, _signal.SIGKILL)
        await _signal_ctr(svc, c, s)
        svc.event(c, "kill", signal=str(s))
    if s == _signal.SIGKILL:
        fut = streams.exit_future(c) if c.running else None
        if fut is not None:
            try:
                await asyncio.wait_for(fut, 10)
            except asyncio.TimeoutError:
                pass


async def restart(svc: ContainerService, ref: str, timeout: int | None = None, sig: str | None = None) -> None:
    c = svc.get(ref)
    if c.running:
        try:
            await stop(svc, ref, timeout, sig)
        except NotModified:
            pass
    async with c.lock:
        if c.running:
            return
        c.skiff.pop("ManualStop", None)
        if c.restart_task is not None and not c.restart_task.done():
            c.restart_task.cancel()
        await run.start_locked(svc, c)
    svc.event(c, "restart")


async def pause(svc: ContainerService, ref: str) -> None:
    c = svc.get(ref)
    async with c.lock:
        if not c.running:
            raise Conflict(f"Container {c.id} is not running")
        if c.paused:
            raise Conflict(f"Container {c.id} is already paused")
        await svc.runtime.pause(c.id)
        c.state.update(Status="paused", Paused=True)
        svc.store.save(c)
        svc.event(c, "pause")


async def unpause(svc: ContainerService, ref: str) -> None:
    c = svc.get(ref)
    async with c.lock:
        if not c.paused:
            raise Conflict(f"Container {c.id} is not paused")
        await svc.runtime.resume(c.id)
        c.state.update(Status="running", Paused=False)
        svc.store.save(c)
        svc.event(c, "unpause")


def rename(svc: ContainerService, ref: str, new_name: str) -> None:
    c = svc.get(ref)
    if not new_name:
        raise InvalidParameter("Neither old nor new names may be empty")
    new_name = new_name.lstrip("/")
    if new_name == c.name:
        raise InvalidParameter("Renaming a container with the same name as its current name")
    old = c.name
    svc.store.reserve_name(new_name, c.id)
    try:
        svc.store.save_changes(c, Name="/" + new_name)
    except BaseException:
        svc.store.release_name(new_name)
        raise
    svc.store.release_name(old)
    svc.event(c, "rename", oldName="/" + old)


def remove_link(svc: ContainerService, ref: str, alias: str) -> None:
    """DELETE /containers/PARENT/ALIAS?link=1: drop the legacy link ALIAS from PARENT (both containers stay).
    The link's hosts entry goes at the parent's next start, as its environment variables do."""
    try:
        c = svc.get(ref)
    except NotFound:
        raise NotFound(f"No such container: {ref}/{alias}")
    links = c.host_config.get("Links") or []
    kept = [lk for lk in links if (lk.partition(":")[2] or lk.partition(":")[0]).rsplit("/", 1)[-1] != alias]
    if len(kept) == len(links):
        raise NotFound(f"No such container: {ref}/{alias}")
    svc.store.save_changes(c, HostConfig={**c.host_config, "Links": kept or None})


async def update(svc: ContainerService, ref: str, body: dict[str, Any]) -> list[str]:
    c = svc.get(ref)
    hc = c.host_config
    async with c.lock:
        new = dict(hc)
        for k in _RESOURCE_KEYS:
            if k in body and body[k] not in (None,):
                if body[k] == 0 and k not in ("PidsLimit",):
                    continue
                new[k] = body[k]
        if body.get("RestartPolicy") and body["RestartPolicy"].get("Name"):
            if hc.get("AutoRemove") and body["RestartPolicy"]["Name"] != "no":
                raise InvalidParameter("Restart policy cannot be updated because AutoRemove is enabled for the container")
            new["RestartPolicy"] = {"Name": body["RestartPolicy"]["Name"],
                                    "MaximumRetryCount": int(body["RestartPolicy"].get("MaximumRetryCount") or 0)}
        resources = spec.resources(new, svc.cgroup_v2)  # checked whether running or not, as dockerd does
        # On disk first, then the cgroup (as dockerd: checkpoint, then UpdateResources, restoring the old config if
        # that fails): a full disk leaves the limits in force and recorded as they were.
        old = hc
        svc.store.save_changes(c, HostConfig=new)
        if c.running:
            resources.pop("devices", None)
            try:
                await svc.runtime.update(c.id, resources)
            except BaseException:
                svc.store.save_changes(c, HostConfig=old)
                raise
        svc.event(c, "update")
    return []


# ----------------------------------------------------------------------------------------------
# Remove, prune
# ----------------------------------------------------------------------------------------------

async def remove(svc: ContainerService, ref: str, force: bool = False, volumes: bool = False,
                 background: bool = False) -> None:
    c = svc.get(ref)
    if c.running or (c.restart_task is not None and not c.restart_task.done()):
        if not force:
            if c.paused:
                raise Conflict(f"cannot remove container \"/{c.name}\": container is paused and must be unpaused first")
            raise Conflict(f"cannot remove container \"/{c.name}\": container is running: stop the container "
                           "before removing or force remove")
        await _kill_for_removal(svc, c)
    async with c.lock:
        if c.removed:
            return
        if c.running:
            raise Conflict(f"cannot remove container \"/{c.name}\": container is running")
        # The marker makes a daemon killed from here on finish the removal at its next start.
        svc.store.save_changes(c, State={**c.state, "Status": "removing"},
                               Skiff={**c.skiff, "Removing": True, "RemoveVolumes": volumes})
        await finish_remove(svc, c, volumes, background)


async def _kill_for_removal(svc: ContainerService, c: Container) -> None:
    """`rm -f`: no restart, SIGKILL, and wait for the exit to be handled."""
    c.skiff["ManualStop"] = True
    if c.restart_task is not None:
        c.restart_task.cancel()
    if not c.running:
        return
    fut = streams.exit_future(c)
    async with c.lock:
        if c.running:
            await _signal_ctr(svc, c, _signal.SIGKILL)
            svc.event(c, "kill", signal="9")
        else:
            fut.cancel()
    if not fut.cancelled():
        try:
            await asyncio.wait_for(fut, 30)
        except asyncio.TimeoutError:
            raise Conflict(f"could not kill running container {c.id}, cannot remove") from None


async def finish_remove(svc: ContainerService, c: Container, volumes: bool, background: bool = False) -> None:
    """The removal of a stopped container marked `Removing` (also at daemon start, for one interrupted)."""
    await svc.execs.container_removed(c)
    c.mount_refs = 0
    await teardown(svc, c)
    try:
        await svc.volumes.forget(c, volumes)
    except Exception:
        log.exception("releasing volumes of %s failed", c.id[:12])
    c.removed = True
    streams.release_attachers(c)
    svc.store.drop(c)
    # Without its record the container is gone (a daemon start sweeps dirs without one), so the
    # `--rm` path can answer before the files are deleted.
    try:
        (c.dir / "container.json").unlink()
    except OSError:
        pass

    async def cleanup() -> None:
        await asyncio.gather(asyncio.to_thread(shutil.rmtree, c.dir, True),
                             asyncio.to_thread(shutil.rmtree, c.bundle, True))

    if background:
        svc.spawn(cleanup())
    else:
        await cleanup()
    svc.event(c, "destroy")
    streams.resolve_exit(c, int(c.state.get("ExitCode") or 0), None)
    streams.resolve_removed(c)
    cleanup_cgroup_parents(svc)


async def prune(svc: ContainerService, filters: dict[str, list[str]]) -> dict[str, Any]:
    until = parse_time(filters["until"][0]) if filters.get("until") else None
    deleted, reclaimed = [], 0
    for c in list(svc.store.all()):
        if c.running or views.state_name(c) in ("running", "paused", "restarting"):
            continue
        if until is not None and views.created_ts(c) >= until:
            continue
        labels = c.config.get("Labels") or {}
        if filters.get("label") and not match_labels(labels, filters["label"]):
            continue
        if filters.get("label!") and any(match_labels(labels, [l]) for l in filters["label!"]):
            continue
        size = (await queries.sizes(c))[0]
        try:
            await remove(svc, c.id)
        except (NotFound, Conflict):
            continue
        deleted.append(c.id)
        reclaimed += size
    return {"ContainersDeleted": deleted or None, "SpaceReclaimed": reclaimed}
