"""The addresses of `swarm init` (ListenAddr, AdvertiseAddr, DataPathAddr), resolved as dockerd resolves them.

Each is an IP address or a network interface's name, with an optional port. With no advertise address dockerd
advertises the listen address when that is a specific one, else the machine's one non-loopback address; nothing
is ever listened on here (a one-node swarm has no peers), but the answers and errors are dockerd's.
"""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct
from typing import Any

from skiffbox.guest.errors import InvalidParameter

_SIOCGIFADDR = 0x8915
BAD_LISTEN = "listen address must be an IP address or network interface (with optional port number)"
BAD_ADVERTISE = "advertise address must be a non-zero IP address or network interface (with optional port number)"
BAD_DATA_PATH = "data path address must be a non-zero IP address or network interface (without a port number)"
NO_SYSTEM_IP = "could not find the system's IP address"


def interface_ipv4(name: str) -> str | None:
    """The IPv4 address of interface `name`, None when there is no such interface or it has none."""
    if not name or len(name) > 15:
        return None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            res = fcntl.ioctl(s.fileno(), _SIOCGIFADDR, struct.pack("256s", name.encode()))
        except OSError:
            return None
    return socket.inet_ntoa(res[20:24])


def _split(addr: str) -> tuple[str, int | None]:
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        return addr.strip("[]"), None
    return host.strip("[]"), int(port)


def _ip_or_interface(host: str, error: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    ip = interface_ipv4(host)
    if ip is None:
        raise InvalidParameter(error)
    return ip


def listen_addr(value: Any, default_port: int) -> tuple[str, int]:
    text = str(value or "")
    if not text:
        raise InvalidParameter('invalid ListenAddr "": invalid empty address')
    host, port = _split(text)
    return _ip_or_interface(host or "0.0.0.0", BAD_LISTEN), port or default_port


def advertise_addr(value: Any, listen_host: str, listen_port: int) -> tuple[str, int]:
    text = str(value or "")
    if text:
        host, port = _split(text)
        ip = _ip_or_interface(host, BAD_ADVERTISE)
        if ipaddress.ip_address(ip).is_unspecified:
            raise InvalidParameter(BAD_ADVERTISE)
        return ip, port or listen_port
    if not ipaddress.ip_address(listen_host).is_unspecified:
        return listen_host, listen_port
    return system_addr(), listen_port


def data_path_addr(value: Any) -> str:
    text = str(value or "")
    if not text:
        return ""
    ip = _ip_or_interface(text, BAD_DATA_PATH)
    if ipaddress.ip_address(ip).is_unspecified:
        raise InvalidParameter(BAD_DATA_PATH)
    return ip


def system_addr() -> str:
    """The one IPv4 address on a non-loopback interface (moby's resolveSystemAddr, IPv4 part): none or several
    is the caller's to settle with an explicit advertise address."""
    found: dict[str, str] = {}
    for _, name in socket.if_nameindex():
        ip = interface_ipv4(name)
        if ip is None or ipaddress.ip_address(ip).is_loopback or ipaddress.ip_address(ip).is_link_local:
            continue
        if name.startswith(("skiff", "br-", "veth", "docker")):  # the engine's own bridges are not the machine's
            continue
        found[name] = ip
    if not found:
        raise InvalidParameter(NO_SYSTEM_IP)
    if len(set(found.values())) > 1:
        listing = ", ".join(f"{ip} on {name}" for name, ip in sorted(found.items()))
        raise InvalidParameter("could not choose an IP address to advertise since this system has multiple "
                               f"addresses on different interfaces ({listing})")
    return next(iter(found.values()))
