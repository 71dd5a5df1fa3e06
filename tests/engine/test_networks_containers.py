"""Networking of real containers through the docker CLI and docker-py: user networks with names and aliases,
published ports, `-P`, `--network none|host`, `--ip`, `--add-host`, `--dns`, connect/disconnect, restart.

skiffd runs in the session's network namespace (the harness), so the bridges and NAT rules netavark creates live
there and vanish with it; published ports are reached from inside that namespace.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import docker
import pytest

from tests.engine.harness import Skiffd, TestImages
from tests.engine.network_fixtures import remove_containers_and_networks

HTTPD = "mkdir -p /www && echo {text} > /www/index.html && exec httpd -f -p 80 -h /www"


@pytest.fixture(scope="module")
def d(skiffd: Skiffd, images: TestImages) -> Skiffd:
    skiffd.docker("pull", "-q", images.busybox)
    return skiffd


@pytest.fixture(autouse=True)
def _clean(d: Skiffd):
    yield
    remove_containers_and_networks(d)


def wget_in_ns(d: Skiffd, url: str) -> str:
    """Fetch a URL from the VM's side (skiffd's network namespace), as the host tool's forwarder would."""
    r = d.ns.run(["timeout", "10", "busybox", "wget", "-qO-", url])
    return r.stdout


def test_user_network_names_and_aliases(d: Skiffd, images: TestImages) -> None:
    bb = images.busybox
    d.docker("network", "create", "appnet")
    d.docker("run", "-d", "--name", "web", "--network", "appnet", "--network-alias", "www", bb, "sh", "-c",
             HTTPD.format(text="hello-web"))
    for url in ("http://web/", "http://www/"):
        out = d.docker("run", "--rm", "--network", "appnet", bb, "wget", "-qO-", url).stdout
        assert out == "hello-web\n", url
    # the reverse direction, by container name, from a named client
    d.docker("run", "-d", "--name", "client", "--network", "appnet", bb, "sleep", "300")
    assert d.docker("exec", "web", "ping", "-c", "1", "-W", "3", "client").returncode == 0
    web = json.loads(d.docker("inspect", "web").stdout)[0]
    ep = web["NetworkSettings"]["Networks"]["appnet"]
    assert ep["IPAddress"].startswith("172.") and ep["Gateway"].endswith(".1") and ep["Aliases"] == ["www"]
    assert "web" in ep["DNSNames"] and "www" in ep["DNSNames"]
    net = json.loads(d.docker("network", "inspect", "appnet").stdout)[0]
    assert web["Id"] in net["Containers"] and net["Containers"][web["Id"]]["Name"] == "web"
    assert net["Containers"][web["Id"]]["IPv4Address"] == f"{ep['IPAddress']}/{ep['IPPrefixLen']}"
    r = d.docker("network", "rm", "appnet", check=False)
    assert r.returncode != 0 and "active endpoints" in r.stderr
    # the default bridge has no name resolution (as Docker)
    r = d.docker("run", "--rm", bb, "nslookup", "web", check=False)
    assert r.returncode != 0


