"""Publish the engine's published ports on the host's 127.0.0.1, like Lima's host agent.

A small background process per running machine (`python -m machine.portfwd run …`) follows the
engine over its TLS API: it lists `/containers/json`, then reads the `/events` stream and lists
again whenever a container starts, stops or goes away. Each published port P (guest 0.0.0.0:P)
becomes a host forward 127.0.0.1:P → guest:P; one published on the guest's loopback (127.0.0.1:P) is
relayed over SSH instead (machine/portrelay.py); see `plan` for the rules.

Why QEMU's `hostfwd_add`/`hostfwd_remove` (over a QMP socket of its own) rather than an SSH
tunnel: the bytes then flow inside QEMU's user-mode stack, exactly like the SSH and engine
forwards: no extra hop, no process in the data path, nothing to restart when SSH drops, and the
forwards die with the VM. This process only decides which forwards exist; if it dies, existing
QEMU forwards keep working (the SSH-relayed ones go with it). It exits when QEMU closes its QMP connection (the VM stopped).

The current forwards, and the published ports that could not be forwarded (a host port taken by
another program, retried every RETRY_SECONDS until it frees; an address the host cannot have), are
written to portfwd.json in the machine folder for `machine ls` (ERRORS) and `machine inspect`.
Another backend (e.g. VirtualBox `natpf`) only needs `Backend.add/remove`.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from skiffbox.client.api import APIClient, APIError
from skiffbox.client.streams import iter_json_stream
from skiffbox.client.transport import Endpoint, Transport, TransportError
from skiffbox.machine.drivers.base import PortForward, SSHEndpoint
from skiffbox.machine.portrelay import SSHRelay, bind_error
from skiffbox.machine.store import atomic_write

STATE_FILE = "portfwd.json"
PID_FILE = "portfwd.pid"
LOG_FILE = "portfwd.log"
NETDEV = "net0"
RESYNC_SECONDS = 10.0  # also how soon a stopped VM is noticed
RETRY_SECONDS = 2.0  # how often a forward that failed (host port taken) is tried again
EVENTS_OF_INTEREST = {"start", "die", "stop", "kill", "destroy", "pause", "unpause", "restart", "create"}


# ---- state shared with the driver ---------------------------------------------------------------
def _read_state(machine_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((Path(machine_dir) / STATE_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def current(machine_dir: Path) -> list[PortForward]:
    return [PortForward(d["host_ip"], d["host_port"], d["guest_port"], d.get("proto", "tcp"))
            for d in _read_state(machine_dir).get("forwards", [])]


def errors(machine_dir: Path) -> list[str]:
    """Why published ports are not forwarded right now, one sentence each (for `ls` ERRORS and `inspect`)."""
    errs = _read_state(machine_dir).get("errors") or {}
    return [str(errs[k]) for k in sorted(errs)] if isinstance(errs, dict) else []


def _write_state(machine_dir: Path, forwards: Iterable[PortForward], errors: dict[str, str]) -> None:
    atomic_write(Path(machine_dir) / STATE_FILE, json.dumps({
        "forwards": [pf.__dict__ for pf in sorted(forwards, key=lambda p: (p.proto, p.host_port))],
        "errors": errors, "updated": time.time(),
    }, indent=1))


def _pid(machine_dir: Path) -> int | None:
    try:
        pid = int((Path(machine_dir) / PID_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists() and b"skiffbox.machine.portfwd" not in cmdline.read_bytes():
        return None  # a recycled pid
    return pid


def spawn(machine_dir: Path, qmp_socket: Path, engine_port: int, ssh: SSHEndpoint | None = None) -> int:
    """Start the forwarder for a machine unless one runs; it outlives the calling command."""
    machine_dir = Path(machine_dir)
    pid = _pid(machine_dir)
    if pid is not None:
        return pid
    (machine_dir / STATE_FILE).unlink(missing_ok=True)
    log = open(machine_dir / LOG_FILE, "ab")
    cmd = [sys.executable, "-m", "skiffbox.machine.portfwd", "run", "--machine-dir", str(machine_dir),
           "--qmp", str(qmp_socket), "--engine-port", str(engine_port)]
    if ssh is not None:  # for ports published on the guest's loopback (portrelay)
        cmd += ["--ssh", f"{ssh.user}@{ssh.host}:{ssh.port}", "--ssh-key", str(ssh.key_path)]
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
        cwd=str(machine_dir),
    )
    log.close()
    (machine_dir / PID_FILE).write_text(str(proc.pid))
    return proc.pid


def stop(machine_dir: Path, timeout: float = 5.0) -> None:
    pid = _pid(Path(machine_dir))
    if pid is not None:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while _pid(Path(machine_dir)) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
    for name in (PID_FILE, STATE_FILE):
        (Path(machine_dir) / name).unlink(missing_ok=True)


# ---- backends -----------------------------------------------------------------------------------
class Backend(Protocol):
    def add(self, pf: PortForward) -> str | None: ...  # None on success, else why not
    def remove(self, pf: PortForward) -> None: ...
    def alive(self) -> bool: ...


class QMPBackend:
    """Host forwards inside QEMU's user-mode network (netdev `net0`)."""

    def __init__(self, socket_path: Path) -> None:
        from skiffbox.machine.qmp import QMPClient

        self.client = QMPClient(socket_path, timeout=10.0)
        self.client.connect()
        self.lock = threading.Lock()

    def add(self, pf: PortForward) -> str | None:
        with self.lock:
            out = self.client.hmp(f"hostfwd_add {NETDEV} {pf.proto}:{pf.host_ip}:{pf.host_port}-:{pf.guest_port}")
        return out or None

    def remove(self, pf: PortForward) -> None:
        with self.lock:
            self.client.hmp(f"hostfwd_remove {NETDEV} {pf.proto}:{pf.host_ip}:{pf.host_port}")

    def alive(self) -> bool:
        from skiffbox.machine.qmp import QMPError

        try:
            with self.lock:
                self.client.execute("query-status")
                self.client.events.clear()
            return True
        except QMPError:
            return False


