"""A container's run: the start (in named steps, each undone if a later one fails), the watch on its exit, and
what follows an exit (teardown, restart policy, --rm).

The start, with the container's lock held:
    prepare   rootfs mounted, network sandbox begun, /etc files, mounts, OCI bundle; then the `Starting` marker
    launch    conmon + `runtime create`; attach clients waiting for the start connect
    run       the network plumbing finished, `runtime start`
    record    the record says `running`, the exit watch and health checks begin
From `launch` on a process may exist that outlives the daemon: the `Starting` marker lets a daemon killed in
between find it (recovery.py)."""

from __future__ import annotations

import asyncio
import errno
import logging
import shutil
import signal as _signal
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from skiffbox.guest.containers import cgroups, links, monitor, mounts, sandbox, spec, streams, users
from skiffbox.guest.containers.health import HealthChecker
from skiffbox.guest.containers.restart import restart_delay
from skiffbox.guest.containers.runtime import RuntimeError_, error_exit_code, signal_pid
from skiffbox.guest.containers.store import Container, atomic_write_json, now_rfc3339
from skiffbox.guest.containers.teardown import cleanup_cgroup_parents, teardown
from skiffbox.guest.errors import Conflict, EngineError, InvalidParameter, NotFound

if TYPE_CHECKING:
    from skiffbox.guest.containers.service import ContainerService

log = logging.getLogger("skiffd.containers")

_test_pause = monitor.test_pause


@dataclass
class _Timings:
    """Milliseconds per start step, logged at debug level."""
    t0: float = field(default_factory=time.monotonic)
    marks: list[tuple[str, float]] = field(default_factory=list)

    def mark(self, name: str) -> None:
        self.marks.append((name, time.monotonic()))

    def log(self, c: Container) -> None:
        if not log.isEnabledFor(logging.DEBUG):
            return
        prev, parts = self.t0, []
        for name, t in self.marks:
            parts.append(f"{name} {1000 * (t - prev):.1f}")
            prev = t
        log.debug("started %s in %.1f ms (%s)", c.id[:12], 1000 * (time.monotonic() - self.t0), ", ".join(parts))


@dataclass
class _Prepared:
    netns_path: str | None
    argv0: str
    log_size_max: int | None


# ----------------------------------------------------------------------------------------------
# Start
# ----------------------------------------------------------------------------------------------

async def start_locked(svc: ContainerService, c: Container) -> None:
    """Start `c`; the caller holds `c.lock` and has checked that it may start."""
    svc.active += 1
    launched: monitor.Launched | None = None
    c.skiff["TornDown"] = False
    timings = _Timings()
    try:
        prep = await _prepare(svc, c, timings)
        await _test_pause("launch")
        launched = await _launch(svc, c, prep)
        timings.mark("create")
        await sandbox.ready(svc, c)  # netavark ran alongside everything since sandbox.setup
        timings.mark("network ready")
        await _test_pause("start")
        await svc.runtime.start(c.id)
        timings.mark("start")
        await _test_pause("running-saved")
        _record_running(svc, c, launched, prep.netns_path)  # a record that cannot say `running` undoes the start
    except BaseException as e:
        msg, code = await _undo_start(svc, c, launched, e)
        if isinstance(e, RuntimeError_) and code in (126, 127):
            raise InvalidParameter(msg) from e  # a command that cannot run is the request's fault (Docker: 400)
        if isinstance(e, (EngineError, asyncio.CancelledError)):
            raise
        if isinstance(e, OSError) and e.errno not in (errno.ENOSPC, errno.EDQUOT):  # a full disk is reported as such
            raise RuntimeError_(msg) from e
        raise
    timings.log(c)
    start_health(svc, c)