def test_published_port_and_docker_port(d: Skiffd, images: TestImages) -> None:
    bb = images.busybox
    d.docker("run", "-d", "--name", "pub", "-p", "28080:80", "-p", "127.0.0.1::81", "--expose", "90", "-P", bb,
             "sh", "-c", HTTPD.format(text="hello-pub"))
    ports = d.docker("port", "pub").stdout.splitlines()
    assert "80/tcp -> 0.0.0.0:28080" in ports
    assert any(p.startswith("81/tcp -> 127.0.0.1:") for p in ports)
    assert any(p.startswith("90/tcp -> 0.0.0.0:") for p in ports)
    deadline = time.monotonic() + 10
    while wget_in_ns(d, "http://127.0.0.1:28080/") != "hello-pub\n" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert wget_in_ns(d, "http://127.0.0.1:28080/") == "hello-pub\n"
    insp = json.loads(d.docker("inspect", "pub").stdout)[0]
    assert insp["NetworkSettings"]["Ports"]["80/tcp"] == [{"HostIp": "0.0.0.0", "HostPort": "28080"}]
    summary = d.client().api.containers(filters={"name": "pub"})[0]
    assert {"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 28080, "Type": "tcp"} in summary["Ports"]
    # the same host port again is refused
    r = d.docker("run", "-d", "--name", "pub2", "-p", "28080:80", bb, "sleep", "30", check=False)
    assert r.returncode != 0 and "already allocated" in r.stderr
    # after the container goes, so does the forward
    d.docker("rm", "-f", "pub")
    assert wget_in_ns(d, "http://127.0.0.1:28080/") == ""


def test_network_none_and_host(d: Skiffd, images: TestImages) -> None:
    bb = images.busybox
    links = d.docker("run", "--rm", "--network", "none", bb, "ip", "-o", "link").stdout.splitlines()
    assert len(links) == 1 and "lo:" in links[0] and "UP" in links[0]
    def names(out: str) -> list[str]:
        return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]

    inside = names(d.docker("run", "--rm", "--network", "host", bb, "ip", "-o", "link").stdout)
    assert inside == names(d.ns.run(["ip", "-o", "link"]).stdout)  # the VM's own interfaces
    bridge_dev = json.loads(d.docker("network", "inspect", "bridge").stdout)[0]["Options"]["com.docker.network.bridge.name"]
    assert bridge_dev in inside  # skiff0, or skiff1.. when another daemon shares the namespace


def test_ip_add_host_dns(d: Skiffd, images: TestImages) -> None:
    bb = images.busybox
    d.docker("network", "create", "--subnet", "10.211.0.0/24", "ipnet")
    out = d.docker("run", "--rm", "--network", "ipnet", "--ip", "10.211.0.50", "--add-host", "db.local:10.1.2.3",
                   "--add-host", "gw:host-gateway", bb, "sh", "-c", "ip -o -4 addr show eth0; cat /etc/hosts").stdout
    assert "10.211.0.50/24" in out
    assert "10.1.2.3\tdb.local" in out and "172.17.0.1\tgw" in out
    resolv = d.docker("run", "--rm", "--dns", "192.0.2.53", "--dns-search", "corp.test", bb, "cat", "/etc/resolv.conf").stdout
    assert "nameserver 192.0.2.53" in resolv and "search corp.test" in resolv
    # on a user network --dns feeds the network's DNS server, which stays the container's resolver
    resolv = d.docker("run", "--rm", "--network", "ipnet", "--dns", "192.0.2.53", bb, "cat", "/etc/resolv.conf").stdout
    assert "nameserver 10.211.0.1" in resolv and "192.0.2.53" not in resolv
    r = d.docker("run", "--rm", "--ip", "172.17.0.99", bb, "true", check=False)
    assert r.returncode != 0 and "user defined networks" in r.stderr
    r = d.docker("run", "--rm", "--network", "nosuchnet", bb, "true", check=False)
    assert r.returncode != 0 and "not found" in r.stderr


