"""exec sessions: `conmon -e` per session, with the `--exec-attach` handshake (conmon_netavark.md §1.6):
start byte → attach pipe says the socket exists → optional resize → connect → second start byte → pid →
I/O → exit code on the sync pipe. The exit code is recorded before the client's stream is closed, because
the CLI inspects the exec right after the stream ends."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal as _signal
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skiffbox.guest.containers import attach as attach_mod
from skiffbox.guest.containers import monitor, spec, users
from skiffbox.guest.containers.runtime import signal_pid
from skiffbox.guest.containers.store import Container
from skiffbox.guest.errors import Conflict, EngineError, InvalidParameter, NotFound

if TYPE_CHECKING:
    from skiffbox.guest.containers.service import ContainerService

log = logging.getLogger("skiffd.exec")

_KEEP_FINISHED = 64  # finished sessions kept per container for inspect
# An exec the runtime could not start exits 126, found or not: moby sets 126 for every failed exec start
# (docker-py's suite checks it for a missing command); only `run` tells 127 (missing) from 126 (runtime.py).
_EXEC_FAILED = 126


@dataclass
class ExecSession:
    id: str
    ctr: Container
    cmd: list[str]
    tty: bool
    stdin: bool
    stdout: bool
    stderr: bool
    user: str
    env: list[str] | None
    workdir: str
    privileged: bool
    detach_keys: str
    console_size: list[int] | None
    running: bool = False
    started: bool = False
    exit_code: int | None = None
    pid: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)
    launch: monitor.ExecLaunch | None = None
    # The attached stream is raw (no 8-byte frames) when the START request says Tty, as in moby, whatever
    # the process's terminal: docker-py starts a TTY exec with Tty false and gets the TTY's bytes framed.
    raw_stream: bool | None = None

    @property
    def raw(self) -> bool:
        return self.tty if self.raw_stream is None else self.raw_stream

    @property
    def dir(self) -> Path:
        return self.ctr.bundle / "exec" / self.id[:16]

    def inspect(self) -> dict[str, Any]:
        return {
            "ID": self.id,
            "Running": self.running,
            "ExitCode": self.exit_code,
            "ProcessConfig": {"tty": self.tty, "entrypoint": self.cmd[0], "arguments": self.cmd[1:],
                              "privileged": self.privileged, "user": self.user},
            "OpenStdin": self.stdin,
            "OpenStderr": self.stderr,
            "OpenStdout": self.stdout,
            "CanRemove": False,
            "ContainerID": self.ctr.id,
            "DetachKeys": self.detach_keys,
            "Pid": self.pid,
        }


class ExecManager:
    def __init__(self, svc: "ContainerService") -> None:
        self.svc = svc
        self.sessions: dict[str, ExecSession] = {}

    # ------------------------------------------------------------------------------------------
    def create(self, ref: str, body: dict[str, Any]) -> ExecSession:
        c = self.svc.get(ref)
        if not c.running:
            raise Conflict(f"container {c.id} is not running")
        if c.paused:
            raise Conflict(f"container {c.id} is paused, unpause the container before exec")
        cmd = body.get("Cmd") or []
        if isinstance(cmd, str):
            cmd = [cmd]
        if not cmd:
            raise InvalidParameter("No exec command specified")
        # Go decodes JSON field names case-insensitively: docker-py sends its config file's `detachKeys` so.
        keys = body.get("DetachKeys") or body.get("detachKeys") or ""
        if keys:
            attach_mod.parse_detach_keys(keys)
        s = ExecSession(
            id=os.urandom(32).hex(), ctr=c, cmd=list(cmd), tty=bool(body.get("Tty")),
            stdin=bool(body.get("AttachStdin")), stdout=bool(body.get("AttachStdout")),
            stderr=bool(body.get("AttachStderr")), user=body.get("User") or "", env=body.get("Env"),
            workdir=body.get("WorkingDir") or "", privileged=bool(body.get("Privileged")), detach_keys=keys,
            console_size=body.get("ConsoleSize"))
        if s.workdir and not s.workdir.startswith("/"):
            raise InvalidParameter(f"the working directory '{s.workdir}' is invalid, it needs to be an absolute path")
        self.sessions[s.id] = s
        c.exec_ids.add(s.id)
        self._trim(c)
        self.svc.event(c, f"exec_create: {' '.join(s.cmd)}", execID=s.id)
        return s

    def get(self, eid: str) -> ExecSession:
        s = self.sessions.get(eid)
        if s is None:
            matches = [x for k, x in self.sessions.items() if k.startswith(eid)] if len(eid) >= 12 else []
            if len(matches) == 1:
                return matches[0]
            raise NotFound(f"No such exec instance: {eid}")
        return s

    def check_startable(self, s: ExecSession) -> None:
        if s.started:
            raise Conflict(f"Exec command {s.id} is already running" if s.running else
                           f"Exec command {s.id} has already run")
        if not s.ctr.running:
            raise Conflict(f"container {s.ctr.id} is not running")
        if s.ctr.paused:
            raise Conflict(f"container {s.ctr.id} is paused, unpause the container before exec")

    def _process_file(self, s: ExecSession) -> Path:
        c = s.ctr
        user = users.resolve_user(c.rootfs, s.user or c.config.get("User") or "", c.host_config.get("GroupAdd"))
        proc = spec.exec_process(c.rec, user, s.cmd, tty=s.tty, env=s.env, workdir=s.workdir or None,
                                 privileged=s.privileged)
        s.dir.mkdir(parents=True, exist_ok=True)
        path = s.dir / "process.json"
        path.write_text(json.dumps(proc))
        return path

    async def _launch(self, s: ExecSession, attach: bool) -> monitor.ExecLaunch:
        self.check_startable(s)
        s.started = True
        s.running = True
        try:
            pf = self._process_file(s)
            launch = monitor.start_exec(self.svc.runtime, s.ctr.id, s.id, s.dir, pf, tty=s.tty, stdin=s.stdin,
                                        attach=attach, argv0=s.cmd[0])
            s.launch = launch
            await launch.ready()
        except BaseException:
            self._finish(s, 126)
            raise
        return launch

    def _finish(self, s: ExecSession, code: int) -> None:
        if s.launch is not None:
            s.launch.close()
            s.launch = None
        if s.exit_code is None:
            s.exit_code = code
        s.running = False
        s.done.set()
        shutil.rmtree(s.dir, ignore_errors=True)
        if s.pid or code != 126:
            self.svc.event(s.ctr, "exec_die", execID=s.id, exitCode=str(s.exit_code))

    async def start_detached(self, s: ExecSession) -> None:
        launch = await self._launch(s, attach=False)
        try:
            s.pid = await launch.run()
        except BaseException:
            self._finish(s, _EXEC_FAILED)
            raise
        self.svc.event(s.ctr, f"exec_start: {' '.join(s.cmd)}", execID=s.id)

        async def reap() -> None:
            code = await launch.exit_code()
            self._finish(s, code)

        self.svc.spawn(reap())

    async def start_attached(self, s: ExecSession, raw: attach_mod.RawIO) -> None:
        """Runs inside the hijacked connection; errors become text on the stream (the 101 is already sent)."""
        try:
            launch = await self._launch(s, attach=True)
        except EngineError as e:
            await _write_error(raw, s.raw, e.message)
            return
        sock: socket.socket | None = None
        try:
            if s.tty and s.console_size and len(s.console_size) == 2 and s.console_size[0]:
                monitor.write_ctl(s.dir, 1, int(s.console_size[0]), int(s.console_size[1]))
            sock = monitor.connect_attach(s.dir)
            s.pid = await launch.run()
        except BaseException as e:
            if sock is not None:
                sock.close()
            self._finish(s, _EXEC_FAILED)
            if isinstance(e, (EngineError, OSError)):
                await _write_error(raw, s.raw, e.message if isinstance(e, EngineError) else str(e))
                return
            raise
        self.svc.event(s.ctr, f"exec_start: {' '.join(s.cmd)}", execID=s.id)
        exit_task = asyncio.create_task(launch.exit_code())
        try:
            result = await attach_mod.relay(
                raw, sock, tty=s.tty, framed=not s.raw, stdout=s.stdout, stderr=s.stderr, stdin=s.stdin, close_stdin_on_eof=True,
                detach_keys=attach_mod.parse_detach_keys(s.detach_keys) if s.stdin else None)
            if result == "exited":
                code = await exit_task
                self._finish(s, code)
            else:
                # The client left; the process keeps running and is reaped in the background.
                async def reap() -> None:
                    self._finish(s, await exit_task)

                self.svc.spawn(reap())
        except BaseException:
            if not exit_task.done():
                self.svc.spawn(self._reap_later(s, exit_task))
            raise

    async def _reap_later(self, s: ExecSession, task: "asyncio.Task[int]") -> None:
        try:
            self._finish(s, await task)
        except Exception:
            self._finish(s, -1)

    async def run_capture(self, c: Container, cmd: list[str], timeout: float, limit: int = 4096) -> tuple[int, str]:
        """Run a command in the container and collect its output (healthchecks)."""
        s = ExecSession(id=os.urandom(32).hex(), ctr=c, cmd=cmd, tty=False, stdin=False, stdout=True, stderr=True,
                        user="", env=None, workdir="", privileged=False, detach_keys="", console_size=None)
        launch = await self._launch(s, attach=True)
        sock = None
        try:
            sock = monitor.connect_attach(s.dir)
            s.pid = await launch.run()
            loop = asyncio.get_running_loop()
            out = bytearray()

            async def read_all() -> int:
                assert sock is not None
                while True:
                    pkt = await loop.sock_recv(sock, 8193)
                    if not pkt:
                        break
                    if len(out) < limit:
                        out.extend(pkt[1:])
                return await launch.exit_code()

            try:
                code = await asyncio.wait_for(read_all(), timeout)
            except asyncio.TimeoutError:
                if s.pid:
                    signal_pid(s.pid, _signal.SIGKILL)
                code = -1
                out = bytearray(f"Health check exceeded timeout ({timeout:g}s)".encode())
            return code, out[:limit].decode("utf-8", "replace")
        finally:
            if sock is not None:
                sock.close()
            s.exit_code = s.exit_code if s.exit_code is not None else 0
            s.running = False
            if s.launch is not None:
                s.launch.close()
            shutil.rmtree(s.dir, ignore_errors=True)

    def resize(self, eid: str, h: int, w: int) -> None:
        s = self.get(eid)
        if not s.running:
            raise Conflict(f"Exec {s.id} is not running")
        if s.tty:
            monitor.write_ctl(s.dir, 1, h, w)

    # ------------------------------------------------------------------------------------------
    def _trim(self, c: Container) -> None:
        finished = [x for x in self.sessions.values() if x.ctr is c and x.started and not x.running]
        for x in finished[:-_KEEP_FINISHED] if len(finished) > _KEEP_FINISHED else []:
            self.sessions.pop(x.id, None)
            c.exec_ids.discard(x.id)

    async def container_stopped(self, c: Container) -> None:
        for s in list(self.sessions.values()):
            if s.ctr is c and s.running:
                # The pid namespace is gone, so is the process; conmon reports the code shortly.
                try:
                    await asyncio.wait_for(s.done.wait(), 2)
                except asyncio.TimeoutError:
                    self._finish(s, 137)

    async def container_removed(self, c: Container) -> None:
        for s in list(self.sessions.values()):
            if s.ctr is c:
                self.sessions.pop(s.id, None)
        c.exec_ids.clear()

    async def close(self) -> None:
        for s in self.sessions.values():
            if s.launch is not None:
                s.launch.close()


async def _write_error(raw: attach_mod.RawIO, tty: bool, msg: str) -> None:
    data = (msg.rstrip() + "\n").encode()
    try:
        await raw.write(data if tty else attach_mod.frame(attach_mod.STDERR, data))
    except (ConnectionError, OSError):
        pass
