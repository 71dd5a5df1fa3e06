"""NetworkService driving the real netavark (+ dnsmasq for names), on network namespaces these tests create.

Each test forks a child that joins a fresh namespace (the "VM"); the engine's services run there, so bridges,
NAT rules and name servers never reach the machine's own network. netns files stand in for containers' network
namespaces, and busybox run with `nsenter` stands in for their processes.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from skiffbox.guest.config import DaemonConfig
from skiffbox.guest.engine import Engine
from skiffbox.guest.network import netns
from tests.engine.harness import NetNS, rmtree, tempdir
from tests.engine.network_fixtures import run_in_netns, sh, with_resolv


@pytest.fixture()
def vm() -> Any:
    ns = NetNS("sknv")
    work = tempdir("sknv-")
    yield ns, work
    # Everything netavark made (bridges, veths, rules) lives in ns; the network's dnsmasq goes with `network rm`.
    ns.remove()
    for line in open("/proc/mounts"):
        if line.split()[1].startswith(str(work)):
            subprocess.run(["umount", "-l", line.split()[1]])
    rmtree(work)


def ctr(i: int, name: str, mode: str, **hc: Any) -> dict[str, Any]:
    aliases = hc.pop("aliases", None)
    ip = hc.pop("ip", None)
    es: dict[str, Any] = {}
    if aliases:
        es["Aliases"] = aliases
    if ip:
        es["IPAMConfig"] = {"IPv4Address": ip}
    return {"Id": f"{i:x}" * 64, "Name": "/" + name, "Config": {"Hostname": f"h-{name}", "ExposedPorts": hc.pop("exposed", {})},
            "HostConfig": {"NetworkMode": mode, **hc}, "NetworkingConfig": {"EndpointsConfig": {mode: es}}}


def engine(work: Path) -> Engine:
    return Engine(DaemonConfig(data_root=work / "data", exec_root=work / "run"))


def _links() -> list[str]:
    out = sh("ip", "-o", "link").stdout
    return [l.split(":")[1].strip().split("@")[0] for l in out.splitlines()]


def _dns_running(name: str = "dnsmasq") -> bool:
    """A name server of ours: in this network namespace (others' tests may run theirs elsewhere)."""
    me = os.stat("/proc/self/ns/net").st_ino
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if open(f"/proc/{pid}/comm").read().strip() == name and os.stat(f"/proc/{pid}/ns/net").st_ino == me \
                    and open(f"/proc/{pid}/stat").read().split(")")[1].split()[0] != "Z":
                return True
        except OSError:
            pass
    return False


def scenario_user_network(work: Path) -> dict[str, Any]:
    """Two containers on a user network: names, aliases, a published port, outbound NAT rules, then teardown."""
    res: dict[str, Any] = {}

    async def main() -> None:
        eng = engine(work)
        await eng.start()
        n = eng.networks
        await n.create({"Name": "appnet", "IPAM": {"Config": [{"Subnet": "10.201.0.0/24"}]}})
        paths = [work / f"c{i}" for i in range(2)]
        for p in paths:
            netns.create(p)
        web = ctr(1, "web", "appnet", aliases=["www"], PortBindings={"80/tcp": [{"HostIp": "", "HostPort": "8080"}]},
                  exposed={"80/tcp": {}})
        cli = ctr(2, "client", "appnet", ip="10.201.0.77")
        t0 = time.monotonic()
        r_web = await n.setup(web, str(paths[0]))
        res["setup_ms_first"] = (time.monotonic() - t0) * 1000
        t0 = time.monotonic()
        r_cli = await n.setup(cli, str(paths[1]))
        res["setup_ms_second"] = (time.monotonic() - t0) * 1000
        res["web"], res["cli"] = r_web, r_cli
        res["inspect"] = n.inspect("appnet")
        www = work / "www"
        www.mkdir()
        (www / "index.html").write_text("hello-from-web\n")
        httpd = subprocess.Popen(["nsenter", f"--net={paths[0]}", "busybox", "httpd", "-f", "-p", "80", "-h", str(www)])
        try:
            time.sleep(0.3)
            res["by_name"] = with_resolv(str(paths[1]), r_cli["resolv_conf"], work, "timeout", "20", "busybox", "wget", "-qO-",
                                         "http://web/").stdout
            res["by_alias"] = with_resolv(str(paths[1]), r_cli["resolv_conf"], work, "timeout", "20", "busybox", "wget", "-qO-",
                                          "http://www/").stdout
            res["nx"] = with_resolv(str(paths[1]), r_cli["resolv_conf"], work, "timeout", "20", "busybox", "nslookup",
                                    "no-such-name").returncode
            res["published_local"] = sh("timeout", "10", "busybox", "wget", "-qO-", "http://127.0.0.1:8080/").stdout
            res["ctr_addr"] = sh("ip", "-o", "-4", "addr", "show", "eth0", netns=str(paths[1])).stdout
            res["ctr_route"] = sh("ip", "route", netns=str(paths[1])).stdout
            res["nat"] = sh("iptables-save", "-t", "nat").stdout
            res["dns_during"] = _dns_running()
            res["aardvark_during"] = _dns_running("aardvark-dns")
        finally:
            httpd.kill()
            httpd.wait()
        # a second container asking for the same host port is refused, and nothing leaks from the attempt
        p3 = work / "c3"
        netns.create(p3)
        try:
            await n.setup(ctr(3, "dup", "appnet", PortBindings={"80/tcp": [{"HostPort": "8080"}]}), str(p3))
            res["dup_port_error"] = None
        except Exception as e:
            res["dup_port_error"] = str(e)
        res["links_after_dup"] = sh("ip", "-o", "link", netns=str(p3)).stdout
        t0 = time.monotonic()
        await n.teardown(web, str(paths[0]))
        res["teardown_ms"] = (time.monotonic() - t0) * 1000
        await n.teardown(web, str(paths[0]))  # twice is fine
        await n.settle()
        res["ctr_links_after"] = sh("ip", "-o", "link", netns=str(paths[0])).stdout
        await n.teardown(cli, str(paths[1]))
        await n.settle()
        res["nat_after"] = sh("iptables-save", "-t", "nat").stdout
        res["inspect_after"] = n.inspect("appnet")["Containers"]
        try:
            await n.remove("bridge")
        except Exception as e:
            res["rm_bridge"] = str(e)
        await n.remove("appnet")
        await eng.close()
        res["links_final"] = _links()
        for p in paths + [p3]:
            netns.remove(p)
        res["dns_after"] = _dns_running()

    asyncio.run(main())
    return res


def test_user_network_names_ports_teardown(vm: Any) -> None:
    ns, work = vm
    r = run_in_netns(ns.path, scenario_user_network, work)
    web_ep = r["web"]["networks"]["appnet"]
    cli_ep = r["cli"]["networks"]["appnet"]
    assert web_ep["IPAddress"] == "10.201.0.2" and web_ep["IPPrefixLen"] == 24 and web_ep["Gateway"] == "10.201.0.1"
    assert cli_ep["IPAddress"] == "10.201.0.77"  # --ip
    assert "10.201.0.77/24" in r["ctr_addr"]
    assert "default via 10.201.0.1" in r["ctr_route"]
    assert web_ep["MacAddress"] and len(web_ep["EndpointID"]) == 64
    assert web_ep["DNSNames"][:2] == ["web", "www"]
    assert r["web"]["ports"] == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}
    assert "nameserver 10.201.0.1" in r["cli"]["resolv_conf"]
    assert r["cli"]["hosts"] == [("10.201.0.77", ["h-client"])]
    assert r["by_name"] == "hello-from-web\n"
    assert r["by_alias"] == "hello-from-web\n"
    assert r["nx"] != 0
    assert r["published_local"] == "hello-from-web\n"
    assert "MASQUERADE" in r["nat"] and "10.201.0.2:80" in r["nat"]  # outbound NAT + the DNAT of the port
    assert r["dns_during"] and not r["aardvark_during"]  # dnsmasq serves names, netavark's aardvark-dns is off
    assert set(r["inspect"]["Containers"]) == {"1" * 64, "2" * 64}  # the anchor is not a container
    assert r["inspect"]["Containers"]["1" * 64]["IPv4Address"] == "10.201.0.2/24"
    assert "port is already allocated" in r["dup_port_error"]
    assert "eth0" not in r["links_after_dup"]
    assert "10.201.0.2:80" not in r["nat_after"]
    assert r["inspect_after"] == {}
    assert "eth0" not in r["ctr_links_after"]
    assert "pre-defined" in r["rm_bridge"]
    # network rm + shutdown took the anchors, so the bridges went too, and the name server with them
    assert not [l for l in r["links_final"] if l.startswith(("br-", "skiff0", "veth"))], r["links_final"]
    assert not r["dns_after"]


