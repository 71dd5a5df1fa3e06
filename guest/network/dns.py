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

from skiffbox.guest.util.resolvconf import is_loopback, parse_resolv

HOST_RESOLV = "/etc/resolv.conf"
SYSTEMD_RESOLV = "/run/systemd/resolve/resolv.conf"
FALLBACK_NAMESERVERS = ["8.8.8.8", "8.8.4.4"]
# Docker's embedded-DNS resolv.conf has `ndots:0`; a 1 s timeout (glibc's default is 5 s) lets a lookup that a
# busy name server missed be retried quickly.
RESOLVER_OPTIONS = ["ndots:0", "timeout:1", "attempts:3"]


def host_resolv() -> tuple[list[str], list[str], list[str]]:
    """The host's resolvers as seen from a container netns: loopback servers are useless there, so behind
    systemd-resolved use its upstream file, as dockerd does."""
    try:
        with open(HOST_RESOLV) as f:
            ns, search, opts = parse_resolv(f.read())
    except OSError:
        ns, search, opts = [], [], []
    if ns and all(is_loopback(n) for n in ns) and os.path.exists(SYSTEMD_RESOLV):
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


def upstream_servers() -> list[str]:
    """The host's resolvers a container can reach (not loopback ones; Google's if none is left)."""
    return [n for n in host_resolv()[0] if not is_loopback(n)] or list(FALLBACK_NAMESERVERS)


def resolv_for_bridge(dns: list[str], dns_search: list[str], dns_options: list[str]) -> str:
    """Default bridge / no embedded DNS: the user's servers or the host's non-loopback ones."""
    _, hsearch, hopts = host_resolv()
    ns = list(dns) if dns else upstream_servers()
    return render(ns, list(dns_search) if dns_search else hsearch, list(dns_options) if dns_options else hopts)


def resolv_for_embedded(servers: list[str], dns_search: list[str], dns_options: list[str]) -> str:
    """User networks: the network DNS server(s) answer names and forward the rest."""
    _, hsearch, _ = host_resolv()
    return render(servers, list(dns_search) if dns_search else hsearch, RESOLVER_OPTIONS + list(dns_options))


def _query(name: str, qid: int, qtype: int) -> bytes:
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!HH", qtype, 1)


def _skip_name(data: bytes, off: int) -> int:
    while True:
        n = data[off]
        if n & 0xC0 == 0xC0:  # compression pointer: the name ends here
            return off + 2
        off += 1 + n
        if n == 0:
            return off


def answer_addresses(data: bytes) -> tuple[int, int, list[str]]:
    """(query id, rcode, the A/AAAA addresses in the answer section) of a DNS reply."""
    qid, flags, qd, an = struct.unpack("!HHHH", data[:8])
    off = 12
    for _ in range(qd):
        off = _skip_name(data, off) + 4
    out = []
    for _ in range(an):
        off = _skip_name(data, off)
        rtype, _, _, rdlen = struct.unpack("!HHIH", data[off:off + 10])
        off += 10
        if (rtype, rdlen) in ((1, 4), (28, 16)):
            out.append(str(ipaddress.ip_address(data[off:off + rdlen])))
        off += rdlen
    return qid, flags & 0x000F, out


def confirm_names(server: str, expected: dict[str, str], timeout: float, per_try: float = 0.1) -> list[str]:
    """Blocking: ask `server` for every name until each is answered with its expected address (A or AAAA by the
    address family); returns the names still not confirmed at the deadline ([] when all are).

    An answer with another address does not count: it can be a record of a removed container of the same name
    that the server has not flushed yet. Run it from inside the container's netns: that checks the path its own
    lookups take."""
    import time

    deadline = time.monotonic() + timeout
    todo = dict(expected)
    with socket.socket(socket.AF_INET6 if ":" in server else socket.AF_INET, socket.SOCK_DGRAM) as sock:
        while todo and time.monotonic() < deadline:
            sent: dict[int, str] = {}
            try:
                for name, ip in todo.items():
                    qid = random.randrange(65536)
                    sent[qid] = name
                    sock.sendto(_query(name, qid, 28 if ":" in ip else 1), (server, 53))
                end = min(deadline, time.monotonic() + per_try)
                while sent and time.monotonic() < end:
                    sock.settimeout(max(0.001, end - time.monotonic()))
                    data = sock.recv(4096)
                    try:
                        qid, rcode, addrs = answer_addresses(data)
                    except (struct.error, IndexError, ValueError):
                        continue
                    asked = sent.pop(qid, None)
                    if asked is not None and rcode == 0 and todo.get(asked) in addrs:
                        del todo[asked]
            except OSError:  # timeout, or the listener is not there yet (ICMP → ECONNREFUSED)
                time.sleep(0.02)
    return sorted(todo)


def question(query: bytes) -> tuple[str, int, int] | None:
    """(name, type, offset just past the question) of a standard query with one question; None otherwise."""
    try:
        _, flags, qd = struct.unpack("!HHH", query[:6])
        if flags & 0xF800 or qd != 1:  # a response, or not a QUERY opcode
            return None
        labels, off = [], 12
        while query[off]:
            n = query[off]
            if n & 0xC0:  # no compression in a question
                return None
            labels.append(query[off + 1:off + 1 + n].decode("ascii"))
            off += 1 + n
        qtype, _ = struct.unpack("!HH", query[off + 1:off + 5])
    except (struct.error, IndexError, UnicodeDecodeError):
        return None
    return ".".join(labels), qtype, off + 5


def reply(query: bytes, qend: int, addrs: list[str], ttl: int = 600) -> bytes:
    """A NOERROR reply to `query` answering its question with `addrs` (A or AAAA records by their family)."""
    flags = 0x8180 | (struct.unpack("!H", query[2:4])[0] & 0x0100)  # QR, RA; RD as asked
    out = query[:2] + struct.pack("!HHHHH", flags, 1, len(addrs), 0, 0) + query[12:qend]
    for a in addrs:
        packed = ipaddress.ip_address(a).packed
        out += struct.pack("!HHHIH", 0xC00C, 28 if len(packed) == 16 else 1, 1, ttl, len(packed)) + packed
    return out


def servfail(query: bytes) -> bytes:
    """SERVFAIL for `query` (its header and question echoed)."""
    q = question(query)
    end = q[2] if q else 12
    flags = 0x8182 | (struct.unpack("!H", query[2:4])[0] & 0x0100)
    return query[:2] + struct.pack("!HHHHH", flags, 1 if q else 0, 0, 0, 0) + query[12:end]


def rcode(message: bytes) -> int:
    return message[3] & 0x0F if len(message) >= 4 else -1
