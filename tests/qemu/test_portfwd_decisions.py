"""The port forwarder's decisions, with real parts and no VM boot:
- which published ports become which host forwards (and which are refused, with why);
- a taken host port recorded as an error (shown by `machine ls` ERRORS and `inspect`), retried, and cleared once it
  frees, against a real QEMU (`-machine none`, a user-net netdev and QMP: its hostfwd listeners are real sockets);
- the SSH relay for loopback-published ports against a real sshd (tests/machine/sshhost.py)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from skiffbox.machine import portfwd
from skiffbox.machine.drivers.base import PortForward, SSHEndpoint
from skiffbox.machine.drivers.qemu import free_port
from skiffbox.machine.portfwd import Forwarder, QMPBackend, plan
from skiffbox.machine.portrelay import SSHRelay
from tests.machine.conftest import ssh_host  # noqa: F401  (a real sshd, the fixture the generic driver tests use)
from tests.qemu.test_ports_listed import _machine

NAME = "ports"


def _c(name: str, *ports: tuple[str, int, int, str]) -> dict:
    return {"Id": name * 4, "Names": [f"/{name}"],
            "Ports": [{"IP": ip, "PrivatePort": priv, "PublicPort": pub, "Type": proto} for ip, priv, pub, proto in ports]}


def test_plan_host_ip_rules() -> None:
    wanted, refused = plan([
        _c("all", ("0.0.0.0", 80, 8080, "tcp"), ("::", 80, 8080, "tcp")),
        _c("lo", ("127.0.0.1", 80, 18080, "tcp")),
        _c("lo6", ("::1", 80, 18443, "tcp")),
        _c("lou", ("127.0.0.1", 53, 5353, "udp")),
        _c("vmip", ("10.0.2.15", 80, 9000, "tcp")),
    ])
    assert {k: (w.pf, w.guest_ip) for k, w in wanted.items()} == {
        "tcp/127.0.0.1:8080": (PortForward("127.0.0.1", 8080, 8080), ""),  # QEMU forward to the user-net address
        "tcp/127.0.0.1:18080": (PortForward("127.0.0.1", 18080, 18080), "127.0.0.1"),  # relayed to the loopback
        "tcp/[::1]:18443": (PortForward("::1", 18443, 18443), "::1"),
    }
    assert wanted["tcp/127.0.0.1:18080"].origin == "container lo, port 80/tcp"
    assert set(refused) == {"udp/127.0.0.1:5353", "tcp/10.0.2.15:9000"}
    assert "container vmip, port 80/tcp" in refused["tcp/10.0.2.15:9000"]
    assert "-p 127.0.0.1:9000:80" in refused["tcp/10.0.2.15:9000"]  # says what to do instead
    assert "-p 5353:53/udp" in refused["udp/127.0.0.1:5353"]


# ---- a real QEMU's user network, no guest ----------------------------------------------------------
@pytest.fixture()
def qemu(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(store, machine dir) of a machine "ports" whose QEMU runs (paused, no guest) with netdev net0 and QMP."""
    store = tmp_path / "store"
    mdir = store / "machines" / NAME
    mdir.mkdir(parents=True)
    (mdir / "config.json").write_text(json.dumps({"ConfigVersion": 3, "Name": NAME, "DriverName": "qemu",
                                                  "Driver": {"MachineName": NAME}, "HostOptions": {}}))
    qmp = mdir / "qmp-portfwd.sock"
    proc = subprocess.Popen(["qemu-system-x86_64", "-machine", "none", "-nodefaults", "-display", "none", "-S",
                             "-netdev", "user,id=net0", "-qmp", f"unix:{qmp},server=on,wait=off",
                             "-pidfile", str(mdir / "qemu.pid")],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not (qmp.exists() and (mdir / "qemu.pid").exists()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert qmp.exists(), "qemu did not start"
        yield store, mdir
    finally:
        proc.kill()
        proc.wait(10)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_taken_port_is_reported_retried_and_cleared(qemu: tuple[Path, Path]) -> None:
    store, mdir = qemu
    backend = QMPBackend(mdir / "qmp-portfwd.sock")
    fwd = Forwarder(mdir, backend, engine=None)
    ok, busy_port = free_port(), free_port()
    busy = socket.socket()
    busy.bind(("127.0.0.1", busy_port))
    busy.listen()
    try:
        fwd.apply(*plan([_c("web", ("0.0.0.0", 80, ok, "tcp")), _c("clash", ("0.0.0.0", 80, busy_port, "tcp")),
                         _c("vmonly", ("10.0.2.15", 81, 9000, "tcp"))]))
        assert _listening(ok)  # QEMU's own listener for the forward that worked
        assert [f"{p.host_ip}:{p.host_port}" for p in portfwd.current(mdir)] == [f"127.0.0.1:{ok}"]
        errs = portfwd.errors(mdir)
        assert len(errs) == 2
        clash = next(e for e in errs if "clash" in e)
        assert clash.startswith("container clash, port 80/tcp: not forwarded, ")
        assert f"host port 127.0.0.1:{busy_port} is taken by another program" in clash
        # shown where a user looks: `machine ls` ERRORS and `machine inspect`
        ls = _machine(store, "ls")
        assert f"127.0.0.1:{busy_port} is taken" in ls and "vmonly" in ls
        drv = json.loads(_machine(store, "inspect", NAME))["Driver"]
        assert drv["PortForwardErrors"] == errs and drv["PortForwards"] == [f"127.0.0.1:{ok}->{ok}/tcp"]
        fwd.retry()  # still taken: still an error, nothing else changes
        assert portfwd.errors(mdir) == errs
    finally:
        busy.close()
    fwd.retry()  # the port freed: forwarded now, its error gone (the refused one stays: that needs a new -p)
    assert _listening(busy_port)
    assert sorted(p.host_port for p in portfwd.current(mdir)) == sorted([ok, busy_port])
    assert [e for e in portfwd.errors(mdir) if "clash" in e] == [] and len(portfwd.errors(mdir)) == 1
    assert "clash" not in _machine(store, "ls")
    fwd.apply({})  # the containers went away: no listeners, no errors
    assert not _listening(ok) and not _listening(busy_port)
    assert portfwd.current(mdir) == [] and portfwd.errors(mdir) == []
    backend.client.close()


def test_retry_loop_picks_up_a_freed_port(qemu: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """The forwarder's own polling (not a test calling retry()) forwards the port once it frees."""
    import threading

    _, mdir = qemu
    monkeypatch.setattr(portfwd, "RETRY_SECONDS", 0.2)
    fwd = Forwarder(mdir, QMPBackend(mdir / "qmp-portfwd.sock"), engine=None)
    port = free_port()
    busy = socket.socket()
    busy.bind(("127.0.0.1", port))
    busy.listen()
    stop = threading.Event()
    t = threading.Thread(target=fwd._retry_loop, args=(stop,), daemon=True)
    t.start()
    try:
        fwd.apply(*plan([_c("web", ("0.0.0.0", 80, port, "tcp"))]))
        assert portfwd.errors(mdir) and portfwd.current(mdir) == []
        busy.close()
        deadline = time.monotonic() + 10
        while portfwd.errors(mdir) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert portfwd.errors(mdir) == [] and [p.host_port for p in portfwd.current(mdir)] == [port]
    finally:
        stop.set()
        t.join(5)
        busy.close()
        fwd.apply({})
        fwd.backend.client.close()  # type: ignore[attr-defined]


# ---- the SSH relay, against a real sshd ------------------------------------------------------------
def test_relay_reaches_a_loopback_only_server(ssh_host, tmp_path: Path) -> None:
    """A server bound to 127.0.0.1 on the SSH host (a "guest" loopback no forward can reach) answers on the
    local 127.0.0.1 through the relay; a host port that is taken is refused with why; remove stops it."""
    guest_port = 18000 + os.getpid() % 1000
    server = subprocess.Popen(["nsenter", "-t", str(ssh_host.init_pid()), "-m", "-n", "-p", "-r", "-w",
                               "python3", "-m", "http.server", "--bind", "127.0.0.1", "--directory", "/etc",
                               str(guest_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    relay = SSHRelay(SSHEndpoint(ssh_host.ip, ssh_host.port, ssh_host.user, Path(ssh_host.key_path)))
    try:
        deadline = time.monotonic() + 20
        while ssh_host.exec(["sh", "-c", f"ss -ltn | grep -q 127.0.0.1:{guest_port}"], check=False).returncode:
            assert time.monotonic() < deadline, "the loopback server did not start"
            time.sleep(0.2)
        host_port = free_port()
        assert relay.add("127.0.0.1", host_port, "127.0.0.1", guest_port) is None
        for _ in range(3):  # several connections over the one SSH session
            body = urllib.request.urlopen(f"http://127.0.0.1:{host_port}/hostname", timeout=30).read()
            assert body.decode().strip() == "skiff-sshhost"
        # a big response, read while the request side is half-closed: nothing stalls or is lost
        big = urllib.request.urlopen(f"http://127.0.0.1:{host_port}/services", timeout=30).read()
        assert big == ssh_host.exec(["cat", "/etc/services"]).stdout.encode()
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            why = relay.add("127.0.0.1", taken.getsockname()[1], "127.0.0.1", guest_port)
            assert why == f"host port 127.0.0.1:{taken.getsockname()[1]} is taken by another program"
        relay.remove("127.0.0.1", host_port)
        assert not _listening(host_port)
    finally:
        relay.close()
        server.kill()
        server.wait(10)
