"""At daemon start: containers whose conmon survived the daemon are adopted again, work a killed daemon left
half done (a start, a removal) is finished or undone, stale bundles and netns files go, and restart policies
bring their containers back."""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal as _signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

from skiffbox.guest.containers import lifecycle, monitor, mounts, rootfs, run, sandbox
from skiffbox.guest.containers.runtime import signal_pid
from skiffbox.guest.containers.store import Container, now_rfc3339
from skiffbox.guest.containers.teardown import cleanup_cgroup_parents, teardown

if TYPE_CHECKING:
    from skiffbox.guest.containers.service import ContainerService

log = logging.getLogger("skiffd.containers")


async def recover_all(svc: ContainerService) -> None:
    ctrs = svc.store.load()
    for c in ctrs:
        try:
            await recover(svc, c)
        except Exception:
            log.exception("recovering container %s failed", c.id[:12])
    _clean_stale_bundles(svc)
    sandbox.clean_stale(svc)
    for c in ctrs:
        if c.removed or c.running:
            continue
        pol = c.host_config.get("RestartPolicy", {}).get("Name")
        if pol == "always" or (pol == "unless-stopped" and not c.skiff.get("ManualStop")):
            # `always` comes back with the daemon even after a manual stop (Docker's rule).
            c.skiff.pop("ManualStop", None)
            svc.spawn(run.restart_later(svc, c, 0.0))
    cleanup_cgroup_parents(svc)


async def recover(svc: ContainerService, c: Container) -> None:
    sk = c.skiff
    if sk.get("Removing"):
        await lifecycle.finish_remove(svc, c, volumes=bool(sk.get("RemoveVolumes")))
        return
    if c.state.get("Restarting"):
        c.state.update(Status="exited", Restarting=False)
        svc.store.save(c)
    if sk.get("Starting") and not c.running and not await _recover_start(svc, c):
        return
    if not c.running:
        if rootfs.is_mountpoint(c.rootfs) and c.mount_refs == 0:
            mounts.unmount(c)
        return
    conmon_pid = int(sk.get("ConmonPid") or 0)
    if conmon_pid and monitor.process_alive(conmon_pid, c.id):
        svc.active += 1
        c.watch = monitor.ExitWatch(conmon_pid)
        c.exit_task = svc.spawn(run.watch_exit(svc, c))
        run.start_health(svc, c)
        log.info("re-adopted running container %s (conmon %d)", c.id[:12], conmon_pid)
        return
    # conmon is gone: the exit file says how it ended, unless conmon itself was killed.
    code = monitor.read_exit(c.bundle, c.id)
    pid = int(c.state.get("Pid") or 0)
    if code is None and pid and monitor.process_alive(pid) and monitor.proc_start_time(pid) == sk.get("PidStart"):
        # Running without its monitor: nobody holds its stdio or can record its exit. Stop it.
        signal_pid(pid, _signal.SIGKILL)
        for _ in range(100):
            if not monitor.process_alive(pid):
                break
            await asyncio.sleep(0.05)
        code = 137
    svc.active += 1
    await run.handle_exit(svc, c, code)


async def _recover_start(svc: ContainerService, c: Container) -> bool:
    """The daemon died in the middle of a start (the record still says `Starting`). If the process got to run
    (the runtime released it: its state is running or stopped), the record is made `running` and True is
    returned: the caller re-adopts it (conmon alive) or records its exit. Otherwise whatever the start had
    made (a `runtime create`d init, conmon, cgroup, netns, network endpoint, rootfs mount) is undone and the
    container is `created` again (or `exited` if it had run before)."""
    state_dir = svc.runtime.root / c.id
    conmons = monitor.find_conmons(c.id)
    st = await svc.runtime.state(c.id) if state_dir.exists() else None
    deadline = time.monotonic() + 10
    while st is None and conmons and time.monotonic() < deadline:
        # conmon may still be running `runtime create`: wait until the container exists or conmon gives up.
        await asyncio.sleep(0.05)
        conmons = [p for p in conmons if monitor.process_alive(p, c.id)]
        st = await svc.runtime.state(c.id) if state_dir.exists() else None
    status = (st or {}).get("status")
    released = not (state_dir / "exec.fifo").exists()
    if status in ("running", "paused", "stopped") and released:
        pid = int((st or {}).get("pid") or 0) or _read_int(c.bundle / "pidfile")
        conmon_pid = _read_int(c.bundle / "conmon.pid") or (conmons[0] if conmons else 0)
        c.state.update(Status="running", Running=True, Paused=False, Restarting=False, OOMKilled=False,
                       Dead=False, Pid=pid, ExitCode=0, Error="", StartedAt=now_rfc3339())
        c.skiff.update(ConmonPid=conmon_pid, PidStart=monitor.proc_start_time(pid) if pid else None)
        c.skiff.pop("Starting", None)
        run.reset_health(c)
        svc.store.save(c)
        log.info("container %s was started when the daemon stopped: it runs", c.id[:12])
        return True
    # It never ran: the init `runtime create` made (if any) goes, and conmon with it.
    if st is not None:
        await svc.runtime.delete(c.id, force=True)
    for p in conmons:
        if monitor.process_alive(p, c.id):
            signal_pid(p, _signal.SIGKILL)
    for _ in range(100):
        if not any(monitor.process_alive(p, c.id) for p in conmons):
            break
        await asyncio.sleep(0.05)
    c.state["Pid"] = 0
    await teardown(svc, c)
    never_ran = c.state.get("StartedAt", "").startswith("0001")
    c.state.update(Status="created" if never_ran else "exited", Running=False, Paused=False, Restarting=False)
    c.skiff.pop("Starting", None)
    svc.store.save(c)
    log.info("container %s was being started when the daemon stopped: start undone", c.id[:12])
    return False


def _clean_stale_bundles(svc: ContainerService) -> None:
    """Bundles (and their rootfs mounts) of containers that no longer exist."""
    for d in svc.store.run_root.iterdir():
        if d.name not in svc.store.by_id:
            if rootfs.is_mountpoint(d / "rootfs"):
                try:
                    rootfs.umount(str(d / "rootfs"))
                except OSError:
                    continue
            shutil.rmtree(d, ignore_errors=True)


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text().strip() or "0")
    except (OSError, ValueError):
        return 0
