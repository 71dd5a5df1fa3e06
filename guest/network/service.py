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

This module is the facade and the container endpoint's life (setup, ready, teardown); the concepts live in
bridges.py (predefined networks, bridge claim, anchors, netavark's network info), joins.py (which networks a
container joins, create-time checks, its addresses and EndpointSettings, hosts entries), naming.py (names published
to dnsmasq and confirmed served), connect.py (`network connect`/`disconnect`), ports.py (host ports), ipam.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from skiffbox.guest.config import DaemonConfig
from skiffbox.guest.contracts import ContainerLike, EventSink
from skiffbox.guest.errors import Conflict, Forbidden, InvalidParameter, NotFound
from skiffbox.guest.network import bridges, connect, dns, joins, naming, netns, overlay, resolver
from skiffbox.guest.network.bridges import ANCHOR_PREFIX, OPT_BRIDGE_NAME, OPT_MTU
from skiffbox.guest.network.dnsmasq import NameServers
from skiffbox.guest.network.endpoints import Endpoint, EndpointStore
from skiffbox.guest.network.ipam import Ipam, default_gateway, pick_subnet
from skiffbox.guest.network.netavark import Netavark, NetavarkError
from skiffbox.guest.network.ports import Mapping, PortAllocator, docker_ports, exposed_keys
from skiffbox.guest.network.store import (PREDEFINED, NetworkRecord, NetworkStore, address_configs, cget,
                                          ctr_name, normalize_mode)
from skiffbox.guest.util.filters import bool_filter, match_labels
from skiffbox.guest.util.timefmt import parse_time

log = logging.getLogger("skiffd.network")


