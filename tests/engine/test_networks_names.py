"""Names on user networks are served, to every peer, as soon as `docker run -d` / `network connect` returns, and
stop being served when the container goes.

The race seen in CI ("ping: bad address" right after run -d, and after a reboot) was not dnsmasq: the bridge took
the lowest MAC of its ports (the kernel's rule for a bridge whose address was never set), so it changed when a
veth with a lower MAC joined or the lowest one left; peers kept the old MAC in their ARP entry for the gateway and
their DNS queries were dropped until the kernel re-probed it (5-45 s). The engine now pins the bridge's MAC.
`names_race_repro.py` is the loop under CPU load that reproduced it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

import pytest

from tests.engine.harness import Skiffd, TestImages
from tests.engine.network_fixtures import remove_containers_and_networks


@pytest.fixture(scope="module")
def d(skiffd: Skiffd, images: TestImages) -> Skiffd:
    skiffd.docker("pull", "-q", images.busybox)
    return skiffd


@pytest.fixture(autouse=True)
def _clean(d: Skiffd):
    yield
    remove_containers_and_networks(d)


def inspect(d: Skiffd, ref: str) -> dict:
    return json.loads(d.docker("inspect", ref).stdout)[0]


def bridge_of(d: Skiffd, net: str) -> str:
    rec = json.loads(d.docker("network", "inspect", net).stdout)[0]
    return rec["Options"].get("com.docker.network.bridge.name") or "br-" + rec["Id"][:12]


def link(d: Skiffd, dev: str) -> dict:
    return json.loads(d.ns.run(["ip", "-j", "link", "show", "dev", dev]).stdout)[0]


def host_veth(d: Skiffd, ctr: str) -> str:
    """The bridge port of a container: the veth in skiffd's netns whose index is the peer of the container's eth0."""
    sandbox = inspect(d, ctr)["NetworkSettings"]["SandboxKey"]
    eth0 = json.loads(subprocess.run(["nsenter", f"--net={sandbox}", "ip", "-j", "link", "show", "dev", "eth0"],
                                     capture_output=True, text=True, check=True).stdout)[0]
    ports = json.loads(d.ns.run(["ip", "-j", "link", "show", "type", "veth"]).stdout)
    return next(p["ifname"] for p in ports if p["ifindex"] == eth0["link_index"])


def lookup(d: Skiffd, frm: str, name: str) -> subprocess.CompletedProcess:
    """What the CI test did: the peer's libc resolver (busybox ping → getaddrinfo), once, no retry loop."""
    return d.docker("exec", frm, "ping", "-c", "1", "-W", "2", name, check=False)


def resolved_ip(d: Skiffd, frm: str, name: str) -> str | None:
    r = lookup(d, frm, name)
    first = r.stdout.splitlines()[0] if r.stdout else ""
    # "PING web (172.18.0.2): 56 data bytes"
    return first.split("(", 1)[1].split(")", 1)[0] if "(" in first else None


def ip_on(d: Skiffd, ctr: str, net: str) -> str:
    return inspect(d, ctr)["NetworkSettings"]["Networks"][net]["IPAddress"]


def test_gateway_mac_survives_the_lowest_port_leaving(d: Skiffd, images: TestImages) -> None:
    """The cause, made deterministic: a port with the lowest possible MAC joins, a peer learns the gateway's MAC
    then, the port leaves. Unpinned, the bridge's MAC moves with its lowest port and the peer's lookups fail with
    'bad address' for seconds; pinned, nothing changes."""
    bb = images.busybox
    d.docker("network", "create", "macnet")
    br = bridge_of(d, "macnet")
    d.docker("run", "-d", "--name", "web", "--network", "macnet", bb, "sleep", "300")
    mac = link(d, br)["address"]
    d.docker("run", "-d", "--name", "low", "--network", "macnet", bb, "sleep", "300")
    d.ns.run(["ip", "link", "set", "dev", host_veth(d, "low"), "address", "02:00:00:00:00:01"], check=True)
    moved = link(d, br)["address"]
    # the peer (re)learns the gateway's MAC now, while `low` is a port
    sandbox = inspect(d, "web")["NetworkSettings"]["SandboxKey"]
    subprocess.run(["nsenter", f"--net={sandbox}", "ip", "neigh", "flush", "dev", "eth0"], check=True)
    assert lookup(d, "web", "low").returncode == 0
    d.docker("rm", "-f", "low")
    d.docker("run", "-d", "--name", "client", "--network", "macnet", bb, "sleep", "300")
    r = lookup(d, "web", "client")
    assert r.returncode == 0, r.stderr
    assert moved == mac and link(d, br)["address"] == mac
    neigh = subprocess.run(["nsenter", f"--net={sandbox}", "ip", "neigh", "show", "dev", "eth0"], capture_output=True,
                           text=True).stdout
    assert mac in neigh