def scenario_default_bridge_none_internal(work: Path) -> dict[str, Any]:
    res: dict[str, Any] = {}

    async def main() -> None:
        eng = engine(work)
        await eng.start()
        n = eng.networks
        await n.create({"Name": "inner", "Internal": True})
        paths = {k: work / k for k in ("b1", "b2", "none", "int")}
        for p in paths.values():
            netns.create(p)
        b1 = ctr(1, "b1", "default", PublishAllPorts=True, exposed={"80/tcp": {}, "53/udp": {}},
                 ExtraHosts=["gw:host-gateway", "db:10.9.9.9"], Dns=["192.0.2.53"], DnsSearch=["example.test"])
        res["b1"] = await n.setup(b1, str(paths["b1"]))
        res["b2"] = await n.setup(ctr(2, "b2", "bridge", Links=["/b1:/b2/db1"]), str(paths["b2"]))
        res["none"] = await n.setup(ctr(3, "nonet", "none"), str(paths["none"]))
        res["none_links"] = sh("ip", "-o", "link", netns=str(paths["none"])).stdout
        res["int"] = await n.setup(ctr(4, "in", "inner"), str(paths["int"]))
        res["int_route"] = sh("ip", "route", netns=str(paths["int"])).stdout
        res["b1_ping_b2"] = sh("busybox", "ping", "-c", "1", "-W", "2", res["b2"]["networks"]["bridge"]["IPAddress"],
                               netns=str(paths["b1"])).returncode
        await n.create({"Name": "other"})
        netns.create(work / "o1")
        o1 = ctr(7, "o1", "other")
        o1_ip = (await n.setup(o1, str(work / "o1")))["networks"]["other"]["IPAddress"]
        res["b1_ping_other"] = sh("busybox", "ping", "-c", "1", "-W", "1", o1_ip, netns=str(paths["b1"])).returncode
        res["gw_ping_other"] = sh("busybox", "ping", "-c", "1", "-W", "1", o1_ip).returncode
        await n.teardown(o1, str(work / "o1"))
        netns.remove(work / "o1")  # right away, as the containers service does: the teardown holds its own reference
        # outbound NAT: a server outside the "VM" sees the VM's address, not the container's
        out_ns = NetNS("sknvout")
        try:
            sh("ip", "link", "add", "vmeth0", "type", "veth", "peer", "name", "outeth0", "netns", out_ns.name, check=True)
            sh("ip", "addr", "add", "192.0.2.1/24", "dev", "vmeth0", check=True)
            sh("ip", "link", "set", "vmeth0", "up", check=True)
            out_ns.run(["ip", "addr", "add", "192.0.2.2/24", "dev", "outeth0"], check=True)
            out_ns.run(["ip", "link", "set", "outeth0", "up"], check=True)
            www = work / "outwww"
            www.mkdir()
            (www / "index.html").write_text("outside\n")
            srv = subprocess.Popen(out_ns.cmd(["busybox", "httpd", "-f", "-vv", "-p", "8000", "-h", str(www)]),
                                   stderr=subprocess.PIPE, text=True)
            time.sleep(0.3)
            res["outbound"] = sh("timeout", "10", "busybox", "wget", "-qO-", "http://192.0.2.2:8000/", netns=str(paths["b1"])).stdout
            srv.terminate()
            res["outbound_log"] = srv.communicate(timeout=10)[1]
        finally:
            out_ns.remove()
        res["host"] = await n.setup(ctr(5, "h", "host"), None)
        try:
            await n.setup(ctr(6, "bad", "bridge", aliases=["x"]), str(paths["none"]))
        except Exception as e:
            res["alias_default"] = str(e)
        for k, c in (("b1", b1), ("b2", ctr(2, "b2", "bridge")), ("int", ctr(4, "in", "inner"))):
            await n.teardown(c, str(paths[k]))
        await eng.close()
        for p in paths.values():
            netns.remove(p)

    asyncio.run(main())
    return res


