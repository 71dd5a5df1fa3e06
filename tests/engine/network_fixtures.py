"""Helpers for network tests.

* `run_in_netns(path, fn, *args)`: run `fn` in a forked child that has joined the network namespace `path` and
  return its (picklable) result. Tests use it to drive the engine's NetworkService directly: netavark, the bridges,
  the iptables rules and aardvark-dns then all live in that namespace, never in the machine's own.
* `ctr_netns(...)`: a netns file standing in for a container's network namespace.
* `isolated_skiffd`: a skiffd in a network namespace of its own (not the session one), for tests that simulate a
  VM reboot by throwing the whole namespace away. Images come from the session registry through a relay (socat on
  a unix socket: unix sockets cross network namespaces).
"""

from __future__ import annotations

import ctypes
import os
import pickle
import subprocess
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.engine.harness import NetNS, Skiffd, rmtree, stop_pid, tempdir, wait_for

CLONE_NEWNET = 0x40000000


def run_in_netns(path: str, fn: Callable[..., Any], *args: Any, timeout: float = 120) -> Any:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: join the netns, run, report, and leave without running the parent's cleanups
        code = 0
        try:
            os.close(r)
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(path, os.O_RDONLY)
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns failed")
            os.close(fd)
            try:
                payload = pickle.dumps(("ok", fn(*args)))
            except BaseException as e:  # the assertion or error, with the child's traceback
                payload = pickle.dumps(("err", f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))
            with os.fdopen(w, "wb") as f:
                f.write(payload)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    status, value = pickle.loads(data) if data else ("err", "child died without a result")
    if status != "ok":
        raise AssertionError(f"in netns {path}:\n{value}")
    return value


def sh(*args: str, netns: str | None = None, check: bool = False, timeout: float = 30,
       input: str | None = None) -> subprocess.CompletedProcess:
    cmd = list(args)
    if netns:
        cmd = ["nsenter", f"--net={netns}", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=timeout, input=input)


def with_resolv(netns: str, resolv_text: str, workdir: Path, *cmd: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """Run `cmd` in `netns` with `resolv_text` as /etc/resolv.conf (a private mount namespace, as a container has)."""
    f = workdir / f"resolv-{os.getpid()}-{abs(hash(resolv_text))}.conf"
    f.write_text(resolv_text)
    script = 'mount --bind "$0" /etc/resolv.conf && exec nsenter --net="$1" "${@:2}"'
    return subprocess.run(["unshare", "-m", "--propagation", "private", "bash", "-c", script, str(f), netns, *cmd],
                          capture_output=True, text=True, timeout=timeout)


@contextmanager
def registry_relay(session_ns: NetNS, target_ns: NetNS, workdir: Path, port: int = 5000) -> Iterator[None]:
    """127.0.0.1:<port> in `target_ns` forwards to the registry on 127.0.0.1:<port> in `session_ns`."""
    sock = workdir / "registry-relay.sock"
    a = subprocess.Popen(session_ns.cmd(["socat", f"UNIX-LISTEN:{sock},fork", f"TCP:127.0.0.1:{port}"]),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(sock.exists, what="relay socket")
    b = subprocess.Popen(target_ns.cmd(["socat", f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork", f"UNIX-CONNECT:{sock}"]),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: target_ns.run(["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{port}"]).returncode == 0,
                 what="relay listening")
        yield
    finally:
        stop_pid(b)
        stop_pid(a)


class IsolatedSkiffd:
    """A skiffd with a network namespace of its own; `reboot()` simulates a VM reboot (everything under the exec
    root and the whole network stack are gone, the data root stays)."""

    def __init__(self, session_ns: NetNS, workdir: Path) -> None:
        self.session_ns = session_ns
        self.workdir = workdir
        self.ns = NetNS("sknet")
        self._relay = registry_relay(session_ns, self.ns, workdir)
        self._relay.__enter__()
        self.daemon = Skiffd(self.ns, workdir)

    def reboot(self) -> None:
        d = self.daemon
        d.kill()
        # What a reboot takes with it: every process of the old boot (containers, their monitors, aardvark-dns), the
        # mounts and everything under /run. Kill by the netns we own (all of them are in it or in its children).
        self._kill_processes_in_ns()
        for m in sorted(_mounts_under(d.exec_root), reverse=True):
            subprocess.run(["umount", "-l", m], check=False)
        for m in sorted(_mounts_under(d.data_root), reverse=True):
            subprocess.run(["umount", "-l", m], check=False)
        rmtree(d.exec_root)
        self._relay.__exit__(None, None, None)
        self.ns.remove()
        self.ns = NetNS("sknet")
        self._relay = registry_relay(self.session_ns, self.ns, self.workdir)
        self._relay.__enter__()
        d.ns = self.ns
        d.start()

    def _kill_processes_in_ns(self) -> None:
        """SIGKILL every process in our netns or in a container netns under our exec root (ours alone: the
        namespaces were created for this daemon)."""
        targets = {os.stat(self.ns.path).st_ino}
        for m in _mounts_under(self.daemon.exec_root):
            try:
                targets.add(os.stat(m).st_ino)
            except OSError:
                pass
        for p in os.listdir("/proc"):
            if not p.isdigit() or int(p) == os.getpid():
                continue
            try:
                if os.stat(f"/proc/{p}/ns/net").st_ino in targets:
                    os.kill(int(p), 9)
            except (OSError, ValueError):
                pass

    def close(self) -> None:
        self.daemon.stop()
        self._kill_processes_in_ns()
        self._relay.__exit__(None, None, None)
        leftover = _mounts_under(self.workdir)
        for m in sorted(leftover, reverse=True):
            subprocess.run(["umount", "-l", m], check=False)
        self.ns.remove()
        rmtree(self.workdir)
        assert not leftover, f"mounts left behind: {leftover}"


def _mounts_under(path: Path) -> list[str]:
    out = []
    with open("/proc/mounts") as f:
        for line in f:
            mnt = line.split()[1]
            if mnt.startswith(str(path)):
                out.append(mnt)
    return out


def new_isolated(session_ns: NetNS) -> IsolatedSkiffd:
    return IsolatedSkiffd(session_ns, tempdir("skiffd-iso-"))


def remove_containers_and_networks(d: Skiffd) -> None:
    """Per-test cleanup of the network tests: every container, then every user network."""
    ids = d.docker("ps", "-aq").stdout.split()
    if ids:
        d.docker("rm", "-f", *ids, check=False)
    nets = [n for n in d.docker("network", "ls", "--format", "{{.Name}}").stdout.split() if n not in ("bridge", "host", "none")]
    if nets:
        d.docker("network", "rm", *nets, check=False)
