"""Network API without containers: create/ls/inspect/rm/prune, filters and errors, through the real docker CLI and
docker-py (no bridge is made until a container joins a network, so nothing here touches netavark)."""

from __future__ import annotations

import json

import docker
import pytest

from tests.engine.harness import Skiffd


def _ls(skiffd: Skiffd, *args: str) -> list[str]:
    out = skiffd.docker("network", "ls", "--format", "{{.Name}}", *args).stdout.split()
    return sorted(out)


def test_predefined_networks(skiffd: Skiffd) -> None:
    assert {"bridge", "host", "none"} <= set(_ls(skiffd))
    br = json.loads(skiffd.docker("network", "inspect", "bridge").stdout)[0]
    assert br["Driver"] == "bridge" and br["Scope"] == "local"
    assert br["IPAM"]["Config"][0]["Subnet"] == "172.17.0.0/16"
    assert br["IPAM"]["Config"][0]["Gateway"] == "172.17.0.1"
    assert br["Options"]["com.docker.network.bridge.default_bridge"] == "true"
    assert br["Containers"] == {}
    host = json.loads(skiffd.docker("network", "inspect", "host").stdout)[0]
    none = json.loads(skiffd.docker("network", "inspect", "none").stdout)[0]
    assert host["Driver"] == "host" and none["Driver"] == "null"
    for n in ("bridge", "host", "none"):
        r = skiffd.docker("network", "rm", n, check=False)
        assert r.returncode != 0 and "pre-defined network" in r.stderr


def test_create_inspect_rm(skiffd: Skiffd) -> None:
    nid = skiffd.docker("network", "create", "--subnet", "172.30.0.0/16", "--gateway", "172.30.0.254",
                        "--ip-range", "172.30.5.0/24", "--label", "a=b", "--label", "team=net",
                        "-o", "com.docker.network.driver.mtu=1400", "apinet1").stdout.strip()
    assert len(nid) == 64
    try:
        info = json.loads(skiffd.docker("network", "inspect", "apinet1").stdout)[0]
        assert info["Id"] == nid and info["Name"] == "apinet1"
        assert info["IPAM"]["Config"] == [{"Subnet": "172.30.0.0/16", "Gateway": "172.30.0.254", "IPRange": "172.30.5.0/24"}]
        assert info["Labels"] == {"a": "b", "team": "net"}
        assert info["Options"]["com.docker.network.driver.mtu"] == "1400"
        assert info["Internal"] is False and info["EnableIPv6"] is False
        assert not any(k.startswith("_") for k in info)
        # by ID prefix too
        assert json.loads(skiffd.docker("network", "inspect", nid[:10]).stdout)[0]["Name"] == "apinet1"
        # duplicate name → 409
        r = skiffd.docker("network", "create", "apinet1", check=False)
        assert r.returncode != 0 and "already exists" in r.stderr
        # overlapping subnet → refused
        r = skiffd.docker("network", "create", "--subnet", "172.30.1.0/24", "apinet-overlap", check=False)
        assert r.returncode != 0 and "overlaps" in r.stderr
        # gateway outside the subnet → 400
        r = skiffd.docker("network", "create", "--subnet", "10.77.0.0/24", "--gateway", "10.78.0.1", "badgw", check=False)
        assert r.returncode != 0 and "gateway" in r.stderr
    finally:
        skiffd.docker("network", "rm", "apinet1")
    r = skiffd.docker("network", "inspect", "apinet1", check=False)
    assert r.returncode != 0 and "not found" in r.stderr


def test_auto_subnets_do_not_overlap(skiffd: Skiffd) -> None:
    names = ["auto1", "auto2", "auto3"]
    try:
        for n in names:
            skiffd.docker("network", "create", "--internal", n)
        subnets = [json.loads(skiffd.docker("network", "inspect", n).stdout)[0]["IPAM"]["Config"][0]["Subnet"] for n in names]
        assert len(set(subnets)) == 3
        assert "172.17.0.0/16" not in subnets  # the default bridge's
        assert all(s.startswith("172.") and s.endswith("/16") for s in subnets)
        assert json.loads(skiffd.docker("network", "inspect", "auto2").stdout)[0]["Internal"] is True
    finally:
        skiffd.docker("network", "rm", *names)