def test_every_name_on_every_network_and_gone_after_rm(d: Skiffd, images: TestImages) -> None:
    bb = images.busybox
    d.docker("network", "create", "n1")
    d.docker("network", "create", "n2")
    d.docker("run", "-d", "--name", "p1", "--network", "n1", bb, "sleep", "300")
    d.docker("run", "-d", "--name", "p2", "--network", "n2", bb, "sleep", "300")
    cid = d.docker("create", "--name", "multi", "--hostname", "mhost", "--network", "n1", "--network-alias", "m1",
                   bb, "sleep", "300").stdout.strip()
    d.docker("network", "connect", "--alias", "m2", "n2", "multi")
    d.docker("start", "multi")
    ip1, ip2 = ip_on(d, "multi", "n1"), ip_on(d, "multi", "n2")
    for name in ("multi", "m1", cid[:12], "mhost"):
        assert resolved_ip(d, "p1", name) == ip1, name
    for name in ("multi", "m2", cid[:12], "mhost"):
        assert resolved_ip(d, "p2", name) == ip2, name
    assert lookup(d, "p2", "m1").returncode != 0  # aliases are per network
    # disconnect: gone from n2 at once, still on n1; reconnect: back at once, with the new address
    d.docker("network", "disconnect", "n2", "multi")
    r = lookup(d, "p2", "multi")
    assert r.returncode != 0 and "bad address" in r.stderr
    assert resolved_ip(d, "p1", "multi") == ip1
    d.docker("network", "connect", "--alias", "m2", "n2", "multi")
    ip2 = ip_on(d, "multi", "n2")
    assert resolved_ip(d, "p2", "m2") == ip2 and resolved_ip(d, "p2", "multi") == ip2
    d.docker("rm", "-f", "multi")
    for frm, name in (("p1", "multi"), ("p1", "m1"), ("p2", "m2"), ("p2", cid[:12])):
        r = lookup(d, frm, name)
        assert r.returncode != 0 and "bad address" in r.stderr, (frm, name)


def test_name_reused_by_a_new_container(d: Skiffd, images: TestImages) -> None:
    bb = images.busybox
    d.docker("network", "create", "reuse")
    d.docker("run", "-d", "--name", "web", "--network", "reuse", bb, "sleep", "300")
    for i in range(4):
        d.docker("run", "-d", "--name", "svc", "--network", "reuse", "--network-alias", "db", bb, "sleep", "300")
        ip = ip_on(d, "svc", "reuse")
        assert resolved_ip(d, "web", "svc") == ip, i
        assert resolved_ip(d, "web", "db") == ip, i
        d.docker("rm", "-f", "svc")


def dnsmasq_pid(d: Skiffd, net: str) -> int:
    nid = json.loads(d.docker("network", "inspect", net).stdout)[0]["Id"]
    return int((d.exec_root / "network" / "dns" / nid[:12] / "pid").read_text())


