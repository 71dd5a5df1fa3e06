"""conmon, one per container (and per exec session), as Podman uses it (conmon_netavark.md §1).

conmon runs `runtime create`, holds the container's stdio (k8s-file log, attach socket, pty), records the
exit code in `<bundle>/exits/` and an `oom` file, and outlives the daemon. The engine runs `runtime start`
itself after conmon reports the pid, so attach clients can connect first and see all output.

Exit is noticed through a pidfd on conmon (readable when it exits), which works just as well for a conmon
adopted after a daemon restart as for one we launched.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skiffbox.guest.containers.runtime import Runtime, RuntimeError_

log = logging.getLogger("skiffd.monitor")

# Test-only: `SKIFFD_TEST_PAUSE_BEFORE=<point>` makes every container start sleep at that point (run.start_locked:
# "launch": before conmon, "start": created, before `runtime start`, "running-saved": started, before the record
# says so; launch here: "launched": `runtime create` done and reported, before launch returns), so that a test can
# kill the daemon there, or stop it (the start is then cancelled). Never set it in production.
_TEST_PAUSE_BEFORE = os.environ.get("SKIFFD_TEST_PAUSE_BEFORE", "")


async def test_pause(point: str) -> None:
    if _TEST_PAUSE_BEFORE == point:
        log.warning("test hook: start paused before %s", point)
        await asyncio.sleep(3600)

CONMON = shutil.which("conmon") or "/usr/bin/conmon"
SYNC_TIMEOUT = 60.0


@dataclass
class Launched:
    pid: int  # container init (or exec process)
    conmon_pid: int


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")}
    env.update(extra)
    return env


def exit_dir(bundle: Path) -> Path:
    return bundle / "exits"


def read_exit(bundle: Path, cid: str) -> int | None:
    for p in (exit_dir(bundle) / cid, exit_dir(bundle) / "exit"):
        try:
            return int(p.read_text().strip() or "0")
        except (OSError, ValueError):
            continue
    return None


def oom_killed(bundle: Path) -> bool:
    return (exit_dir(bundle) / "oom").exists() or (bundle / "oom").exists()


async def _recv_json(sock: socket.socket, timeout: float = SYNC_TIMEOUT) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    data = await asyncio.wait_for(loop.sock_recv(sock, 65536), timeout)
    if not data:
        raise RuntimeError_("conmon exited without reporting the container's start")
    line = data.split(b"\n", 1)[0]
    msg: dict[str, Any] = json.loads(line)
    return msg


def _start_conmon(args: list[str], bundle: Path, fds: dict[str, socket.socket]) -> subprocess.Popen[bytes]:
    env = _env({k: str(s.fileno()) for k, s in fds.items()})
    errlog = open(bundle / "conmon.err", "ab")
    try:
        return subprocess.Popen(args, env=env, cwd=str(bundle), stdin=subprocess.DEVNULL, stdout=errlog, stderr=errlog,
                                pass_fds=tuple(s.fileno() for s in fds.values()), start_new_session=True)
    finally:
        errlog.close()


def _conmon_error(bundle: Path, fallback: str) -> str:
    try:
        txt = (bundle / "conmon.err").read_text().strip()
    except OSError:
        txt = ""
    return txt.splitlines()[-1] if txt else fallback


async def launch(rt: Runtime, cid: str, name: str, bundle: Path, log_path: str | None, *, tty: bool, stdin: bool,
                 leave_stdin_open: bool, log_size_max: int | None = None, monitor_cgroup: Path | None = None,
                 argv0: str | None = None) -> Launched:
    """conmon → `runtime create`; returns once the container exists (not yet started). `argv0` (the process's
    command) names it in the runtime's error if the runtime cannot execute it.

    `monitor_cgroup` (a cgroup dir) receives conmon before it forks, while it waits on the start pipe: out of
    the daemon's own cgroup, a `systemctl restart` of the daemon's unit does not take the monitors with it."""
    exit_dir(bundle).mkdir(parents=True, exist_ok=True)
    args = rt.conmon_prefix() + [
        CONMON, "--api-version", "1", "-c", cid, "-u", cid, "-r", rt.path, "-b", str(bundle),
        "-p", str(bundle / "pidfile"), "-n", name or cid, "--exit-dir", str(exit_dir(bundle)),
        "--persist-dir", str(exit_dir(bundle)), "--full-attach", "--conmon-pidfile", str(bundle / "conmon.pid"),
        "--runtime-arg", "--root", "--runtime-arg", str(rt.root), "--log-level", "error",
        "-l", f"k8s-file:{log_path}" if log_path else "none",
    ]
    if log_size_max and log_path:
        args += ["--log-size-max", str(log_size_max)]
    if tty:
        args.append("-t")
    elif stdin:
        args.append("-i")
    if stdin and leave_stdin_open:
        args.append("--leave-stdin-open")
    psync, csync = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    cstart, pstart = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    psync.setblocking(False)
    conmon_ran, msg = False, None
    try:
        try:
            p = _start_conmon(args, bundle, {"_OCI_SYNCPIPE": csync, "_OCI_STARTPIPE": cstart})
        finally:
            csync.close()
            cstart.close()
        conmon_ran = True
        if monitor_cgroup is not None:
            _join_cgroup(monitor_cgroup, p.pid)
        pstart.send(b"\0")
        # The first conmon process exits ~2 ms later, after writing the long-lived one's pid file.
        await _wait_child(p)
        if p.returncode != 0:
            raise RuntimeError_(f"conmon failed: {_conmon_error(bundle, f'exit status {p.returncode}')}")
        try:
            msg = await _recv_json(psync)
        except (asyncio.TimeoutError, ValueError, OSError) as e:
            raise RuntimeError_(f"conmon did not report the container: {e}; {_conmon_error(bundle, '')}") from None
        if int(msg.get("data", -1)) < 0:
            raise RuntimeError_(_runtime_message(msg.get("message") or "runtime create failed", argv0))
        await test_pause("launched")
        conmon_pid = int((bundle / "conmon.pid").read_text().strip())
        return Launched(int(msg["data"]), conmon_pid)
    except BaseException:
        if conmon_ran:
            await asyncio.shield(_abandon(rt, cid, psync, msg))
        raise
    finally:
        psync.close()
        pstart.close()


async def _abandon(rt: Runtime, cid: str, psync: socket.socket, msg: dict[str, Any] | None) -> None:
    """A launch given up once conmon ran (an error; a cancellation: the client went, the daemon stops): what
    `runtime create` made goes, so that the caller's undo finds nothing running. While the create has not
    reported it may still be under way: deleting then would find nothing, and the create would go on to leave its
    init waiting on the exec fifo for good (parented to pid 1 once conmon gives up). So its report comes first."""
    if msg is None:
        try:
            msg = await _recv_json(psync)
        except (asyncio.TimeoutError, ValueError, OSError, RuntimeError_):
            msg = None  # conmon is gone without a word, or hangs: delete whatever there may be
    if msg is None or int(msg.get("data", -1)) >= 0:
        await rt.delete(cid, force=True)


def _join_cgroup(cg: Path, pid: int) -> None:
    try:
        cg.mkdir(parents=True, exist_ok=True)
        (cg / "cgroup.procs").write_text(str(pid))
    except OSError as e:  # not fatal: the monitor then stays in the daemon's cgroup
        log.debug("moving conmon %d to %s: %s", pid, cg, e)


def _runtime_message(msg: str, argv0: str | None = None) -> str:
    from skiffbox.guest.containers.runtime import _clean

    return _clean(msg, argv0)


async def _wait_child(p: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    delay = 0.0005
    while p.poll() is None:
        if asyncio.get_running_loop().time() > deadline:
            p.kill()
            p.wait()
            raise RuntimeError_("conmon did not daemonize")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.01)


class ExitWatch:
    """Completes when a (non-child) process exits, via pidfd_open + the event loop."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._fd: int | None = None
        try:
            self._fd = os.pidfd_open(pid)
        except OSError:
            self.future.set_result(None)
            return
        asyncio.get_running_loop().add_reader(self._fd, self._fire)

    def _fire(self) -> None:
        self.close()
        if not self.future.done():
            self.future.set_result(None)

    def close(self) -> None:
        if self._fd is not None:
            try:
                asyncio.get_running_loop().remove_reader(self._fd)
            except Exception:
                pass
            os.close(self._fd)
            self._fd = None


