"""Names on user networks: each container's names and aliases published to the network's dnsmasq, and confirmed
served (from the container's own netns) before its start or `network connect` returns."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from typing import TYPE_CHECKING, Any

from skiffbox.guest.contracts import ContainerLike
from skiffbox.guest.errors import SystemError_
from skiffbox.guest.network import dns, netns
from skiffbox.guest.network.endpoints import Endpoint
from skiffbox.guest.network.store import BRIDGED, DEFAULT_BRIDGE, NetworkRecord, address_configs, ctr_name

if TYPE_CHECKING:
    from skiffbox.guest.network.service import NetworkService

log = logging.getLogger("skiffd.network")

# How long a start waits for the network's dnsmasq to serve a container's names, then again after re-publishing.
NAMES_CONFIRM_S = 3.0
NAMES_RETRY_S = 5.0


def dns_net(rec: NetworkRecord) -> bool:
    """Docker: name resolution on user networks only, never on the default bridge."""
    return bool(rec["Driver"] in BRIDGED and rec["Name"] != DEFAULT_BRIDGE)


def gateways(rec: NetworkRecord) -> list[str]:
    gws = [c["Gateway"] for c in address_configs(rec) if c.get("Gateway")]
    return sorted(gws, key=lambda g: ":" in g)  # IPv4 first


def name_entries(ctr: ContainerLike, cid: str, settings: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """The container's (address, [name, aliases, short id, hostname]) lines for one network."""
    names = list(dict.fromkeys([ctr_name(ctr) or cid[:12]] + list(settings.get("DNSNames") or [])))
    return [(ip, names) for ip in (settings.get("IPAddress"), settings.get("GlobalIPv6Address")) if ip]


def publish(svc: NetworkService, rec: NetworkRecord, ctr: ContainerLike, cid: str, settings: dict[str, Any],
            only_if_changed: bool = False) -> bool:
    return svc.names.set_names(rec["Id"], cid, name_entries(ctr, cid, settings), only_if_changed)


def expected(rec: NetworkRecord, ctr: ContainerLike, cid: str, settings: dict[str, Any]) -> tuple[str, dict[str, str]] | None:
    """(the gateway the container asks, {name: the address it must get}) on one user network."""
    entries = name_entries(ctr, cid, settings)
    gws = gateways(rec)
    if not entries or not gws:
        return None
    ip, names = entries[0]  # IPv4 when the network has it, as the gateways are ordered
    server = next((g for g in gws if (":" in g) == (":" in ip)), gws[0])
    return server, {n: str(ipaddress.ip_address(ip)) for n in names}


async def confirm(svc: NetworkService, netns_path: str | None, ctr: ContainerLike, cid: str,
                  named: list[tuple[NetworkRecord, dict[str, Any]]], fail: bool = True) -> None:
    """Every name of the container on every user network it joined must be served by that network's dnsmasq
    (with this container's address) before start/connect returns: asked from the container's netns (the path
    of its own lookups; the peers reach the same gateway over the same bridge, whose MAC is pinned), or from
    ours when `netns_path` is None. dnsmasq reads a new hosts file within milliseconds; on a miss (a loaded
    machine, a server that died or lost an inotify event) the file is written again, the server started if
    it is not running and told to re-read everything (SIGHUP), and asked again. Still missing: the start
    fails (`fail`) rather than hand out a container its peers cannot name; else a warning."""
    checks = [(rec, settings, exp) for rec, settings in named
              if (exp := expected(rec, ctr, cid, settings)) is not None]
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
        async with svc.lock:
            await svc.names.ensure(net_id, gateways(rec))
        publish(svc, rec, ctr, cid, settings)
        svc.names.reload(net_id)
    missing = await ask([t for t in todo if t[0] in missing], NAMES_RETRY_S)
    if not missing:
        log.info("names of %s confirmed after re-publishing (%.1f s)", cid[:12], time.monotonic() - t0)
        return
    what = "; ".join(f"{by_id[i][0]['Name']}: {', '.join(n)}" for i, n in missing.items())
    if fail:
        raise SystemError_(f"the network name server does not serve the names of container {cid[:12]} ({what})")
    log.warning("the network name server does not serve the names of container %s (%s)", cid[:12], what)


def unpublish(svc: NetworkService, ep: Endpoint) -> None:
    for es in (ep.get("networks") or {}).values():
        if es.get("NetworkID"):
            svc.names.drop_names(es["NetworkID"], ep["Id"])
