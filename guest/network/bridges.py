"""The networks' bridges: the predefined networks, a new network's record, what netavark is told about a
network, and each bridge's *anchor* (a tiny netns of the engine's own that keeps the bridge and its NAT chains up
between containers, with the bridge's MAC pinned so the containers' ARP entries for the gateway stay right)."""

from __future__ import annotations

import fcntl
import hashlib
import ipaddress
import logging
import socket
import struct
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skiffbox.guest.util.timefmt import rfc3339
from skiffbox.guest.network import naming, netns
from skiffbox.guest.network.endpoints import Endpoint
from skiffbox.guest.network.ipam import default_gateway, pick_subnet
from skiffbox.guest.network.netavark import NetavarkError
from skiffbox.guest.network.store import DEFAULT_BRIDGE, NetworkRecord, address_configs, new_id, user_subnet

if TYPE_CHECKING:
    from skiffbox.guest.network.service import NetworkService

log = logging.getLogger("skiffd.network")

DEFAULT_BRIDGE_SUBNET = "172.17.0.0/16"
# Not "docker0": on a host that also runs dockerd (the generic driver, a shared test netns) netavark would adopt
# dockerd's bridge of that name.
DEFAULT_BRIDGE_DEVICE = "skiff0"
OPT_BRIDGE_NAME = "com.docker.network.bridge.name"
OPT_MTU = "com.docker.network.driver.mtu"
OPT_DEFAULT_BRIDGE = "com.docker.network.bridge.default_bridge"
ANCHOR_PREFIX = "anchor-"


def host_routes(skip_dev: str | None = None) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Destinations routed in skiffd's netns (a new network must not shadow the VM's own LAN, nor another
    engine's bridge), except those via `skip_dev` (our own bridge)."""
    out: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    try:
        with open("/proc/net/route") as f:
            next(f)
            for line in f:
                parts = line.split()
                if parts[0] == skip_dev:
                    continue
                dest, mask = int(parts[1], 16), int(parts[7], 16)
                if dest == 0 and mask == 0:
                    continue
                d = socket.inet_ntoa(struct.pack("<I", dest))
                m = socket.inet_ntoa(struct.pack("<I", mask))
                out.append(ipaddress.ip_network(f"{d}/{m}", strict=False))
    except (OSError, StopIteration, ValueError):
        pass
    return out


def dev_exists(name: str) -> bool:
    """In skiffd's own netns (not /sys/class/net, which shows the netns that mounted /sys)."""
    try:
        socket.if_nametoindex(name)
        return True
    except OSError:
        return False



SIOCGIFHWADDR = 0x8927
SIOCSIFHWADDR = 0x8924


def pin_bridge_mac(dev: str) -> str:
    """Make the bridge keep the MAC address it has now (returned).

    A Linux bridge whose address was never set takes the lowest MAC of its ports, so it changes whenever a veth
    with a lower one joins or the lowest one leaves. The containers' ARP entries for the gateway keep the old
    MAC: once that port is gone their frames to the gateway are dropped (DNS queries to the network's dnsmasq, and
    everything routed) until the kernel re-probes the entry, 5-45 s later: lookups fail with "bad address".
    Setting the address, even to its current value, marks it user-assigned and the kernel never recomputes it
    (dockerd sets one at bridge creation; netavark does since 1.9, PR #833; Debian 12 has 1.4)."""
    ifreq = struct.pack("16s24x", dev.encode())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        got = fcntl.ioctl(s, SIOCGIFHWADDR, ifreq)
        family, mac = struct.unpack_from("=H6s", got, 16)
        fcntl.ioctl(s, SIOCSIFHWADDR, struct.pack("=16sH6s16x", dev.encode(), family, mac))
    return bytes(mac).hex(":")


