"""/etc/resolv.conf reading: the one parser for the network's DNS setup and the containers' files."""

from __future__ import annotations

import ipaddress


def parse_resolv(text: str) -> tuple[list[str], list[str], list[str]]:
    """(nameservers, search domains, options). A `#` or `;` starts a comment anywhere on a line, as dockerd strips
    them; the last `search`/`domain` line wins, as in glibc; `options` lines add up."""
    ns: list[str] = []
    search: list[str] = []
    opts: list[str] = []
    for line in text.splitlines():
        parts = line.split("#", 1)[0].split(";", 1)[0].split()
        if not parts:
            continue
        if parts[0] == "nameserver" and len(parts) > 1:
            ns.append(parts[1])
        elif parts[0] in ("search", "domain"):
            search = parts[1:]
        elif parts[0] == "options":
            opts += parts[1:]
    return ns, search, opts


def is_loopback(ip: str) -> bool:
    """A loopback name server (127.0.0.0/8, ::1, with or without an IPv6 zone) cannot be reached from a container's
    network namespace."""
    try:
        return ipaddress.ip_address(ip.split("%")[0]).is_loopback
    except ValueError:
        return False
