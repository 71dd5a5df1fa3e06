"""What a container gets on the networks it joins: which networks (the NetworkMode one first), the create-time
checks, its addresses/MAC/aliases for netavark, its `EndpointSettings`, and its hosts entries."""

from __future__ import annotations

import ipaddress
import logging
import os
from typing import TYPE_CHECKING, Any

from skiffbox.guest.contracts import ContainerLike
from skiffbox.guest.errors import InvalidParameter
from skiffbox.guest.network import dns, naming, overlay
from skiffbox.guest.network.endpoints import Endpoint
from skiffbox.guest.network.store import (BRIDGED, DEFAULT_BRIDGE, NetworkRecord, address_configs, cget, ctr_name,
                                          new_id, normalize_mode, user_subnet)

if TYPE_CHECKING:
    from skiffbox.guest.network.service import NetworkService

log = logging.getLogger("skiffd.network")


def endpoint_configs(ctr: ContainerLike) -> dict[str, dict[str, Any]]:
    """The per-network endpoint config from the create body (or `network connect` on a stopped container)."""
    for holder, key in (("NetworkingConfig", "EndpointsConfig"), ("NetworkSettings", "Networks")):
        h = cget(ctr, holder, {})
        if isinstance(h, dict) and isinstance(h.get(key), dict) and h[key]:
            return {normalize_mode(k): dict(v or {}) for k, v in h[key].items()}
    return {}


def wanted_networks(svc: NetworkService, ctr: ContainerLike) -> list[tuple[NetworkRecord, dict[str, Any]]]:
    """The networks a bridge-mode container joins: the NetworkMode one first (eth0), then the others by name."""
    hc = cget(ctr, "HostConfig", {})
    mode = normalize_mode(hc.get("NetworkMode"))
    cfgs = endpoint_configs(ctr)
    primary = svc.resolve(mode)
    out = [(primary, cfgs.pop(primary["Name"], None) or cfgs.pop(mode, None) or cfgs.pop(primary["Id"], None) or {})]
    for ref in sorted(cfgs):
        rec = svc.resolve(ref)
        if rec["Id"] != primary["Id"]:
            out.append((rec, cfgs[ref]))
    return out


def validate(svc: NetworkService, host_config: dict[str, Any], endpoints_config: dict[str, Any] | None,
             config: dict[str, Any] | None = None) -> list[str]:
    """Create-time checks (Docker ≥1.44 validates at create, not at start); returns dockerd's warnings.
    `config` is the request's own Config (before the image's is merged in: an image's EXPOSE is no conflict)."""
    mode = normalize_mode(host_config.get("NetworkMode"))
    if mode in ("host", "none", "container") or mode.startswith("container:"):
        return shared_mode_conflicts(mode, host_config, endpoints_config or {}, config or {})
    recs = [svc.resolve(mode)] + [svc.resolve(k) for k in (endpoints_config or {}) if normalize_mode(k) != mode]
    for key, es in (endpoints_config or {}).items():
        rec = svc.resolve(key)
        es = es or {}
        ipam = es.get("IPAMConfig") or {}
        if rec["Name"] == DEFAULT_BRIDGE:
            if ipam.get("IPv4Address") or ipam.get("IPv6Address"):
                raise InvalidParameter("user specified IP address is supported on user defined networks only")
            if [a for a in es.get("Aliases") or []]:
                raise InvalidParameter("network-scoped alias is supported only for containers in user defined networks")
        for version, field in ((4, "IPv4Address"), (6, "IPv6Address")):
            if not ipam.get(field) or rec["Name"] == DEFAULT_BRIDGE:
                continue
            try:
                ok = ipaddress.ip_address(ipam[field]).version == version
            except ValueError:
                ok = False
            if not ok:
                raise InvalidParameter(f"invalid IPv{version} address: {ipam[field]}")
            if not user_subnet(rec, version):
                raise InvalidParameter("user specified IP address is supported only when connecting to networks with user configured subnets")
    for rec in recs:
        if rec["Driver"] not in BRIDGED:
            raise InvalidParameter(f"container cannot be connected to network {rec['Name']} together with other networks")
        if rec.get("ConfigOnly"):
            raise InvalidParameter(f"cannot attach to config-only network {rec['Name']}")
        if config is not None:
            overlay.check_attach(rec, config.get("Labels"))
    return []