def test_default_bridge_none_internal_host(vm: Any) -> None:
    ns, work = vm
    r = run_in_netns(ns.path, scenario_default_bridge_none_internal, work)
    b1 = r["b1"]["networks"]["bridge"]
    assert b1["IPAddress"] == "172.17.0.2" and b1["Gateway"] == "172.17.0.1" and b1["IPPrefixLen"] == 16
    assert b1["DNSNames"] is None  # no name resolution on the default bridge, as Docker
    assert r["b2"]["networks"]["bridge"]["IPAddress"] == "172.17.0.3"
    # -P: every exposed port gets an ephemeral host port
    ports = r["b1"]["ports"]
    assert set(ports) == {"80/tcp", "53/udp"}
    assert all(32768 <= int(b[0]["HostPort"]) <= 60999 and b[0]["HostIp"] == "0.0.0.0" for b in ports.values())
    # --dns / --dns-search on the default bridge go straight into resolv.conf
    assert "nameserver 192.0.2.53" in r["b1"]["resolv_conf"] and "search example.test" in r["b1"]["resolv_conf"]
    assert ("172.17.0.1", ["gw"]) in r["b1"]["hosts"] and ("10.9.9.9", ["db"]) in r["b1"]["hosts"]
    assert r["b1"]["hosts"][-1] == ("172.17.0.2", ["h-b1"])
    assert ("172.17.0.2", ["db1", "b1"]) in r["b2"]["hosts"]  # --link
    assert r["b1_ping_b2"] == 0
    assert r["outbound"] == "outside\n" and "192.0.2.1" in r["outbound_log"] and "172.17." not in r["outbound_log"]
    assert r["b1_ping_other"] != 0 and r["gw_ping_other"] == 0  # bridge networks are isolated from each other
    # none: loopback only, and it is up
    assert r["none"]["networks"] == {"none": r["none"]["networks"]["none"]} and r["none"]["ports"] == {}
    assert "lo:" in r["none_links"] and "UP" in r["none_links"] and "eth0" not in r["none_links"]
    # internal: no way out
    assert "default" not in r["int_route"] and r["int"]["networks"]["inner"]["IPAddress"]
    assert r["host"]["networks"]["host"]["NetworkID"] and r["host"]["resolv_conf"] is not None
    assert "user defined networks" in r["alias_default"]