async def _prepare(svc: ContainerService, c: Container, timings: _Timings) -> _Prepared:
    """Rootfs, network sandbox, /etc files and the OCI bundle; ends with the `Starting` marker saved."""
    hc = c.host_config
    await mounts.mount(svc, c)
    timings.mark("mount")
    netns_path, net = await sandbox.setup(svc, c)
    timings.mark("network")
    sandbox.write_etc(c, net)
    extra = spec.bind_mounts(hc)
    vols = svc.volumes
    extra += await vols.mounts_for(c, c.rootfs)
    c.rec["Mounts"] = vols.mountpoints(c)
    user = users.resolve_user(c.rootfs, c.config.get("User") or "", hc.get("GroupAdd"))
    inputs = spec.SpecInputs(
        rootfs=c.rootfs, cgroup_path=cgroups.container_path(c, svc.cgroup_parent), hostname_file=c.dir / "hostname",
        hosts_file=c.dir / "hosts", resolv_file=c.dir / "resolv.conf", netns_path=netns_path,
        extra_mounts=extra, cgroup_v2=svc.cgroup_v2,
        init_binary=spec.init_binary() if hc.get("Init") else None, link_env=links.link_env(c, svc.get),
    )
    _join_namespaces(svc, c, inputs)
    oci = spec.build_spec(c.rec, user, inputs)
    c.bundle.mkdir(parents=True, exist_ok=True)
    for stale in ("attach", "ctl", "winsz", "oom", "pidfile", "conmon.pid"):
        (c.bundle / stale).unlink(missing_ok=True)
    shutil.rmtree(monitor.exit_dir(c.bundle), ignore_errors=True)
    atomic_write_json(c.bundle / "config.json", oci)
    prep = _Prepared(netns_path, (oci["process"]["args"] or [""])[0], _log_size_max(hc))
    # From here on a process may exist that outlives us: a daemon killed before the record says
    # `running` finds this marker and asks conmon and the runtime what became of the start (recovery.py).
    c.skiff.update(Starting=True, Runtime=svc.runtime.name, Bundle=str(c.bundle))
    svc.store.save(c)
    timings.mark("spec")
    return prep


def _join_namespaces(svc: ContainerService, c: Container, inputs: spec.SpecInputs) -> None:
    """`--ipc`/`--pid container:<other>`: the other's namespaces, which must be running."""
    hc = c.host_config
    for key, attr, ns in (("IpcMode", "ipc_path", "ipc"), ("PidMode", "pid_path", "pid")):
        mode = hc.get(key) or ""
        if mode.startswith("container:"):
            other = svc.get(mode.split(":", 1)[1])
            if not other.running:
                raise Conflict(f"cannot join {ns} namespace of a non running container: {other.id}")
            setattr(inputs, attr, f"/proc/{other.state['Pid']}/ns/{ns}")


async def _launch(svc: ContainerService, c: Container, prep: _Prepared) -> monitor.Launched:
    """conmon and `runtime create`: the process exists, stopped before the user's command."""
    hc, cfg = c.host_config, c.config
    stdin = bool(cfg.get("OpenStdin"))
    launched = await monitor.launch(
        svc.runtime, c.id, c.name, c.bundle, str(c.log_path) if hc["LogConfig"]["Type"] != "none" else None,
        tty=bool(cfg.get("Tty")), stdin=stdin, leave_stdin_open=stdin and not cfg.get("StdinOnce"),
        log_size_max=prep.log_size_max, monitor_cgroup=svc.monitor_cgroup, argv0=prep.argv0)
    c.watch = monitor.ExitWatch(launched.conmon_pid)
    streams.connect_attachers(c)
    size = hc.get("ConsoleSize") or [0, 0]
    if cfg.get("Tty") and size and size[0] and size[1]:
        monitor.write_ctl(c.bundle, 1, int(size[0]), int(size[1]))
    return launched


async def _undo_start(svc: ContainerService, c: Container, launched: monitor.Launched | None,
                      e: BaseException) -> tuple[str, int]:
    """Whatever the start made goes; the record says why it failed. Returns (message, exit code)."""
    if c.watch is not None:
        c.watch.close()
        c.watch = None
    if launched is not None:
        signal_pid(launched.pid, _signal.SIGKILL)
    await teardown(svc, c)
    svc.active -= 1
    msg = e.message if isinstance(e, EngineError) else str(e)
    never_ran = c.state.get("StartedAt", "").startswith("0001")
    code = error_exit_code(msg)
    c.state.update(Status="created" if never_ran else "exited", Running=False, Pid=0, Error=msg, ExitCode=code)
    c.skiff.pop("Starting", None)
    try:
        svc.store.save(c)
    except OSError as save_error:  # a full disk: memory stays what the disk says, the start's own error is reported
        log.warning("recording the failed start of %s: %s", c.id[:12], save_error)
        svc.store.revert(c)
    streams.release_attachers(c)
    # Waits for the next exit stay pending, as with dockerd: the process never ran, so it did not exit (the
    # CLI set one up before `start` and would print its error next to the start's).
    if c.host_config.get("AutoRemove"):
        svc.spawn(auto_remove(svc, c))  # the CLI waits for the removal after a failed start
    return msg, code


