"""`docker network connect` / `disconnect`, for a running container (one more netavark network in its netns) and
for a stopped one (the settings remembered in its record for the next start; the record is the containers
service's: the caller saves it afterwards, as guest/api/networks.py does)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from skiffbox.guest.contracts import ContainerLike
from skiffbox.guest.errors import Forbidden, InvalidParameter, SystemError_
from skiffbox.guest.network import bridges, dns, joins, naming, resolver
from skiffbox.guest.network.netavark import NetavarkError
from skiffbox.guest.util.resolvconf import parse_resolv
from skiffbox.guest.network.store import BRIDGED, cget, ctr_name, normalize_mode

if TYPE_CHECKING:
    from skiffbox.guest.network.service import NetworkService

log = logging.getLogger("skiffd.network")


async def connect_container(svc: NetworkService, network: str, ctr: ContainerLike, endpoint_config: dict[str, Any] | None) -> None:
    rec = svc.resolve(network)
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
    svc.validate({"NetworkMode": rec["Name"]}, {rec["Name"]: es}, cget(ctr, "Config", {}))
    settings = await svc.connect(rec["Name"], ctr, es) if svc.endpoints.get(str(cget(ctr, "Id"))) else None
    if settings is None:  # not running: remembered, applied at the next start
        settings = {"IPAMConfig": es.get("IPAMConfig") or None, "Links": es.get("Links"), "Aliases": es.get("Aliases"),
                    "MacAddress": es.get("MacAddress") or "", "DriverOpts": es.get("DriverOpts"), "GwPriority": es.get("GwPriority", 0),
                    "NetworkID": rec["Id"], "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
                    "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DNSNames": None}
    nets[rec["Name"]] = settings


async def disconnect_container(svc: NetworkService, network: str, ctr: ContainerLike, force: bool = False) -> None:
    rec = svc.resolve(network)
    hc = cget(ctr, "HostConfig", {}) or {}
    if normalize_mode(hc.get("NetworkMode")) == "host" or rec["Driver"] == "host":
        raise Forbidden("container cannot be disconnected from host network or connected to host network")
    ns = cget(ctr, "NetworkSettings", {})
    nets = ns.get("Networks", {}) if isinstance(ns, dict) else {}
    key = next((k for k, v in nets.items() if k == rec["Name"] or (v or {}).get("NetworkID") == rec["Id"]), None)
    # force only excuses a stopped container's missing record (moby): a running one is refused either way.
    running = bool((cget(ctr, "State", {}) or {}).get("Running"))
    if key is None and (not force or running):
        raise InvalidParameter(f"container {cget(ctr, 'Id')} is not connected to network {rec['Name']}")
    await svc.disconnect(rec["Name"], ctr, force)
    if key is not None:
        nets.pop(key, None)



async def connect(svc: NetworkService, network: str, ctr: ContainerLike, endpoint_config: dict[str, Any] | None) -> dict[str, Any] | None:
    """Attach a running container (its netns exists and is set up) to one more network; returns the new
    EndpointSettings. For a container that is not running, returns None: the caller records the config."""
    rec = svc.resolve(network)
    es = dict(endpoint_config or {})
    if rec["Driver"] not in BRIDGED:
        raise Forbidden("container cannot be disconnected from host network or connected to host network")
    svc.validate({"NetworkMode": rec["Name"]}, {rec["Name"]: es})
    cid = str(cget(ctr, "Id"))
    await svc.settle(cid)
    async with svc.lock:
        ep = svc.endpoints.get(cid)
        if ep is None:
            return None
        if rec["Name"] in ep["networks"]:
            raise Forbidden(f"endpoint with name {ctr_name(ctr)} already exists in network {rec['Name']}")
        used = {v["interface_name"] for v in ep["options"]["networks"].values()}
        ifname = next(f"eth{i}" for i in range(64) if f"eth{i}" not in used)
        await bridges.ensure_anchor(svc, rec)
        per, ips = joins.netavark_network(svc, rec, es, cid, ifname, ctr)
        one = {"container_id": cid, "container_name": ep["options"]["container_name"],
               "networks": {rec["Name"]: per}, "network_info": {rec["Name"]: bridges.network_info(rec)}}
        try:
            status = await svc.netavark.setup(ep["netns"], one)
        except NetavarkError:
            await svc.netavark_teardown({**ep, "options": one})
            svc.ipam.release(rec["Id"], cid)
            raise
        settings = joins.endpoint_settings(rec, es, ips, status, ifname, ctr, per)
        ep["options"]["networks"][rec["Name"]] = per
        ep["options"]["network_info"][rec["Name"]] = one["network_info"][rec["Name"]]
        ep["networks"][rec["Name"]] = settings
        servers = parse_resolv(ep.get("resolv_conf") or "")[0]
        unserved = naming.dns_net(rec) and not set(naming.gateways(rec)) & set(servers)
        if not ep.get("own_resolver") and (unserved or joins.needs_resolver(svc, ep)):
            # from now on it asks a resolver of its own (the caller rewrites the container's resolv.conf from
            # ours, see NetworkService.resolv_conf)
            hc = cget(ctr, "HostConfig", {}) or {}
            ep["own_resolver"] = True
            ep["resolv_conf"] = dns.resolv_for_embedded([resolver.ADDRESS], list(hc.get("DnsSearch") or []),
                                                        list(hc.get("DnsOptions") or []))
        svc.endpoints.save(ep)
        if naming.dns_net(rec):
            naming.publish(svc, rec, ctr, cid, settings)
    try:
        if naming.dns_net(rec):
            await naming.confirm(svc, ep["netns"], ctr, cid, [(rec, settings)])
        if ep.get("own_resolver"):
            await svc.resolvers.open(cid, ep["netns"])
    except (SystemError_, OSError):
        await svc.disconnect(rec["Name"], ctr, force=True)
        raise
    svc.events.publish("network", "connect", rec["Id"], {"container": cid, "name": rec["Name"], "type": "bridge"})
    return settings


async def disconnect(svc: NetworkService, network: str, ctr: ContainerLike, force: bool = False) -> bool:
    """Detach a running container from one network; False if it had no live endpoint there."""
    rec = svc.resolve(network)
    cid = str(cget(ctr, "Id"))
    await svc.settle(cid)
    async with svc.lock:
        ep = svc.endpoints.get(cid)
        if ep is None or rec["Name"] not in ep["networks"]:
            return False
        svc.names.drop_names(rec["Id"], cid)
        await svc.netavark_teardown(ep, only=[rec["Name"]])
        svc.ipam.release(rec["Id"], cid)
        ep["options"]["networks"].pop(rec["Name"], None)
        ep["options"]["network_info"].pop(rec["Name"], None)
        ep["networks"].pop(rec["Name"], None)
        svc.endpoints.save(ep)
    svc.events.publish("network", "disconnect", rec["Id"], {"container": cid, "name": rec["Name"], "type": "bridge"})
    return True