def scenario_restart(work: Path, phase: str) -> dict[str, Any]:
    """phase "up": set up two containers and drop the engine without close (a daemon crash); phase "after": a new
    engine on the same dirs, with one container's netns gone meanwhile."""
    res: dict[str, Any] = {}

    async def main() -> None:
        eng = engine(work)
        await eng.start()
        n = eng.networks
        a = ctr(1, "a", "bridge", PortBindings={"80/tcp": [{"HostPort": "9090"}]})
        b = ctr(2, "b", "bridge", PortBindings={"80/tcp": [{"HostPort": "9091"}]})
        if phase == "up":
            for c, p in ((a, "pa"), (b, "pb")):
                netns.create(work / p)
                await n.setup(c, str(work / p))
            return
        res["containers_before"] = sorted(n.inspect("bridge")["Containers"])
        res["nat_before"] = sh("iptables-save", "-t", "nat").stdout
        # b's netns vanished while we were down (its container died): start() cleaned it up, including its DNAT
        res["b_port_free"] = "9091" not in res["nat_before"]
        # a keeps its address and port; a new container does not get them
        c = ctr(3, "c", "bridge", PortBindings={"80/tcp": [{"HostPort": "9090"}]})
        netns.create(work / "pc")
        try:
            await n.setup(c, str(work / "pc"))
        except Exception as e:
            res["port_conflict"] = str(e)
        c2 = ctr(4, "d", "bridge")
        netns.create(work / "pd")
        res["d_ip"] = (await n.setup(c2, str(work / "pd")))["networks"]["bridge"]["IPAddress"]
        for cc, p in ((a, "pa"), (c2, "pd")):
            await n.teardown(cc, str(work / p))
            netns.remove(work / p)
        netns.remove(work / "pc")
        await eng.close()  # waits for the background teardowns
        res["nat_after"] = sh("iptables-save", "-t", "nat").stdout
        res["links_final"] = _links()

    asyncio.run(main())
    return res