def _record_running(svc: ContainerService, c: Container, launched: monitor.Launched, netns_path: str | None) -> None:
    c.state.update(Status="running", Running=True, Paused=False, Restarting=False, OOMKilled=False, Dead=False,
                   Pid=launched.pid, ExitCode=0, Error="", StartedAt=now_rfc3339())
    c.skiff.update(ConmonPid=launched.conmon_pid, PidStart=monitor.proc_start_time(launched.pid),
                   Runtime=svc.runtime.name, Bundle=str(c.bundle), Netns=netns_path)
    c.skiff.pop("Starting", None)
    reset_health(c)
    svc.store.save(c)
    c.exit_task = svc.spawn(watch_exit(svc, c))
    svc.event(c, "start")


def _log_size_max(hc: dict[str, Any]) -> int | None:
    v = ((hc.get("LogConfig") or {}).get("Config") or {}).get("max-size")
    if not v:
        return None
    units = {"k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}
    v = v.strip().lower().rstrip("b")
    try:
        if v and v[-1] in units:
            return int(float(v[:-1]) * units[v[-1]])
        return int(v)
    except ValueError:
        raise InvalidParameter(f"invalid max-size: {v}") from None


# ----------------------------------------------------------------------------------------------
# Health
# ----------------------------------------------------------------------------------------------

def reset_health(c: Container) -> None:
    """A (re)started container's health begins again at `starting`."""
    if c.state.get("Health") is not None:
        c.state["Health"] = {"Status": "starting", "FailingStreak": 0, "Log": []}


def start_health(svc: ContainerService, c: Container) -> None:
    hc = c.config.get("Healthcheck") or {}
    test = hc.get("Test") or []
    if not test or test[0] == "NONE":
        return
    stop_health(c)
    c.health_task = svc.spawn(HealthChecker(svc, c).run())


def stop_health(c: Container) -> None:
    if c.health_task is not None and not c.health_task.done():
        c.health_task.cancel()
    c.health_task = None


# ----------------------------------------------------------------------------------------------
# Exit
# ----------------------------------------------------------------------------------------------

async def watch_exit(svc: ContainerService, c: Container) -> None:
    w = c.watch
    if w is None:
        return
    await w.future
    async with c.lock:
        if c.watch is not w:
            return
        c.watch = None
        await handle_exit(svc, c)


async def handle_exit(svc: ContainerService, c: Container, code: int | None = None) -> None:
    """Record the exit (conmon's exit file unless `code` is known), tear down, then restart or --rm."""
    if code is None:
        code = monitor.read_exit(c.bundle, c.id)
    if code is None:
        code = 255  # conmon died without recording it (SIGKILL, reboot)
    oom = monitor.oom_killed(c.bundle)
    t0 = time.monotonic()
    stop_health(c)
    await svc.execs.container_stopped(c)
    await teardown(svc, c)
    svc.active = max(0, svc.active - 1)
    manual = bool(c.skiff.get("ManualStop"))
    c.state.update(Status="exited", Running=False, Paused=False, Restarting=False, Pid=0, ExitCode=code,
                   OOMKilled=oom, FinishedAt=now_rfc3339())
    svc.store.save(c)
    if oom:
        svc.event(c, "oom")
    svc.event(c, "die", exitCode=str(code))
    log.debug("exit of %s handled in %.1f ms", c.id[:12], 1000 * (time.monotonic() - t0))
    streams.resolve_exit(c, code, None)
    delay = restart_delay(c, code, manual)
    if delay is not None:
        c.state.update(Status="restarting", Restarting=True)
        svc.store.save(c)
        c.restart_task = svc.spawn(restart_later(svc, c, delay))
    elif c.host_config.get("AutoRemove"):
        svc.spawn(auto_remove(svc, c))
    cleanup_cgroup_parents(svc)


async def restart_later(svc: ContainerService, c: Container, delay: float) -> None:
    """A restart policy's start (delay 0: at daemon start), unless the container was stopped or removed first."""
    if delay:
        await asyncio.sleep(delay)
    async with c.lock:
        if c.removed or c.running or c.skiff.get("ManualStop"):
            if c.state.get("Restarting"):
                c.state.update(Status="exited", Restarting=False)
                svc.store.save(c)
            return
        if delay:
            c.rec["RestartCount"] = int(c.rec.get("RestartCount") or 0) + 1
        try:
            await start_locked(svc, c)
            if delay:
                svc.event(c, "restart")
        except Exception as e:
            log.warning("restarting %s failed: %s", c.name, e)
            c.state.update(Status="exited", Restarting=False)
            svc.store.save(c)


async def auto_remove(svc: ContainerService, c: Container) -> None:
    try:
        await svc.remove(c.id, force=True, volumes=True, background=True)
    except NotFound:
        pass
    except Exception:
        log.exception("auto-removing %s failed", c.id[:12])