def test_connect_disconnect_running(d: Skiffd, images: TestImages) -> None:
    bb = images.busybox
    d.docker("network", "create", "front")
    d.docker("network", "create", "back")
    d.docker("run", "-d", "--name", "svc", "--network", "front", bb, "sh", "-c", HTTPD.format(text="hello-svc"))
    d.docker("network", "connect", "--alias", "db", "back", "svc")
    insp = json.loads(d.docker("inspect", "svc").stdout)[0]
    assert set(insp["NetworkSettings"]["Networks"]) == {"front", "back"}
    assert "eth1" in d.docker("exec", "svc", "ip", "-o", "link").stdout
    assert d.docker("run", "--rm", "--network", "back", bb, "wget", "-qO-", "http://db/").stdout == "hello-svc\n"
    # networks are isolated from each other: a container only on "back" cannot reach svc's "front" address
    front_ip = insp["NetworkSettings"]["Networks"]["front"]["IPAddress"]
    r = d.docker("run", "--rm", "--network", "back", bb, "sh", "-c", f"timeout 5 wget -qO- http://{front_ip}/; echo rc=$?")
    assert "hello-svc" not in r.stdout and "rc=0" not in r.stdout
    d.docker("network", "disconnect", "back", "svc")
    assert "eth1" not in d.docker("exec", "svc", "ip", "-o", "link").stdout
    assert set(json.loads(d.docker("inspect", "svc").stdout)[0]["NetworkSettings"]["Networks"]) == {"front"}
    # a stopped container: the connection is remembered and applied at start
    d.docker("create", "--name", "later", "--network", "front", bb, "sleep", "300")
    d.docker("network", "connect", "back", "later")
    d.docker("start", "later")
    nets = json.loads(d.docker("inspect", "later").stdout)[0]["NetworkSettings"]["Networks"]
    assert nets["back"]["IPAddress"] and nets["front"]["IPAddress"]
    assert "eth1" in d.docker("exec", "later", "ip", "-o", "link").stdout


def test_docker_py(d: Skiffd, images: TestImages) -> None:
    c = d.client()
    net = c.networks.create("pynet2")
    web = c.containers.run(images.busybox, ["sh", "-c", HTTPD.format(text="hello-py")], name="pyweb", network="pynet2",
                           detach=True, ports={"80/tcp": ("127.0.0.1", 28181)})
    try:
        out = c.containers.run(images.busybox, ["wget", "-qO-", "http://pyweb/"], network="pynet2", remove=True)
        assert out == b"hello-py\n"
        web.reload()
        assert web.ports == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "28181"}]}
        assert wget_in_ns(d, "http://127.0.0.1:28181/") == "hello-py\n"
        net.reload()
        assert [ct.name for ct in net.containers] == ["pyweb"]
        out = c.containers.run(images.busybox, ["ip", "-o", "link"], network_mode="none", remove=True)
        assert out.count(b"\n") == 1 and b"lo:" in out
        # As dockerd: IPAM Options stay null when not given; a created container's endpoint keeps the MAC asked
        # for; a running container not on the network cannot be disconnected, force or not.
        assert c.api.inspect_network(net.id)["IPAM"]["Options"] is None
        created = c.api.create_container(images.busybox, "true")["Id"]
        c.api.connect_container_to_network(created, "pynet2", mac_address="02:42:ac:11:00:02")
        assert c.api.inspect_container(created)["NetworkSettings"]["Networks"]["pynet2"]["MacAddress"] == \
            "02:42:ac:11:00:02"
        c.api.remove_container(created)
        c.api.disconnect_container_from_network(web.id, "pynet2", force=True)
        with pytest.raises(docker.errors.APIError):
            c.api.disconnect_container_from_network(web.id, "pynet2", force=True)
    finally:
        web.remove(force=True)
        net.remove()


def test_survives_daemon_restart(d: Skiffd, images: TestImages) -> None:
    bb = images.busybox
    d.docker("network", "create", "keepnet")
    d.docker("run", "-d", "--name", "keep", "--network", "keepnet", "-p", "28282:80", bb, "sh", "-c", HTTPD.format(text="kept"))
    d.restart()
    assert wget_in_ns(d, "http://127.0.0.1:28282/") == "kept\n"
    assert d.docker("run", "--rm", "--network", "keepnet", bb, "wget", "-qO-", "http://keep/").stdout == "kept\n"
    net = json.loads(d.docker("network", "inspect", "keepnet").stdout)[0]
    assert [v["Name"] for v in net["Containers"].values()] == ["keep"]
    d.docker("rm", "-f", "keep")
    assert wget_in_ns(d, "http://127.0.0.1:28282/") == ""
    d.docker("network", "rm", "keepnet")


