"""Two behaviours of dockerd 20.10 that docker-py's network tests rely on, checked inside the containers:

* An IPv6 subnet on a network created without EnableIPv6 is taken and kept in `IPAM.Config`, but nothing is
  allocated from it (libnetwork honours enableIPv6 on allocation): containers get an IPv4 address only, IPv6 stays
  off in them, and a requested `IPv6Address` is only recorded in `IPAMConfig`.
* A link on a user-defined network is a DNS alias that only the linking container resolves (dockerd's embedded
  DNS; here the container's own resolver at 127.0.0.11, guest/network/resolver.py), to the target's current address,
  whether the target started before or after it, and across a skiffd restart; no /etc/hosts line, no env vars.
* A container on several user networks resolves the names of each (the same resolver asks each network's name
  server), also after `network connect`, and a default-bridge container connected to a user network resolves
  that network's names (dockerd switches it to 127.0.0.11 too).
"""

from __future__ import annotations

import json
import random
import socket
import struct
import subprocess

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


def inspect(d: Skiffd, ref: str, kind: str = "container") -> dict:
    return json.loads(d.docker(kind, "inspect", ref).stdout)[0]


def addrs_in(d: Skiffd, ctr: str) -> list[dict]:
    """The container's global addresses, as `ip` inside it sees them."""
    sandbox = inspect(d, ctr)["NetworkSettings"]["SandboxKey"]
    out = subprocess.run(["nsenter", f"--net={sandbox}", "ip", "-j", "addr", "show", "scope", "global"],
                         capture_output=True, text=True, check=True).stdout
    return [a for link in json.loads(out) for a in link.get("addr_info", []) if "local" in a]


def nslookup(d: Skiffd, frm: str, name: str) -> list[str]:
    """The addresses busybox's nslookup (straight to the resolv.conf server, no /etc/hosts) gets for `name`."""
    r = d.docker("exec", frm, "nslookup", "-type=a", name, check=False)
    if r.returncode != 0:
        return []
    return [ln.split(":", 1)[1].strip() for ln in r.stdout.splitlines()[2:] if ln.startswith("Address")]


def test_ipv6_subnet_without_enable_ipv6_is_kept_but_not_assigned(d: Skiffd, images: TestImages) -> None:
    d.docker("network", "create", "--subnet", "2001:db8:77::/64", "--ip-range", "2001:db8:77::/96",
             "--gateway", "2001:db8:77::ffff", "n6")
    net = inspect(d, "n6", "network")
    assert net["EnableIPv6"] is False
    cfgs = net["IPAM"]["Config"]
    assert {"Subnet": "2001:db8:77::/64", "IPRange": "2001:db8:77::/96", "Gateway": "2001:db8:77::ffff"} in cfgs
    assert any(":" not in c["Subnet"] for c in cfgs), "an IPv4 subnet is chosen, as dockerd does"
    # nothing of it is reserved: another network may name the same subnet (dockerd 20.10 takes it too)
    d.docker("network", "create", "--subnet", "2001:db8:77::/64", "n6b")

    d.docker("run", "-d", "--name", "c6", "--network", "n6", "--ip6", "2001:db8:77::f00d", images.busybox, "top")
    es = inspect(d, "c6")["NetworkSettings"]["Networks"]["n6"]
    assert es["IPAMConfig"] == {"IPv6Address": "2001:db8:77::f00d"}
    assert es["GlobalIPv6Address"] == "" and es["IPv6Gateway"] == "" and es["IPAddress"]
    inside = addrs_in(d, "c6")
    assert [a["local"] for a in inside] == [es["IPAddress"]], inside
    # IPv6 is off in it, as dockerd leaves a container with no IPv6 network (loopback's ::1 included)
    assert d.docker("exec", "c6", "cat", "/proc/sys/net/ipv6/conf/all/disable_ipv6",
                    "/proc/sys/net/ipv6/conf/eth0/disable_ipv6").stdout.split() == ["1", "1"]
    assert "::1" not in d.docker("exec", "c6", "ip", "addr", "show", "lo").stdout
    # the container's own sysctl wins
    r = d.docker("run", "--rm", "--network", "n6", "--sysctl", "net.ipv6.conf.all.disable_ipv6=0", images.busybox,
                 "cat", "/proc/sys/net/ipv6/conf/all/disable_ipv6")
    assert r.stdout.strip() == "0"
    members = inspect(d, "n6", "network")["Containers"]
    assert [m["IPv6Address"] for m in members.values()] == [""]
    # no IPv6 on the bridge either
    bridge = net["Options"].get("com.docker.network.bridge.name") or "br-" + net["Id"][:12]
    assert "inet6" not in d.ns.run(["ip", "-6", "addr", "show", "dev", bridge, "scope", "global"]).stdout

    # connect to a running container: the same
    d.docker("network", "disconnect", "n6", "c6")
    d.docker("network", "connect", "--ip6", "2001:db8:77::beef", "n6", "c6")
    es = inspect(d, "c6")["NetworkSettings"]["Networks"]["n6"]
    assert es["IPAMConfig"]["IPv6Address"] == "2001:db8:77::beef" and es["GlobalIPv6Address"] == ""
    assert [a["local"] for a in addrs_in(d, "c6")] == [es["IPAddress"]]

    # the checks dockerd makes still hold: a valid address of the right family, a user subnet of that family
    r = d.docker("run", "--rm", "--network", "n6", "--ip6", "zzz", images.busybox, "true", check=False)
    assert r.returncode != 0 and "invalid IPv6 address: zzz" in r.stderr
    r = d.docker("run", "--rm", "--network", "n6", "--ip", "10.99.0.5", images.busybox, "true", check=False)
    assert r.returncode != 0 and "user configured subnets" in r.stderr