# ---- the engine side ----------------------------------------------------------------------------
class Engine:
    """The machine's engine as the forwarder reads it, through the engine client over mutual TLS with the
    machine folder's client certificate."""

    def __init__(self, machine_dir: Path, port: int, host: str = "127.0.0.1") -> None:
        ep = Endpoint("tcp", host, port, url=f"tcp://{host}:{port}")
        ep.tls = ep.verify = True
        ep.ca, ep.cert, ep.key = (str(machine_dir / f) for f in ("ca.pem", "cert.pem", "key.pem"))
        self.endpoint = ep
        self._api = APIClient(Transport(ep, timeout=10.0, read_timeout=10.0))  # sync's calls: one at a time

    def containers(self) -> list[dict[str, Any]]:
        return self._api.containers()

    def events(self, timeout: float) -> Iterator[dict[str, Any]]:
        """Yield container events until the stream ends; TimeoutError when `timeout` passes without one."""
        api = APIClient(Transport(self.endpoint, timeout=timeout, read_timeout=timeout))
        try:
            resp = api.events(filters={"type": ["container"]})
            try:
                yield from iter_json_stream(resp)
            finally:
                resp.close()
        finally:
            api.t.close()


@dataclass(frozen=True)
class Want:
    """One host forward the engine's published ports call for."""

    pf: PortForward  # host listener -> the port the engine publishes in the guest
    guest_ip: str = ""  # "": the guest's user-net address (a QEMU forward); else relayed over SSH to this address
    origin: str = ""  # "container web, port 80/tcp": who asked, for the error messages

    def route(self) -> tuple[str, int, int, str, str]:
        return self.pf.host_ip, self.pf.host_port, self.pf.guest_port, self.pf.proto, self.guest_ip