def test_filters(skiffd: Skiffd) -> None:
    skiffd.docker("network", "create", "--label", "flt=1", "--label", "color=red", "fltnet-a")
    skiffd.docker("network", "create", "--label", "flt=1", "--label", "color=blue", "fltnet-b")
    try:
        assert _ls(skiffd, "--filter", "label=flt") == ["fltnet-a", "fltnet-b"]
        assert _ls(skiffd, "--filter", "label=color=red") == ["fltnet-a"]
        assert _ls(skiffd, "--filter", "name=fltnet-") == ["fltnet-a", "fltnet-b"]
        assert _ls(skiffd, "--filter", "type=builtin") == ["bridge", "host", "none"]
        assert "bridge" not in _ls(skiffd, "--filter", "type=custom")
        assert _ls(skiffd, "--filter", "driver=null") == ["none"]
        assert set(_ls(skiffd, "--filter", "dangling=true")) >= {"fltnet-a", "fltnet-b"}
        assert "bridge" not in _ls(skiffd, "--filter", "dangling=true")
        nid = json.loads(skiffd.docker("network", "inspect", "fltnet-b").stdout)[0]["Id"]
        assert _ls(skiffd, "--filter", f"id={nid[:12]}") == ["fltnet-b"]
        r = skiffd.docker("network", "ls", "--filter", "bogus=1", check=False)
        assert r.returncode != 0 and "invalid filter" in r.stderr
    finally:
        skiffd.docker("network", "rm", "fltnet-a", "fltnet-b")


def test_prune(skiffd: Skiffd) -> None:
    skiffd.docker("network", "create", "--label", "keep=yes", "prune-keep")
    skiffd.docker("network", "create", "prune-go1")
    skiffd.docker("network", "create", "prune-go2")
    try:
        out = skiffd.docker("network", "prune", "-f", "--filter", "label!=keep").stdout
        assert "prune-go1" in out and "prune-go2" in out and "prune-keep" not in out
        left = _ls(skiffd)
        assert "prune-keep" in left and "prune-go1" not in left
        assert {"bridge", "host", "none"} <= set(left)
    finally:
        skiffd.docker("network", "rm", "prune-keep")


def test_docker_py(skiffd: Skiffd) -> None:
    c = skiffd.client()
    ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet="10.123.0.0/24")])
    net = c.networks.create("pynet", driver="bridge", ipam=ipam, labels={"py": "1"}, internal=True)
    try:
        assert net.attrs["IPAM"]["Config"][0]["Subnet"] == "10.123.0.0/24"
        assert net.attrs["IPAM"]["Config"][0]["Gateway"] == "10.123.0.1"
        assert net.attrs["Internal"] is True
        assert [n.name for n in c.networks.list(filters={"label": "py=1"})] == ["pynet"]
        assert c.networks.get(net.id[:12]).name == "pynet"
        with pytest.raises(docker.errors.NotFound):
            c.networks.get("no-such-net")
        with pytest.raises(docker.errors.APIError) as e:
            c.networks.create("host")
        assert e.value.status_code == 403
    finally:
        net.remove()


def test_events(skiffd: Skiffd) -> None:
    c = skiffd.client()
    import time

    since = int(time.time()) - 1
    skiffd.docker("network", "create", "evnet")
    skiffd.docker("network", "rm", "evnet")
    evs = list(c.events(since=since, until=int(time.time()) + 1, decode=True, filters={"type": "network"}))
    actions = [(e["Action"], e["Actor"]["Attributes"].get("name")) for e in evs]
    assert ("create", "evnet") in actions and ("destroy", "evnet") in actions