def test_ipv6_subnet_with_enable_ipv6_is_assigned(d: Skiffd, images: TestImages) -> None:
    """The other side of the line: with EnableIPv6 the same request gives the container that address."""
    d.docker("network", "create", "--ipv6", "--subnet", "2001:db8:78::/64", "n6on")
    d.docker("run", "-d", "--name", "c6on", "--network", "n6on", "--ip6", "2001:db8:78::f00d", images.busybox, "top")
    es = inspect(d, "c6on")["NetworkSettings"]["Networks"]["n6on"]
    assert es["GlobalIPv6Address"] == "2001:db8:78::f00d"
    assert "2001:db8:78::f00d" in [a["local"] for a in addrs_in(d, "c6on")]
    assert d.docker("exec", "c6on", "cat", "/proc/sys/net/ipv6/conf/all/disable_ipv6").stdout.strip() == "0"
    assert "::1" in d.docker("exec", "c6on", "ip", "addr", "show", "lo").stdout


def dns_tcp(sandbox: str, name: str) -> list[str]:
    """An A query over TCP to 127.0.0.11 from inside a netns (glibc's path for long answers)."""
    qid = random.randrange(65536)
    q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack("!HH", 1, 1)
    code = ("import socket,struct,sys;q=bytes.fromhex(sys.argv[1]);s=socket.create_connection(('127.0.0.11',53),3);"
            "s.sendall(struct.pack('!H',len(q))+q);n=struct.unpack('!H',s.recv(2))[0];b=b''\n"
            "while len(b)<n: b+=s.recv(n-len(b))\nsys.stdout.write(b.hex())")
    out = subprocess.run(["nsenter", f"--net={sandbox}", "python3", "-c", code, q.hex()], capture_output=True,
                         text=True, check=True, timeout=30).stdout
    data = bytes.fromhex(out)
    assert data[:2] == q[:2]
    an = struct.unpack("!H", data[6:8])[0]
    off = len(q)
    got = []
    for _ in range(an):
        rtype, _, _, rdlen = struct.unpack("!HHIH", data[off + 2:off + 12])
        if rtype == 1:
            got.append(socket.inet_ntoa(data[off + 12:off + 16]))
        off += 12 + rdlen
    return got


def test_link_alias_on_user_network_only_for_the_linking_container(d: Skiffd, images: TestImages) -> None:
    bb = images.busybox
    d.docker("network", "create", "nl")
    # the target does not exist yet (dockerd takes that on a user network)
    d.docker("run", "-d", "--name", "linker", "--network", "nl", "--link", "upstream:bar", bb, "top")
    es = inspect(d, "linker")["NetworkSettings"]["Networks"]["nl"]
    assert es["Links"] == ["upstream:bar"]
    assert "nameserver 127.0.0.11" in d.docker("exec", "linker", "cat", "/etc/resolv.conf").stdout
    assert nslookup(d, "linker", "bar") == []

    d.docker("run", "-d", "--name", "upstream", "--network", "nl", bb, "top")
    d.docker("run", "-d", "--name", "other", "--network", "nl", bb, "top")
    up = inspect(d, "upstream")["NetworkSettings"]["Networks"]["nl"]["IPAddress"]
    assert nslookup(d, "linker", "bar") == [up]
    assert nslookup(d, "linker", "BAR.") == [up], "names are case-insensitive"
    assert nslookup(d, "linker", "upstream") == [up], "other names still come from the network's name server"
    assert nslookup(d, "linker", "other") == [inspect(d, "other")["NetworkSettings"]["Networks"]["nl"]["IPAddress"]]
    assert nslookup(d, "other", "bar") == [], "the alias is the linking container's alone"
    assert nslookup(d, "other", "linker")  # and the linker is named as usual
    assert "bar" not in d.docker("exec", "linker", "cat", "/etc/hosts").stdout
    assert "BAR_" not in d.docker("exec", "linker", "cat", "/proc/1/environ").stdout
    # nor for a link whose target runs at start (dockerd: legacy links are the default bridge's only)
    d.docker("run", "-d", "--name", "linker2", "--network", "nl", "--link", "upstream:bar", bb, "top")
    assert "bar" not in d.docker("exec", "linker2", "cat", "/etc/hosts").stdout
    assert "BAR_NAME" not in d.docker("exec", "linker2", "cat", "/proc/1/environ").stdout
    assert nslookup(d, "linker2", "bar") == [up]
    # inspect: the endpoint has the link; HostConfig.Links (dockerd's legacy link graph) has none
    assert inspect(d, "linker2")["HostConfig"]["Links"] is None
    # while a default-bridge link shows as dockerd's graph names it
    d.docker("run", "-d", "--name", "child", bb, "top")
    d.docker("run", "-d", "--name", "parent", "--link", "child:kid", bb, "top")
    assert inspect(d, "parent")["HostConfig"]["Links"] == ["/child:/parent/kid"]
    assert "kid" in d.docker("exec", "parent", "cat", "/etc/hosts").stdout
    sandbox = inspect(d, "linker")["NetworkSettings"]["SandboxKey"]
    assert dns_tcp(sandbox, "bar") == [up]

    # the target's address is looked up when asked: a restart on another address is followed
    d.docker("stop", "-t", "0", "upstream")
    d.docker("run", "-d", "--name", "squat", "--network", "nl", bb, "top")  # may take the old address
    d.docker("start", "upstream")
    up2 = inspect(d, "upstream")["NetworkSettings"]["Networks"]["nl"]["IPAddress"]
    assert nslookup(d, "linker", "bar") == [up2]
    assert d.docker("exec", "linker", "ping", "-c", "1", "-W", "2", "bar").returncode == 0

    # skiffd restarts, the containers keep running: the resolver is served again
    d.restart()
    assert nslookup(d, "linker", "bar") == [up2]