def plan(containers: list[dict[str, Any]]) -> tuple[dict[str, Want], dict[str, str]]:
    """The host forwards `/containers/json` calls for, and the published ports refused (key -> why).

    Docker Desktop's and Lima's semantics, never listening beyond the host's loopback:
    - published on all addresses (0.0.0.0 / ::): host 127.0.0.1:P, a QEMU forward to the guest's port P;
    - published on a loopback address (127.0.0.1, ::1): the same address on the host, relayed over SSH to
      that address inside the guest (the only place that binding answers); TCP only;
    - published on any other address (one only the VM has, e.g. its bridge or user-net address): refused,
      with an error saying how to publish it instead.
    """
    wanted: dict[str, Want] = {}
    refused: dict[str, str] = {}
    for c in containers:
        names = c.get("Names") or []
        cname = names[0].lstrip("/") if names else str(c.get("Id", ""))[:12]
        for p in c.get("Ports") or []:
            public = p.get("PublicPort")
            if not public:
                continue
            ip, proto, private = p.get("IP") or "0.0.0.0", (p.get("Type") or "tcp").lower(), p.get("PrivatePort")
            origin = f"container {cname}, port {private}/{proto}"
            if ip in ("0.0.0.0", "::"):
                want = Want(PortForward("127.0.0.1", int(public), int(public), proto), "", origin)
            elif _is_loopback(ip) and proto == "tcp":
                want = Want(PortForward(ip, int(public), int(public), proto), ip, origin)
            elif _is_loopback(ip):
                refused[_key(PortForward(ip, int(public), int(public), proto))] = (
                    f"{origin}: published on {ip}:{public} in the VM; only TCP reaches the host from the VM's "
                    f"loopback: publish it on all addresses (-p {public}:{private}/{proto}) to forward it")
                continue
            else:
                refused[_key(PortForward(ip, int(public), int(public), proto))] = (
                    f"{origin}: published on {ip}:{public}, an address this host does not have; publish it on "
                    f"127.0.0.1 (-p 127.0.0.1:{public}:{private}) or on all addresses (-p {public}:{private}) "
                    f"to reach it at 127.0.0.1:{public}")
                continue
            wanted[_key(want.pf)] = want
    return wanted, refused


def _is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


class Forwarder:
    """Keeps the host forwards equal to what the engine publishes; forwards that fail (a host port taken by
    another program) are recorded in the state file and retried every RETRY_SECONDS until they succeed."""

    def __init__(self, machine_dir: Path, backend: Backend, engine: Engine | None,
                 relay: SSHRelay | None = None) -> None:
        self.machine_dir = machine_dir
        self.backend = backend
        self.engine = engine
        self.relay = relay
        self.active: dict[str, Want] = {}
        self.failed: dict[str, Want] = {}  # wanted but not forwarded (yet): retried
        self.errors: dict[str, str] = {}  # key -> why not: the failed ones and the refused ones
        self.lock = threading.Lock()

    def apply(self, wanted: dict[str, Want], refused: dict[str, str] | None = None) -> None:
        with self.lock:
            for key in sorted(self.active):
                if key not in wanted or wanted[key].route() != self.active[key].route():
                    self._remove(self.active.pop(key))
            for key, why in (refused or {}).items():
                if self.errors.get(key) != why:
                    log(f"not forwarded: {why}")
            self.errors = {k: v for k, v in self.errors.items() if k in wanted} | dict(refused or {})
            self.failed = {k: w for k, w in wanted.items() if k not in self.active}
            self._try_failed()
            self._write()

    def retry(self) -> None:
        """Try the failed forwards again (a taken host port may have freed); the state file follows."""
        with self.lock:
            if self.failed and self._try_failed():
                self._write()

    def _try_failed(self) -> bool:
        changed = False
        for key in sorted(self.failed):
            want = self.failed[key]
            err = self._add(want)
            if err is None:
                del self.failed[key]
                self.errors.pop(key, None)
                self.active[key] = want
                via = f"guest {want.guest_ip}:{want.pf.guest_port} over SSH" if want.guest_ip else \
                    f"guest:{want.pf.guest_port}"
                log(f"forwarding {want.pf.proto} {_where(want.pf)} -> {via}")
                changed = True
            else:
                msg = f"{want.origin}: not forwarded, {err} (retrying every {RETRY_SECONDS:g} s)"
                if self.errors.get(key) != msg:
                    log(msg)
                    self.errors[key] = msg
                    changed = True
        return changed

    def _add(self, want: Want) -> str | None:
        pf = want.pf
        if want.guest_ip:
            if self.relay is None:
                return "the forwarder has no SSH relay"
            return self.relay.add(pf.host_ip, pf.host_port, want.guest_ip, pf.guest_port)
        err = self.backend.add(pf)
        if err:  # QEMU says only "Could not set up host forwarding rule": find out why
            return _bind_probe(pf) or f"QEMU refused the forward: {err.strip()}"
        return None

    def _remove(self, want: Want) -> None:
        if want.guest_ip:
            if self.relay is not None:
                self.relay.remove(want.pf.host_ip, want.pf.host_port)
        else:
            self.backend.remove(want.pf)
        log(f"removed {want.pf.proto} {_where(want.pf)}")

    def _write(self) -> None:
        _write_state(self.machine_dir, [w.pf for w in self.active.values()], self.errors)

    def sync(self) -> None:
        assert self.engine is not None
        self.apply(*plan(self.engine.containers()))

    def run(self, stop: threading.Event) -> None:
        retrier = threading.Thread(target=self._retry_loop, args=(stop,), name="retry", daemon=True)
        retrier.start()
        assert self.engine is not None
        while not stop.is_set():
            if not self.backend.alive():
                log("QEMU is gone; exiting")
                return
            try:
                self.sync()
                for ev in self.engine.events(RESYNC_SECONDS):
                    if stop.is_set():
                        return
                    if ev.get("Action", ev.get("status", "")).split(":")[0] in EVENTS_OF_INTEREST:
                        self.sync()
            except TimeoutError:
                continue  # quiet stream: resync
            except (OSError, ValueError, TransportError, APIError) as e:
                # engine not up yet (booting, provisioning) or restarting: retry shortly
                log(f"engine not reachable: {e}")
                stop.wait(2.0)

    def _retry_loop(self, stop: threading.Event) -> None:
        # bounded polling: a cheap attempt per failed forward every RETRY_SECONDS, nothing when none failed
        while not stop.wait(RETRY_SECONDS):
            try:
                self.retry()
            except Exception as e:  # QMP hiccup: the next round tries again; the main loop notices a dead VM
                log(f"retry failed: {e}")