def test_udp_port_ip_range_and_container_mode(d: Skiffd, images: TestImages) -> None:
    bb = images.busybox
    # UDP: a datagram sent to the published port on the VM side reaches the container. busybox has no UDP server,
    # so socat listens inside the container's network namespace (its SandboxKey).
    d.docker("run", "-d", "--name", "udp", "-p", "29999:9999/udp", bb, "sleep", "300")
    assert d.docker("port", "udp").stdout.strip() == "9999/udp -> 0.0.0.0:29999"
    sandbox = json.loads(d.docker("inspect", "udp").stdout)[0]["NetworkSettings"]["SandboxKey"]
    got = Path(tempfile.mkdtemp(prefix="skudp-")) / "got"
    srv = subprocess.Popen(["nsenter", f"--net={sandbox}", "socat", "-u", "UDP-RECV:9999", f"OPEN:{got},creat"])
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not (got.exists() and "ping-udp" in got.read_text()):
            d.ns.run(["sh", "-c", "echo ping-udp | socat - UDP:127.0.0.1:29999"])
            time.sleep(0.3)
        assert got.exists() and "ping-udp" in got.read_text()
    finally:
        srv.kill()
        srv.wait()
        shutil.rmtree(got.parent, ignore_errors=True)
    # --ip-range: addresses come from the range, the gateway stays the subnet's first
    d.docker("network", "create", "--subnet", "10.212.0.0/16", "--ip-range", "10.212.7.0/24", "rangenet")
    out = d.docker("run", "--rm", "--network", "rangenet", bb, "sh", "-c", "ip -o -4 addr show eth0; ip route").stdout
    assert "inet 10.212.7." in out and "default via 10.212.0.1" in out
    # container:<id> shares the other container's network stack
    d.docker("run", "-d", "--name", "owner", "--network", "rangenet", bb, "sh", "-c", HTTPD.format(text="shared-ns"))
    out = d.docker("run", "--rm", "--network", "container:owner", bb, "sh", "-c",
                   "wget -qO- http://127.0.0.1/; ip -o -4 addr show eth0").stdout
    owner_ip = json.loads(d.docker("inspect", "owner").stdout)[0]["NetworkSettings"]["Networks"]["rangenet"]["IPAddress"]
    assert out.startswith("shared-ns\n") and f"inet {owner_ip}/" in out


def test_ipv6_network(d: Skiffd, images: TestImages) -> None:
    d.docker("network", "create", "--ipv6", "--subnet", "fd00:5ca1::/64", "v6net")
    net = json.loads(d.docker("network", "inspect", "v6net").stdout)[0]
    subnets = [c["Subnet"] for c in net["IPAM"]["Config"]]
    assert "fd00:5ca1::/64" in subnets and any(s.startswith("172.") for s in subnets) and net["EnableIPv6"] is True
    d.docker("run", "-d", "--name", "v6a", "--network", "v6net", images.busybox, "sleep", "300")
    ep = json.loads(d.docker("inspect", "v6a").stdout)[0]["NetworkSettings"]["Networks"]["v6net"]
    assert ep["GlobalIPv6Address"] == "fd00:5ca1::2" and ep["GlobalIPv6PrefixLen"] == 64 and ep["IPv6Gateway"] == "fd00:5ca1::1"
    out = d.docker("run", "--rm", "--network", "v6net", images.busybox, "ping", "-6", "-c", "1", "-W", "3", "fd00:5ca1::2").stdout
    assert "1 packets received" in out


def test_internal_network(d: Skiffd, images: TestImages) -> None:
    bb = images.busybox
    d.docker("network", "create", "--internal", "intnet")
    d.docker("run", "-d", "--name", "inweb", "--network", "intnet", bb, "sh", "-c", HTTPD.format(text="inside"))
    out = d.docker("run", "--rm", "--network", "intnet", bb, "sh", "-c", "wget -qO- http://inweb/; ip route").stdout
    assert out.startswith("inside\n") and "default" not in out  # names work, no way out