def process_alive(pid: int, expect_in_cmdline: str | None = None) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return False
        if expect_in_cmdline is not None:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if expect_in_cmdline.encode() not in f.read():
                    return False
        return True
    except (OSError, IndexError):
        return False


def find_conmons(cid: str) -> list[int]:
    """Live conmon processes of container `cid`'s own process (`conmon … -c <cid> -u <cid>`; exec sessions have
    their own -u), for a start the daemon did not see through: its pid file may not be written yet."""
    out = []
    want = f"\0-c\0{cid}\0-u\0{cid}\0".encode()
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if os.path.basename(cmd.split(b"\0", 1)[0]) == b"conmon" and want in cmd and process_alive(int(d)):
            out.append(int(d))
    return out


def proc_start_time(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------
# Attach socket, resize
# ---------------------------------------------------------------------------------------------


def connect_attach(bundle: Path) -> socket.socket:
    """Connect to `<bundle>/attach` through /proc/self/fd (sun_path is 108 bytes, bundles can be longer)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    fd = os.open(str(bundle / "attach"), os.O_PATH)
    try:
        s.connect(f"/proc/self/fd/{fd}")
    except OSError:
        s.close()
        raise
    finally:
        os.close(fd)
    s.setblocking(False)
    return s


def write_ctl(bundle: Path, msg_type: int, a: int, b: int) -> bool:
    """`1 ROWS COLS` resizes the pty; `2 0 0` reopens the log. One message per write."""
    try:
        fd = os.open(str(bundle / "ctl"), os.O_WRONLY | os.O_NONBLOCK)
    except OSError as e:
        if e.errno in (errno.ENXIO, errno.ENOENT):
            return False
        raise
    try:
        os.write(fd, f"{msg_type} {a} {b}\n".encode())
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------
# exec sessions
# ---------------------------------------------------------------------------------------------


class ExecLaunch:
    """A running `conmon -e` session: the attach socket is ready before the process is started."""

    def __init__(self, p: subprocess.Popen[bytes], sync: socket.socket, start: socket.socket, attach_pipe: socket.socket | None,
                 session_dir: Path, cid: str, argv0: str | None = None) -> None:
        self.p = p
        self.cid = cid
        self.argv0 = argv0  # the command, named in the runtime's error (crun's does not name it)
        self.sync = sync
        self.start_sock = start
        self.attach_pipe = attach_pipe
        self.dir = session_dir
        self.pid: int | None = None

    async def ready(self) -> None:
        """Wait until the attach socket exists (`{"data": 0}` on the attach pipe)."""
        self.start_sock.send(b"\0")
        await _wait_child(self.p)
        if self.p.returncode != 0:
            raise RuntimeError_(f"conmon failed: {_conmon_error(self.dir, f'exit status {self.p.returncode}')}")
        if self.attach_pipe is not None:
            msg = await _recv_json(self.attach_pipe)
            if int(msg.get("data", -1)) < 0:
                raise RuntimeError_(msg.get("message") or "exec attach failed")

    async def run(self) -> int:
        """Let conmon run `runtime exec` and return the exec's pid."""
        if self.attach_pipe is not None:
            self.start_sock.send(b"\0")
        try:
            msg = await _recv_json(self.sync)
        except RuntimeError_:
            # conmon gives up without a word when the runtime fails an exec on a terminal (crun): its log says why.
            raise RuntimeError_(_runtime_message(self._runtime_log() or "exec failed", self.argv0)) from None
        if int(msg.get("data", -1)) < 0:
            raise RuntimeError_(_runtime_message(msg.get("message") or self._runtime_log() or "exec failed",
                                                 self.argv0))
        self.pid = int(msg["data"])
        return self.pid

    def _runtime_log(self) -> str:
        try:
            lines = [ln for ln in (self.dir / RUNTIME_LOG).read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            return ""
        return lines[-1] if lines else ""

    async def exit_code(self) -> int:
        try:
            msg = await _recv_json(self.sync, timeout=10 ** 9)
            return int(msg.get("data", -1))
        except (RuntimeError_, ValueError, OSError):
            try:
                return int((self.dir / "exit" / self.cid).read_text().strip())
            except (OSError, ValueError):
                return -1

    def close(self) -> None:
        for s in (self.sync, self.start_sock, self.attach_pipe):
            if s is not None:
                s.close()


RUNTIME_LOG = "oci-log"  # the runtime's own error log of an exec session (`runtime --log`)


def start_exec(rt: Runtime, cid: str, session_id: str, session_dir: Path, process_spec: Path, *, tty: bool,
               stdin: bool, attach: bool, argv0: str | None = None) -> ExecLaunch:
    (session_dir / "exit").mkdir(parents=True, exist_ok=True)
    args = [
        CONMON, "--api-version", "1", "-c", cid, "-u", session_id, "-r", rt.path, "-b", str(session_dir),
        "-p", str(session_dir / "exec_pid"), "-n", session_id, "--exit-dir", str(session_dir / "exit"),
        "--persist-dir", str(session_dir / "exit"), "--full-attach", "--runtime-arg", "--root",
        "--runtime-arg", str(rt.root), "--runtime-arg", "--log", "--runtime-arg", str(session_dir / RUNTIME_LOG),
        "--log-level", "error", "-l", "none",
        "-e", "--exec-process-spec", str(process_spec),
    ]
    if attach:
        args.append("--exec-attach")
    if tty:
        args.append("-t")
    elif stdin:
        args.append("-i")
    psync, csync = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    cstart, pstart = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    fds = {"_OCI_SYNCPIPE": csync, "_OCI_STARTPIPE": cstart}
    pattach = None
    if attach:
        pattach, cattach = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pattach.setblocking(False)
        fds["_OCI_ATTACHPIPE"] = cattach
    psync.setblocking(False)
    try:
        p = _start_conmon(args, session_dir, fds)
    finally:
        for s in fds.values():
            s.close()
    return ExecLaunch(p, psync, pstart, pattach, session_dir, cid, argv0)
