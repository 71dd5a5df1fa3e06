"""Networks and their containers after a simulated VM reboot: skiffd runs in a network namespace of its own, and the
"reboot" kills every process of that boot, unmounts and empties the exec root and replaces the whole network
namespace with a fresh one (no bridge, no NAT rule, no aardvark-dns), keeping only the data root."""

from __future__ import annotations

import json
import time

import pytest

from tests.engine.harness import NetNS, TestImages
from tests.engine.network_fixtures import IsolatedSkiffd, new_isolated

HTTPD = "mkdir -p /www && echo {text} > /www/index.html && exec httpd -f -p 80 -h /www"


@pytest.fixture()
def iso(netns: NetNS, images: TestImages) -> IsolatedSkiffd:
    s = new_isolated(netns)
    try:
        s.daemon.docker("pull", "-q", images.busybox)
        yield s
    finally:
        ids = s.daemon.docker("ps", "-aq", check=False).stdout.split()
        if ids:
            s.daemon.docker("rm", "-f", *ids, check=False)
        s.close()


def _until(pred, timeout: float = 30.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.3)
    return False


@pytest.mark.slow
def test_network_and_containers_come_back_after_reboot(iso: IsolatedSkiffd, images: TestImages) -> None:
    d = iso.daemon
    bb = images.busybox
    nid = d.docker("network", "create", "--subnet", "10.222.0.0/24", "--label", "keep=1", "rbnet").stdout.strip()
    d.docker("run", "-d", "--name", "web", "--restart", "always", "--network", "rbnet", "--network-alias", "www",
             "-p", "28484:80", bb, "sh", "-c", HTTPD.format(text="before-reboot"))
    d.docker("run", "-d", "--name", "cli", "--restart", "always", "--network", "rbnet", "--ip", "10.222.0.99", bb,
             "sleep", "600")

    def fetch() -> str:
        return d.ns.run(["timeout", "5", "busybox", "wget", "-qO-", "http://127.0.0.1:28484/"]).stdout

    assert _until(lambda: fetch() == "before-reboot\n")
    iso.reboot()
    assert d.ns.run(["ip", "-o", "link"]).stdout.count(":") >= 1
    # the network definition survived, with its ID and settings
    net = json.loads(d.docker("network", "inspect", "rbnet").stdout)[0]
    assert net["Id"] == nid and net["IPAM"]["Config"][0]["Subnet"] == "10.222.0.0/24" and net["Labels"] == {"keep": "1"}
    # restart policies brought both containers back, wired again: port, names, aliases, the static IP
    assert _until(lambda: d.docker("inspect", "-f", "{{.State.Running}}", "web", "cli").stdout.split() == ["true", "true"])
    assert _until(lambda: fetch() == "before-reboot\n")
    # Names come back too, at once: a container counts as running only once its names are served (the wait above
    # is for httpd to listen). Both restart concurrently; the bridge keeps one MAC however its ports come and go
    # (it used to follow the lowest port, which once left `cli` unable to reach the name server here).
    check = "wget -qO- http://web/ && wget -qO- http://www/ && ip -o -4 addr show eth0"
    out = d.docker("exec", "cli", "sh", "-c", check).stdout
    assert out.count("before-reboot") == 2 and "10.222.0.99/24" in out
    net = json.loads(d.docker("network", "inspect", "rbnet").stdout)[0]
    assert sorted(c["Name"] for c in net["Containers"].values()) == ["cli", "web"]
    # and a new container gets a fresh address without clashing with them
    ip = d.docker("run", "--rm", "--network", "rbnet", bb, "sh", "-c", "ip -o -4 addr show eth0").stdout
    assert "10.222.0." in ip and "10.222.0.99/" not in ip
    d.docker("rm", "-f", "web", "cli")
    d.docker("network", "rm", "rbnet")