def test_connect_with_link_gives_a_running_container_its_resolver(d: Skiffd, images: TestImages) -> None:
    bb = images.busybox
    d.docker("network", "create", "nc")
    d.docker("network", "create", "nc2")
    d.docker("run", "-d", "--name", "late", "--network", "nc", bb, "top")
    before = d.docker("exec", "late", "cat", "/etc/resolv.conf").stdout
    assert "127.0.0.11" not in before
    d.docker("network", "connect", "--link", "tgt:baz", "nc2", "late")
    assert "nameserver 127.0.0.11" in d.docker("exec", "late", "cat", "/etc/resolv.conf").stdout
    assert inspect(d, "late")["NetworkSettings"]["Networks"]["nc2"]["Links"] == ["tgt:baz"]
    d.docker("run", "-d", "--name", "tgt", "--network", "nc2", bb, "top")
    d.docker("run", "-d", "--name", "peer", "--network", "nc", bb, "top")
    tgt = inspect(d, "tgt")["NetworkSettings"]["Networks"]["nc2"]["IPAddress"]
    assert nslookup(d, "late", "baz") == [tgt]
    # names of both networks still resolve through it (each network's name server is asked in turn)
    assert nslookup(d, "late", "tgt") == [tgt]
    assert nslookup(d, "late", "peer") == [inspect(d, "peer")["NetworkSettings"]["Networks"]["nc"]["IPAddress"]]


def test_names_of_every_network_a_container_is_on(d: Skiffd, images: TestImages) -> None:
    bb = images.busybox
    d.docker("network", "create", "na")
    d.docker("network", "create", "nb")
    d.docker("run", "-d", "--name", "on-a", "--network", "na", bb, "top")
    d.docker("run", "-d", "--name", "on-b", "--network", "nb", bb, "top")
    a_ip = inspect(d, "on-a")["NetworkSettings"]["Networks"]["na"]["IPAddress"]
    b_ip = inspect(d, "on-b")["NetworkSettings"]["Networks"]["nb"]["IPAddress"]
    d.docker("create", "--name", "both", "--network", "na", bb, "top")
    d.docker("network", "connect", "nb", "both")
    d.docker("start", "both")
    assert nslookup(d, "both", "on-a") == [a_ip] and nslookup(d, "both", "on-b") == [b_ip]

    # connected while running: one network, then two
    d.docker("run", "-d", "--name", "late", "--network", "na", bb, "top")
    single = d.docker("exec", "late", "cat", "/etc/resolv.conf").stdout
    assert "127.0.0.11" not in single, "one user network and no links: the network's own name server"
    d.docker("network", "disconnect", "na", "late")
    d.docker("network", "connect", "na", "late")
    assert d.docker("exec", "late", "cat", "/etc/resolv.conf").stdout == single, "reconnecting changes nothing"
    d.docker("network", "connect", "nb", "late")
    assert nslookup(d, "late", "on-b") == [b_ip] and nslookup(d, "late", "on-a") == [a_ip]

    # a default-bridge container connected to a user network
    d.docker("run", "-d", "--name", "br", bb, "top")
    assert nslookup(d, "br", "on-a") == []
    d.docker("network", "connect", "na", "br")
    assert "nameserver 127.0.0.11" in d.docker("exec", "br", "cat", "/etc/resolv.conf").stdout
    assert nslookup(d, "br", "on-a") == [a_ip]
    # and the others see it by name
    assert nslookup(d, "on-a", "br") == [inspect(d, "br")["NetworkSettings"]["Networks"]["na"]["IPAddress"]]
