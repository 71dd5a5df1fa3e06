"""Swarm-scoped networks on a one-node swarm: `overlay` (and the swarm's `ingress`), realised as local bridges.

With a single node there is no other host to tunnel to, so an overlay network is a bridge like any user network
(same netavark plumbing, names, IPAM), shown as dockerd shows an overlay: driver `overlay`, scope `swarm`, a
swarm-style 25-character ID, a VXLAN ID in its options and a subnet from the swarm's default address pool
(DefaultAddrPool/SubnetSize of `swarm init`). They exist only in a swarm: the cluster asks for `ingress` when the
swarm is made and removes all swarm-scoped networks when the node leaves it.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import TYPE_CHECKING, Any

from skiffbox.guest.errors import Conflict, Forbidden, Unavailable
from skiffbox.guest.network import bridges
from skiffbox.guest.network.ipam import default_gateway
from skiffbox.guest.network.store import NetworkRecord
from skiffbox.guest.swarm import ids
from skiffbox.guest.swarm.contracts import NOT_A_MANAGER

if TYPE_CHECKING:
    from skiffbox.guest.network.service import NetworkService

log = logging.getLogger("skiffd.network")

OPT_VXLAN = "com.docker.network.driver.overlay.vxlanid_list"
# Containers carrying this label are a service's tasks (guest/swarm/services.py): they join any swarm network.
TASK_LABEL = "com.docker.swarm.task.id"
_FIRST_VXLAN = 4096
INGRESS = "ingress"

# The swarm's address pools as (pools, subnet size), None outside a swarm.
Pools = tuple[list[str], int] | None


def wants_swarm_scope(body: dict[str, Any]) -> bool:
    return (body.get("Driver") or "bridge") == "overlay" or bool(body.get("Ingress")) or body.get("Scope") == "swarm"


def check(svc: NetworkService, body: dict[str, Any]) -> None:
    """dockerd's refusals for a swarm-scoped network, before anything is made."""
    if svc.swarm_pools() is None:
        raise Unavailable(NOT_A_MANAGER)
    driver = body.get("Driver") or "bridge"
    if driver == "overlay" and body.get("Scope") == "local":
        raise Forbidden("cannot downgrade network scope for overlay networks")
    if body.get("Ingress"):
        if driver != "overlay":
            raise Forbidden("ingress networks use the overlay driver")
        ingress = next((r for r in svc.store.all() if r.get("Ingress")), None)
        if ingress is not None:
            raise Conflict(f"rpc error: code = AlreadyExists desc = ingress network ({ingress['Id']}) is already present")


def pool_subnet(svc: NetworkService) -> str:
    """The first subnet of the swarm's pools that no network (nor a route of this machine) already covers."""
    pools = svc.swarm_pools()
    assert pools is not None
    bases, size = pools
    taken = [ipaddress.ip_network(c["Subnet"], strict=False) for r in svc.store.all() for c in r["IPAM"]["Config"]]
    taken += bridges.host_routes()
    for base in bases:
        net = ipaddress.ip_network(base, strict=False)
        if net.version != 4 or size < net.prefixlen:
            continue
        for cand in net.subnets(new_prefix=size):
            if not any(cand.overlaps(t) for t in taken):
                return str(cand)
    raise Unavailable("could not find an available, non-overlapping IPv4 address pool in the swarm's default "
                      "address pools to assign to the network")


def shape(rec: NetworkRecord, body: dict[str, Any], records: list[NetworkRecord]) -> None:
    """Make a new bridge record the swarm-scoped network dockerd would show (before it is stored)."""
    default_bridge = f"br-{rec['Id'][:12]}"
    rec["Id"] = ids.new_id()
    rec["Scope"] = "swarm"
    rec["Ingress"] = bool(body.get("Ingress"))
    if rec["Driver"] == "overlay":
        used = [int(r["Options"].get(OPT_VXLAN, 0)) for r in records if r["Driver"] == "overlay"]
        rec["Options"][OPT_VXLAN] = str(max([_FIRST_VXLAN - 1, *used]) + 1)
    if rec.get("_bridge") in (None, default_bridge):  # else the name the user chose (a bridge's option)
        rec["_bridge"] = f"br-{rec['Id'][:12]}"


def check_attach(rec: NetworkRecord, labels: dict[str, str] | None) -> None:
    """A standalone container joins a swarm network only if it was made Attachable (never the ingress network)."""
    if rec["Scope"] != "swarm" or TASK_LABEL in (labels or {}):
        return
    if rec.get("Ingress") or not rec.get("Attachable"):
        raise Forbidden(f"Could not attach to network {rec['Name']}: rpc error: code = PermissionDenied desc = "
                        f"network {rec['Name']} not manually attachable")


async def make_ingress(svc: NetworkService) -> None:
    """`swarm init` makes the routing mesh's network (the first subnet of the pools, 10.0.0.0/24 by default)."""
    if svc.store.by_name(INGRESS) is None:
        sn = ipaddress.ip_network(pool_subnet(svc))
        await svc.create({"Name": INGRESS, "Driver": "overlay", "Ingress": True,
                          "IPAM": {"Config": [{"Subnet": str(sn), "Gateway": str(default_gateway(sn))}]}})


async def drop_all(svc: NetworkService) -> None:
    """Leaving the swarm removes its networks; one still used by a container stays (and says so in the log)."""
    for rec in [r for r in svc.store.all() if r["Scope"] == "swarm"]:
        try:
            await svc.remove(rec["Id"])
        except Exception as e:
            log.warning("swarm network %s outlives the swarm: %s", rec["Name"], e)
