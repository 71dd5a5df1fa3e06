"""ContainerService: the container lifecycle over conmon + runc/crun + overlayfs.

Contracts with the other services (they call exactly these; the container engine calls exactly theirs):

Images (`engine.images`):
    `await images.resolve(ref_or_id) -> Image` (raises `no_such_image`), `Image.id`, `Image.config` (the image
    config's `config` dict), `Image.repo_tags`, `Image.layer_dirs() -> list[Path]` (lowest first);
    `await images.create_from_diff(diff_tar_path, parent, config, history_entry, tags) -> Image` (commit);
    `guest.images.layers.write_tar(src, out, convert_whiteouts=True, exclude=None)`.
    Provided to images: `containers.image_in_use(image_id) -> bool`.

Networks (`engine.networks`, optional):
    Before the runtime starts a container whose NetworkMode is not `none`/`host`/`container:…`, the engine
    creates a netns file (with guest/network/netns.py) and calls
        `await networks.setup(ctr, netns_path) -> {"resolv_conf": str|None, "hosts": [(ip, [names])],
                                                  "networks": {name: EndpointSettings}, "ports": {"80/tcp": [...]}}`
    and, after the container has stopped (or when it is removed if that already happened),
        `await networks.teardown(ctr, netns_path)`.
    `ctr` is a `guest.containers.store.Container`: `.id`, `.name`, `.config`, `.host_config`, `.rec`
    (`rec["NetworkSettings"]["Networks"]` holds the create request's EndpointsConfig, keyed by network name),
    `.netns_path`, `.running`. `docker network connect/disconnect` on a container use
    `containers.get(ref)` and `containers.save(ctr)` after updating `rec["NetworkSettings"]`.

Volumes (`engine.volumes`, optional):
    `await volumes.prepare(ctr)` at create (named volumes created, anonymous ones named, VolumesFrom resolved),
    `await volumes.mounts_for(ctr, rootfs) -> list[OCI mount dict]` at every start (copy-up into new volumes),
    `await volumes.release(ctr)` after the container stopped, `await volumes.forget(ctr, remove_anonymous)` at
    removal, `volumes.mountpoints(ctr)` for inspect's `Mounts`. Plain binds and tmpfs are mounted here (spec.py).

Build: `create(body, name)`, `start(ref)`, `wait(ref, "next-exit")`, `logs(...)`, `remove(ref, force=True)`.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import shutil
import signal as _signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from skiffbox.guest import hostinfo
from skiffbox.guest.api.filters import parse_time
from skiffbox.guest.containers import etcfiles, monitor, rootfs, spec, views
from skiffbox.guest.images import platforms
from skiffbox.guest.containers.merge import merge_image_config, normalize_host_config, split_create_body
from skiffbox.guest.containers.runtime import Runtime, RuntimeError_, choose, error_exit_code, signal_pid
from skiffbox.guest.containers.store import Container, ContainerStore, atomic_write_json, now_rfc3339
from skiffbox.guest.errors import (Conflict, EngineError, InvalidParameter, NotFound, NotModified,
                          no_such_image)
from skiffbox.guest.network import netns

log = logging.getLogger("skiffd.containers")

CGROUP_PARENT = "skiff"
DEFAULT_STOP_TIMEOUT = 10
# Test-only: `SKIFFD_TEST_PAUSE_BEFORE=<point>` makes every container start sleep at that point of
# `_start_locked` ("launch": before conmon, "start": created, before `runtime start`, "running-saved": started,
# before the record says so), so that a test can SIGKILL the daemon there. Never set it in production.
_TEST_PAUSE_BEFORE = os.environ.get("SKIFFD_TEST_PAUSE_BEFORE", "")


async def _test_pause(point: str) -> None:
    if _TEST_PAUSE_BEFORE == point:
        log.warning("test hook: start paused before %s", point)
        await asyncio.sleep(3600)


class ContainerService:
    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.store = ContainerStore(engine.root, engine.run_root)
        self.runtime: Runtime = choose(engine.cfg.runtime, engine.run_root)
        self.runtime_name = self.runtime.name
        self.cgroup_v2 = hostinfo.cgroup_version() == "2"
        # conmon lives in <parent>/conmon: the unified hierarchy on v2, systemd's named one on v1 (what systemd
        # uses to find a unit's processes), so that restarting the daemon's unit leaves the monitors alone.
        sysd = Path("/sys/fs/cgroup/systemd")
        self.monitor_cgroup: Path | None = (
            Path("/sys/fs/cgroup") / CGROUP_PARENT / "conmon" if self.cgroup_v2
            else (sysd / CGROUP_PARENT / "conmon" if sysd.is_dir() else None))
        self.active = 0  # containers starting or running: cgroup parents are only removed at zero
        self._warned_network = False
        self._tasks: set[asyncio.Task[Any]] = set()
        from skiffbox.guest.containers.exec import ExecManager

        self.execs = ExecManager(self)
        log.info("OCI runtime: %s %s (%s)%s", self.runtime.name, self.runtime.version, self.runtime.path,
                 " with the hybrid-cgroup workaround" if self.runtime.wrap_create else "")

    # ------------------------------------------------------------------------------------------
    # Engine hooks
    # ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Re-adopt running containers (their conmon survived us), finish interrupted work, apply restart policies."""
        ctrs = self.store.load()
        for c in ctrs:
            try:
                await self._recover(c)
            except Exception:
                log.exception("recovering container %s failed", c.id[:12])
        self._clean_stale_bundles()
        self._clean_stale_netns()
        for c in ctrs:
            if c.removed or c.running:
                continue
            pol = c.host_config.get("RestartPolicy", {}).get("Name")
            if pol == "always" or (pol == "unless-stopped" and not c.skiff.get("ManualStop")):
                # `always` comes back with the daemon even after a manual stop (Docker's rule).
                c.skiff.pop("ManualStop", None)
                self._spawn(self._restart_later(c, 0.0))
        self._cleanup_cgroup_parents()

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
        self._cleanup_cgroup_parents()

    def counts(self) -> dict[str, int]:
        running = paused = stopped = 0
        for c in self.store.all():
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

    def image_in_use(self, image_id: str) -> bool:
        return any(c.rec.get("Image") == image_id for c in self.store.all())

    async def disk_usage(self) -> dict[str, Any]:
        out = []
        for c in self.store.all():
            out.append(views.summary(c, await self._sizes(c)))
        return {"Containers": out}

    # ------------------------------------------------------------------------------------------
    # Lookups
    # ------------------------------------------------------------------------------------------

    def get(self, ref: str) -> Container:
        return self.store.get(ref)

    def save(self, c: Container) -> None:
        self.store.save(c)

    async def _sizes(self, c: Container) -> tuple[int, int]:
        from skiffbox.guest.images.layers import dir_size

        rw = await asyncio.to_thread(dir_size, c.upper)
        base = 0
        for d in c.skiff.get("LowerDirs") or []:
            base += await asyncio.to_thread(dir_size, Path(d))
        return rw, rw + base

    async def list(self, *, all_: bool, limit: int | None, size: bool, filters: dict[str, list[str]]) -> list[dict]:
        views.validate_filters(filters)
        image_ids = None
        if "ancestor" in filters:
            image_ids = set()
            for ref in filters["ancestor"]:
                if self.engine.images is not None:
                    try:
                        img = await self.engine.images.resolve(ref)
                        image_ids.add(img.id)
                        continue
                    except EngineError:
                        pass
                image_ids.update(c.rec.get("Image") for c in self.store.all() if c.config.get("Image") == ref)
        before = since = None
        if filters.get("before"):
            before = views.created_ts(self.get(filters["before"][0]))
        if filters.get("since"):
            since = views.created_ts(self.get(filters["since"][0]))
        if limit is not None and limit > 0:
            all_ = True
        show_all = all_ or bool(set(filters) & {"status", "exited"})
        ctrs = sorted(self.store.all(), key=views.created_ts, reverse=True)
        out = []
        for c in ctrs:
            if not show_all and views.state_name(c) not in ("running", "paused", "restarting"):
                continue
            if not views.matches(c, filters, image_ids, before, since):
                continue
            out.append(views.summary(c, await self._sizes(c) if size else None))
            if limit is not None and limit > 0 and len(out) >= limit:
                break
        return out

    async def inspect(self, ref: str, size: bool = False) -> dict[str, Any]:
        c = self.get(ref)
        return views.inspect(c, await self._sizes(c) if size else None, sorted(c.exec_ids) or None)

    # ------------------------------------------------------------------------------------------
    # Create
    # ------------------------------------------------------------------------------------------

    async def create(self, body: dict[str, Any], name: str | None = None, platform: str | None = None) -> tuple[Container, list[str]]:
        config, hc, networking = split_create_body(body)
        requested = dict(config)  # the network-mode checks look at the request's own ports, not the image's EXPOSE
        ref = config.get("Image") or ""
        if not ref:
            raise InvalidParameter("config cannot be empty in order to create a container")
        if self.engine.images is None:
            raise no_such_image(ref)
        img = await self.engine.images.resolve(ref)
        icfg = img.config or {}
        platforms.check_runnable(platforms.normalize(str(icfg.get("os") or ""), str(icfg.get("architecture") or ""),
                                                     str(icfg.get("variant") or "")))
        warnings: list[str] = []
        config = merge_image_config(config, (img.config or {}).get("config") or {})
        config["Image"] = ref
        hc = normalize_host_config(hc, self.runtime.name)
        spec.command_line(config)  # "no command specified" now, not at start
        spec.capabilities(hc.get("CapAdd"), hc.get("CapDrop"), bool(hc.get("Privileged")))
        if hc.get("Memory") and not os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes") and not self.cgroup_v2:
            warnings.append("Your kernel does not support swap limit capabilities or the cgroup is not mounted. "
                            "Memory limited without swap.")
        nets = self.engine.networks
        if nets is not None and hasattr(nets, "validate"):
            warnings += nets.validate(hc, (networking.get("EndpointsConfig") or None), requested) or []
        cid = self.store.new_id()
        cname = self.store.reserve_name(name, cid)
        try:
            if not config.get("Hostname"):
                net = hc.get("NetworkMode") or ""
                config["Hostname"] = etcfiles.host_hostname() if net == "host" else cid[:12]
            args = spec.command_line(config)
            net_mode = hc["NetworkMode"]
            endpoints = dict((networking.get("EndpointsConfig") or {}))
            if "default" in endpoints:
                endpoints[net_mode if net_mode not in ("default",) else "bridge"] = endpoints.pop("default")
            if not endpoints and net_mode not in ("none", "host") and not net_mode.startswith("container:"):
                endpoints[net_mode] = {}
            rec: dict[str, Any] = {
                "Id": cid,
                "Created": now_rfc3339(),
                "Path": args[0],
                "Args": args[1:],
                "State": {"Status": "created", "Running": False, "Paused": False, "Restarting": False,
                          "OOMKilled": False, "Dead": False, "Pid": 0, "ExitCode": 0, "Error": "",
                          "StartedAt": "0001-01-01T00:00:00Z", "FinishedAt": "0001-01-01T00:00:00Z"},
                "Image": img.id,
                "Name": "/" + cname,
                "RestartCount": 0,
                "Config": config,
                "HostConfig": hc,
                "NetworkSettings": _empty_network_settings(endpoints),
                "Mounts": [],
                "Skiff": {"LowerDirs": [str(p) for p in img.layer_dirs()], "Platform": platform or ""},
            }
            if config.get("Healthcheck") and (config["Healthcheck"].get("Test") or [""])[0] not in ("NONE",):
                rec["State"]["Health"] = {"Status": "starting", "FailingStreak": 0, "Log": []}
            data_dir = self.store.root / cid
            c = Container(rec, data_dir, self.store.run_root / cid)
            for d in (c.upper, c.work):
                d.mkdir(parents=True, exist_ok=True)
            os.chmod(data_dir, 0o710)
            etcfiles.make_init_layer(c.init_layer, bool(hc.get("Init")))
            c.log_path.touch(mode=0o600)
            self.store.save(c)
            self.store.add(c)
            vols = self.engine.volumes
            if vols is not None and hasattr(vols, "prepare"):
                await vols.prepare(c)
                c.rec["Mounts"] = vols.mountpoints(c)
                self.store.save(c)
        except BaseException:
            self.store.drop(c) if "c" in locals() else None
            self.store.release_name(cname)
            shutil.rmtree(self.store.root / cid, ignore_errors=True)
            raise
        self._event(c, "create")
        return c, warnings

    # ------------------------------------------------------------------------------------------
    # Start
    # ------------------------------------------------------------------------------------------

    async def start_container(self, ref: str) -> None:
        c = self.get(ref)
        async with c.lock:
            if c.removed or c.state.get("Status") == "removing":
                raise Conflict(f"container {c.id} is marked for removal and cannot be started")
            if c.paused:
                raise Conflict("cannot start a paused container, try unpause instead")
            if c.running:
                raise NotModified("container already started")
            c.skiff.pop("ManualStop", None)
            await self._start_locked(c)

    async def _start_locked(self, c: Container) -> None:
        hc = c.host_config
        self.active += 1
        launched = None
        c.skiff["TornDown"] = False
        t0 = time.monotonic()
        marks: list[tuple[str, float]] = []
        try:
            await self._mount(c)
            marks.append(("mount", time.monotonic()))
            netns_path, net = await self._setup_network(c)
            marks.append(("network", time.monotonic()))
            self._write_etc(c, net)
            extra = spec.bind_mounts(hc)
            if self.engine.volumes is not None and hasattr(self.engine.volumes, "mounts_for"):
                extra += await self.engine.volumes.mounts_for(c, c.rootfs)
                c.rec["Mounts"] = self.engine.volumes.mountpoints(c)
            user = spec.resolve_user(c.rootfs, c.config.get("User") or "", hc.get("GroupAdd"))
            inputs = spec.SpecInputs(
                rootfs=c.rootfs, cgroup_path=self._cgroup_path(c), hostname_file=c.dir / "hostname",
                hosts_file=c.dir / "hosts", resolv_file=c.dir / "resolv.conf", netns_path=netns_path,
                extra_mounts=extra, cgroup_v2=self.cgroup_v2,
                init_binary=spec.init_binary() if hc.get("Init") else None,
            )
            self._namespace_paths(c, inputs)
            oci = spec.build_spec(c.rec, user, inputs)
            c.bundle.mkdir(parents=True, exist_ok=True)
            for stale in ("attach", "ctl", "winsz", "oom", "pidfile", "conmon.pid"):
                (c.bundle / stale).unlink(missing_ok=True)
            shutil.rmtree(monitor.exit_dir(c.bundle), ignore_errors=True)
            atomic_write_json(c.bundle / "config.json", oci)
            cfg = c.config
            stdin = bool(cfg.get("OpenStdin"))
            log_max = _log_size_max(hc)
            # From here on a process may exist that outlives us: a daemon killed before the record says
            # `running` finds this marker and asks conmon and the runtime what became of the start (_recover_start).
            c.skiff.update(Starting=True, Runtime=self.runtime.name, Bundle=str(c.bundle))
            self.store.save(c)
            marks.append(("spec", time.monotonic()))
            await _test_pause("launch")
            launched = await monitor.launch(
                self.runtime, c.id, c.name, c.bundle, str(c.log_path) if hc["LogConfig"]["Type"] != "none" else None,
                tty=bool(cfg.get("Tty")), stdin=stdin, leave_stdin_open=stdin and not cfg.get("StdinOnce"),
                log_size_max=log_max, monitor_cgroup=self.monitor_cgroup, argv0=(oci["process"]["args"] or [""])[0])
            c.watch = monitor.ExitWatch(launched.conmon_pid)
            # Attach clients that came before start connect now, so they see every byte of output.
            for fut in c.attachers:
                if not fut.done():
                    try:
                        fut.set_result(monitor.connect_attach(c.bundle))
                    except OSError as e:
                        fut.set_exception(e)
            c.attachers.clear()
            size = hc.get("ConsoleSize") or [0, 0]
            if cfg.get("Tty") and size and size[0] and size[1]:
                monitor.write_ctl(c.bundle, 1, int(size[0]), int(size[1]))
            marks.append(("create", time.monotonic()))
            if self.engine.networks is not None and hasattr(self.engine.networks, "ready"):
                await self.engine.networks.ready(c)  # netavark ran alongside everything since _setup_network
                marks.append(("network ready", time.monotonic()))
            await _test_pause("start")
            await self.runtime.start(c.id)
            marks.append(("start", time.monotonic()))
            await _test_pause("running-saved")
        except BaseException as e:
            if c.watch is not None:
                c.watch.close()
                c.watch = None
            if launched is not None:
                signal_pid(launched.pid, _signal.SIGKILL)
            await self._teardown(c)
            self.active -= 1
            msg = e.message if isinstance(e, EngineError) else str(e)
            never_ran = c.state.get("StartedAt", "").startswith("0001")
            code = error_exit_code(msg)
            c.state.update(Status="created" if never_ran else "exited", Running=False, Pid=0, Error=msg,
                           ExitCode=code)
            c.skiff.pop("Starting", None)
            self.store.save(c)
            for fut in c.attachers:
                if not fut.done():
                    fut.set_result(None)
            c.attachers.clear()
            # Waits for the next exit stay pending, as with dockerd: the process never ran, so it did not exit (the
            # CLI set one up before `start` and would print its error next to the start's).
            if hc.get("AutoRemove"):
                self._spawn(self._auto_remove(c))  # the CLI waits for the removal after a failed start
            if isinstance(e, RuntimeError_) and code in (126, 127):
                raise InvalidParameter(msg) from e  # a command that cannot run is the request's fault (Docker: 400)
            if isinstance(e, (EngineError, asyncio.CancelledError)):
                raise
            if isinstance(e, OSError):
                raise RuntimeError_(msg) from e
            raise
        c.state.update(Status="running", Running=True, Paused=False, Restarting=False, OOMKilled=False, Dead=False,
                       Pid=launched.pid, ExitCode=0, Error="", StartedAt=now_rfc3339())
        c.skiff.update(ConmonPid=launched.conmon_pid, PidStart=monitor.proc_start_time(launched.pid),
                       Runtime=self.runtime.name, Bundle=str(c.bundle), Netns=netns_path)
        c.skiff.pop("Starting", None)
        if c.state.get("Health") is not None:
            c.state["Health"] = {"Status": "starting", "FailingStreak": 0, "Log": []}
        self.store.save(c)
        c.exit_task = self._spawn(self._watch_exit(c))
        self._event(c, "start")
        if log.isEnabledFor(logging.DEBUG):
            prev, parts = t0, []
            for name, t in marks:
                parts.append(f"{name} {1000 * (t - prev):.1f}")
                prev = t
            log.debug("started %s in %.1f ms (%s)", c.id[:12], 1000 * (time.monotonic() - t0), ", ".join(parts))
        self._start_health(c)

    def _cgroup_path(self, c: Container) -> str:
        parent = c.host_config.get("CgroupParent") or f"/{CGROUP_PARENT}"
        if not parent.startswith("/"):
            parent = "/" + parent
        return f"{parent.rstrip('/')}/{c.id}"

    def _namespace_paths(self, c: Container, inputs: spec.SpecInputs) -> None:
        hc = c.host_config
        for key, attr, ns in (("IpcMode", "ipc_path", "ipc"), ("PidMode", "pid_path", "pid")):
            mode = hc.get(key) or ""
            if mode.startswith("container:"):
                other = self.get(mode.split(":", 1)[1])
                if not other.running:
                    raise Conflict(f"cannot join {ns} namespace of a non running container: {other.id}")
                setattr(inputs, attr, f"/proc/{other.state['Pid']}/ns/{ns}")

    async def _mount(self, c: Container) -> None:
        if rootfs.is_mountpoint(c.rootfs):
            return
        lowers = [Path(p) for p in c.skiff.get("LowerDirs") or []]
        if lowers and not all(p.is_dir() for p in lowers):
            # The image store may have moved things: ask it again.
            img = await self.engine.images.resolve(c.rec["Image"])
            lowers = list(img.layer_dirs())
            c.skiff["LowerDirs"] = [str(p) for p in lowers]
        c.bundle.mkdir(parents=True, exist_ok=True)
        rootfs.mount_overlay(lowers + [c.init_layer], c.upper, c.work, c.rootfs, c.dir / "fs" / "empty")

    def _unmount(self, c: Container) -> None:
        if c.mount_refs > 0:
            return
        try:
            rootfs.umount(str(c.rootfs))
        except OSError as e:
            log.warning("unmounting %s: %s", c.rootfs, e)

    async def _setup_network(self, c: Container) -> tuple[str | None, dict[str, Any] | None]:
        mode = c.host_config.get("NetworkMode") or "bridge"
        nets = self.engine.networks
        if mode.startswith("container:"):
            other = self.get(mode.split(":", 1)[1])
            if not other.running:
                raise Conflict(f"cannot join network of a non running container: {other.id}")
            # Its names too, as dockerd does at start (a hostname of its own is refused at create).
            c.config["Hostname"] = other.config.get("Hostname") or other.id[:12]
            c.config["Domainname"] = other.config.get("Domainname") or ""
            return other.netns_path or f"/proc/{other.state['Pid']}/ns/net", {"from": other}
        if nets is None or not hasattr(nets, "setup"):
            if not self._warned_network and mode not in ("none", "host"):
                log.warning("no network service: containers on %r get loopback only", mode)
                self._warned_network = True
            return None, None
        if mode == "host":
            result = await nets.setup(c, None) or {}
            self._apply_net_result(c, result)
            return None, result
        # `none` too gets its netns file and the network service's answer (its hosts entries, --add-host with
        # host-gateway resolved, and its NetworkSettings), as Docker gives `none` a sandbox.
        path = self._netns_path(c)
        netns.create(path, loopback_up=True)  # a thread start and join: well under a millisecond
        c.skiff["Netns"] = str(path)
        self.store.save(c)
        try:
            # Returns once addresses, ports and names are decided; netavark plumbs on while the rest of the start
            # (etc files, spec, conmon + `runtime create`) goes on: `ready()` before `runtime start` waits for it.
            result = await nets.setup(c, str(path), background=True) or {}
        except BaseException:
            netns.remove(path)
            c.skiff.pop("Netns", None)
            raise
        self._apply_net_result(c, result)
        ns = c.rec["NetworkSettings"]
        ns["SandboxKey"] = str(path)
        ns["SandboxID"] = c.id[:12]
        return str(path), result

    def _netns_path(self, c: Container) -> Path:
        """The container's netns file (like Podman's `/run/netns/netns-…`): netavark needs the netns before the
        container starts, so it is made here and the runtime joins it."""
        return self.engine.run_root / "netns" / f"skiff-{c.id[:12]}"

    def _apply_net_result(self, c: Container, result: dict[str, Any]) -> None:
        ns = c.rec.setdefault("NetworkSettings", _empty_network_settings({}))
        if result.get("networks") is not None:
            ns["Networks"] = result["networks"]
            _legacy_fields(ns)
        if result.get("ports") is not None:
            ns["Ports"] = result["ports"]

    def _write_etc(self, c: Container, net: dict[str, Any] | None) -> None:
        """hostname, hosts, resolv.conf. The hosts entries (--add-host, links, the container's own address) are
        the network service's: they are listed once, from there."""
        cfg, hc = c.config, c.host_config
        mode = hc.get("NetworkMode") or "bridge"
        etcfiles.write_hostname(c.dir / "hostname", cfg.get("Hostname") or c.id[:12])
        if net and "from" in net:
            other: Container = net["from"]
            for n in ("hosts", "resolv.conf"):
                try:
                    shutil.copyfile(other.dir / n, c.dir / n)
                except OSError:
                    pass
            return
        entries = list((net or {}).get("hosts") or [])
        hosts = None
        if mode == "host" and not entries:
            # Docker's rule: the host's own file, unless --add-host asks for entries (then a fresh one).
            try:
                hosts = Path("/etc/hosts").read_text()
            except OSError:
                pass
        etcfiles.write_hosts(c.dir / "hosts", hosts if hosts is not None else etcfiles.hosts_text(entries))
        provided = (net or {}).get("resolv_conf")
        etcfiles.write_hosts(c.dir / "resolv.conf", etcfiles.resolv_text(hc, mode, provided))

    # ------------------------------------------------------------------------------------------
    # Exit and teardown
    # ------------------------------------------------------------------------------------------

    async def _watch_exit(self, c: Container) -> None:
        w = c.watch
        if w is None:
            return
        await w.future
        async with c.lock:
            if c.watch is not w:
                return
            c.watch = None
            await self._handle_exit(c)

    async def _handle_exit(self, c: Container, code: int | None = None) -> None:
        if code is None:
            code = monitor.read_exit(c.bundle, c.id)
        if code is None:
            code = 255  # conmon died without recording it (SIGKILL, reboot)
        oom = monitor.oom_killed(c.bundle)
        t0 = time.monotonic()
        self._stop_health(c)
        await self.execs.container_stopped(c)
        await self._teardown(c)
        self.active = max(0, self.active - 1)
        manual = bool(c.skiff.get("ManualStop"))
        c.state.update(Status="exited", Running=False, Paused=False, Restarting=False, Pid=0, ExitCode=code,
                       OOMKilled=oom, FinishedAt=now_rfc3339())
        if c.state.get("Health") is not None:
            c.state["Health"]["Status"] = "unhealthy" if c.state["Health"].get("Status") == "unhealthy" else c.state["Health"]["Status"]
        self.store.save(c)
        if oom:
            self._event(c, "oom")
        self._event(c, "die", exitCode=str(code))
        log.debug("exit of %s handled in %.1f ms", c.id[:12], 1000 * (time.monotonic() - t0))
        self._resolve_exit(c, code, None)
        delay = self._restart_delay(c, code, manual)
        if delay is not None:
            c.state.update(Status="restarting", Restarting=True)
            self.store.save(c)
            c.restart_task = self._spawn(self._restart_later(c, delay))
        elif c.host_config.get("AutoRemove"):
            self._spawn(self._auto_remove(c))
        self._cleanup_cgroup_parents()

    def _restart_delay(self, c: Container, code: int, manual: bool) -> float | None:
        from skiffbox.guest.containers.restart import restart_delay

        return restart_delay(c, code, manual)

    async def _restart_later(self, c: Container, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        async with c.lock:
            if c.removed or c.running or c.skiff.get("ManualStop"):
                if c.state.get("Restarting"):
                    c.state.update(Status="exited", Restarting=False)
                    self.store.save(c)
                return
            if delay:
                c.rec["RestartCount"] = int(c.rec.get("RestartCount") or 0) + 1
            try:
                await self._start_locked(c)
                if delay:
                    self._event(c, "restart")
            except Exception as e:
                log.warning("restarting %s failed: %s", c.name, e)
                c.state.update(Status="exited", Restarting=False)
                self.store.save(c)

    async def _auto_remove(self, c: Container) -> None:
        try:
            await self.remove(c.id, force=True, volumes=True, background=True)
        except NotFound:
            pass
        except Exception:
            log.exception("auto-removing %s failed", c.id[:12])

    async def _teardown(self, c: Container) -> None:
        """Runtime state, cgroups, network, rootfs: everything a stopped container must not hold.
        The runtime and network parts are independent and run concurrently; all of it is idempotent."""
        if c.skiff.get("TornDown") and not rootfs.is_mountpoint(c.rootfs):
            return
        await asyncio.gather(self._runtime_delete(c), self._network_teardown(c))
        _clear_endpoints(c.rec.get("NetworkSettings") or {})
        if self.engine.volumes is not None and hasattr(self.engine.volumes, "release"):
            try:
                await self.engine.volumes.release(c)
            except Exception:
                log.exception("releasing volumes of %s failed", c.id[:12])
        self._unmount(c)
        for n in ("attach", "ctl", "winsz"):
            try:
                (c.bundle / n).unlink()
            except OSError:
                pass
        c.skiff["TornDown"] = True

    async def _network_teardown(self, c: Container) -> None:
        path = c.skiff.get("Netns")
        mode = c.host_config.get("NetworkMode") or ""
        if path and not mode.startswith("container:"):
            if self.engine.networks is not None and hasattr(self.engine.networks, "teardown"):
                try:
                    await self.engine.networks.teardown(c, path)
                except Exception:
                    log.exception("network teardown of %s failed", c.id[:12])
            netns.remove(Path(path))
            c.skiff.pop("Netns", None)

    async def _runtime_delete(self, c: Container) -> None:
        """`runtime delete` for the runtime's state, then the cgroup dirs it may leave."""
        state_dir = self.runtime.root / c.id
        if state_dir.exists():
            pid = int(c.state.get("Pid") or 0)
            alive = pid and monitor.process_alive(pid) and monitor.proc_start_time(pid) == c.skiff.get("PidStart")
            if alive or (c.host_config.get("PidMode") or "") == "host":
                try:
                    await self.runtime.delete(c.id, force=True)
                except Exception as e:
                    log.warning("runtime delete %s: %s", c.id[:12], e)
            else:
                self.runtime.forget(c.id)  # nothing runs any more: no `runtime delete` process needed
        # The kernel may still be reaping the rest of the pid namespace: retry while the cgroup is busy.
        for _ in range(200):
            if not _remove_cgroup(self._cgroup_path(c), self.cgroup_v2):
                break
            await asyncio.sleep(0.01)
        else:
            log.warning("cgroup of %s is still busy", c.id[:12])

    def _cleanup_cgroup_parents(self) -> None:
        if self.active > 0:
            return
        for c in self.store.all():
            if c.running:
                return
        if self.monitor_cgroup is not None:
            try:
                self.monitor_cgroup.rmdir()
            except OSError:
                pass
        _remove_cgroup(f"/{CGROUP_PARENT}", self.cgroup_v2)

    def _resolve_exit(self, c: Container, code: int, error: str | None) -> None:
        res = {"StatusCode": code, "Error": {"Message": error} if error else None}
        waiters, c.exit_waiters = c.exit_waiters, []
        for f in waiters:
            if not f.done():
                f.set_result(res)

    # ------------------------------------------------------------------------------------------
    # Recovery after a daemon restart
    # ------------------------------------------------------------------------------------------

    async def _recover(self, c: Container) -> None:
        sk = c.skiff
        if sk.get("Removing"):
            await self._finish_remove(c, volumes=bool(sk.get("RemoveVolumes")))
            return
        if c.state.get("Restarting"):
            c.state.update(Status="exited", Restarting=False)
            self.store.save(c)
        if sk.get("Starting") and not c.running and not await self._recover_start(c):
            return
        if not c.running:
            if rootfs.is_mountpoint(c.rootfs) and c.mount_refs == 0:
                self._unmount(c)
            return
        conmon_pid = int(sk.get("ConmonPid") or 0)
        if conmon_pid and monitor.process_alive(conmon_pid, c.id):
            self.active += 1
            c.watch = monitor.ExitWatch(conmon_pid)
            c.exit_task = self._spawn(self._watch_exit(c))
            self._start_health(c)
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
        self.active += 1
        await self._handle_exit(c, code)

    async def _recover_start(self, c: Container) -> bool:
        """The daemon died in the middle of a start (the record still says `Starting`). If the process got to run
        (the runtime released it: its state is running or stopped), the record is made `running` and True is
        returned: the caller re-adopts it (conmon alive) or records its exit. Otherwise whatever the start had
        made (a `runtime create`d init, conmon, cgroup, netns, network endpoint, rootfs mount) is undone and the
        container is `created` again (or `exited` if it had run before)."""
        state_dir = self.runtime.root / c.id
        conmons = monitor.find_conmons(c.id)
        st = await self.runtime.state(c.id) if state_dir.exists() else None
        deadline = time.monotonic() + 10
        while st is None and conmons and time.monotonic() < deadline:
            # conmon may still be running `runtime create`: wait until the container exists or conmon gives up.
            await asyncio.sleep(0.05)
            conmons = [p for p in conmons if monitor.process_alive(p, c.id)]
            st = await self.runtime.state(c.id) if state_dir.exists() else None
        status = (st or {}).get("status")
        released = not (state_dir / "exec.fifo").exists()
        if status in ("running", "paused", "stopped") and released:
            pid = int((st or {}).get("pid") or 0) or _read_int(c.bundle / "pidfile")
            conmon_pid = _read_int(c.bundle / "conmon.pid") or (conmons[0] if conmons else 0)
            c.state.update(Status="running", Running=True, Paused=False, Restarting=False, OOMKilled=False,
                           Dead=False, Pid=pid, ExitCode=0, Error="", StartedAt=now_rfc3339())
            c.skiff.update(ConmonPid=conmon_pid, PidStart=monitor.proc_start_time(pid) if pid else None)
            c.skiff.pop("Starting", None)
            if c.state.get("Health") is not None:
                c.state["Health"] = {"Status": "starting", "FailingStreak": 0, "Log": []}
            self.store.save(c)
            log.info("container %s was started when the daemon stopped: it runs", c.id[:12])
            return True
        # It never ran: the init `runtime create` made (if any) goes, and conmon with it.
        if st is not None:
            await self.runtime.delete(c.id, force=True)
        for p in conmons:
            if monitor.process_alive(p, c.id):
                signal_pid(p, _signal.SIGKILL)
        for _ in range(100):
            if not any(monitor.process_alive(p, c.id) for p in conmons):
                break
            await asyncio.sleep(0.05)
        c.state["Pid"] = 0
        await self._teardown(c)
        never_ran = c.state.get("StartedAt", "").startswith("0001")
        c.state.update(Status="created" if never_ran else "exited", Running=False, Paused=False, Restarting=False)
        c.skiff.pop("Starting", None)
        self.store.save(c)
        log.info("container %s was being started when the daemon stopped: start undone", c.id[:12])
        return False

    def _clean_stale_bundles(self) -> None:
        for d in self.store.run_root.iterdir():
            if d.name not in self.store.by_id:
                if rootfs.is_mountpoint(d / "rootfs"):
                    try:
                        rootfs.umount(str(d / "rootfs"))
                    except OSError:
                        continue
                shutil.rmtree(d, ignore_errors=True)

    def _clean_stale_netns(self) -> None:
        d = self.engine.run_root / "netns"
        if not d.is_dir():
            return
        used = {c.skiff.get("Netns") for c in self.store.all()}
        for p in d.iterdir():
            if str(p) not in used:
                netns.remove(p)

    # ------------------------------------------------------------------------------------------
    # Stop, kill, restart, pause
    # ------------------------------------------------------------------------------------------

    def exit_future(self, c: Container) -> asyncio.Future[dict[str, Any]]:
        f: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        c.exit_waiters.append(f)
        return f

    async def _signal(self, c: Container, sig: int) -> None:
        pid = int(c.state.get("Pid") or 0)
        if not (pid and signal_pid(pid, sig)):
            await self.runtime.kill(c.id, sig)
        if c.paused and sig == _signal.SIGKILL:
            await self.runtime.resume(c.id)

    async def stop(self, ref: str, timeout: int | None = None, sig: str | None = None) -> None:
        c = self.get(ref)
        async with c.lock:
            if c.restart_task is not None and not c.restart_task.done() and not c.running:
                c.skiff["ManualStop"] = True
                c.restart_task.cancel()
                c.state.update(Status="exited", Restarting=False)
                self.store.save(c)
                return
            if not c.running:
                raise NotModified("container already stopped")
            c.skiff["ManualStop"] = True
            self.store.save(c)
            stop_sig = spec.parse_signal(sig or c.config.get("StopSignal"), _signal.SIGTERM)
            if timeout is None:
                timeout = c.config.get("StopTimeout")
            if timeout is None:
                timeout = DEFAULT_STOP_TIMEOUT
            fut = self.exit_future(c)
            await self._signal(c, stop_sig)
            if c.paused:
                await self.runtime.resume(c.id)
            self._event(c, "kill", signal=str(stop_sig))
        try:
            if timeout < 0:
                await fut
            else:
                await asyncio.wait_for(asyncio.shield(fut), timeout)
        except asyncio.TimeoutError:
            log.info("container %s did not stop after %ss, killing it", c.id[:12], timeout)
            async with c.lock:
                if c.running:
                    await self._signal(c, _signal.SIGKILL)
                    self._event(c, "kill", signal=str(int(_signal.SIGKILL)))
            await fut
        self._event(c, "stop")

    async def kill(self, ref: str, sig: str | None = None) -> None:
        c = self.get(ref)
        async with c.lock:
            if not c.running:
                raise Conflict(f"cannot kill container: {c.id}: container {c.id} is not running")
            s = spec.parse_signal(sig, _signal.SIGKILL)
            if s in (_signal.SIGKILL, _signal.SIGTERM, _signal.SIGINT):
                # Docker counts these as "stopped by the user" for restart policies; others (HUP) are not.
                pass
            await self._signal(c, s)
            self._event(c, "kill", signal=str(s))
        if s == _signal.SIGKILL:
            fut = self.exit_future(c) if c.running else None
            if fut is not None:
                try:
                    await asyncio.wait_for(fut, 10)
                except asyncio.TimeoutError:
                    pass

    async def restart(self, ref: str, timeout: int | None = None, sig: str | None = None) -> None:
        c = self.get(ref)
        if c.running:
            try:
                await self.stop(ref, timeout, sig)
            except NotModified:
                pass
        async with c.lock:
            if c.running:
                return
            c.skiff.pop("ManualStop", None)
            if c.restart_task is not None and not c.restart_task.done():
                c.restart_task.cancel()
            await self._start_locked(c)
        self._event(c, "restart")

    async def pause(self, ref: str) -> None:
        c = self.get(ref)
        async with c.lock:
            if not c.running:
                raise Conflict(f"Container {c.id} is not running")
            if c.paused:
                raise Conflict(f"Container {c.id} is already paused")
            await self.runtime.pause(c.id)
            c.state.update(Status="paused", Paused=True)
            self.store.save(c)
            self._event(c, "pause")

    async def unpause(self, ref: str) -> None:
        c = self.get(ref)
        async with c.lock:
            if not c.paused:
                raise Conflict(f"Container {c.id} is not paused")
            await self.runtime.resume(c.id)
            c.state.update(Status="running", Paused=False)
            self.store.save(c)
            self._event(c, "unpause")

    async def rename(self, ref: str, new_name: str) -> None:
        c = self.get(ref)
        if not new_name:
            raise InvalidParameter("Neither old nor new names may be empty")
        new_name = new_name.lstrip("/")
        if new_name == c.name:
            raise InvalidParameter("Renaming a container with the same name as its current name")
        old = c.name
        self.store.reserve_name(new_name, c.id)
        self.store.release_name(old)
        c.rec["Name"] = "/" + new_name
        self.store.save(c)
        self._event(c, "rename", oldName="/" + old)

    async def update(self, ref: str, body: dict[str, Any]) -> list[str]:
        c = self.get(ref)
        hc = c.host_config
        res_keys = ("Memory", "MemorySwap", "MemoryReservation", "NanoCpus", "CpuShares", "CpuPeriod", "CpuQuota",
                    "CpusetCpus", "CpusetMems", "PidsLimit", "BlkioWeight")
        async with c.lock:
            new = dict(hc)
            for k in res_keys:
                if k in body and body[k] not in (None,):
                    if body[k] == 0 and k not in ("PidsLimit",):
                        continue
                    new[k] = body[k]
            if body.get("RestartPolicy") and body["RestartPolicy"].get("Name"):
                if hc.get("AutoRemove") and body["RestartPolicy"]["Name"] != "no":
                    raise InvalidParameter("Restart policy cannot be updated because AutoRemove is enabled for the container")
                new["RestartPolicy"] = {"Name": body["RestartPolicy"]["Name"],
                                        "MaximumRetryCount": int(body["RestartPolicy"].get("MaximumRetryCount") or 0)}
            if c.running:
                resources = spec._resources(new, self.cgroup_v2)
                resources.pop("devices", None)
                await self.runtime.update(c.id, resources)
            c.rec["HostConfig"] = new
            self.store.save(c)
            self._event(c, "update")
        return []

    # ------------------------------------------------------------------------------------------
    # Remove, prune
    # ------------------------------------------------------------------------------------------

    async def remove(self, ref: str, force: bool = False, volumes: bool = False, background: bool = False) -> None:
        c = self.get(ref)
        if c.running or (c.restart_task is not None and not c.restart_task.done()):
            if not force:
                if c.paused:
                    raise Conflict(f"cannot remove container \"/{c.name}\": container is paused and must be unpaused first")
                raise Conflict(f"cannot remove container \"/{c.name}\": container is running: stop the container "
                               "before removing or force remove")
            c.skiff["ManualStop"] = True
            if c.restart_task is not None:
                c.restart_task.cancel()
            if c.running:
                fut = self.exit_future(c)
                async with c.lock:
                    if c.running:
                        await self._signal(c, _signal.SIGKILL)
                        self._event(c, "kill", signal="9")
                    else:
                        fut.cancel()
                if not fut.cancelled():
                    try:
                        await asyncio.wait_for(fut, 30)
                    except asyncio.TimeoutError:
                        raise Conflict(f"could not kill running container {c.id}, cannot remove") from None
        async with c.lock:
            if c.removed:
                return
            if c.running:
                raise Conflict(f"cannot remove container \"/{c.name}\": container is running")
            c.state["Status"] = "removing"
            c.skiff["Removing"] = True
            c.skiff["RemoveVolumes"] = volumes
            self.store.save(c)
            await self._finish_remove(c, volumes, background)

    async def _finish_remove(self, c: Container, volumes: bool, background: bool = False) -> None:
        await self.execs.container_removed(c)
        c.mount_refs = 0
        await self._teardown(c)
        if self.engine.volumes is not None and hasattr(self.engine.volumes, "forget"):
            try:
                await self.engine.volumes.forget(c, volumes)
            except Exception:
                log.exception("releasing volumes of %s failed", c.id[:12])
        c.removed = True
        for fut in c.attachers:
            if not fut.done():
                fut.set_result(None)
        c.attachers.clear()
        self.store.drop(c)
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
            self._spawn(cleanup())
        else:
            await cleanup()
        self._event(c, "destroy")
        res = {"StatusCode": int(c.state.get("ExitCode") or 0), "Error": None}
        self._resolve_exit(c, res["StatusCode"], None)
        waiters, c.remove_waiters = c.remove_waiters, []
        for f in waiters:
            if not f.done():
                f.set_result(res)
        self._cleanup_cgroup_parents()

    async def prune(self, filters: dict[str, list[str]]) -> dict[str, Any]:
        until = parse_time(filters["until"][0]) if filters.get("until") else None
        deleted, reclaimed = [], 0
        from skiffbox.guest.api.filters import match_labels

        for c in list(self.store.all()):
            if c.running or views.state_name(c) in ("running", "paused", "restarting"):
                continue
            if until is not None and views.created_ts(c) >= until:
                continue
            labels = c.config.get("Labels") or {}
            if filters.get("label") and not match_labels(labels, filters["label"]):
                continue
            if filters.get("label!") and any(match_labels(labels, [l]) for l in filters["label!"]):
                continue
            size = (await self._sizes(c))[0]
            try:
                await self.remove(c.id)
            except (NotFound, Conflict):
                continue
            deleted.append(c.id)
            reclaimed += size
        return {"ContainersDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    # ------------------------------------------------------------------------------------------
    # Wait, attach, logs, resize
    # ------------------------------------------------------------------------------------------

    def wait_future(self, ref: str, condition: str | None) -> asyncio.Future[dict[str, Any]]:
        """Registered before the response headers go out, so a `start` right after cannot be missed."""
        c = self.get(ref)
        cond = condition or "not-running"
        if cond not in ("not-running", "next-exit", "removed"):
            raise InvalidParameter(f"invalid condition: \"{cond}\"")
        loop = asyncio.get_running_loop()
        f: asyncio.Future[dict[str, Any]] = loop.create_future()
        if cond == "removed":
            c.remove_waiters.append(f)
        elif cond == "next-exit" or c.running or c.state.get("Restarting"):
            c.exit_waiters.append(f)
        else:
            f.set_result({"StatusCode": int(c.state.get("ExitCode") or 0), "Error": None})
        return f

    async def attach_socket(self, c: Container) -> "asyncio.Future[Any]":
        """A future for conmon's attach socket: now if running, else when the container starts."""
        f: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if c.running:
            try:
                f.set_result(monitor.connect_attach(c.bundle))
            except OSError:
                f.set_result(None)
        else:
            c.attachers.append(f)
        return f

    def log_entries(self, c: Container, *, stdout: bool, stderr: bool, follow: bool, tail: int | None,
                    since: float | None, until: float | None) -> AsyncIterator[Any]:
        from skiffbox.guest.containers import logs

        if c.host_config.get("LogConfig", {}).get("Type") == "none":
            raise InvalidParameter('configured logging driver does not support reading')

        def done() -> bool:
            return c.removed or not (c.running or c.state.get("Restarting") or c.state.get("Status") == "created" and c.attachers)

        def wake() -> asyncio.Future[Any]:
            return self.exit_future(c)

        async def gen() -> AsyncIterator[Any]:
            async for e in logs.stream(c.log_path, tail=tail, since=since, until=until, follow=follow,
                                       done=done, wake=wake if follow else None):
                if (e.stream == 1 and stdout) or (e.stream == 2 and stderr):
                    yield e

        return gen()

    async def resize(self, ref: str, h: int, w: int) -> None:
        c = self.get(ref)
        if not c.running:
            raise Conflict(f"Container {c.id} is not running")
        if c.tty:
            monitor.write_ctl(c.bundle, 1, h, w)
        self._event(c, "resize", height=str(h), width=str(w))

    # ------------------------------------------------------------------------------------------
    # Rootfs access for stopped containers (cp, export)
    # ------------------------------------------------------------------------------------------

    async def acquire_rootfs(self, c: Container) -> Path:
        async with c.lock:
            if not rootfs.is_mountpoint(c.rootfs):
                await self._mount(c)
            c.mount_refs += 1
        return c.rootfs

    async def release_rootfs(self, c: Container) -> None:
        async with c.lock:
            c.mount_refs = max(0, c.mount_refs - 1)
            if c.mount_refs == 0 and not c.running and not c.removed:
                self._unmount(c)

    # ------------------------------------------------------------------------------------------
    # Health
    # ------------------------------------------------------------------------------------------

    def _start_health(self, c: Container) -> None:
        from skiffbox.guest.containers.health import HealthChecker

        hc = c.config.get("Healthcheck") or {}
        test = hc.get("Test") or []
        if not test or test[0] == "NONE":
            return
        self._stop_health(c)
        c.health_task = self._spawn(HealthChecker(self, c).run())

    def _stop_health(self, c: Container) -> None:
        if c.health_task is not None and not c.health_task.done():
            c.health_task.cancel()
        c.health_task = None

    # ------------------------------------------------------------------------------------------
    # helpers
    # ------------------------------------------------------------------------------------------

    def _event(self, c: Container, action: str, **attrs: str) -> None:
        self.engine.events.publish("container", action, c.id, c.attributes(**attrs))

    def event(self, c: Container, action: str, **attrs: str) -> None:
        self._event(c, action, **attrs)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)
        return t


def _remove_cgroup(path: str, v2: bool) -> bool:
    """rmdir the cgroup in every hierarchy (runc/crun leave the parents); True if one is still busy."""
    rel = path.strip("/")
    if v2:
        bases = [Path("/sys/fs/cgroup")]
    else:
        try:
            bases = [p for p in Path("/sys/fs/cgroup").iterdir() if p.is_dir() and not p.is_symlink()]
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


def _empty_network_settings(endpoints: dict[str, Any]) -> dict[str, Any]:
    nets = {}
    for name, ep in endpoints.items():
        ep = dict(ep or {})
        for k, v in (("IPAMConfig", None), ("Links", None), ("Aliases", None), ("MacAddress", ""), ("DriverOpts", None),
                     ("NetworkID", ""), ("EndpointID", ""), ("Gateway", ""), ("IPAddress", ""), ("IPPrefixLen", 0),
                     ("IPv6Gateway", ""), ("GlobalIPv6Address", ""), ("GlobalIPv6PrefixLen", 0), ("DNSNames", None)):
            ep.setdefault(k, v)
        nets[name] = ep
    ns = {"Bridge": "", "SandboxID": "", "SandboxKey": "", "HairpinMode": False, "LinkLocalIPv6Address": "",
          "LinkLocalIPv6PrefixLen": 0, "Ports": {}, "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None,
          "Networks": nets}
    _legacy_fields(ns)
    return ns


def _clear_endpoints(ns: dict[str, Any]) -> None:
    """A stopped container keeps its networks but not its addresses (as Docker shows it)."""
    for ep in (ns.get("Networks") or {}).values():
        if isinstance(ep, dict):
            ep.update(EndpointID="", Gateway="", IPAddress="", IPPrefixLen=0, IPv6Gateway="", GlobalIPv6Address="",
                      GlobalIPv6PrefixLen=0, MacAddress="")
    ns["Ports"] = {}
    ns["SandboxKey"] = ""
    _legacy_fields(ns)


def _legacy_fields(ns: dict[str, Any]) -> None:
    """The top-level IPAddress/Gateway/… fields mirror the `bridge` endpoint (older clients read them)."""
    ep = (ns.get("Networks") or {}).get("bridge") or {}
    for k, d in (("EndpointID", ""), ("Gateway", ""), ("GlobalIPv6Address", ""), ("GlobalIPv6PrefixLen", 0),
                 ("IPAddress", ""), ("IPPrefixLen", 0), ("IPv6Gateway", ""), ("MacAddress", "")):
        ns[k] = ep.get(k, d)


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


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text().strip() or "0")
    except (OSError, ValueError):
        return 0