def shared_mode_conflicts(mode: str, hc: dict[str, Any], endpoints: dict[str, Any],
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


def netavark_network(svc: NetworkService, rec: NetworkRecord, es: dict[str, Any], owner: str, ifname: str, ctr: ContainerLike
                    ) -> tuple[dict[str, Any], list[str]]:
    ipam = es.get("IPAMConfig") or {}
    ips: list[str] = []
    try:
        for c in address_configs(rec):
            v = ipaddress.ip_network(c["Subnet"]).version
            want = ipam.get("IPv4Address") if v == 4 else ipam.get("IPv6Address")
            ips.append(svc.ipam.allocate(rec["Id"], c["Subnet"], c.get("Gateway"), owner, ip_range=c.get("IPRange"),
                                          want=want or None, net_name=rec["Name"]))
    except Exception:
        svc.ipam.release(rec["Id"], owner)
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


def endpoint_settings(rec: NetworkRecord, es: dict[str, Any], ips: list[str], status: dict[str, Any],
                      ifname: str, ctr: ContainerLike, per: dict[str, Any]) -> dict[str, Any]:
    iface = ((status.get(rec["Name"]) or {}).get("interfaces") or {}).get(ifname) or {}
    out: dict[str, Any] = {
        "IPAMConfig": es.get("IPAMConfig") or None, "Links": es.get("Links"), "Aliases": es.get("Aliases"),
        "MacAddress": iface.get("mac_address") or per.get("static_mac", ""), "DriverOpts": es.get("DriverOpts"),
        "GwPriority": es.get("GwPriority", 0), "NetworkID": rec["Id"], "EndpointID": new_id(),
        "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "DNSNames": ([ctr_name(ctr)] + list(per.get("aliases") or [])) if rec["Name"] != DEFAULT_BRIDGE else None,
    }
    for c, ip in zip(address_configs(rec), ips):
        sn = ipaddress.ip_network(c["Subnet"])
        if sn.version == 4:
            out.update(Gateway=c.get("Gateway", ""), IPAddress=ip, IPPrefixLen=sn.prefixlen)
        else:
            out.update(IPv6Gateway=c.get("Gateway", ""), GlobalIPv6Address=ip, GlobalIPv6PrefixLen=sn.prefixlen)
    return out


def predefined_settings(svc: NetworkService, name: str) -> dict[str, Any]:
    rec = svc.resolve(name)
    return {"IPAMConfig": None, "Links": None, "Aliases": None, "MacAddress": "", "DriverOpts": None, "GwPriority": 0,
            "NetworkID": rec["Id"], "EndpointID": new_id() if name == "host" else "", "Gateway": "", "IPAddress": "",
            "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DNSNames": None}


def hosts_entries(svc: NetworkService, ctr: ContainerLike, own_ip: str | None) -> list[tuple[str, list[str]]]:
    hc = cget(ctr, "HostConfig", {})
    out: list[tuple[str, list[str]]] = []
    host_gw = svc.resolve(DEFAULT_BRIDGE)["IPAM"]["Config"][0].get("Gateway", "")
    for entry in hc.get("ExtraHosts") or []:
        # "name:ip" (IPv6 addresses contain colons, so split on the first one) or "name=ip" (Docker ≥25).
        name, sep, ip = entry.partition("=") if "=" in entry else entry.partition(":")
        if not sep or not name or not ip:
            raise InvalidParameter(f"invalid argument {entry!r} for --add-host: expected host:ip")
        ip = ip.strip("[]")
        if ip == "host-gateway":
            ip = host_gw
        out.append((ip, [name]))
    # Legacy links are /etc/hosts lines of a default-bridge container only (on user networks: resolver.py)
    on_default = normalize_mode(hc.get("NetworkMode")) == DEFAULT_BRIDGE
    for target, alias in link_pairs(hc.get("Links") if on_default else None):
        ep = endpoint_by_name(svc, target)
        if ep is None:
            continue
        ip = next((s.get("IPAddress") for s in ep["networks"].values() if s.get("IPAddress")), None)
        if ip:
            out.append((ip, list(dict.fromkeys([alias, target]))))
    if own_ip:
        hostname = (cget(ctr, "Config", {}) or {}).get("Hostname") or cget(ctr, "Id", "")[:12]
        out.append((own_ip, [hostname]))
    return out


def endpoint_by_name(svc: NetworkService, name: str) -> Endpoint | None:
    for ep in svc.endpoints.all():
        if not ep.get("anchor") and (ep.get("Name") == name or ep["Id"].startswith(name)):
            return ep
    return None


def link_pairs(links: list[str] | None) -> list[tuple[str, str]]:
    """(target, alias) of each `target[:alias]` link (legacy `/target:/me/alias` too)."""
    out = []
    for link in links or []:
        target, _, alias = str(link).partition(":")
        target = target.lstrip("/")
        out.append((target, alias.rsplit("/", 1)[-1] if alias else target))
    return out


def has_links(ep: Endpoint) -> bool:
    """Whether the container has links on a user-defined network (answered by its own resolver, resolver.py)."""
    return any(es.get("Links") for net, es in (ep.get("networks") or {}).items() if net != DEFAULT_BRIDGE)


def named_networks(svc: NetworkService, ep: Endpoint) -> list[NetworkRecord]:
    """The networks with name resolution (user networks) the container is on, in the order it joined them."""
    out = []
    for es in (ep.get("networks") or {}).values():
        rec = svc.store.get_id(es.get("NetworkID") or "")
        if rec is not None and naming.dns_net(rec):
            out.append(rec)
    return out


def needs_resolver(svc: NetworkService, ep: Endpoint) -> bool:
    """Whether the container needs a resolver of its own (resolver.py): links on a user network, or names of
    more than one network to answer."""
    return has_links(ep) or len(named_networks(svc, ep)) > 1


def link_answer(svc: NetworkService, cid: str, name: str, qtype: int) -> list[str] | None:
    """For the link resolver of container `cid`: the addresses answering `name` when it is one of its link
    aliases on a user network (the target's address on that network, of the family asked; [] when the target
    has none), None when it is not (the query goes to the networks' name servers)."""
    ep = svc.endpoints.get(cid)
    if ep is None or qtype not in (1, 28):
        return None
    name = name.rstrip(".").lower()
    for net, es in ep["networks"].items():
        if net == DEFAULT_BRIDGE:
            continue
        for target, alias in link_pairs(es.get("Links")):
            if alias.lower() != name:
                continue
            for other in svc.endpoints.on_network(net):
                if other["Id"] in svc._pending:  # stopping: its names are gone already
                    continue
                ts = other["networks"][net]
                if other.get("Name") == target or other["Id"].startswith(target) or target in (ts.get("DNSNames") or []):
                    ip = ts.get("IPAddress") if qtype == 1 else ts.get("GlobalIPv6Address")
                    return [ip] if ip else []
    return None


def resolver_upstreams(svc: NetworkService, cid: str) -> list[str]:
    """The name servers a container's own resolver passes other queries to: the dnsmasq of each user network it
    is on, in the order it joined them; the host's resolvers when it is on none (any more)."""
    ep = svc.endpoints.get(cid)
    out = [naming.gateways(rec)[0] for rec in named_networks(svc, ep or {}) if naming.gateways(rec)]
    return out or dns.upstream_servers()