def test_name_server_restarted_with_files_present(d: Skiffd, images: TestImages) -> None:
    """dnsmasq dies while containers run: the next start (and a daemon restart) brings it back reading hosts.d,
    and every earlier container's names are served as well as the new one's."""
    bb = images.busybox
    d.docker("network", "create", "dnet")
    d.docker("run", "-d", "--name", "web", "--network", "dnet", "--network-alias", "www", bb, "sleep", "300")
    d.docker("run", "-d", "--name", "ca", "--network", "dnet", bb, "sleep", "300")
    old = dnsmasq_pid(d, "dnet")
    os.kill(old, signal.SIGKILL)
    d.docker("run", "-d", "--name", "cb", "--network", "dnet", bb, "sleep", "300")
    assert dnsmasq_pid(d, "dnet") != old
    for frm, name in (("cb", "ca"), ("ca", "cb"), ("ca", "www")):
        assert lookup(d, frm, name).returncode == 0, (frm, name)
    # and while skiffd is down: the server dies, a hosts file is lost; the daemon start puts both back
    pid = dnsmasq_pid(d, "dnet")
    nid = json.loads(d.docker("network", "inspect", "dnet").stdout)[0]["Id"]
    lost = d.exec_root / "network" / "dns" / nid[:12] / "hosts.d" / inspect(d, "ca")["Id"]
    d.stop()
    os.kill(pid, signal.SIGKILL)
    lost.unlink()
    d.start()
    for frm, name in (("web", "ca"), ("ca", "cb"), ("cb", "www")):
        assert lookup(d, frm, name).returncode == 0, (frm, name)


def test_start_waits_for_a_stalled_name_server_and_fails_if_it_never_serves(d: Skiffd, images: TestImages) -> None:
    """A name server that does not answer in time gets the names re-published and re-read (SIGHUP); the start
    returns only once they are served, or fails: never a container its peers cannot name."""
    bb = images.busybox
    d.docker("network", "create", "snet")
    d.docker("run", "-d", "--name", "web", "--network", "snet", bb, "sleep", "300")
    pid = dnsmasq_pid(d, "snet")
    retries = d.logfile.read_text().count("re-publishing")

    def resume_after_first_miss() -> None:  # the server wakes up during the engine's second try
        deadline = time.monotonic() + 30
        while d.logfile.read_text().count("re-publishing") == retries and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        os.kill(pid, signal.SIGCONT)

    os.kill(pid, signal.SIGSTOP)
    resume = threading.Thread(target=resume_after_first_miss)
    try:
        resume.start()
        t0 = time.monotonic()
        d.docker("run", "-d", "--name", "late", "--network", "snet", bb, "sleep", "300")
        assert time.monotonic() - t0 >= 3.0
    finally:
        resume.join()
        os.kill(pid, signal.SIGCONT)
    assert d.logfile.read_text().count("re-publishing") > retries
    assert lookup(d, "web", "late").returncode == 0
    assert lookup(d, "late", "web").returncode == 0  # the SIGHUP re-read kept the others' names
    os.kill(pid, signal.SIGSTOP)
    try:
        r = d.docker("run", "-d", "--name", "never", "--network", "snet", bb, "sleep", "300", check=False)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert r.returncode != 0 and "name server does not serve" in r.stderr, r.stderr
    assert inspect(d, "never")["State"]["Running"] is False
    net = json.loads(d.docker("network", "inspect", "snet").stdout)[0]
    assert sorted(c["Name"] for c in net["Containers"].values()) == ["late", "web"]
    d.docker("rm", "never")
    r = lookup(d, "web", "never")
    assert r.returncode != 0 and "bad address" in r.stderr


def test_default_bridge_mac_is_pinned_too(d: Skiffd, images: TestImages) -> None:
    """No names there, but routed traffic and published ports go through the same gateway MAC."""
    bb = images.busybox
    d.docker("run", "-d", "--name", "one", bb, "sleep", "300")
    br = bridge_of(d, "bridge")
    mac = link(d, br)["address"]
    d.docker("run", "-d", "--name", "two", bb, "sleep", "300")
    d.ns.run(["ip", "link", "set", "dev", host_veth(d, "two"), "address", "02:00:00:00:00:01"], check=True)
    assert link(d, br)["address"] == mac  # unpinned, the bridge would take the lowest port MAC now
    d.docker("rm", "-f", "two")
    assert link(d, br)["address"] == mac
