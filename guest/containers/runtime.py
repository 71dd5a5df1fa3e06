"""The OCI runtime: runc or crun, detected; the verbs the engine runs itself (conmon runs `create`).

crun refuses `create` on hybrid-cgroup hosts whose cgroup2 mount has controllers (probe_runtime.md §1);
there it is only used when asked for, and conmon is then started in a private mount namespace with an
empty file over `cgroup.controllers` (`create_wrapper`). Every other crun verb works unwrapped.
Each daemon keeps runtime state under its own exec root (`--root`), so two engines never see each
other's containers.

Names in the API: dockerd calls its default runtime `runc` (a reserved name) and clients read that name back
(HostConfig.Runtime, Info.DefaultRuntime). The engine runs one binary; the names that select it are `runc` — the
stock name, whichever binary serves it — and the binary's own name; Info.Runtimes shows each name's binary path, so
nothing pretends: `{"runc": {"path": "/usr/bin/crun"}, "crun": {"path": "/usr/bin/crun"}}`. A daemon started with
an explicit `--runtime`/`default-runtime` defaults to that name, as dockerd's `default-runtime` does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skiffbox.guest import hostinfo
from skiffbox.guest.errors import EngineError, InvalidParameter

log = logging.getLogger("skiffd.runtime")

_HYBRID_CONTROLLERS = "/sys/fs/cgroup/unified/cgroup.controllers"


STOCK_NAME = "runc"


class RuntimeError_(EngineError):
    status = 500


@dataclass
class Runtime:
    name: str
    path: str
    root: Path
    version: str = ""
    wrap_create: bool = False  # crun on a hybrid host with v2 controllers
    empty_file: Path | None = None
    default_name: str = STOCK_NAME  # what HostConfig.Runtime says when the request names none

    def names(self) -> dict[str, str]:
        """The runtime names the API accepts, each with the binary that runs it (Info.Runtimes)."""
        return {STOCK_NAME: self.path, self.name: self.path}

    def resolve(self, requested: str | None) -> str:
        """HostConfig.Runtime for a create request: the default name, or a name this engine serves."""
        if not requested:
            return self.default_name
        if requested not in self.names():
            raise InvalidParameter(f"Unknown runtime specified {requested}")
        return requested

    def base(self) -> list[str]:
        return [self.path, "--root", str(self.root)]

    def conmon_prefix(self) -> list[str]:
        """argv prefix for conmon so that the `create` it runs works (crun hybrid workaround)."""
        if not self.wrap_create or self.empty_file is None:
            return []
        return ["unshare", "-m", "--propagation", "private", "/bin/sh", "-c",
                f'mount --bind {self.empty_file} {_HYBRID_CONTROLLERS} && exec "$@"', "sh"]

    async def run(self, *args: str, check: bool = True, timeout: float = 60) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            *self.base(), *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise RuntimeError_(f"{self.name} {args[0]} timed out")
        rc = proc.returncode or 0
        o, e = out.decode(errors="replace"), err.decode(errors="replace")
        if check and rc != 0:
            raise RuntimeError_(f"{self.name} {args[0]} failed: {_clean(e or o)}")
        return rc, o, e

    async def start(self, cid: str) -> None:
        """`runtime start` is a handshake on the container's exec FIFO (runc: read it to EOF; crun: write one
        byte), then the FIFO is removed. Done here in a thread instead of a runtime process on every run."""
        fifo = self.root / cid / "exec.fifo"
        if self.name in ("runc", "crun") and fifo.exists():
            try:
                await asyncio.wait_for(asyncio.to_thread(_release_fifo, fifo, self.name == "crun"), 30)
                return
            except (OSError, asyncio.TimeoutError) as e:
                log.debug("fast start of %s failed (%s); using runc start", cid[:12], e)
                if not fifo.exists():
                    return
        await self.run("start", cid)

    def forget(self, cid: str) -> None:
        """What `runtime delete` does for a container whose processes are all gone: drop its state dir.
        (The engine removes the cgroup dirs itself.)"""
        import shutil

        shutil.rmtree(self.root / cid, ignore_errors=True)

    async def kill(self, cid: str, sig: int, all_procs: bool = False) -> None:
        args = ["kill"] + (["--all"] if all_procs else []) + [cid, str(sig)]
        await self.run(*args)

    async def pause(self, cid: str) -> None:
        await self.run("pause", cid)

    async def resume(self, cid: str) -> None:
        await self.run("resume", cid)

    async def delete(self, cid: str, force: bool = False) -> None:
        rc, out, err = await self.run("delete", *(["--force"] if force else []), cid, check=False)
        if rc != 0 and "does not exist" not in (err + out) and "not found" not in (err + out).lower():
            log.warning("%s delete %s: %s", self.name, cid, _clean(err or out))

    async def state(self, cid: str) -> dict[str, Any] | None:
        rc, out, _ = await self.run("state", cid, check=False)
        if rc != 0:
            return None
        try:
            state: dict[str, Any] = json.loads(out)
            return state
        except ValueError:
            return None

    async def update(self, cid: str, resources: dict[str, Any]) -> None:
        tmp = self.root / f".update-{cid}.json"
        tmp.write_text(json.dumps(resources))
        try:
            await self.run("update", "--resources", str(tmp), cid)
        finally:
            tmp.unlink(missing_ok=True)


def _release_fifo(path: Path, write: bool) -> None:
    fd = os.open(path, (os.O_WRONLY if write else os.O_RDONLY) | os.O_CLOEXEC)
    try:
        if write:
            os.write(fd, b"0")
        else:
            while os.read(fd, 4096):
                pass
    finally:
        os.close(fd)
    path.unlink()


_CRUN_NOT_FOUND = re.compile(r"executable file `([^`]*)` not found in \$PATH(?:: No such file or directory)?")
# crun opens the executable before exec: a directory gives EPERM, a file without x bit EACCES (runc: both EACCES).
_CRUN_NOT_EXECUTABLE = re.compile(r"open executable: (?:Operation not permitted|Permission denied)")


def _clean(msg: str, argv0: str | None = None) -> str:
    """runc logs as `time=… level=error msg="…"`: keep the message. crun's wording is turned into runc's (what
    Docker shows), which the docker CLI matches (case-sensitively) to choose exit code 127 ("executable file not
    found", "no such file or directory") or 126 ("permission denied"); `argv0` is the command the runtime ran
    (crun's message for a command it cannot execute does not name it)."""
    msg = msg.strip()
    if 'msg="' in msg:
        m = msg.split('msg="', 1)[1]
        m = m.rsplit('"', 1)[0]
        return m.replace('\\"', '"')

    def not_found(m: re.Match[str]) -> str:
        path = m.group(1)
        if "/" in path:  # a path is not looked up in $PATH (runc stats it)
            return f'exec: "{path}": stat {path}: no such file or directory'
        return f'exec: "{path}": executable file not found in $PATH'

    msg = _CRUN_NOT_FOUND.sub(not_found, msg)
    msg = _CRUN_NOT_EXECUTABLE.sub(lambda _: f'exec: "{argv0}": permission denied' if argv0 else
                                   "exec: permission denied", msg)
    return msg.replace("No such file or directory", "no such file or directory").replace(
        "Permission denied", "permission denied")


def error_exit_code(msg: str, default: int = 128) -> int:
    """The exit status Docker gives a process the runtime could not start (run, start, exec), from the runtime's
    message as `_clean` words it: 127 not found, 126 found but not executable (a directory, no x bit)."""
    m = msg.lower()
    if "executable file not found" in m or "no such file or directory" in m:
        return 127
    if "permission denied" in m or "is a directory" in m:
        return 126
    return default


def choose(preferred: str | None, exec_root: Path) -> Runtime:
    """runc or crun. Default: crun (faster to create, far smaller), on hybrid hosts through the workaround."""
    found = {rt.name: rt for rt in hostinfo.runtimes()}
    if not found:
        raise InvalidParameter("no OCI runtime found: install runc or crun")
    hybrid = bool(hostinfo.cgroup_hybrid_controllers()) and hostinfo.cgroup_version() == "1"
    if preferred:
        if preferred not in found:
            raise InvalidParameter(f"runtime {preferred} is not installed")
        name = preferred
    elif "crun" in found and (not hybrid or shutil.which("unshare")):
        name = "crun"
    else:
        name = "runc" if "runc" in found else "crun"
    info = found[name]
    root = exec_root / "runtime" / name
    root.mkdir(parents=True, exist_ok=True)
    rt = Runtime(name, info.path, root, info.version, default_name=preferred or STOCK_NAME)
    if name == "crun" and hybrid:
        rt.wrap_create = True
        rt.empty_file = exec_root / "runtime" / "empty-controllers"
        rt.empty_file.touch()
    return rt


def signal_pid(pid: int, sig: int) -> bool:
    """Signal the container's init directly (cheaper than `runtime kill`); False if it is gone."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return False
    try:
        signal.pidfd_send_signal(fd, sig)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
