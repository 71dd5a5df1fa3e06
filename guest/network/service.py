"""NetworkService: Docker's networks over netavark (plumbing) and dnsmasq (names on user networks).

* Definitions (`docker network create`) are JSON records under `<data-root>/networks/` (store.py). `bridge` (the
  default, docker0-like: device skiff0, 172.17.0.0/16 unless that is routed already, no name resolution, as
  Docker), `host` and `none` always exist.
* For a container, `setup()` allocates addresses (ipam.py) and host ports (ports.py), runs `netavark setup` on the
  container's netns file (netavark.py), publishes its names to the network's dnsmasq (dnsmasq.py) and returns
  what the containers service needs: resolv.conf text, hosts entries, `NetworkSettings.Networks` and `.Ports`.
  `teardown()` undoes it with the very same JSON, in the background (off the `run --rm` path).
* Each bridge in use gets an *anchor*: a tiny netns of the engine's own, attached with the highest free address.
  netavark deletes a bridge (and its NAT chains, ~300 ms) when its last endpoint goes; the anchor keeps it up, as
  dockerd keeps docker0, so a container's teardown stays cheap. Anchors go at `network rm` and shutdown.
* Runtime state (allocations, endpoint records, name servers, anchors) lives under the exec root, so a daemon
  restart finds it again and a reboot starts clean.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import ipaddress
import logging
import os
import socket
import struct
import time
from pathlib import Path
from typing import Any

from skiffbox.guest.errors import Conflict, Forbidden, InvalidParameter, NotFound, SystemError_
from skiffbox.guest.network import dns, netns
from skiffbox.guest.network.dnsmasq import NameServers
from skiffbox.guest.network.endpoints import Endpoint, EndpointStore
from skiffbox.guest.network.ipam import Ipam, default_gateway, pick_subnet
from skiffbox.guest.network.netavark import Netavark, NetavarkError
from skiffbox.guest.network.ports import Mapping, PortAllocator, docker_ports, exposed_keys
from skiffbox.guest.network.store import DEFAULT_BRIDGE, PREDEFINED, NetworkRecord, NetworkStore, container_field, new_id
from skiffbox.guest.util.filters import bool_filter, match_labels
from skiffbox.guest.util.timefmt import parse_time, rfc3339

log = logging.getLogger("skiffd.network")

DEFAULT_BRIDGE_SUBNET = "172.17.0.0/16"
# Not "docker0": on a host that also runs dockerd (the generic driver, a shared test netns) netavark would adopt
# dockerd's bridge of that name.
DEFAULT_BRIDGE_DEVICE = "skiff0"
OPT_BRIDGE_NAME = "com.docker.network.bridge.name"
OPT_MTU = "com.docker.network.driver.mtu"
OPT_DEFAULT_BRIDGE = "com.docker.network.bridge.default_bridge"
ANCHOR_PREFIX = "anchor-"
# How long a start waits for the network's dnsmasq to serve a container's names, then again after re-publishing.
NAMES_CONFIRM_S = 3.0
NAMES_RETRY_S = 5.0


cget = container_field


def ctr_name(ctr: Any) -> str:
    return str(cget(ctr, "Name", "")).lstrip("/")


def normalize_mode(mode: str | None) -> str:
    mode = (mode or "").strip()
    return DEFAULT_BRIDGE if mode in ("", "default") else mode


def _host_routes(skip_dev: str | None = None) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
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


def _dev_exists(name: str) -> bool:
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
    return mac.hex(":")


class NetworkService:
    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.store = NetworkStore(engine.root)
        self.run_dir = Path(engine.run_root) / "network"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.ipam = Ipam(self.run_dir / "ipam.json")
        self.endpoints = EndpointStore(self.run_dir)
        self.netavark = Netavark(self.run_dir / "netavark")
        self.names = NameServers(self.run_dir)
        self.ports = PortAllocator()
        self._lock = asyncio.Lock()
        self._pending: dict[str, asyncio.Task[None]] = {}  # container id → background teardown
        self._ready: dict[str, asyncio.Task[None]] = {}  # container id → background setup (setup(background=True))
        self._pinned: dict[str, int] = {}  # bridge device → ifindex whose MAC we pinned (a re-created one is new)
        self._ensure_predefined()

    # ------------------------------------------------------------------------------------------
    # lifecycle
    # ------------------------------------------------------------------------------------------
    def _ensure_predefined(self) -> None:
        if self.store.by_name("bridge") is None:
            cfg = self.engine.cfg
            bip = getattr(cfg, "bip", None)  # dockerd's --bip, if the config grows it
            if bip:
                iface = ipaddress.ip_interface(bip)
                sn = iface.network
                gw = str(iface.ip) if iface.ip != sn.network_address else str(default_gateway(sn))
            else:
                sn = ipaddress.ip_network(DEFAULT_BRIDGE_SUBNET)
                if any(sn.overlaps(r) for r in _host_routes()):
                    sn = pick_subnet(_host_routes())
                gw = str(default_gateway(sn))
            dev = getattr(cfg, "bridge", None) or DEFAULT_BRIDGE_DEVICE
            self.store.save(self._record("bridge", "bridge", [{"Subnet": str(sn), "Gateway": gw}], {
                OPT_DEFAULT_BRIDGE: "true", "com.docker.network.bridge.enable_icc": "true",
                "com.docker.network.bridge.enable_ip_masquerade": "true",
                "com.docker.network.bridge.host_binding_ipv4": "0.0.0.0",
                OPT_BRIDGE_NAME: dev, OPT_MTU: "1500"}, {}, bridge=dev))
        for name, driver in (("host", "host"), ("none", "null")):
            if self.store.by_name(name) is None:
                rec = self._record(name, driver, [], {}, {})
                rec["Created"] = rfc3339(None)
                rec["EnableIPv4"] = False
                self.store.save(rec)

    @staticmethod
    def _record(name: str, driver: str, ipam_cfg: list[dict[str, str]], options: dict[str, str],
                labels: dict[str, str], *, bridge: str | None = None, internal: bool = False, ipv6: bool = False,
                attachable: bool = False, ipam_driver: str = "default", ipam_options: dict[str, str] | None = None,
                user_subnet: bool = False) -> NetworkRecord:
        nid = new_id()
        now = time.time()
        rec: NetworkRecord = {
            "Name": name, "Id": nid, "Created": rfc3339(now), "Scope": "local", "Driver": driver,
            "EnableIPv4": True, "EnableIPv6": ipv6,
            "IPAM": {"Driver": ipam_driver, "Options": ipam_options or {}, "Config": ipam_cfg},
            "Internal": internal, "Attachable": attachable, "Ingress": False, "ConfigFrom": {"Network": ""},
            "ConfigOnly": False, "Options": options, "Labels": labels, "_created": now,
            "_user_subnet": user_subnet,
        }
        if driver == "bridge":
            rec["_bridge"] = bridge or f"br-{nid[:12]}"
        return rec

    async def start(self) -> None:
        """Re-attach runtime state after a restart: drop endpoints whose netns is gone (the container died while
        we were down, or the VM rebooted) and rebuild the port table from the rest."""
        async with self._lock:
            for ep in self.endpoints.all():
                path = ep.get("netns")
                if path and netns.is_netns(path):
                    if not ep.get("anchor"):
                        self.ports.hold(ep["Id"], [Mapping.from_netavark(m) for m in ep.get("options", {}).get("port_mappings") or []])
                    continue
                if path:
                    await self._netavark_teardown(ep)
                self._forget_endpoint(ep)
            live = {ep["Id"] for ep in self.endpoints.all()}
            for owner in self.ipam.owners() - live:
                self.ipam.release_owner(owner)
            served: list[tuple[Endpoint, list[tuple[NetworkRecord, dict[str, Any]]]]] = []
            for rec in self.store.all():
                if self._dns_net(rec) and self._in_use(rec):
                    try:
                        await self.names.ensure(rec["Id"], self._gateways(rec))
                    except Exception as e:
                        log.warning("name server of network %s: %s", rec["Name"], e)
            for ep in self.endpoints.all():
                named: list[tuple[NetworkRecord, dict[str, Any]]] = []
                for net, es in ep["networks"].items():
                    found = None if ep.get("anchor") else self.store.find(es.get("NetworkID") or net)
                    if found is not None and self._dns_net(found):
                        named.append((found, es))
                for rec, es in named:  # a crash between netavark and the names, an exec root tidied by hand
                    if self._publish_names(rec, ep, ep["Id"], es, only_if_changed=True):
                        log.info("names of %s on %s were not published: published again", ep["Id"][:12], rec["Name"])
                named = [(rec, es) for rec, es in named if self.names.running(rec["Id"])]  # else warned above
                if named:
                    served.append((ep, named))
        # The containers kept running while we were down and their dnsmasq may have been restarted just now (it
        # reads hosts.d when it starts): confirm their names from here, re-publishing what is missing.
        for ep, named in served:
            await self._confirm_names(None, ep, ep["Id"], named, fail=False)

    async def close(self) -> None:
        """Remove the anchors (containers keep running and keep their bridges; an idle bridge goes with its anchor)."""
        await self.settle()
        async with self._lock:
            for ep in [e for e in self.endpoints.all() if e.get("anchor")]:
                await self._drop_anchor(ep)
            for rec in self.store.all():
                # Name servers of networks with running containers keep serving them while we are down.
                if self._dns_net(rec) and not self._in_use(rec):
                    await self.names.stop(rec["Id"])

    # ------------------------------------------------------------------------------------------
    # lookups
    # ------------------------------------------------------------------------------------------
    def resolve(self, ref: str) -> NetworkRecord:
        rec = self.store.find(normalize_mode(ref))
        if rec is None:
            raise NotFound(f"network {ref} not found")
        return rec

    @staticmethod
    def normalize_mode(mode: str | None) -> str:
        return normalize_mode(mode)

    def _containers_on(self, rec: NetworkRecord) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for ep in self.endpoints.on_network(rec["Name"]):
            if ep["Id"] in self._pending or self._stale(ep):
                continue
            es = ep["networks"][rec["Name"]]
            out[ep["Id"]] = {
                "Name": ep.get("Name", ""), "EndpointID": es.get("EndpointID", ""), "MacAddress": es.get("MacAddress", ""),
                "IPv4Address": f"{es['IPAddress']}/{es['IPPrefixLen']}" if es.get("IPAddress") else "",
                "IPv6Address": f"{es['GlobalIPv6Address']}/{es['GlobalIPv6PrefixLen']}" if es.get("GlobalIPv6Address") else "",
            }
        return out

    def public(self, rec: NetworkRecord, with_containers: bool = True) -> dict[str, Any]:
        out = {k: v for k, v in rec.items() if not k.startswith("_")}
        out["Containers"] = self._containers_on(rec) if with_containers else {}
        return out

    def inspect(self, ref: str) -> dict[str, Any]:
        return self.public(self.resolve(ref))

    def ls(self, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
        return [self.public(r, with_containers=False) for r in self.store.all() if self._matches(r, filters)]

    def _in_use(self, rec: NetworkRecord) -> bool:
        return any(ep["Id"] not in self._pending and not self._stale(ep) for ep in self.endpoints.on_network(rec["Name"]))

    def _matches(self, rec: NetworkRecord, f: dict[str, list[str]]) -> bool:
        if f.get("name") and not any(n in rec["Name"] for n in f["name"]):
            return False
        if f.get("id") and not any(rec["Id"].startswith(i) or i in rec["Id"] for i in f["id"]):
            return False
        if f.get("driver") and rec["Driver"] not in f["driver"]:
            return False
        if f.get("scope") and rec["Scope"] not in f["scope"]:
            return False
        if f.get("label") and not match_labels(rec.get("Labels"), f["label"]):
            return False
        if f.get("label!") and any(match_labels(rec.get("Labels"), [lbl]) for lbl in f["label!"]):
            return False
        if f.get("type"):
            kinds = set(f["type"])
            bad = kinds - {"custom", "builtin"}
            if bad:
                raise InvalidParameter(f"invalid filter: 'type'='{sorted(bad)[0]}'")
            builtin = rec["Name"] in PREDEFINED
            if not (("builtin" in kinds and builtin) or ("custom" in kinds and not builtin)):
                return False
        dangling = bool_filter(f.get("dangling", []), "dangling")
        if dangling is not None:
            if rec["Name"] in PREDEFINED:
                return False
            if dangling == self._in_use(rec):
                return False
        return True

    # ------------------------------------------------------------------------------------------
    # create / remove / prune
    # ------------------------------------------------------------------------------------------
    async def create(self, body: dict[str, Any]) -> dict[str, str]:
        name = (body.get("Name") or "").strip()
        if not name:
            raise InvalidParameter("network name is required")
        if name in PREDEFINED:
            raise Forbidden(f"operation is not permitted on predefined {name} network ")
        driver = body.get("Driver") or "bridge"
        if driver in ("host", "null"):
            raise Forbidden(f'only one instance of "{driver}" network is allowed')
        if driver != "bridge":
            raise NotFound(f"could not find plugin {driver} in v1 plugin registry: plugin not found")
        if body.get("Ingress"):
            raise Forbidden("ingress networks need swarm mode, which skiff does not provide")
        async with self._lock:
            if self.store.by_name(name) is not None:
                raise Conflict(f"network with name {name} already exists")
            ipam = body.get("IPAM") or {}
            ipam_driver = ipam.get("Driver") or "default"
            if ipam_driver not in ("default", ""):
                raise NotFound(f"could not find plugin {ipam_driver} in v1 plugin registry: plugin not found")
            ipv6 = bool(body.get("EnableIPv6"))
            if body.get("EnableIPv4") is False and not ipv6:
                raise InvalidParameter("IPv4 or IPv6 must be enabled")
            cfgs, user_subnet = self._ipam_config(name, ipam.get("Config") or [], ipv6)
            options = {str(k): str(v) for k, v in (body.get("Options") or {}).items()}
            bridge = options.get(OPT_BRIDGE_NAME) or None
            if bridge and (len(bridge) > 15 or any(r.get("_bridge") == bridge for r in self.store.all())):
                raise InvalidParameter(f"invalid bridge name {bridge!r} (in use or longer than 15 characters)")
            if OPT_MTU in options:
                try:
                    int(options[OPT_MTU])
                except ValueError:
                    raise InvalidParameter(f"invalid mtu {options[OPT_MTU]!r}") from None
            rec = self._record(name, "bridge", cfgs, options, {str(k): str(v) for k, v in (body.get("Labels") or {}).items()},
                               bridge=bridge, internal=bool(body.get("Internal")), ipv6=ipv6,
                               attachable=bool(body.get("Attachable")), ipam_options=ipam.get("Options") or {},
                               user_subnet=user_subnet)
            rec["ConfigOnly"] = bool(body.get("ConfigOnly"))
            if body.get("ConfigFrom"):
                rec["ConfigFrom"] = {"Network": (body.get("ConfigFrom") or {}).get("Network", "")}
            self.store.save(rec)
        self.engine.events.publish("network", "create", rec["Id"], {"name": name, "type": "bridge"})
        return {"Id": rec["Id"], "Warning": ""}

    def _ipam_config(self, name: str, configs: list[dict[str, Any]], ipv6: bool) -> tuple[list[dict[str, Any]], bool]:
        in_use: list[Any] = []
        for r in self.store.all():
            for c in r["IPAM"]["Config"]:
                in_use.append(ipaddress.ip_network(c["Subnet"], strict=False))
        out: list[dict[str, Any]] = []
        user_subnet = False
        for c in configs:
            if not c.get("Subnet"):
                if c.get("Gateway") or c.get("IPRange"):
                    raise InvalidParameter("a gateway or an ip-range needs a subnet")
                continue
            try:
                sn = ipaddress.ip_network(c["Subnet"], strict=False)
            except ValueError:
                raise InvalidParameter(f"invalid subnet {c['Subnet']!r}") from None
            if sn.version == 6 and not ipv6:
                raise InvalidParameter("IPv6 subnet given but IPv6 is not enabled (--ipv6)")
            if any(sn.overlaps(u) for u in in_use):
                raise Forbidden("Pool overlaps with other one on this address space")
            entry: dict[str, Any] = {"Subnet": str(sn)}
            if c.get("IPRange"):
                try:
                    rng = ipaddress.ip_network(c["IPRange"], strict=False)
                except ValueError:
                    raise InvalidParameter(f"invalid ip-range {c['IPRange']!r}") from None
                if not rng.subnet_of(sn):  # type: ignore[arg-type]
                    raise InvalidParameter(f"ip-range {rng} is not inside subnet {sn}")
                entry["IPRange"] = str(rng)
            if c.get("Gateway"):
                try:
                    gw = ipaddress.ip_address(c["Gateway"])
                except ValueError:
                    raise InvalidParameter(f"invalid gateway {c['Gateway']!r}") from None
                if gw not in sn:
                    raise InvalidParameter(f"gateway {gw} is not inside subnet {sn}")
                entry["Gateway"] = str(gw)
            else:
                entry["Gateway"] = str(default_gateway(sn))
            if c.get("AuxiliaryAddresses") or c.get("AuxAddress"):
                entry["AuxiliaryAddresses"] = c.get("AuxiliaryAddresses") or c.get("AuxAddress")
            in_use.append(sn)
            out.append(entry)
            user_subnet = True
        if not any(ipaddress.ip_network(e["Subnet"]).version == 4 for e in out):
            sn = pick_subnet(in_use + _host_routes())
            out.insert(0, {"Subnet": str(sn), "Gateway": str(default_gateway(sn))})
        if ipv6 and not any(ipaddress.ip_network(e["Subnet"]).version == 6 for e in out):
            # Docker hands out a ULA /64 from its default pool; derive one from the name so it is stable.
            h = hashlib.sha256(name.encode()).digest()
            sn6 = ipaddress.ip_network((b"\xfd" + h[:7] + b"\0" * 8, 64))
            out.append({"Subnet": str(sn6), "Gateway": str(default_gateway(sn6))})
        return out, user_subnet

    async def remove(self, ref: str) -> None:
        rec = self.resolve(ref)
        if rec["Name"] in PREDEFINED:
            raise Forbidden(f"{rec['Name']} is a pre-defined network and cannot be removed")
        await self.settle()
        async with self._lock:
            await self._reap_stale()
            if self._in_use(rec):
                raise Forbidden(f"error while removing network: network {rec['Name']} id {rec['Id']} has active endpoints")
            await self._remove_locked(rec)
        self.engine.events.publish("network", "destroy", rec["Id"], {"name": rec["Name"], "type": rec["Driver"]})

    async def _remove_locked(self, rec: NetworkRecord) -> None:
        anchor = self.endpoints.get(ANCHOR_PREFIX + rec["Id"])
        if anchor is not None:
            await self._drop_anchor(anchor)
        await self.names.stop(rec["Id"])
        self.ipam.drop_network(rec["Id"])
        self.store.delete(rec["Id"])

    async def prune(self, filters: dict[str, list[str]]) -> list[str]:
        until = parse_time((filters.get("until") or [""])[-1])
        gone: list[NetworkRecord] = []
        await self.settle()
        async with self._lock:
            for rec in self.store.all():
                if rec["Name"] in PREDEFINED or self._in_use(rec):
                    continue
                if until is not None and rec.get("_created", 0) >= until:
                    continue
                if filters.get("label") and not match_labels(rec.get("Labels"), filters["label"]):
                    continue
                if filters.get("label!") and any(match_labels(rec.get("Labels"), [lbl]) for lbl in filters["label!"]):
                    continue
                await self._remove_locked(rec)
                gone.append(rec)
        for rec in gone:
            self.engine.events.publish("network", "destroy", rec["Id"], {"name": rec["Name"], "type": rec["Driver"]})
        return [r["Name"] for r in gone]

    # ------------------------------------------------------------------------------------------
    # netavark glue
    # ------------------------------------------------------------------------------------------
    @staticmethod
    def _network_info(rec: NetworkRecord) -> dict[str, Any]:
        subnets = []
        for c in rec["IPAM"]["Config"]:
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

    @staticmethod
    def _dns_net(rec: NetworkRecord) -> bool:
        """Docker: name resolution on user networks only, never on the default bridge."""
        return rec["Driver"] == "bridge" and rec["Name"] != DEFAULT_BRIDGE

    @staticmethod
    def _gateways(rec: NetworkRecord) -> list[str]:
        gws = [c["Gateway"] for c in rec["IPAM"]["Config"] if c.get("Gateway")]
        return sorted(gws, key=lambda g: ":" in g)  # IPv4 first

    @staticmethod
    def _name_entries(ctr: Any, cid: str, settings: dict[str, Any]) -> list[tuple[str, list[str]]]:
        """The container's (address, [name, aliases, short id, hostname]) lines for one network."""
        names = list(dict.fromkeys([ctr_name(ctr) or cid[:12]] + list(settings.get("DNSNames") or [])))
        return [(ip, names) for ip in (settings.get("IPAddress"), settings.get("GlobalIPv6Address")) if ip]

    def _publish_names(self, rec: NetworkRecord, ctr: Any, cid: str, settings: dict[str, Any],
                       only_if_changed: bool = False) -> bool:
        return self.names.set_names(rec["Id"], cid, self._name_entries(ctr, cid, settings), only_if_changed)

    def _expected_names(self, rec: NetworkRecord, ctr: Any, cid: str, settings: dict[str, Any]
                        ) -> tuple[str, dict[str, str]] | None:
        """(the gateway the container asks, {name: the address it must get}) on one user network."""
        entries = self._name_entries(ctr, cid, settings)
        gws = self._gateways(rec)
        if not entries or not gws:
            return None
        ip, names = entries[0]  # IPv4 when the network has it, as the gateways are ordered
        server = next((g for g in gws if (":" in g) == (":" in ip)), gws[0])
        return server, {n: str(ipaddress.ip_address(ip)) for n in names}

    async def _confirm_names(self, netns_path: str | None, ctr: Any, cid: str,
                             named: list[tuple[NetworkRecord, dict[str, Any]]], fail: bool = True) -> None:
        """Every name of the container on every user network it joined must be served by that network's dnsmasq
        (with this container's address) before start/connect returns: asked from the container's netns (the path
        of its own lookups; the peers reach the same gateway over the same bridge, whose MAC is pinned), or from
        ours when `netns_path` is None. dnsmasq reads a new hosts file within milliseconds; on a miss (a loaded
        machine, a server that died or lost an inotify event) the file is written again, the server started if
        it is not running and told to re-read everything (SIGHUP), and asked again. Still missing: the start
        fails (`fail`) rather than hand out a container its peers cannot name; else a warning."""
        checks = [(rec, settings, exp) for rec, settings in named
                  if (exp := self._expected_names(rec, ctr, cid, settings)) is not None]
        if not checks:
            return

        def probe(todo: list[tuple[str, str, dict[str, str]]], timeout: float) -> dict[str, list[str]]:
            deadline = time.monotonic() + timeout
            out: dict[str, list[str]] = {}
            for net_id, server, expected in todo:
                missing = dns.confirm_names(server, expected, max(0.3, deadline - time.monotonic()))
                if missing:
                    out[net_id] = missing
            return out

        async def ask(todo: list[tuple[str, str, dict[str, str]]], timeout: float) -> dict[str, list[str]]:
            if netns_path is None:
                return await asyncio.to_thread(probe, todo, timeout)
            return await asyncio.to_thread(netns.run_in, netns_path, probe, todo, timeout)

        todo = [(rec["Id"], server, expected) for rec, _, (server, expected) in checks]
        t0 = time.monotonic()
        missing = await ask(todo, NAMES_CONFIRM_S)
        if not missing:
            return
        by_id = {rec["Id"]: (rec, settings) for rec, settings, _ in checks}
        for net_id, names in missing.items():
            rec, settings = by_id[net_id]
            log.warning("name server of network %s does not serve %s of %s after %.1f s: re-publishing",
                        rec["Name"], ", ".join(names), cid[:12], time.monotonic() - t0)
            async with self._lock:
                await self.names.ensure(net_id, self._gateways(rec))
            self._publish_names(rec, ctr, cid, settings)
            self.names.reload(net_id)
        missing = await ask([t for t in todo if t[0] in missing], NAMES_RETRY_S)
        if not missing:
            log.info("names of %s confirmed after re-publishing (%.1f s)", cid[:12], time.monotonic() - t0)
            return
        what = "; ".join(f"{by_id[i][0]['Name']}: {', '.join(n)}" for i, n in missing.items())
        if fail:
            raise SystemError_(f"the network name server does not serve the names of container {cid[:12]} ({what})")
        log.warning("the network name server does not serve the names of container %s (%s)", cid[:12], what)

    def _unpublish_names(self, ep: Endpoint) -> None:
        for es in (ep.get("networks") or {}).values():
            if es.get("NetworkID"):
                self.names.drop_names(es["NetworkID"], ep["Id"])

    async def _netavark_teardown(self, ep: Endpoint, only: list[str] | None = None, path: str | None = None) -> None:
        opts = dict(ep["options"])
        if only is not None:
            opts["networks"] = {k: v for k, v in opts["networks"].items() if k in only}
            opts["network_info"] = {k: v for k, v in opts["network_info"].items() if k in only}
        if not opts["networks"]:
            return
        path = path or ep.get("netns") or ""
        scratch: Path | None = None
        if not netns.is_netns(path):
            # The netns is gone (and its veth with it), but the NAT rules and DNS entries are not: let netavark
            # remove those against an empty namespace.
            scratch = self.run_dir / "scratch-netns"
            netns.create(scratch)
            path = str(scratch)
        try:
            await self.netavark.teardown(path, opts)
        except NetavarkError as e:
            log.warning("teardown of %s: %s", ep["Id"][:12], e)
        finally:
            if scratch is not None:
                netns.remove(scratch)

    def _stale(self, ep: Endpoint) -> bool:
        """A container endpoint whose netns is gone without a teardown (its container was swept away)."""
        return not ep.get("anchor") and ep["Id"] not in self._pending and ep["Id"] not in self._ready \
            and not netns.is_netns(ep.get("netns") or "")

    async def _reap_stale(self) -> None:
        """(Under the lock) tear down stale endpoints: their NAT rules, names, addresses and host ports."""
        for ep in [e for e in self.endpoints.all() if self._stale(e)]:
            log.info("network endpoint of %s outlived its netns: cleaning up", ep["Id"][:12])
            await self._netavark_teardown(ep)
            self._forget_endpoint(ep)

    def _forget_endpoint(self, ep: Endpoint) -> None:
        self._unpublish_names(ep)
        self.ports.release(ep["Id"])
        self.ipam.release_owner(ep["Id"])
        self.endpoints.delete(ep["Id"])

    def _claim_bridge(self, rec: NetworkRecord) -> None:
        """Before our bridge comes up, with nobody holding an address on it: a bridge device of that name that is
        not ours (another skiffd in this netns, e.g. two test daemons) makes the default network take the next free
        name; an engine-chosen subnet that something else now routes (a dockerd started after us, a VPN, that
        other daemon's bridge) moves to a free one."""
        if self.ipam.owned(rec["Id"]) or self._in_use(rec):
            return
        changed = False
        if rec["Name"] == DEFAULT_BRIDGE and not getattr(self.engine.cfg, "bridge", None) and _dev_exists(rec["_bridge"]):
            taken = {r.get("_bridge") for r in self.store.all()}
            dev = next(f"skiff{i}" for i in range(1, 100) if f"skiff{i}" not in taken and not _dev_exists(f"skiff{i}"))
            log.warning("bridge %s belongs to someone else: the default network uses %s", rec["_bridge"], dev)
            rec["_bridge"] = dev
            rec["Options"][OPT_BRIDGE_NAME] = dev
            changed = True
        if not rec.get("_user_subnet") and not getattr(self.engine.cfg, "bip", None):
            routes = _host_routes(skip_dev=rec.get("_bridge"))
            v4 = [c for c in rec["IPAM"]["Config"] if ipaddress.ip_network(c["Subnet"]).version == 4]
            if v4 and any(ipaddress.ip_network(v4[0]["Subnet"]).overlaps(r) for r in routes):
                others = [ipaddress.ip_network(c["Subnet"]) for r in self.store.all() if r["Id"] != rec["Id"]
                          for c in r["IPAM"]["Config"]]
                sn = pick_subnet(others + routes)
                log.warning("network %s: %s is routed elsewhere now, using %s", rec["Name"], v4[0]["Subnet"], sn)
                v4[0].update(Subnet=str(sn), Gateway=str(default_gateway(sn)))
                v4[0].pop("IPRange", None)
                changed = True
        if changed:
            self.store.save(rec)

    async def _ensure_anchor(self, rec: NetworkRecord) -> None:
        owner = ANCHOR_PREFIX + rec["Id"]
        ep = self.endpoints.get(owner)
        if ep is not None and netns.is_netns(ep["netns"]):
            self._pin_mac(rec)  # a bridge from before this daemon started
            if self._dns_net(rec):
                await self.names.ensure(rec["Id"], self._gateways(rec))  # it may have died meanwhile
            return
        if ep is not None:
            self._forget_endpoint(ep)
        self._claim_bridge(rec)
        path = self.run_dir / "anchors" / rec["Id"][:12]
        netns.create(path)
        ips = [self.ipam.allocate_high(rec["Id"], c["Subnet"], c.get("Gateway"), owner) for c in rec["IPAM"]["Config"]]
        opts = {
            "container_id": hashlib.sha256(owner.encode()).hexdigest(),
            "container_name": f"skiff-anchor-{rec['Id'][:12]}",
            "networks": {rec["Name"]: {"interface_name": "eth0", "static_ips": ips}},
            "network_info": {rec["Name"]: self._network_info(rec)},
        }
        ep = {"Id": owner, "Name": "", "anchor": True, "netns": str(path), "options": opts,
              "networks": {rec["Name"]: {"NetworkID": rec["Id"]}}}
        try:
            await self.netavark.setup(str(path), opts)
        except NetavarkError:
            await self._netavark_teardown(ep)
            netns.remove(path)
            self.ipam.release_owner(owner)
            raise
        self.endpoints.save(ep)
        self._pin_mac(rec)  # before any container joins: its gateway MAC never changes afterwards
        if self._dns_net(rec):  # the bridge and its gateway address exist now
            await self.names.ensure(rec["Id"], self._gateways(rec))

    def _pin_mac(self, rec: NetworkRecord) -> None:
        dev = rec["_bridge"]
        try:
            index = socket.if_nametoindex(dev)
            if self._pinned.get(dev) != index:
                log.debug("bridge %s keeps MAC %s", dev, pin_bridge_mac(dev))
                self._pinned[dev] = index
        except OSError as e:
            log.warning("cannot pin the MAC address of bridge %s: %s", dev, e)

    async def _drop_anchor(self, ep: Endpoint) -> None:
        await self._netavark_teardown(ep)
        netns.remove(Path(ep["netns"]))
        self._forget_endpoint(ep)

    # ------------------------------------------------------------------------------------------
    # containers
    # ------------------------------------------------------------------------------------------
    @staticmethod
    def _endpoint_configs(ctr: Any) -> dict[str, dict[str, Any]]:
        """The per-network endpoint config from the create body (or `network connect` on a stopped container)."""
        for holder, key in (("NetworkingConfig", "EndpointsConfig"), ("NetworkSettings", "Networks")):
            h = cget(ctr, holder, {})
            if isinstance(h, dict) and isinstance(h.get(key), dict) and h[key]:
                return {normalize_mode(k): dict(v or {}) for k, v in h[key].items()}
        return {}

    def wanted_networks(self, ctr: Any) -> list[tuple[NetworkRecord, dict[str, Any]]]:
        """The networks a bridge-mode container joins: the NetworkMode one first (eth0), then the others by name."""
        hc = cget(ctr, "HostConfig", {})
        mode = normalize_mode(hc.get("NetworkMode"))
        cfgs = self._endpoint_configs(ctr)
        primary = self.resolve(mode)
        out = [(primary, cfgs.pop(primary["Name"], None) or cfgs.pop(mode, None) or cfgs.pop(primary["Id"], None) or {})]
        for ref in sorted(cfgs):
            rec = self.resolve(ref)
            if rec["Id"] != primary["Id"]:
                out.append((rec, cfgs[ref]))
        return out

    def validate(self, host_config: dict[str, Any], endpoints_config: dict[str, Any] | None,
                 config: dict[str, Any] | None = None) -> list[str]:
        """Create-time checks (Docker ≥1.44 validates at create, not at start); returns dockerd's warnings.
        `config` is the request's own Config (before the image's is merged in: an image's EXPOSE is no conflict)."""
        mode = normalize_mode(host_config.get("NetworkMode"))
        if mode in ("host", "none", "container") or mode.startswith("container:"):
            return self._shared_mode_conflicts(mode, host_config, endpoints_config or {}, config or {})
        recs = [self.resolve(mode)] + [self.resolve(k) for k in (endpoints_config or {}) if normalize_mode(k) != mode]
        for key, es in (endpoints_config or {}).items():
            rec = self.resolve(key)
            es = es or {}
            ipam = es.get("IPAMConfig") or {}
            if rec["Name"] == DEFAULT_BRIDGE:
                if ipam.get("IPv4Address") or ipam.get("IPv6Address"):
                    raise InvalidParameter("user specified IP address is supported on user defined networks only")
                if [a for a in es.get("Aliases") or []]:
                    raise InvalidParameter("network-scoped alias is supported only for containers in user defined networks")
            elif (ipam.get("IPv4Address") or ipam.get("IPv6Address")) and not rec.get("_user_subnet"):
                raise InvalidParameter("user specified IP address is supported only when connecting to networks with user configured subnets")
        for rec in recs:
            if rec["Driver"] != "bridge":
                raise InvalidParameter(f"container cannot be connected to network {rec['Name']} together with other networks")
            if rec.get("ConfigOnly"):
                raise InvalidParameter(f"cannot attach to config-only network {rec['Name']}")
        return []

    @staticmethod
    def _shared_mode_conflicts(mode: str, hc: dict[str, Any], endpoints: dict[str, Any],
                               config: dict[str, Any]) -> list[str]:
        """dockerd's rules (runconfig validateNetMode/validateNetContainerMode, the router's MAC address check) for a
        container without a network namespace of its own, in dockerd's order and words. Only `--dns` conflicts
        (dockerd lets --dns-search/--dns-option through: the other container's resolv.conf is used)."""
        mac = config.get("MacAddress") or any((es or {}).get("MacAddress") for es in endpoints.values())
        if mode == "host":
            if hc.get("Links"):
                raise InvalidParameter("conflicting options: host type networking can't be used with links. "
                                       "This would result in undefined behavior")
            if mac:
                raise InvalidParameter("conflicting options: mac-address and the network mode")
            if hc.get("PortBindings"):
                return ["Published ports are discarded when using host network mode"]
            return []
        if mode == "none":
            return []
        if mac:  # the API router's check, before the daemon's
            raise InvalidParameter("conflicting options: mac-address and the network mode")
        if not mode.partition(":")[2]:
            raise InvalidParameter("Invalid network mode: invalid container format container:<name|id>")
        for present, message in (
                (config.get("Hostname"), "conflicting options: hostname and the network mode"),
                (hc.get("Links"), "conflicting options: container type network can't be used with links. "
                                  "This would result in undefined behavior"),
                (hc.get("Dns"), "conflicting options: dns and the network mode"),
                (hc.get("ExtraHosts"), "conflicting options: custom host-to-IP mapping and the network mode"),
                (hc.get("PortBindings") or hc.get("PublishAllPorts"),
                 "conflicting options: port publishing and the container type network mode"),
                (config.get("ExposedPorts"), "conflicting options: port exposing and the container type network mode")):
            if present:
                raise InvalidParameter(message)
        return []

    def _build_netavark_network(self, rec: NetworkRecord, es: dict[str, Any], owner: str, ifname: str, ctr: Any
                                ) -> tuple[dict[str, Any], list[str]]:
        ipam = es.get("IPAMConfig") or {}
        ips: list[str] = []
        try:
            for c in rec["IPAM"]["Config"]:
                v = ipaddress.ip_network(c["Subnet"]).version
                want = ipam.get("IPv4Address") if v == 4 else ipam.get("IPv6Address")
                ips.append(self.ipam.allocate(rec["Id"], c["Subnet"], c.get("Gateway"), owner, ip_range=c.get("IPRange"),
                                              want=want or None, net_name=rec["Name"]))
        except Exception:
            self.ipam.release(rec["Id"], owner)
            raise
        per: dict[str, Any] = {"interface_name": ifname, "static_ips": ips}
        if rec["Name"] != DEFAULT_BRIDGE:
            aliases = [a for a in (es.get("Aliases") or []) if a and a != ctr_name(ctr)]
            hostname = (cget(ctr, "Config", {}) or {}).get("Hostname") or ""
            extra = [owner[:12]] + ([hostname] if hostname else [])
            per["aliases"] = list(dict.fromkeys(aliases + [e for e in extra if e != ctr_name(ctr)]))
        # Docker's classic MAC, 02:42 + the IPv4 address: unique on the bridge, known before netavark runs.
        v4 = next((ipaddress.ip_address(a) for a in ips if ":" not in a), None)
        per["static_mac"] = es.get("MacAddress") or (
            "02:42:" + ":".join(f"{b:02x}" for b in v4.packed) if v4 is not None else
            "02:42:" + ":".join(f"{b:02x}" for b in os.urandom(4)))
        return per, ips

    @staticmethod
    def _endpoint_settings(rec: NetworkRecord, es: dict[str, Any], ips: list[str], status: dict[str, Any],
                           ifname: str, ctr: Any, per: dict[str, Any]) -> dict[str, Any]:
        iface = ((status.get(rec["Name"]) or {}).get("interfaces") or {}).get(ifname) or {}
        out: dict[str, Any] = {
            "IPAMConfig": es.get("IPAMConfig") or None, "Links": es.get("Links"), "Aliases": es.get("Aliases"),
            "MacAddress": iface.get("mac_address") or per.get("static_mac", ""), "DriverOpts": es.get("DriverOpts"),
            "GwPriority": es.get("GwPriority", 0), "NetworkID": rec["Id"], "EndpointID": new_id(),
            "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0,
            "DNSNames": ([ctr_name(ctr)] + list(per.get("aliases") or [])) if rec["Name"] != DEFAULT_BRIDGE else None,
        }
        for c, ip in zip(rec["IPAM"]["Config"], ips):
            sn = ipaddress.ip_network(c["Subnet"])
            if sn.version == 4:
                out.update(Gateway=c.get("Gateway", ""), IPAddress=ip, IPPrefixLen=sn.prefixlen)
            else:
                out.update(IPv6Gateway=c.get("Gateway", ""), GlobalIPv6Address=ip, GlobalIPv6PrefixLen=sn.prefixlen)
        return out

    def _predefined_settings(self, name: str) -> dict[str, Any]:
        rec = self.resolve(name)
        return {"IPAMConfig": None, "Links": None, "Aliases": None, "MacAddress": "", "DriverOpts": None, "GwPriority": 0,
                "NetworkID": rec["Id"], "EndpointID": new_id() if name == "host" else "", "Gateway": "", "IPAddress": "",
                "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DNSNames": None}

    def _hosts_entries(self, ctr: Any, own_ip: str | None) -> list[tuple[str, list[str]]]:
        hc = cget(ctr, "HostConfig", {})
        out: list[tuple[str, list[str]]] = []
        host_gw = self.resolve(DEFAULT_BRIDGE)["IPAM"]["Config"][0].get("Gateway", "")
        for entry in hc.get("ExtraHosts") or []:
            # "name:ip" (IPv6 addresses contain colons, so split on the first one) or "name=ip" (Docker ≥25).
            name, sep, ip = entry.partition("=") if "=" in entry else entry.partition(":")
            if not sep or not name or not ip:
                raise InvalidParameter(f"invalid argument {entry!r} for --add-host: expected host:ip")
            ip = ip.strip("[]")
            if ip == "host-gateway":
                ip = host_gw
            out.append((ip, [name]))
        for link in hc.get("Links") or []:
            target, _, alias = link.partition(":")
            target = target.lstrip("/")
            alias = alias.rsplit("/", 1)[-1] if alias else target
            ep = self._endpoint_by_name(target)
            if ep is None:
                continue
            ip = next((s.get("IPAddress") for s in ep["networks"].values() if s.get("IPAddress")), None)
            if ip:
                out.append((ip, list(dict.fromkeys([alias, target]))))
        if own_ip:
            hostname = (cget(ctr, "Config", {}) or {}).get("Hostname") or cget(ctr, "Id", "")[:12]
            out.append((own_ip, [hostname]))
        return out

    def _endpoint_by_name(self, name: str) -> Endpoint | None:
        for ep in self.endpoints.all():
            if not ep.get("anchor") and (ep.get("Name") == name or ep["Id"].startswith(name)):
                return ep
        return None

    async def setup(self, ctr: Any, netns_path: str | None, background: bool = False) -> dict[str, Any]:
        """Wire the container's netns. With `background=True` it returns as soon as everything is decided and
        netavark runs on; the caller must `await ready(ctr)` before the container's process runs."""
        cid = str(cget(ctr, "Id"))
        hc = cget(ctr, "HostConfig", {}) or {}
        config = cget(ctr, "Config", {}) or {}
        mode = normalize_mode(hc.get("NetworkMode"))
        dns_servers = list(hc.get("Dns") or [])
        dns_search = list(hc.get("DnsSearch") or [])
        dns_options = list(hc.get("DnsOptions") or [])
        exposed = exposed_keys(config, hc)

        if mode == "host":
            return {"resolv_conf": dns.host_resolv_text() if not (dns_servers or dns_search or dns_options)
                    else dns.resolv_for_bridge(dns_servers, dns_search, dns_options),
                    "hosts": self._hosts_entries(ctr, None), "networks": {"host": self._predefined_settings("host")},
                    "ports": {}, "netns_owner": None}
        if mode.startswith("container:"):
            other = self._endpoint_by_name(mode.split(":", 1)[1])
            return {"resolv_conf": other.get("resolv_conf") if other else None,
                    "hosts": list(other.get("hosts") or []) if other else [], "networks": {}, "ports": {},
                    "netns_owner": other["Id"] if other else mode.split(":", 1)[1]}
        if not netns_path:
            raise InvalidParameter(f"network mode {mode} needs a network namespace")
        if mode == "none":
            netns.set_loopback_up(netns_path)
            return {"resolv_conf": dns.resolv_for_bridge(dns_servers, dns_search, dns_options),
                    "hosts": self._hosts_entries(ctr, None), "networks": {"none": self._predefined_settings("none")},
                    "ports": {}, "netns_owner": None}

        self.validate(hc, self._endpoint_configs(ctr))
        wanted = self.wanted_networks(ctr)
        await self.settle()  # host ports and addresses of containers just gone are free again
        async with self._lock:
            await self._reap_stale()
            old = self.endpoints.get(cid)
            if old is not None:
                await self._netavark_teardown(old)
                self._forget_endpoint(old)
            for rec, _ in wanted:
                await self._ensure_anchor(rec)
            mappings = self.ports.allocate(cid, config, hc)
            nets: dict[str, Any] = {}
            infos: dict[str, Any] = {}
            all_ips: dict[str, list[str]] = {}
            try:
                for i, (rec, es) in enumerate(wanted):
                    per, ips = self._build_netavark_network(rec, es, cid, f"eth{i}", ctr)
                    nets[rec["Name"]] = per
                    infos[rec["Name"]] = self._network_info(rec)
                    all_ips[rec["Name"]] = ips
            except Exception:
                self.ports.release(cid)
                self.ipam.release_owner(cid)
                raise
            opts: dict[str, Any] = {"container_id": cid, "container_name": ctr_name(ctr) or cid[:12],
                                    "networks": nets, "network_info": infos}
            if mappings and not all(rec.get("Internal") for rec, _ in wanted):
                opts["port_mappings"] = [m.netavark() for m in mappings]
            ep: Endpoint = {"Id": cid, "Name": ctr_name(ctr), "netns": netns_path, "options": opts, "networks": {}}
            # Everything the container needs to know (addresses, MACs, ports, resolv.conf, hosts) is decided here,
            # before netavark runs: that lets the caller overlap netavark with the rest of the container's start.
            settings = {}
            for i, (rec, es) in enumerate(wanted):
                settings[rec["Name"]] = self._endpoint_settings(rec, es, all_ips[rec["Name"]], {}, f"eth{i}", ctr,
                                                                nets[rec["Name"]])
            ep["networks"] = settings
            dns_ips: list[str] = []
            for rec, _ in wanted:
                if self._dns_net(rec):
                    dns_ips += self._gateways(rec)
            resolv = (dns.resolv_for_embedded(list(dict.fromkeys(dns_ips)), dns_search, dns_options) if dns_ips
                      else dns.resolv_for_bridge(dns_servers, dns_search, dns_options))
            primary_ip = settings[wanted[0][0]["Name"]].get("IPAddress") or None
            hosts = self._hosts_entries(ctr, primary_ip)
            ep.update(resolv_conf=resolv, hosts=hosts, exposed=exposed)
            self.endpoints.save(ep)  # before netavark: a crash half-way still leaves what teardown needs
        task = asyncio.get_running_loop().create_task(self._plumb(ctr, ep, wanted))
        if background:
            self._ready[cid] = task
        else:
            await task
        return {"resolv_conf": resolv, "hosts": hosts, "networks": settings,
                "ports": docker_ports(exposed, mappings), "netns_owner": None}

    async def _plumb(self, ctr: Any, ep: Endpoint, wanted: list[tuple[NetworkRecord, dict[str, Any]]]) -> None:
        """netavark setup of a decided endpoint, then its names (confirmed served); on failure, everything is
        undone."""
        cid = ep["Id"]
        try:
            await self.netavark.setup(ep["netns"], ep["options"])
        except BaseException:
            await self._netavark_teardown(ep)  # setup stops half-way (veth moved, rules added): undo it
            async with self._lock:
                self._forget_endpoint(ep)
            raise
        named = [(rec, ep["networks"][rec["Name"]]) for rec, _ in wanted if self._dns_net(rec)]
        try:
            for rec, settings in named:
                self._publish_names(rec, ctr, cid, settings)
            await self._confirm_names(ep["netns"], ctr, cid, named)
        except BaseException:
            await self._netavark_teardown(ep)
            async with self._lock:
                self._forget_endpoint(ep)
            raise
        for rec, _ in wanted:
            self.engine.events.publish("network", "connect", rec["Id"], {"container": cid, "name": rec["Name"], "type": "bridge"})

    async def ready(self, ctr: Any) -> None:
        """After `setup(..., background=True)`: wait until the network is plumbed (call it right before the
        runtime starts the container's process); raises what netavark raised."""
        task = self._ready.pop(str(cget(ctr, "Id")), None)
        if task is not None:
            await task

    async def teardown(self, ctr: Any, netns_path: str | None = None) -> None:
        """Returns at once; netavark runs in the background (it is off the path of `docker run --rm` / `stop`).

        An fd on the netns keeps it alive after the caller unmounts it, so netavark still removes the veth itself.
        Whatever needs the endpoint gone (a new setup, `network rm`, shutdown) waits for it first (`settle`)."""
        cid = str(cget(ctr, "Id"))
        setting_up = self._ready.pop(cid, None)
        if setting_up is not None:  # a start given up half-way: let its setup finish (or fail) first
            await asyncio.gather(setting_up, return_exceptions=True)
        ep = self.endpoints.get(cid)
        if ep is None or cid in self._pending:
            return
        self._unpublish_names(ep)  # the names go at once; the plumbing in the background
        path = ep.get("netns") or netns_path or ""
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC) if netns.is_netns(path) else None
        task = asyncio.get_running_loop().create_task(self._finish_teardown(ep, fd))
        self._pending[cid] = task
        task.add_done_callback(lambda t: self._pending.pop(cid, None) if self._pending.get(cid) is t else None)
        for name, es in ep.get("networks", {}).items():
            self.engine.events.publish("network", "disconnect", es.get("NetworkID", ""), {"container": cid, "name": name, "type": "bridge"})

    async def _finish_teardown(self, ep: Endpoint, fd: int | None) -> None:
        try:
            async with self._lock:
                await self._netavark_teardown(ep, path=f"/proc/{os.getpid()}/fd/{fd}" if fd is not None else None)
                self._forget_endpoint(ep)
        except Exception:
            log.exception("network teardown of %s failed", ep["Id"][:12])
        finally:
            if fd is not None:
                os.close(fd)

    async def settle(self, cid: str | None = None) -> None:
        """Wait for background teardowns (of one container, or all)."""
        tasks = [t for k, t in self._pending.items() if cid is None or k == cid]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def endpoint(self, ctr_id: str) -> Endpoint | None:
        return self.endpoints.get(ctr_id)

    def port_mappings(self, ctr_id: str) -> dict[str, Any]:
        ep = self.endpoints.get(ctr_id)
        if not ep:
            return {}
        return docker_ports(ep.get("exposed") or [], [Mapping.from_netavark(m) for m in ep["options"].get("port_mappings") or []])

    # ------------------------------------------------------------------------------------------
    # docker network connect / disconnect (the container record is the containers service's: we update
    # rec["NetworkSettings"]["Networks"] and hand it back with engine.containers.save)
    # ------------------------------------------------------------------------------------------
    async def connect_container(self, network: str, ctr: Any, endpoint_config: dict[str, Any] | None) -> None:
        rec = self.resolve(network)
        hc = cget(ctr, "HostConfig", {}) or {}
        mode = normalize_mode(hc.get("NetworkMode"))
        if mode == "host" or rec["Driver"] == "host":
            raise Forbidden("container cannot be disconnected from host network or connected to host network")
        if mode == "none" or mode.startswith("container:") or rec["Driver"] == "null":
            raise Forbidden("container sharing network namespace with another container or host cannot be connected to any other network")
        ns = cget(ctr, "NetworkSettings", {})
        nets = ns.setdefault("Networks", {}) if isinstance(ns, dict) else {}
        if rec["Name"] in nets:
            raise Forbidden(f"endpoint with name {ctr_name(ctr)} already exists in network {rec['Name']}")
        es = dict(endpoint_config or {})
        self.validate({"NetworkMode": rec["Name"]}, {rec["Name"]: es})
        settings = await self.connect(rec["Name"], ctr, es) if self.endpoints.get(str(cget(ctr, "Id"))) else None
        if settings is None:  # not running: remembered, applied at the next start
            settings = {"IPAMConfig": es.get("IPAMConfig") or None, "Links": es.get("Links"), "Aliases": es.get("Aliases"),
                        "MacAddress": "", "DriverOpts": es.get("DriverOpts"), "GwPriority": es.get("GwPriority", 0),
                        "NetworkID": rec["Id"], "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
                        "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DNSNames": None}
        nets[rec["Name"]] = settings
        await self._save_container(ctr)

    async def disconnect_container(self, network: str, ctr: Any, force: bool = False) -> None:
        rec = self.resolve(network)
        hc = cget(ctr, "HostConfig", {}) or {}
        if normalize_mode(hc.get("NetworkMode")) == "host" or rec["Driver"] == "host":
            raise Forbidden("container cannot be disconnected from host network or connected to host network")
        ns = cget(ctr, "NetworkSettings", {})
        nets = ns.get("Networks", {}) if isinstance(ns, dict) else {}
        key = next((k for k, v in nets.items() if k == rec["Name"] or (v or {}).get("NetworkID") == rec["Id"]), None)
        if key is None and not force:
            raise InvalidParameter(f"container {cget(ctr, 'Id')} is not connected to network {rec['Name']}")
        await self.disconnect(rec["Name"], ctr, force)
        if key is not None:
            nets.pop(key, None)
        await self._save_container(ctr)

    async def _save_container(self, ctr: Any) -> None:
        ctrs = self.engine.containers
        saver = getattr(ctrs, "save", None) if ctrs is not None else None
        if saver is not None:
            r = saver(ctr)
            if asyncio.iscoroutine(r):
                await r

    # ------------------------------------------------------------------------------------------
    # connect / disconnect on a running container
    # ------------------------------------------------------------------------------------------
    async def connect(self, network: str, ctr: Any, endpoint_config: dict[str, Any] | None) -> dict[str, Any] | None:
        """Attach a running container (its netns exists and is set up) to one more network; returns the new
        EndpointSettings. For a container that is not running, returns None: the caller records the config."""
        rec = self.resolve(network)
        es = dict(endpoint_config or {})
        if rec["Driver"] != "bridge":
            raise Forbidden("container cannot be disconnected from host network or connected to host network")
        self.validate({"NetworkMode": rec["Name"]}, {rec["Name"]: es})
        cid = str(cget(ctr, "Id"))
        await self.settle(cid)
        async with self._lock:
            ep = self.endpoints.get(cid)
            if ep is None:
                return None
            if rec["Name"] in ep["networks"]:
                raise Forbidden(f"endpoint with name {ctr_name(ctr)} already exists in network {rec['Name']}")
            used = {v["interface_name"] for v in ep["options"]["networks"].values()}
            ifname = next(f"eth{i}" for i in range(64) if f"eth{i}" not in used)
            await self._ensure_anchor(rec)
            per, ips = self._build_netavark_network(rec, es, cid, ifname, ctr)
            one = {"container_id": cid, "container_name": ep["options"]["container_name"],
                   "networks": {rec["Name"]: per}, "network_info": {rec["Name"]: self._network_info(rec)}}
            try:
                status = await self.netavark.setup(ep["netns"], one)
            except NetavarkError:
                await self._netavark_teardown({**ep, "options": one})
                self.ipam.release(rec["Id"], cid)
                raise
            settings = self._endpoint_settings(rec, es, ips, status, ifname, ctr, per)
            ep["options"]["networks"][rec["Name"]] = per
            ep["options"]["network_info"][rec["Name"]] = one["network_info"][rec["Name"]]
            ep["networks"][rec["Name"]] = settings
            self.endpoints.save(ep)
            if self._dns_net(rec):
                self._publish_names(rec, ctr, cid, settings)
        if self._dns_net(rec):
            try:
                await self._confirm_names(ep["netns"], ctr, cid, [(rec, settings)])
            except SystemError_:
                await self.disconnect(rec["Name"], ctr, force=True)
                raise
        self.engine.events.publish("network", "connect", rec["Id"], {"container": cid, "name": rec["Name"], "type": "bridge"})
        return settings

    async def disconnect(self, network: str, ctr: Any, force: bool = False) -> bool:
        """Detach a running container from one network; False if it had no live endpoint there."""
        rec = self.resolve(network)
        cid = str(cget(ctr, "Id"))
        await self.settle(cid)
        async with self._lock:
            ep = self.endpoints.get(cid)
            if ep is None or rec["Name"] not in ep["networks"]:
                return False
            self.names.drop_names(rec["Id"], cid)
            await self._netavark_teardown(ep, only=[rec["Name"]])
            self.ipam.release(rec["Id"], cid)
            ep["options"]["networks"].pop(rec["Name"], None)
            ep["options"]["network_info"].pop(rec["Name"], None)
            ep["networks"].pop(rec["Name"], None)
            self.endpoints.save(ep)
        self.engine.events.publish("network", "disconnect", rec["Id"], {"container": cid, "name": rec["Name"], "type": "bridge"})
        return True