def test_restart_recovery(vm: Any) -> None:
    ns, work = vm
    run_in_netns(ns.path, scenario_restart, work, "up")
    netns.remove(work / "pb")  # the container b died while the daemon was down
    r = run_in_netns(ns.path, scenario_restart, work, "after")
    assert r["containers_before"] == ["1" * 64]
    assert "9090" in r["nat_before"] and r["b_port_free"]
    assert "already allocated" in r["port_conflict"]
    assert r["d_ip"] == "172.17.0.4"  # .2 is still a's; .3 (b's, freed) is skipped: first free after the last one handed out
    assert "9090" not in r["nat_after"]
    assert not [l for l in r["links_final"] if l.startswith(("skiff0", "veth"))]


def scenario_foreign_bridge(work: Path) -> dict[str, Any]:
    """Another engine (a dockerd) already routes 172.17.0.0/16 on its docker0 when our default bridge comes up."""
    res: dict[str, Any] = {}

    async def main() -> None:
        eng = engine(work)
        await eng.start()
        n = eng.networks
        res["subnet_before"] = n.inspect("bridge")["IPAM"]["Config"][0]["Subnet"]
        sh("ip", "link", "add", "docker0", "type", "bridge", check=True)
        sh("ip", "addr", "add", "172.17.0.1/16", "dev", "docker0", check=True)
        sh("ip", "link", "set", "docker0", "up", check=True)
        netns.create(work / "c")
        r = await n.setup(ctr(1, "c", "bridge"), str(work / "c"))
        res["ip"] = r["networks"]["bridge"]["IPAddress"]
        res["subnet_after"] = n.inspect("bridge")["IPAM"]["Config"][0]["Subnet"]
        res["docker0_ports"] = sh("ip", "-o", "link", "show", "master", "docker0").stdout
        await n.teardown(ctr(1, "c", "bridge"), str(work / "c"))
        await n.settle()
        netns.remove(work / "c")
        await eng.close()

    asyncio.run(main())
    return res


def test_default_bridge_avoids_a_foreign_docker0(vm: Any) -> None:
    ns, work = vm
    r = run_in_netns(ns.path, scenario_foreign_bridge, work)
    assert r["subnet_before"] == "172.17.0.0/16"
    assert r["subnet_after"] == "172.18.0.0/16" and r["ip"] == "172.18.0.2"
    assert r["docker0_ports"] == ""  # dockerd's bridge was left alone


