"""A name server of a container's own, at 127.0.0.11:53 in its netns (dockerd's embedded DNS address), for what
the per-network dnsmasq (dnsmasq.py) cannot answer alike for every client:

* Links on user-defined networks (`EndpointSettings.Links`, `docker run --network N --link target:alias`). In
  dockerd such a link is an alias of the *linking* container's endpoint, answered by the embedded DNS for that
  container only (no /etc/hosts line, no env vars). dnsmasq answers every client alike, and aardvark-dns
  (netavark's) cannot do it either: its only per-client state is which networks a source address is on and its
  upstream servers, and aliases are network-wide (podman has no link aliases on networks).
* Names on several user networks. dockerd's embedded DNS answers the names of every network the container is on;
  a resolv.conf listing each network's dnsmasq does not (the resolver stops at the first NXDOMAIN).
* A running container connected to a user network whose resolv.conf does not name that network's server (one
  that was on the default bridge only: dockerd switches it to 127.0.0.11 too).

skiffd opens UDP and TCP sockets on 127.0.0.11:53 in the container's netns (as dockerd's does) and serves them:
a query for a link alias is answered with the target's current address on the link's network (looked up when
asked: the target may start later, or come back with another address); every other query goes, unchanged, to the
dnsmasq of each user network the container is on, in order, and the first answer that is not NXDOMAIN is
returned (the host's resolvers when it is on none any more).

Where this differs from dockerd: containers on one user network and without links keep asking that network's
dnsmasq directly (as before; cheaper, and it keeps answering while skiffd restarts); for the others, lookups go
unanswered while skiffd is down (as with dockerd's in-process embedded DNS), and skiffd serves them again when it
starts. A container that itself listens on port 53 of 127.0.0.11 or of every address cannot bind it then
(dockerd listens on a random port behind a DNAT rule in the container's netns).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from skiffbox.guest.network import dns, netns

log = logging.getLogger("skiffd.network")

ADDRESS = "127.0.0.11"  # dockerd's embedded DNS address
FORWARD_TIMEOUT_S = 3.0

# (container id, name asked, qtype) → the addresses to answer, or None: not one of its link aliases (forward it)
Lookup = Callable[[str, str, int], "list[str] | None"]
# container id → the name servers to forward other queries to
Upstreams = Callable[[str], "list[str]"]


def _open_sockets() -> tuple[socket.socket, socket.socket]:
    """(UDP, TCP listening) sockets on 127.0.0.11:53, created in the calling thread's netns (they stay in it)."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        udp.bind((ADDRESS, 53))
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind((ADDRESS, 53))
        tcp.listen(64)
        udp.setblocking(False)
        tcp.setblocking(False)
    except BaseException:
        udp.close()
        tcp.close()
        raise
    return udp, tcp


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, resolvers: Resolvers, cid: str) -> None:
        self.resolvers, self.cid = resolvers, cid
        self.transport: asyncio.DatagramTransport | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        task = asyncio.get_running_loop().create_task(self._answer(data, addr))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _answer(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        out = await self.resolvers.answer(self.cid, data, tcp=False)
        if out is not None and self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(out, addr)


@dataclass
class _Resolver:
    udp: asyncio.DatagramTransport
    tcp: asyncio.Server
    protocol: _Udp
    conns: set[asyncio.StreamWriter] = field(default_factory=set)


class Resolvers:
    def __init__(self, lookup: Lookup, upstreams: Upstreams) -> None:
        self.lookup, self.upstreams = lookup, upstreams
        self._open: dict[str, _Resolver] = {}

    def serving(self, cid: str) -> bool:
        return cid in self._open

    async def open(self, cid: str, netns_path: str) -> None:
        """Serve the container's resolver (idempotent). Its netns must be plumbed (loopback up)."""
        if cid in self._open:
            return
        udp_sock, tcp_sock = await asyncio.to_thread(netns.run_in, netns_path, _open_sockets)
        loop = asyncio.get_running_loop()
        try:
            transport, protocol = await loop.create_datagram_endpoint(lambda: _Udp(self, cid), sock=udp_sock)
        except BaseException:
            udp_sock.close()
            tcp_sock.close()
            raise
        conns: set[asyncio.StreamWriter] = set()

        async def on_tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            conns.add(writer)
            try:
                while True:
                    size = struct.unpack("!H", await reader.readexactly(2))[0]
                    out = await self.answer(cid, await reader.readexactly(size), tcp=True)
                    if out is None:
                        break
                    writer.write(struct.pack("!H", len(out)) + out)
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                conns.discard(writer)
                writer.close()

        try:
            server = await asyncio.start_server(on_tcp, sock=tcp_sock)
        except BaseException:
            transport.close()
            tcp_sock.close()
            raise
        self._open[cid] = _Resolver(transport, server, protocol, conns)
        log.debug("own resolver of %s on %s:53", cid[:12], ADDRESS)

    def close(self, cid: str) -> None:
        """Stop serving (the sockets hold the netns: close them when the container's network goes)."""
        r = self._open.pop(cid, None)
        if r is None:
            return
        r.udp.close()
        r.tcp.close()
        for w in list(r.conns):
            w.close()
        for t in list(r.protocol.tasks):
            t.cancel()

    def close_all(self) -> None:
        for cid in list(self._open):
            self.close(cid)

    async def answer(self, cid: str, query: bytes, tcp: bool) -> bytes | None:
        q = dns.question(query)
        if q is not None:
            addrs = self.lookup(cid, q[0], q[1])
            if addrs is not None:
                return dns.reply(query, q[2], addrs)
        servers = self.upstreams(cid)
        last: bytes | None = None
        for server in servers:
            try:
                got = await asyncio.wait_for(_forward_tcp(server, query) if tcp else _forward_udp(server, query),
                                             FORWARD_TIMEOUT_S)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
                log.debug("resolver of %s: %s did not answer: %r", cid[:12], server, e)
                continue
            if dns.rcode(got) != 3:  # not NXDOMAIN: this network knows the name (or it is not a container's)
                return got
            last = got
        return last if last is not None else (dns.servfail(query) if len(query) >= 12 else None)


async def _forward_udp(server: str, query: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    got: asyncio.Future[bytes] = loop.create_future()
    qid = query[:2]

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
            if data[:2] == qid and not got.done():
                got.set_result(data)

        def error_received(self, exc: Exception) -> None:
            if not got.done():
                got.set_exception(exc)

    transport, _ = await loop.create_datagram_endpoint(Client, remote_addr=(server, 53))
    try:
        transport.sendto(query)
        return await got
    finally:
        transport.close()


async def _forward_tcp(server: str, query: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(server, 53)
    try:
        writer.write(struct.pack("!H", len(query)) + query)
        await writer.drain()
        size = struct.unpack("!H", await reader.readexactly(2))[0]
        return await reader.readexactly(size)
    finally:
        writer.close()