def _bind_probe(pf: PortForward) -> str | None:
    """Why the host cannot listen on pf's address, or None if it can (then QEMU's refusal is something else)."""
    kind = socket.SOCK_DGRAM if pf.proto == "udp" else socket.SOCK_STREAM
    s = socket.socket(socket.AF_INET6 if ":" in pf.host_ip else socket.AF_INET, kind)
    try:
        if kind == socket.SOCK_STREAM and not hasattr(socket, "SO_EXCLUSIVEADDRUSE"):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as QEMU does: TIME_WAIT is no clash
        s.bind((pf.host_ip, pf.host_port))
        return None
    except OSError as e:
        return bind_error(pf.host_ip, pf.host_port, e)
    finally:
        s.close()


def _where(pf: PortForward) -> str:
    return f"[{pf.host_ip}]:{pf.host_port}" if ":" in pf.host_ip else f"{pf.host_ip}:{pf.host_port}"


class _Stopped(Exception):
    pass


def _key(pf: PortForward) -> str:
    return f"{pf.proto}/{_where(pf)}"


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m machine.portfwd")
    sub = ap.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run")
    run.add_argument("--machine-dir", required=True, type=Path)
    run.add_argument("--qmp", required=True, type=Path)
    run.add_argument("--engine-port", required=True, type=int)
    run.add_argument("--ssh", default="", help="USER@HOST:PORT of the guest's sshd")
    run.add_argument("--ssh-key", type=Path)
    args = ap.parse_args(argv)
    stop = threading.Event()

    def on_term(*_: object) -> None:
        stop.set()
        raise _Stopped  # interrupts a blocking read of the events stream

    signal.signal(signal.SIGTERM, on_term)
    from skiffbox.machine.qmp import QMPError

    try:
        backend = QMPBackend(args.qmp)
    except QMPError as e:
        log(f"no QMP: {e}")
        return 1
    # the TLS material appears once the machine is provisioned: wait for it
    try:
        while not (args.machine_dir / "cert.pem").exists():
            if not backend.alive():
                return 0
            stop.wait(2.0)
    except _Stopped:
        return 0
    endpoint = None
    if args.ssh and args.ssh_key:
        user, _, hostport = args.ssh.rpartition("@")
        host, _, port = hostport.rpartition(":")
        endpoint = SSHEndpoint(host, int(port), user, args.ssh_key)
    relay = SSHRelay(endpoint)
    fwd = Forwarder(args.machine_dir, backend, Engine(args.machine_dir, args.engine_port), relay)
    try:
        fwd.run(stop)
    except _Stopped:
        pass
    finally:
        if stop.is_set() and backend.alive():  # stopped by us, VM still up: take our forwards away
            fwd.apply({})
        relay.close()
        (args.machine_dir / STATE_FILE).unlink(missing_ok=True)
        if _pid(args.machine_dir) == os.getpid():
            (args.machine_dir / PID_FILE).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