def ensure_predefined(svc: NetworkService) -> None:
    if svc.store.by_name("bridge") is None:
        cfg = svc.cfg
        bip = getattr(cfg, "bip", None)  # dockerd's --bip, if the config grows it
        if bip:
            iface = ipaddress.ip_interface(bip)
            sn = iface.network
            gw = str(iface.ip) if iface.ip != sn.network_address else str(default_gateway(sn))
        else:
            sn = ipaddress.ip_network(DEFAULT_BRIDGE_SUBNET)
            if any(sn.overlaps(r) for r in host_routes()):
                sn = pick_subnet(host_routes())
            gw = str(default_gateway(sn))
        dev = getattr(cfg, "bridge", None) or DEFAULT_BRIDGE_DEVICE
        svc.store.save(record("bridge", "bridge", [{"Subnet": str(sn), "Gateway": gw}], {
            OPT_DEFAULT_BRIDGE: "true", "com.docker.network.bridge.enable_icc": "true",
            "com.docker.network.bridge.enable_ip_masquerade": "true",
            "com.docker.network.bridge.host_binding_ipv4": "0.0.0.0",
            OPT_BRIDGE_NAME: dev, OPT_MTU: "1500"}, {}, bridge=dev))
    for name, driver in (("host", "host"), ("none", "null")):
        if svc.store.by_name(name) is None:
            rec = record(name, driver, [], {}, {})
            rec["Created"] = rfc3339(None)
            rec["EnableIPv4"] = False
            svc.store.save(rec)


def record(name: str, driver: str, ipam_cfg: list[dict[str, str]], options: dict[str, str],
           labels: dict[str, str], *, bridge: str | None = None, internal: bool = False, ipv6: bool = False,
           attachable: bool = False, ipam_driver: str = "default", ipam_options: dict[str, str] | None = None,
           user_subnets: list[str] | None = None) -> NetworkRecord:
    nid = new_id()
    now = time.time()
    rec: NetworkRecord = {
        "Name": name, "Id": nid, "Created": rfc3339(now), "Scope": "local", "Driver": driver,
        "EnableIPv4": True, "EnableIPv6": ipv6,
        "IPAM": {"Driver": ipam_driver, "Options": ipam_options, "Config": ipam_cfg},
        "Internal": internal, "Attachable": attachable, "Ingress": False, "ConfigFrom": {"Network": ""},
        "ConfigOnly": False, "Options": options, "Labels": labels, "_created": now,
        "_user_subnet": bool(user_subnets), "_user_subnets": list(user_subnets or []),
    }
    if driver == "bridge":
        rec["_bridge"] = bridge or f"br-{nid[:12]}"
    return rec


def network_info(rec: NetworkRecord) -> dict[str, Any]:
    subnets = []
    for c in address_configs(rec):
        s: dict[str, Any] = {"subnet": c["Subnet"]}
        if c.get("Gateway"):
            s["gateway"] = c["Gateway"]
        subnets.append(s)
    # Docker keeps bridge networks from reaching each other (its DOCKER-ISOLATION chains); netavark's
    # `isolate` option adds the same two-stage rules.
    opts: dict[str, str] = {"isolate": "true"}
    if rec["Options"].get(OPT_MTU):
        opts["mtu"] = rec["Options"][OPT_MTU]
    info: dict[str, Any] = {
        "name": rec["Name"], "id": rec["Id"], "driver": "bridge", "network_interface": rec["_bridge"],
        "subnets": subnets, "ipv6_enabled": bool(rec.get("EnableIPv6")), "internal": bool(rec.get("Internal")),
        # Names are served by our dnsmasq (dnsmasq.py), not by netavark's aardvark-dns.
        "dns_enabled": False, "ipam_options": {"driver": "host-local"},
    }
    info["options"] = opts
    return info


