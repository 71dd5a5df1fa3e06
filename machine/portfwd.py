"""Publish the engine's published ports on the host's 127.0.0.1, like Lima's host agent.

A small background process per running machine (`python -m machine.portfwd run …`) follows the
engine over its TLS API: it lists `/containers/json`, then reads the `/events` stream and lists
again whenever a container starts, stops or goes away. Each published port P (guest 0.0.0.0:P)
becomes a host forward 127.0.0.1:P → guest:P.

Why QEMU's `hostfwd_add`/`hostfwd_remove` (over a QMP socket of its own) rather than an SSH
tunnel: the bytes then flow inside QEMU's user-mode stack, exactly like the SSH and engine
forwards: no extra hop, no process in the data path, nothing to restart when SSH drops, and the
forwards die with the VM. This process only decides which forwards exist; if it dies, existing
forwards keep working. It exits when QEMU closes its QMP connection (the VM stopped).

The current forwards are written to portfwd.json in the machine folder for `machine ls`/`inspect`.
Another backend (e.g. VirtualBox `natpf`) only needs `Backend.add/remove`.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from skiffbox.machine.drivers.base import PortForward

STATE_FILE = "portfwd.json"
PID_FILE = "portfwd.pid"
LOG_FILE = "portfwd.log"
NETDEV = "net0"
RESYNC_SECONDS = 10.0  # also how soon a stopped VM is noticed
EVENTS_OF_INTEREST = {"start", "die", "stop", "kill", "destroy", "pause", "unpause", "restart", "create"}


# ---- state shared with the driver ---------------------------------------------------------------
def current(machine_dir: Path) -> list[PortForward]:
    try:
        data = json.loads((Path(machine_dir) / STATE_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return []
    return [PortForward(d["host_ip"], d["host_port"], d["guest_port"], d.get("proto", "tcp"))
            for d in data.get("forwards", [])]


def _write_state(machine_dir: Path, forwards: Iterable[PortForward], errors: dict[str, str]) -> None:
    path = Path(machine_dir) / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({
        "forwards": [pf.__dict__ for pf in sorted(forwards, key=lambda p: (p.proto, p.host_port))],
        "errors": errors, "updated": time.time(),
    }, indent=1))
    os.replace(tmp, path)


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


def spawn(machine_dir: Path, qmp_socket: Path, engine_port: int) -> int:
    """Start the forwarder for a machine unless one runs; it outlives the calling command."""
    machine_dir = Path(machine_dir)
    pid = _pid(machine_dir)
    if pid is not None:
        return pid
    (machine_dir / STATE_FILE).unlink(missing_ok=True)
    log = open(machine_dir / LOG_FILE, "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "skiffbox.machine.portfwd", "run", "--machine-dir", str(machine_dir),
         "--qmp", str(qmp_socket), "--engine-port", str(engine_port)],
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
    def __init__(self, machine_dir: Path, port: int, host: str = "127.0.0.1") -> None:
        self.host, self.port = host, port
        ctx = ssl.create_default_context(cafile=str(machine_dir / "ca.pem"))
        ctx.load_cert_chain(str(machine_dir / "cert.pem"), str(machine_dir / "key.pem"))
        self.ctx = ctx

    def _conn(self, timeout: float | None) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=timeout)

    def published(self) -> dict[str, PortForward]:
        conn = self._conn(10.0)
        try:
            conn.request("GET", "/containers/json", headers={"Host": "docker"})
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200:
                raise OSError(f"/containers/json answered {resp.status}")
        finally:
            conn.close()
        return wanted_forwards(json.loads(body))

    def events(self, timeout: float):
        """Yield container events until the stream ends or `timeout` passes without one."""
        filters = urllib.parse.quote(json.dumps({"type": ["container"]}))
        conn = self._conn(timeout)
        try:
            conn.request("GET", f"/events?filters={filters}", headers={"Host": "docker"})
            resp = conn.getresponse()
            if resp.status != 200:
                raise OSError(f"/events answered {resp.status}")
            while True:
                line = resp.readline()
                if not line:
                    return
                if line.strip():
                    yield json.loads(line)
        finally:
            conn.close()


def wanted_forwards(containers: list[dict]) -> dict[str, PortForward]:
    """Ports published on all guest addresses (or the guest's loopback) become host forwards,
    keyed "proto/port" (PortForward is not hashable)."""
    out: dict[str, PortForward] = {}
    for c in containers:
        for p in c.get("Ports") or []:
            public = p.get("PublicPort")
            if not public:
                continue
            if p.get("IP", "0.0.0.0") not in ("", "0.0.0.0", "::", "127.0.0.1"):
                continue
            pf = PortForward("127.0.0.1", int(public), int(public), (p.get("Type") or "tcp").lower())
            out[_key(pf)] = pf
    return out


class Forwarder:
    def __init__(self, machine_dir: Path, backend: Backend, engine: Engine) -> None:
        self.machine_dir = machine_dir
        self.backend = backend
        self.engine = engine
        self.active: dict[str, PortForward] = {}
        self.errors: dict[str, str] = {}

    def apply(self, wanted: dict[str, PortForward]) -> None:
        for key in sorted(set(self.active) - set(wanted)):
            pf = self.active.pop(key)
            self.backend.remove(pf)
            log(f"removed {pf.proto} 127.0.0.1:{pf.host_port}")
        self.errors = {k: v for k, v in self.errors.items() if k in wanted}
        for key in sorted(set(wanted) - set(self.active)):
            if key in self.errors:
                continue  # failed before (host port taken): retried at the next resync
            pf = wanted[key]
            err = self.backend.add(pf)
            if err:
                self.errors[key] = err
                log(f"cannot forward {pf.proto} 127.0.0.1:{pf.host_port}: {err}")
            else:
                self.active[key] = pf
                log(f"forwarding {pf.proto} 127.0.0.1:{pf.host_port} -> guest:{pf.guest_port}")
        _write_state(self.machine_dir, self.active.values(), self.errors)

    def sync(self) -> None:
        self.apply(self.engine.published())

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            if not self.backend.alive():
                log("QEMU is gone; exiting")
                return
            try:
                self.errors.clear()  # resync retries ports that were taken
                self.sync()
                for ev in self.engine.events(RESYNC_SECONDS):
                    if stop.is_set():
                        return
                    if ev.get("Action", ev.get("status", "")).split(":")[0] in EVENTS_OF_INTEREST:
                        self.sync()
            except TimeoutError:
                continue  # quiet stream: resync
            except (OSError, ValueError, http.client.HTTPException) as e:
                # engine not up yet (booting, provisioning) or restarting: retry shortly
                log(f"engine not reachable: {e}")
                stop.wait(2.0)


class _Stopped(Exception):
    pass


def _key(pf: PortForward) -> str:
    return f"{pf.proto}/{pf.host_port}"


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m machine.portfwd")
    sub = ap.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run")
    run.add_argument("--machine-dir", required=True, type=Path)
    run.add_argument("--qmp", required=True, type=Path)
    run.add_argument("--engine-port", required=True, type=int)
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
    fwd = Forwarder(args.machine_dir, backend, Engine(args.machine_dir, args.engine_port))
    try:
        fwd.run(stop)
    except _Stopped:
        pass
    finally:
        if stop.is_set() and backend.alive():  # stopped by us, VM still up: take our forwards away
            fwd.apply({})
        (args.machine_dir / STATE_FILE).unlink(missing_ok=True)
        if _pid(args.machine_dir) == os.getpid():
            (args.machine_dir / PID_FILE).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
