"""IP address management: netavark's `host-local` driver only applies the addresses it is given, so the engine
allocates them (as libpod does in its ipam.db).

Policy (libpod's and Docker's): the first free address after the last one handed out, wrapping around, never the
network address, the gateway or (IPv4) the broadcast address; `--ip-range` narrows the pool; `--ip` asks for one
address. Allocations live in one JSON file under the exec root, rewritten atomically on every change: they last as
long as the containers they belong to (a daemon restart keeps them; a reboot, which stops every container, drops
them — detected by the kernel's boot id).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, Union

from skiffbox.guest.errors import Conflict, InvalidParameter, Unavailable
from skiffbox.guest.network.store import read_json
from skiffbox.guest.util.atomicfile import atomic_write_json

IPNet = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
IPAddr = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

# Docker's default address pools (libnetwork ipamutils): 172.17-31 as /16s, then 192.168.0.0/16 in /20s.
_DEFAULT_POOLS: list[tuple[str, int]] = [(f"172.{i}.0.0/16", 16) for i in range(17, 32)] + [("192.168.0.0/16", 20)]


def boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def default_gateway(subnet: IPNet) -> IPAddr:
    return subnet.network_address + 1


def pick_subnet(in_use: list[IPNet]) -> IPNet:
    """The first default-pool subnet that overlaps nothing in use (other networks, the host's own routes)."""
    for base, prefix in _DEFAULT_POOLS:
        for cand in ipaddress.ip_network(base).subnets(new_prefix=prefix):
            if not any(cand.overlaps(u) for u in in_use):
                return cand
    raise Unavailable("could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network")


def _usable(subnet: IPNet, addr: IPAddr, gateway: IPAddr | None) -> bool:
    if addr == subnet.network_address or addr == gateway:
        return False
    if subnet.version == 4 and subnet.prefixlen < 31 and addr == subnet.broadcast_address:
        return False
    return True


class Ipam:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._state: dict[str, Any] = {"boot_id": boot_id(), "nets": {}}
        try:
            st = read_json(path)
            if st.get("boot_id") == self._state["boot_id"]:
                self._state = st
        except (OSError, ValueError):
            pass
        self._flush()

    # ---- queries ------------------------------------------------------------------------------
    def _net(self, net_id: str) -> dict[str, Any]:
        net: dict[str, Any] = self._state["nets"].setdefault(net_id, {"last": {}, "alloc": {}})
        return net

    def owned(self, net_id: str) -> dict[str, str]:
        """address → owner for one network."""
        return dict(self._state["nets"].get(net_id, {}).get("alloc", {}))

    def owners(self) -> set[str]:
        return {o for n in self._state["nets"].values() for o in n["alloc"].values()}

    # ---- changes ------------------------------------------------------------------------------
    def allocate(self, net_id: str, subnet: str, gateway: str | None, owner: str, *, ip_range: str | None = None,
                 want: str | None = None, net_name: str = "") -> str:
        sn = ipaddress.ip_network(subnet, strict=False)
        gw = ipaddress.ip_address(gateway) if gateway else None
        net = self._net(net_id)
        alloc: dict[str, str] = net["alloc"]
        if want:
            try:
                addr = ipaddress.ip_address(want)
            except ValueError:
                raise InvalidParameter(f"invalid IP address: {want}") from None
            if addr not in sn:
                raise InvalidParameter(f"no configured subnet or ip-range contain the IP address {want}")
            if not _usable(sn, addr, gw):
                raise InvalidParameter(f"address {want} is reserved on network {net_name or net_id}")
            holder = alloc.get(str(addr))
            if holder is not None and holder != owner:
                raise Conflict("Address already in use")
            alloc[str(addr)] = owner
            self._flush()
            return str(addr)
        pool = ipaddress.ip_network(ip_range, strict=False) if ip_range else sn
        first, last = int(pool.network_address), int(pool.broadcast_address)
        size = last - first + 1
        prev = net["last"].get(str(pool))
        start = int(ipaddress.ip_address(prev)) + 1 if prev else first
        for i in range(size):
            cand_int = first + (start - first + i) % size
            cand = ipaddress.ip_address(cand_int)
            if str(cand) in alloc or not _usable(sn, cand, gw):
                continue
            alloc[str(cand)] = owner
            net["last"][str(pool)] = str(cand)
            self._flush()
            return str(cand)
        raise Unavailable(f"no available IPv{sn.version} addresses on this network's address pools: {net_name or net_id} ({net_id})")

    def allocate_high(self, net_id: str, subnet: str, gateway: str | None, owner: str) -> str:
        """The highest free address: for the engine's own bridge anchor, out of the way of container addresses."""
        sn = ipaddress.ip_network(subnet, strict=False)
        gw = ipaddress.ip_address(gateway) if gateway else None
        alloc = self._net(net_id)["alloc"]
        for held, who in alloc.items():
            if who == owner and ipaddress.ip_address(held) in sn:
                return str(held)
        cand = int(sn.broadcast_address)
        while cand > int(sn.network_address):
            a = ipaddress.ip_address(cand)
            if str(a) not in alloc and _usable(sn, a, gw):
                alloc[str(a)] = owner
                self._flush()
                return str(a)
            cand -= 1
        raise Unavailable(f"no available addresses on network {net_id}")

    def release(self, net_id: str, owner: str) -> None:
        net = self._state["nets"].get(net_id)
        if not net:
            return
        gone = [a for a, o in net["alloc"].items() if o == owner]
        for a in gone:
            del net["alloc"][a]
        if gone:
            self._flush()

    def release_owner(self, owner: str) -> None:
        changed = False
        for net in self._state["nets"].values():
            for a in [a for a, o in net["alloc"].items() if o == owner]:
                del net["alloc"][a]
                changed = True
        if changed:
            self._flush()

    def drop_network(self, net_id: str) -> None:
        if self._state["nets"].pop(net_id, None) is not None:
            self._flush()

    def _flush(self) -> None:
        atomic_write_json(self.path, self._state, 0o600, durable=False)
