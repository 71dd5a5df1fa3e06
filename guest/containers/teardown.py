"""Everything a stopped container must not hold: runtime state, cgroups, network sandbox, volume holds, the
rootfs mount. Idempotent, so a failed start, an exit, a removal and a daemon restart all use the same steps."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from skiffbox.guest.containers import cgroups, monitor, mounts, netsettings, rootfs, sandbox
from skiffbox.guest.containers.store import Container

if TYPE_CHECKING:
    from skiffbox.guest.containers.service import ContainerService

log = logging.getLogger("skiffd.containers")


async def teardown(svc: ContainerService, c: Container) -> None:
    """The runtime and network parts are independent and run concurrently."""
    if c.skiff.get("TornDown") and not rootfs.is_mountpoint(c.rootfs):
        return
    await asyncio.gather(runtime_delete(svc, c), sandbox.teardown(svc, c))
    netsettings.clear_endpoints(c.rec.get("NetworkSettings") or {})
    try:
        await svc.volumes.release(c)
    except Exception:
        log.exception("releasing volumes of %s failed", c.id[:12])
    mounts.unmount(c)
    for n in ("attach", "ctl", "winsz"):
        try:
            (c.bundle / n).unlink()
        except OSError:
            pass
    c.skiff["TornDown"] = True


async def runtime_delete(svc: ContainerService, c: Container) -> None:
    """`runtime delete` for the runtime's state, then the cgroup dirs it may leave.

    Only a container whose recorded process is gone is merely forgotten. With no process recorded, the runtime is
    asked: a start that failed after `runtime create` (its report lost to a timeout or a cancellation) leaves an
    init the record never named, waiting on its exec fifo, which only `runtime delete --force` kills."""
    state_dir = svc.runtime.root / c.id
    if state_dir.exists():
        pid = int(c.state.get("Pid") or 0)
        alive = pid and monitor.process_alive(pid) and monitor.proc_start_time(pid) == c.skiff.get("PidStart")
        if alive or not pid or (c.host_config.get("PidMode") or "") == "host":
            try:
                await svc.runtime.delete(c.id, force=True)
            except Exception as e:
                log.warning("runtime delete %s: %s", c.id[:12], e)
        else:
            svc.runtime.forget(c.id)  # nothing runs any more: no `runtime delete` process needed
    # The kernel may still be reaping the rest of the pid namespace: retry while the cgroup is busy.
    for _ in range(200):
        if not cgroups.remove(cgroups.container_path(c, svc.cgroup_parent), svc.cgroup_v2):
            break
        await asyncio.sleep(0.01)
    else:
        log.warning("cgroup of %s is still busy", c.id[:12])


def cleanup_cgroup_parents(svc: ContainerService) -> None:
    """The shared cgroup parents go when no container is starting or running; with them any container cgroup
    still busy when its container was torn down (the kernel took longer than runtime_delete waited to reap
    the last processes), which is empty by now, and those of stopped containers with their own CgroupParent."""
    if svc.active > 0:
        return
    stopped = svc.store.all()
    if any(c.running for c in stopped):
        return
    for c in stopped:
        if c.host_config.get("CgroupParent"):
            cgroups.remove(cgroups.container_path(c, svc.cgroup_parent), svc.cgroup_v2)
    cgroups.remove_parents(svc.monitor_cgroup, svc.cgroup_v2, svc.cgroup_parent)
