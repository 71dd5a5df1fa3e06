"""Name resolution for containers: their /etc/resolv.conf, and a readiness probe for the network's name server.

Docker's rules: on the default bridge a container gets the host's resolvers (loopback ones removed, since they
cannot be reached from another netns; Google's if none are left); on user networks it gets the network's own DNS
server (here a dnsmasq on the bridge gateway, see dnsmasq.py), which answers container names and aliases and forwards the rest
to the host's resolvers. `--dns`, `--dns-search`, `--dns-option` override on the default bridge; on user networks
the network's server stays the resolver (it forwards to the host's resolvers; a per-container `--dns` upstream,
which Docker's embedded DNS honours, is not applied).
"""

from __future__ import annotations

import ipaddress
import os
import random
import socket
import struct

HOST_RESOLV = "/etc/resolv.conf"
SYSTEMD_RESOLV = "/run/systemd/resolve/resolv.conf"
FALLBACK_NAMESERVERS = ["8.8.8.8", "8.8.4.4"]
# Docker's embedded-DNS resolv.conf has `ndots:0`; a 1 s timeout (glibc's default is 5 s) lets a lookup that a
# busy name server missed be retried quickly.
RESOLVER_OPTIONS = ["ndots:0", "timeout:1", "attempts:3"]


def parse_resolv(text: str) -> tuple[list[str], list[str], list[str]]:
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


def _is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip.split("%")[0]).is_loopback
    except ValueError:
        return False


def host_resolv() -> tuple[list[str], list[str], list[str]]:
    """The host's resolvers as seen from a container netns: loopback servers are useless there, so behind
    systemd-resolved use its upstream file, as dockerd does."""
    try:
        with open(HOST_RESOLV) as f:
            ns, search, opts = parse_resolv(f.read())
    except OSError:
        ns, search, opts = [], [], []
    if ns and all(_is_loopback(n) for n in ns) and os.path.exists(SYSTEMD_RESOLV):
        try:
            with open(SYSTEMD_RESOLV) as f:
                ns2, search2, opts2 = parse_resolv(f.read())
            ns, search, opts = ns2, search2 or search, opts2
        except OSError:
            pass
    return ns, search, opts


def host_resolv_text() -> str:
    try:
        with open(HOST_RESOLV) as f:
            return f.read()
    except OSError:
        return ""


def render(nameservers: list[str], search: list[str], options: list[str]) -> str:
    lines = []
    if search:
        lines.append("search " + " ".join(search))
    lines += [f"nameserver {n}" for n in nameservers]
    if options:
        lines.append("options " + " ".join(dict.fromkeys(options)))
    return "\n".join(lines) + "\n"


def resolv_for_bridge(dns: list[str], dns_search: list[str], dns_options: list[str]) -> str:
    """Default bridge / no embedded DNS: the user's servers or the host's non-loopback ones."""
    hns, hsearch, hopts = host_resolv()
    ns = list(dns) if dns else [n for n in hns if not _is_loopback(n)] or list(FALLBACK_NAMESERVERS)
    return render(ns, list(dns_search) if dns_search else hsearch, list(dns_options) if dns_options else hopts)


def resolv_for_embedded(servers: list[str], dns_search: list[str], dns_options: list[str]) -> str:
    """User networks: the network DNS server(s) answer names and forward the rest."""
    _, hsearch, _ = host_resolv()
    return render(servers, list(dns_search) if dns_search else hsearch, RESOLVER_OPTIONS + list(dns_options))


def _query(name: str, qid: int) -> bytes:
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!HH", 1, 1)


def query_until_answered(server: str, name: str, timeout: float = 3.0, per_try: float = 0.1) -> float | None:
    """Blocking: ask `server` for `name` until it answers with a record; seconds it took, or None on timeout.
    Run it from inside the container's netns: that checks the path its own lookups will take."""
    import time

    deadline = time.monotonic() + timeout
    start = time.monotonic()
    with socket.socket(socket.AF_INET6 if ":" in server else socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(per_try)
        while time.monotonic() < deadline:
            qid = random.randrange(65536)
            try:
                sock.sendto(_query(name, qid), (server, 53))
                while True:
                    data = sock.recv(4096)
                    if len(data) >= 12:
                        rid, flags, _, an = struct.unpack("!HHHH", data[:8])
                        if rid == qid:
                            if flags & 0x000F == 0 and an > 0:
                                return time.monotonic() - start
                            break
            except OSError:  # timeout, or the listener is not there yet (ICMP → ECONNREFUSED)
                time.sleep(0.02)
        return None
