"""Published ports: Docker's `PortBindings` / `ExposedPorts` / `PublishAllPorts` → host ports, checked for conflicts,
turned into netavark port mappings (iptables DNAT) and into Docker's `NetworkSettings.Ports` shape.

netavark 1.4 holds no listening socket (Docker's docker-proxy does), so the engine itself checks that a host port is
neither used by another container nor bound by a process before handing it out.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass
from typing import Any

from skiffbox.guest.errors import InvalidParameter, SystemError_

PROTOCOLS = ("tcp", "udp", "sctp")


@dataclass(frozen=True)
class Mapping:
    container_port: int
    proto: str
    host_ip: str  # "" = all addresses
    host_port: int

    def key(self) -> tuple[str, int]:
        return self.proto, self.host_port

    def netavark(self) -> dict[str, Any]:
        return {"host_ip": self.host_ip, "container_port": self.container_port, "host_port": self.host_port,
                "range": 1, "protocol": self.proto}

    @classmethod
    def from_netavark(cls, d: dict[str, Any]) -> "Mapping":
        return cls(int(d["container_port"]), d["protocol"], d.get("host_ip", ""), int(d["host_port"]))


def parse_port_key(key: str) -> tuple[int, str]:
    """"80/tcp" → (80, "tcp"); "80" → (80, "tcp")."""
    port, _, proto = key.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in PROTOCOLS:
        raise InvalidParameter(f"invalid proto: {proto}")
    try:
        p = int(port)
    except ValueError:
        raise InvalidParameter(f"invalid containerPort: {port}") from None
    if not 0 < p < 65536:
        raise InvalidParameter(f"invalid containerPort: {port}")
    return p, proto


def _host_range(spec: str) -> tuple[int, int] | None:
    """"" → None (any ephemeral port); "8080" → (8080, 8080); "8000-8010" → (8000, 8010)."""
    spec = (spec or "").strip()
    if not spec or spec == "0":
        return None
    lo, sep, hi = spec.partition("-")
    try:
        a = int(lo)
        b = int(hi) if sep else a
    except ValueError:
        raise InvalidParameter(f"invalid hostPort: {spec}") from None
    if not (0 < a <= b < 65536):
        raise InvalidParameter(f"invalid hostPort: {spec}")
    return a, b


def exposed_keys(config: dict[str, Any], host_config: dict[str, Any]) -> list[str]:
    keys = list((config.get("ExposedPorts") or {}).keys()) + list((host_config.get("PortBindings") or {}).keys())
    out: dict[str, None] = {}
    for k in keys:
        p, proto = parse_port_key(k)
        out[f"{p}/{proto}"] = None
    return list(out)


def ephemeral_range() -> tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            a, b = f.read().split()
            return int(a), int(b)
    except (OSError, ValueError):
        return 32768, 60999


def _bindable(owner: str, proto: str, host_ip: str, port: int) -> bool:
    """Nobody on the host listens on it (a DNAT rule would silently steal the port from them).

    An address the host does not have is an error, as dockerd's userland proxy reports it: a DNAT rule for it
    would be accepted and never match, so `-p 10.9.9.9:80:80` would look published and answer nothing."""
    kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
    fam = socket.AF_INET6 if ":" in host_ip else socket.AF_INET
    if proto == "sctp":
        return True
    s = socket.socket(fam, kind)
    try:
        if kind == socket.SOCK_STREAM:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host_ip or ("::" if fam == socket.AF_INET6 else "0.0.0.0"), port))
        return True
    except OSError as e:
        if e.errno == errno.EADDRNOTAVAIL:
            shown = f"[{host_ip}]" if fam == socket.AF_INET6 else host_ip
            raise SystemError_(f"driver failed programming external connectivity on endpoint {owner[:12]}: "
                               f"Error starting userland proxy: listen {proto}{6 if fam == socket.AF_INET6 else 4} "
                               f"{shown}:{port}: bind: cannot assign requested address") from None
        return e.errno not in (errno.EADDRINUSE, errno.EACCES)
    finally:
        s.close()


def _overlaps(a: Mapping, proto: str, host_ip: str, port: int) -> bool:
    return a.proto == proto and a.host_port == port and (not a.host_ip or not host_ip or a.host_ip == host_ip)


class PortAllocator:
    """Host ports in use by containers, kept in memory and rebuilt from endpoint records at daemon start."""

    def __init__(self) -> None:
        self._used: dict[str, list[Mapping]] = {}  # owner (container id) → mappings
        self._cursor: dict[str, int] = {}

    def hold(self, owner: str, mappings: list[Mapping]) -> None:
        self._used[owner] = list(mappings)

    def release(self, owner: str) -> None:
        self._used.pop(owner, None)

    def _taken(self, proto: str, host_ip: str, port: int, pending: list[Mapping]) -> bool:
        for ms in self._used.values():
            if any(_overlaps(m, proto, host_ip, port) for m in ms):
                return True
        return any(_overlaps(m, proto, host_ip, port) for m in pending)

    def allocate(self, owner: str, config: dict[str, Any], host_config: dict[str, Any]) -> list[Mapping]:
        """All mappings for one container, or an error naming the port that is taken (nothing is held then)."""
        bindings: dict[str, list[dict[str, Any]]] = dict(host_config.get("PortBindings") or {})
        if host_config.get("PublishAllPorts"):
            for key in exposed_keys(config, host_config):
                if not bindings.get(key):
                    bindings[key] = [{"HostIp": "", "HostPort": ""}]
        out: list[Mapping] = []
        for key, blist in bindings.items():
            cport, proto = parse_port_key(key)
            for b in blist or []:
                host_ip = (b.get("HostIp") or "").strip()
                if host_ip in ("0.0.0.0", "::"):
                    host_ip = ""
                rng = _host_range(str(b.get("HostPort") or ""))
                out.append(self._pick(owner, cport, proto, host_ip, rng, out))
        self._used[owner] = out
        return out

    def _pick(self, owner: str, cport: int, proto: str, host_ip: str, rng: tuple[int, int] | None,
              pending: list[Mapping]) -> Mapping:
        shown_ip = host_ip or "0.0.0.0"
        if rng is not None and rng[0] == rng[1]:
            port = rng[0]
            if self._taken(proto, host_ip, port, pending) or not _bindable(owner, proto, host_ip, port):
                raise SystemError_(f"driver failed programming external connectivity on endpoint {owner[:12]}: "
                                   f"Bind for {shown_ip}:{port} failed: port is already allocated")
            return Mapping(cport, proto, host_ip, port)
        lo, hi = rng if rng is not None else ephemeral_range()
        start = self._cursor.get(f"{lo}-{hi}", lo)
        n = hi - lo + 1
        for i in range(n):
            port = lo + (start - lo + i) % n
            if self._taken(proto, host_ip, port, pending) or not _bindable(owner, proto, host_ip, port):
                continue
            self._cursor[f"{lo}-{hi}"] = port + 1 if port < hi else lo
            return Mapping(cport, proto, host_ip, port)
        raise SystemError_(f"Bind for {shown_ip}:{lo}-{hi} failed: all ports are allocated")


def docker_ports(exposed: list[str], mappings: list[Mapping]) -> dict[str, list[dict[str, str]] | None]:
    """`NetworkSettings.Ports`: every exposed/published port, with its host bindings or None."""
    out: dict[str, list[dict[str, str]] | None] = {k: None for k in exposed}
    for m in mappings:
        key = f"{m.container_port}/{m.proto}"
        lst = out.get(key) or []
        lst.append({"HostIp": m.host_ip or "0.0.0.0", "HostPort": str(m.host_port)})
        out[key] = lst
    return out