def scenario_background_setup(work: Path) -> dict[str, Any]:
    """setup(background=True) decides everything first and plumbs while the caller goes on; ready() waits."""
    res: dict[str, Any] = {}

    async def main() -> None:
        eng = engine(work)
        await eng.start()
        n = eng.networks
        await n.create({"Name": "bg", "IPAM": {"Config": [{"Subnet": "10.202.0.0/24"}]}})
        netns.create(work / "a")
        c = ctr(1, "bga", "bg")
        r = await n.setup(c, str(work / "a"), background=True)
        res["result"] = r
        await n.ready(c)
        res["link"] = sh("ip", "-o", "link", "show", "eth0", netns=str(work / "a")).stdout
        res["addr"] = sh("ip", "-o", "-4", "addr", "show", "eth0", netns=str(work / "a")).stdout
        # a setup that fails in the background surfaces in ready(), and leaves nothing behind
        bad = ctr(2, "bgb", "bg")
        r2 = await n.setup(bad, str(work / "missing-netns"), background=True)
        res["bad_ip"] = r2["networks"]["bg"]["IPAddress"]
        try:
            await n.ready(bad)
            res["bad_error"] = None
        except Exception as e:
            res["bad_error"] = str(e)
        res["owned_after"] = sorted(n.ipam.owned(n.resolve("bg")["Id"]).values())
        res["containers_after"] = sorted(n.inspect("bg")["Containers"])
        # an endpoint whose netns vanished without a teardown (its container swept away) is reaped
        netns.create(work / "s")
        swept = ctr(3, "swept", "bg", PortBindings={"80/tcp": [{"HostPort": "9393"}]})
        res["swept_ip"] = (await n.setup(swept, str(work / "s")))["networks"]["bg"]["IPAddress"]
        netns.remove(work / "s")
        res["containers_swept"] = sorted(n.inspect("bg")["Containers"])
        netns.create(work / "s2")
        again = ctr(4, "again", "bg", PortBindings={"80/tcp": [{"HostPort": "9393"}]})
        r3 = await n.setup(again, str(work / "s2"))
        res["again_ports"], res["again_ip"] = r3["ports"], r3["networks"]["bg"]["IPAddress"]
        res["nat_swept"] = sh("iptables-save", "-t", "nat").stdout
        await n.teardown(again, str(work / "s2"))
        netns.remove(work / "s2")
        await n.teardown(c, str(work / "a"))
        netns.remove(work / "a")
        await n.remove("bg")
        await eng.close()

    asyncio.run(main())
    return res


def test_background_setup(vm: Any) -> None:
    ns, work = vm
    r = run_in_netns(ns.path, scenario_background_setup, work)
    ep = r["result"]["networks"]["bg"]
    assert ep["IPAddress"] == "10.202.0.2" and ep["MacAddress"] == "02:42:0a:ca:00:02"  # Docker's MAC-from-IP
    assert "02:42:0a:ca:00:02" in r["link"] and "10.202.0.2/24" in r["addr"]
    assert "invalid namespace path" in r["bad_error"]
    assert "2" * 64 not in r["owned_after"] and "1" * 64 in r["owned_after"]  # the failed one freed its address
    assert r["containers_after"] == ["1" * 64]
    assert r["containers_swept"] == ["1" * 64]
    assert r["again_ports"] == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "9393"}]}  # the swept one's port is free
    assert f"{r['swept_ip']}:80" not in r["nat_swept"] and f"{r['again_ip']}:80" in r["nat_swept"]


def scenario_two_daemons(work: Path) -> dict[str, Any]:
    """Two engines in one netns (two test daemons): the second must not share the first one's bridge and subnet."""
    res: dict[str, Any] = {}

    async def main() -> None:
        e1 = Engine(DaemonConfig(data_root=work / "d1", exec_root=work / "r1"))
        e2 = Engine(DaemonConfig(data_root=work / "d2", exec_root=work / "r2"))
        await e1.start()
        await e2.start()
        for i, e in ((1, e1), (2, e2)):
            netns.create(work / f"c{i}")
            r = await e.networks.setup(ctr(i, f"c{i}", "bridge"), str(work / f"c{i}"))
            res[f"ip{i}"] = r["networks"]["bridge"]["IPAddress"]
            res[f"dev{i}"] = e.networks.inspect("bridge")["Options"]["com.docker.network.bridge.name"]
        for i, e in ((1, e1), (2, e2)):
            await e.networks.teardown(ctr(i, f"c{i}", "bridge"), str(work / f"c{i}"))
            netns.remove(work / f"c{i}")
            await e.close()

    asyncio.run(main())
    return res


def test_two_daemons_in_one_netns(vm: Any) -> None:
    ns, work = vm
    r = run_in_netns(ns.path, scenario_two_daemons, work)
    assert r["dev1"] == "skiff0" and r["ip1"] == "172.17.0.2"
    assert r["dev2"] == "skiff1" and r["ip2"].startswith("172.18.")