def claim(svc: NetworkService, rec: NetworkRecord) -> None:
    """Before our bridge comes up, with nobody holding an address on it: a bridge device of that name that is
    not ours (another skiffd in this netns, e.g. two test daemons) makes the default network take the next free
    name; an engine-chosen subnet that something else now routes (a dockerd started after us, a VPN, that
    other daemon's bridge) moves to a free one."""
    if svc.ipam.owned(rec["Id"]) or svc.in_use(rec):
        return
    changed = False
    if rec["Name"] == DEFAULT_BRIDGE and not getattr(svc.cfg, "bridge", None) and dev_exists(rec["_bridge"]):
        taken = {r.get("_bridge") for r in svc.store.all()}
        dev = next(f"skiff{i}" for i in range(1, 100) if f"skiff{i}" not in taken and not dev_exists(f"skiff{i}"))
        log.warning("bridge %s belongs to someone else: the default network uses %s", rec["_bridge"], dev)
        rec["_bridge"] = dev
        rec["Options"][OPT_BRIDGE_NAME] = dev
        changed = True
    if not user_subnet(rec, 4) and not getattr(svc.cfg, "bip", None):
        routes = host_routes(skip_dev=rec.get("_bridge"))
        v4 = [c for c in rec["IPAM"]["Config"] if ipaddress.ip_network(c["Subnet"]).version == 4]
        if v4 and any(ipaddress.ip_network(v4[0]["Subnet"]).overlaps(r) for r in routes):
            others = [ipaddress.ip_network(c["Subnet"]) for r in svc.store.all() if r["Id"] != rec["Id"]
                      for c in address_configs(r)]
            sn = pick_subnet(others + routes)
            log.warning("network %s: %s is routed elsewhere now, using %s", rec["Name"], v4[0]["Subnet"], sn)
            v4[0].update(Subnet=str(sn), Gateway=str(default_gateway(sn)))
            v4[0].pop("IPRange", None)
            changed = True
    if changed:
        svc.store.save(rec)


async def ensure_anchor(svc: NetworkService, rec: NetworkRecord) -> None:
    owner = ANCHOR_PREFIX + rec["Id"]
    ep = svc.endpoints.get(owner)
    if ep is not None and netns.is_netns(ep["netns"]):
        pin_mac(svc, rec)  # a bridge from before this daemon started
        if naming.dns_net(rec):
            await svc.names.ensure(rec["Id"], naming.gateways(rec))  # it may have died meanwhile
        return
    if ep is not None:
        svc.forget_endpoint(ep)
    claim(svc, rec)
    path = svc.run_dir / "anchors" / rec["Id"][:12]
    netns.create(path)
    ips = [svc.ipam.allocate_high(rec["Id"], c["Subnet"], c.get("Gateway"), owner) for c in address_configs(rec)]
    opts = {
        "container_id": hashlib.sha256(owner.encode()).hexdigest(),
        "container_name": f"skiff-anchor-{rec['Id'][:12]}",
        "networks": {rec["Name"]: {"interface_name": "eth0", "static_ips": ips}},
        "network_info": {rec["Name"]: network_info(rec)},
    }
    ep = {"Id": owner, "Name": "", "anchor": True, "netns": str(path), "options": opts,
          "networks": {rec["Name"]: {"NetworkID": rec["Id"]}}}
    try:
        await svc.netavark.setup(str(path), opts)
    except NetavarkError:
        await svc.netavark_teardown(ep)
        netns.remove(path)
        svc.ipam.release_owner(owner)
        raise
    svc.endpoints.save(ep)
    pin_mac(svc, rec)  # before any container joins: its gateway MAC never changes afterwards
    if naming.dns_net(rec):  # the bridge and its gateway address exist now
        await svc.names.ensure(rec["Id"], naming.gateways(rec))


def pin_mac(svc: NetworkService, rec: NetworkRecord) -> None:
    dev = rec["_bridge"]
    try:
        index = socket.if_nametoindex(dev)
        if svc.pinned.get(dev) != index:
            log.debug("bridge %s keeps MAC %s", dev, pin_bridge_mac(dev))
            svc.pinned[dev] = index
    except OSError as e:
        log.warning("cannot pin the MAC address of bridge %s: %s", dev, e)


async def drop_anchor(svc: NetworkService, ep: Endpoint) -> None:
    await svc.netavark_teardown(ep)
    netns.remove(Path(ep["netns"]))
    svc.forget_endpoint(ep)