class NetworkService:
    def __init__(self, cfg: DaemonConfig, root: Path, run_root: Path, events: EventSink) -> None:
        self.cfg = cfg
        self.events = events
        self.store = NetworkStore(root)
        self.run_dir = Path(run_root) / "network"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.ipam = Ipam(self.run_dir / "ipam.json")
        self.endpoints = EndpointStore(self.run_dir)
        self.netavark = Netavark(self.run_dir / "netavark")
        self.names = NameServers(self.run_dir)
        self.resolvers = resolver.Resolvers(lambda cid, name, qtype: joins.link_answer(self, cid, name, qtype),
                                            lambda cid: joins.resolver_upstreams(self, cid))
        self.ports = PortAllocator()
        self.lock = asyncio.Lock()
        self._pending: dict[str, asyncio.Task[None]] = {}  # container id → background teardown
        self._ready: dict[str, asyncio.Task[None]] = {}  # container id → background setup (setup(background=True))
        self.pinned: dict[str, int] = {}  # bridge device → ifindex whose MAC we pinned (a re-created one is new)
        self.swarm_pools: Callable[[], overlay.Pools] = lambda: None  # set by the engine: swarm-scoped networks
        bridges.ensure_predefined(self)

    # ------------------------------------------------------------------------------------------
    # lifecycle
    # ------------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Re-attach runtime state after a restart: drop endpoints whose netns is gone (the container died while
        we were down, or the VM rebooted) and rebuild the port table from the rest."""
        async with self.lock:
            for ep in self.endpoints.all():
                path = ep.get("netns")
                if path and netns.is_netns(path):
                    if not ep.get("anchor"):
                        self.ports.hold(ep["Id"], [Mapping.from_netavark(m) for m in ep.get("options", {}).get("port_mappings") or []])
                    continue
                if path:
                    await self.netavark_teardown(ep)
                self.forget_endpoint(ep)
            live = {ep["Id"] for ep in self.endpoints.all()}
            for owner in self.ipam.owners() - live:
                self.ipam.release_owner(owner)
            served: list[tuple[Endpoint, list[tuple[NetworkRecord, dict[str, Any]]]]] = []
            for rec in self.store.all():
                if naming.dns_net(rec) and self.in_use(rec):
                    try:
                        await self.names.ensure(rec["Id"], naming.gateways(rec))
                    except Exception as e:
                        log.warning("name server of network %s: %s", rec["Name"], e)
            for ep in self.endpoints.all():
                named: list[tuple[NetworkRecord, dict[str, Any]]] = []
                for net, es in ep["networks"].items():
                    found = None if ep.get("anchor") else self.store.find(es.get("NetworkID") or net)
                    if found is not None and naming.dns_net(found):
                        named.append((found, es))
                for rec, es in named:  # a crash between netavark and the names, an exec root tidied by hand
                    if naming.publish(self, rec, ep, ep["Id"], es, only_if_changed=True):
                        log.info("names of %s on %s were not published: published again", ep["Id"][:12], rec["Name"])
                named = [(rec, es) for rec, es in named if self.names.running(rec["Id"])]  # else warned above
                if named:
                    served.append((ep, named))
        # The containers kept running while we were down and their dnsmasq may have been restarted just now (it
        # reads hosts.d when it starts): confirm their names from here, re-publishing what is missing.
        for ep, named in served:
            await naming.confirm(self, None, ep, ep["Id"], named, fail=False)
        for ep in self.endpoints.all():  # the own resolvers (resolver.py) of containers that kept running
            if ep.get("own_resolver"):
                try:
                    await self.resolvers.open(ep["Id"], ep["netns"])
                except OSError as e:
                    log.warning("resolver of %s: %s", ep["Id"][:12], e)

    async def close(self) -> None:
        """Remove the anchors (containers keep running and keep their bridges; an idle bridge goes with its anchor)."""
        await self.settle()
        self.resolvers.close_all()
        async with self.lock:
            for ep in [e for e in self.endpoints.all() if e.get("anchor")]:
                await bridges.drop_anchor(self, ep)
            for rec in self.store.all():
                # Name servers of networks with running containers keep serving them while we are down.
                if naming.dns_net(rec) and not self.in_use(rec):
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

    def in_use(self, rec: NetworkRecord) -> bool:
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
            if dangling == self.in_use(rec):
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
        swarm_scope = overlay.wants_swarm_scope(body)
        if driver not in ("bridge", "overlay"):
            raise NotFound(f"could not find plugin {driver} in v1 plugin registry: plugin not found")
        if swarm_scope:
            overlay.check(self, body)
        async with self.lock:
            if self.store.by_name(name) is not None:
                raise Conflict(f"network with name {name} already exists")
            ipam = body.get("IPAM") or {}
            ipam_driver = ipam.get("Driver") or "default"
            if ipam_driver not in ("default", ""):
                raise NotFound(f"could not find plugin {ipam_driver} in v1 plugin registry: plugin not found")
            ipv6 = bool(body.get("EnableIPv6"))
            if body.get("EnableIPv4") is False and not ipv6:
                raise InvalidParameter("IPv4 or IPv6 must be enabled")
            configs = list(ipam.get("Config") or [])
            from_pool = driver == "overlay" and not any(c.get("Subnet") and ":" not in c["Subnet"] for c in configs)
            if from_pool:
                configs.insert(0, {"Subnet": overlay.pool_subnet(self)})  # from the swarm's pools, not the user
            cfgs, user_subnets = self._ipam_config(name, configs, ipv6)
            if from_pool:
                user_subnets = user_subnets[1:]
            options = {str(k): str(v) for k, v in (body.get("Options") or {}).items()}
            bridge = options.get(OPT_BRIDGE_NAME) or None
            if bridge and (len(bridge) > 15 or any(r.get("_bridge") == bridge for r in self.store.all())):
                raise InvalidParameter(f"invalid bridge name {bridge!r} (in use or longer than 15 characters)")
            if OPT_MTU in options:
                try:
                    int(options[OPT_MTU])
                except ValueError:
                    raise InvalidParameter(f"invalid mtu {options[OPT_MTU]!r}") from None
            rec = bridges.record(name, driver, cfgs, options, {str(k): str(v) for k, v in (body.get("Labels") or {}).items()},
                               bridge=bridge, internal=bool(body.get("Internal")), ipv6=ipv6,
                               attachable=bool(body.get("Attachable")), ipam_options=ipam.get("Options"),
                               user_subnets=user_subnets)
            rec["ConfigOnly"] = bool(body.get("ConfigOnly"))
            if body.get("ConfigFrom"):
                rec["ConfigFrom"] = {"Network": (body.get("ConfigFrom") or {}).get("Network", "")}
            if swarm_scope:
                overlay.shape(rec, body, self.store.all())
            self.store.save(rec)
        self.events.publish("network", "create", rec["Id"], {"name": name, "type": driver})
        return {"Id": rec["Id"], "Warning": ""}

    def _ipam_config(self, name: str, configs: list[dict[str, Any]], ipv6: bool) -> tuple[list[dict[str, Any]], list[str]]:
        in_use: list[Any] = []
        for r in self.store.all():
            for c in address_configs(r):
                in_use.append(ipaddress.ip_network(c["Subnet"], strict=False))
        out: list[dict[str, Any]] = []
        user_subnets: list[str] = []
        for c in configs:
            if not c.get("Subnet"):
                if c.get("Gateway") or c.get("IPRange"):
                    raise InvalidParameter("a gateway or an ip-range needs a subnet")
                continue
            try:
                sn = ipaddress.ip_network(c["Subnet"], strict=False)
            except ValueError:
                raise InvalidParameter(f"invalid subnet {c['Subnet']!r}") from None
            active = sn.version == 4 or ipv6  # see store.address_configs
            if active and any(sn.overlaps(u) for u in in_use):
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
            elif active:  # an inactive IPv6 subnet gets no gateway: nothing is allocated from it
                entry["Gateway"] = str(default_gateway(sn))
            if c.get("AuxiliaryAddresses") or c.get("AuxAddress"):
                entry["AuxiliaryAddresses"] = c.get("AuxiliaryAddresses") or c.get("AuxAddress")
            if active:
                in_use.append(sn)
            out.append(entry)
            user_subnets.append(str(sn))
        if not any(ipaddress.ip_network(e["Subnet"]).version == 4 for e in out):
            sn = pick_subnet(in_use + bridges.host_routes())
            out.insert(0, {"Subnet": str(sn), "Gateway": str(default_gateway(sn))})
        if ipv6 and not any(ipaddress.ip_network(e["Subnet"]).version == 6 for e in out):
            # Docker hands out a ULA /64 from its default pool; derive one from the name so it is stable.
            h = hashlib.sha256(name.encode()).digest()
            sn6 = ipaddress.ip_network((b"\xfd" + h[:7] + b"\0" * 8, 64))
            out.append({"Subnet": str(sn6), "Gateway": str(default_gateway(sn6))})
        return out, user_subnets

    async def remove(self, ref: str) -> None:
        rec = self.resolve(ref)
        if rec["Name"] in PREDEFINED:
            raise Forbidden(f"{rec['Name']} is a pre-defined network and cannot be removed")
        await self.settle()
        async with self.lock:
            await self._reap_stale()
            if self.in_use(rec):
                raise Forbidden(f"error while removing network: network {rec['Name']} id {rec['Id']} has active endpoints")
            await self._remove_locked(rec)
        self.events.publish("network", "destroy", rec["Id"], {"name": rec["Name"], "type": rec["Driver"]})

    async def _remove_locked(self, rec: NetworkRecord) -> None:
        anchor = self.endpoints.get(ANCHOR_PREFIX + rec["Id"])
        if anchor is not None:
            await bridges.drop_anchor(self, anchor)
        await self.names.stop(rec["Id"])
        self.ipam.drop_network(rec["Id"])
        self.store.delete(rec["Id"])

    async def prune(self, filters: dict[str, list[str]]) -> list[str]:
        until = parse_time((filters.get("until") or [""])[-1])
        gone: list[NetworkRecord] = []
        await self.settle()
        async with self.lock:
            for rec in self.store.all():
                if rec["Name"] in PREDEFINED or self.in_use(rec):
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
            self.events.publish("network", "destroy", rec["Id"], {"name": rec["Name"], "type": rec["Driver"]})
        return [r["Name"] for r in gone]

    async def netavark_teardown(self, ep: Endpoint, only: list[str] | None = None, path: str | None = None) -> None:
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
            await self.netavark_teardown(ep)
            self.forget_endpoint(ep)

    def forget_endpoint(self, ep: Endpoint) -> None:
        self.resolvers.close(ep["Id"])
        naming.unpublish(self, ep)
        self.ports.release(ep["Id"])
        self.ipam.release_owner(ep["Id"])
        self.endpoints.delete(ep["Id"])

    async def setup(self, ctr: ContainerLike, netns_path: str | None, background: bool = False) -> dict[str, Any]:
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
                    "hosts": joins.hosts_entries(self, ctr, None), "networks": {"host": joins.predefined_settings(self, "host")},
                    "ports": {}, "netns_owner": None}
        if mode.startswith("container:"):
            other = joins.endpoint_by_name(self, mode.split(":", 1)[1])
            return {"resolv_conf": other.get("resolv_conf") if other else None,
                    "hosts": list(other.get("hosts") or []) if other else [], "networks": {}, "ports": {},
                    "netns_owner": other["Id"] if other else mode.split(":", 1)[1]}
        if not netns_path:
            raise InvalidParameter(f"network mode {mode} needs a network namespace")
        if mode == "none":
            netns.set_loopback_up(netns_path)
            return {"resolv_conf": dns.resolv_for_bridge(dns_servers, dns_search, dns_options),
                    "hosts": joins.hosts_entries(self, ctr, None), "networks": {"none": joins.predefined_settings(self, "none")},
                    "ports": {}, "netns_owner": None}

        self.validate(hc, joins.endpoint_configs(ctr))
        wanted = self.wanted_networks(ctr)
        await self.settle()  # host ports and addresses of containers just gone are free again
        async with self.lock:
            await self._reap_stale()
            old = self.endpoints.get(cid)
            if old is not None:
                await self.netavark_teardown(old)
                self.forget_endpoint(old)
            for rec, _ in wanted:
                await bridges.ensure_anchor(self, rec)
            mappings = self.ports.allocate(cid, config, hc)
            nets: dict[str, Any] = {}
            infos: dict[str, Any] = {}
            all_ips: dict[str, list[str]] = {}
            try:
                for i, (rec, es) in enumerate(wanted):
                    per, ips = joins.netavark_network(self, rec, es, cid, f"eth{i}", ctr)
                    nets[rec["Name"]] = per
                    infos[rec["Name"]] = bridges.network_info(rec)
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
                settings[rec["Name"]] = joins.endpoint_settings(rec, es, all_ips[rec["Name"]], {}, f"eth{i}", ctr,
                                                                nets[rec["Name"]])
            ep["networks"] = settings
            dns_ips: list[str] = []
            for rec, _ in wanted:
                if naming.dns_net(rec):
                    dns_ips += naming.gateways(rec)
            if joins.needs_resolver(self, ep):
                ep["own_resolver"] = True
                dns_ips = [resolver.ADDRESS]
            resolv = (dns.resolv_for_embedded(list(dict.fromkeys(dns_ips)), dns_search, dns_options) if dns_ips
                      else dns.resolv_for_bridge(dns_servers, dns_search, dns_options))
            primary_ip = settings[wanted[0][0]["Name"]].get("IPAddress") or None
            hosts = joins.hosts_entries(self, ctr, primary_ip)
            ep.update(resolv_conf=resolv, hosts=hosts, exposed=exposed)
            self.endpoints.save(ep)  # before netavark: a crash half-way still leaves what teardown needs
        task = asyncio.get_running_loop().create_task(self._plumb(ctr, ep, wanted))
        if background:
            self._ready[cid] = task
        else:
            await task
        return {"resolv_conf": resolv, "hosts": hosts, "networks": settings,
                "ports": docker_ports(exposed, mappings), "netns_owner": None}

    async def _plumb(self, ctr: ContainerLike, ep: Endpoint, wanted: list[tuple[NetworkRecord, dict[str, Any]]]) -> None:
        """netavark setup of a decided endpoint, then its names (confirmed served); on failure, everything is
        undone."""
        cid = ep["Id"]
        try:
            await self.netavark.setup(ep["netns"], ep["options"])
            sysctls = (cget(ctr, "HostConfig", {}) or {}).get("Sysctls") or {}
            if not any(es.get("GlobalIPv6Address") for es in ep["networks"].values()) and \
                    not any(k.startswith("net.ipv6.") for k in sysctls):  # (the runtime may have applied them already)
                await asyncio.to_thread(netns.disable_ipv6, ep["netns"])
        except BaseException:
            await self.netavark_teardown(ep)  # setup stops half-way (veth moved, rules added): undo it
            async with self.lock:
                self.forget_endpoint(ep)
            raise
        named = [(rec, ep["networks"][rec["Name"]]) for rec, _ in wanted if naming.dns_net(rec)]
        try:
            for rec, settings in named:
                naming.publish(self, rec, ctr, cid, settings)
            await naming.confirm(self, ep["netns"], ctr, cid, named)
            if ep.get("own_resolver"):
                await self.resolvers.open(cid, ep["netns"])
        except BaseException:
            await self.netavark_teardown(ep)
            async with self.lock:
                self.forget_endpoint(ep)
            raise
        for rec, _ in wanted:
            self.events.publish("network", "connect", rec["Id"], {"container": cid, "name": rec["Name"], "type": "bridge"})

    async def ready(self, ctr: ContainerLike) -> None:
        """After `setup(..., background=True)`: wait until the network is plumbed (call it right before the
        runtime starts the container's process); raises what netavark raised."""
        task = self._ready.pop(str(cget(ctr, "Id")), None)
        if task is not None:
            await task

    async def teardown(self, ctr: ContainerLike, netns_path: str | None = None) -> None:
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
        naming.unpublish(self, ep)  # the names go at once; the plumbing in the background
        self.resolvers.close(cid)
        path = ep.get("netns") or netns_path or ""
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC) if netns.is_netns(path) else None
        task = asyncio.get_running_loop().create_task(self._finish_teardown(ep, fd))
        self._pending[cid] = task
        task.add_done_callback(lambda t: self._pending.pop(cid, None) if self._pending.get(cid) is t else None)
        for name, es in ep.get("networks", {}).items():
            self.events.publish("network", "disconnect", es.get("NetworkID", ""), {"container": cid, "name": name, "type": "bridge"})

    async def _finish_teardown(self, ep: Endpoint, fd: int | None) -> None:
        try:
            async with self.lock:
                await self.netavark_teardown(ep, path=f"/proc/{os.getpid()}/fd/{fd}" if fd is not None else None)
                self.forget_endpoint(ep)
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

    def resolv_conf(self, ctr_id: str) -> str | None:
        """The container's resolv.conf as its endpoint has it now (`network connect` can change it)."""
        ep = self.endpoints.get(ctr_id)
        return None if ep is None else ep.get("resolv_conf")

    def port_mappings(self, ctr_id: str) -> dict[str, Any]:
        ep = self.endpoints.get(ctr_id)
        if not ep:
            return {}
        return docker_ports(ep.get("exposed") or [], [Mapping.from_netavark(m) for m in ep["options"].get("port_mappings") or []])

    # ------------------------------------------------------------------------------------------
    # what a container joins (joins.py) and docker network connect / disconnect (connect.py)
    # ------------------------------------------------------------------------------------------
    def wanted_networks(self, ctr: ContainerLike) -> list[tuple[NetworkRecord, dict[str, Any]]]:
        return joins.wanted_networks(self, ctr)

    def validate(self, host_config: dict[str, Any], endpoints_config: dict[str, Any] | None,
                 config: dict[str, Any] | None = None) -> list[str]:
        return joins.validate(self, host_config, endpoints_config, config)

    async def connect_container(self, network: str, ctr: ContainerLike, endpoint_config: dict[str, Any] | None) -> None:
        await connect.connect_container(self, network, ctr, endpoint_config)

    async def disconnect_container(self, network: str, ctr: ContainerLike, force: bool = False) -> None:
        await connect.disconnect_container(self, network, ctr, force)

    async def connect(self, network: str, ctr: ContainerLike, endpoint_config: dict[str, Any] | None) -> dict[str, Any] | None:
        return await connect.connect(self, network, ctr, endpoint_config)

    async def disconnect(self, network: str, ctr: ContainerLike, force: bool = False) -> bool:
        return await connect.disconnect(self, network, ctr, force)
