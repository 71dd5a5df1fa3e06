"""A small HTTP/1.1 server on asyncio + h11, made for the Docker Engine API.

Why not a framework: attach and exec need connection hijacking (`101 UPGRADED`, then the raw socket),
`wait` needs its headers flushed before the body exists, and errors must be `application/json` exactly.
h11 gives us the protocol state machine and leaves the socket to us, so all three are direct.

`App` strips and checks the `/vX.Y` prefix, routes each request to its handler (guest/api/http.py) and
serves the unix and TCP (optionally TLS, guest/api/tls.py) listeners; a connection turns a handler's
reply into HTTP. A handler's `EngineError` becomes `{"message": …}` with Docker's status; anything else
is a 500 with the message, and the traceback goes to the log.
"""

from __future__ import annotations

import array
import asyncio
import errno
import fcntl
import json
import logging
import os
import re
import socket
import ssl
import termios
import traceback
from http import HTTPStatus
from typing import Any

import h11

from skiffbox.guest.api.http import (API_VERSION, MIN_API_VERSION, READ_SIZE, SERVER_HEADER, BodyCheck, ByteReader, QueryCheck,
                                     ByteWriter, Hijack, RawConn, Reply, Request, Response, Router, Stream,
                                     error_response, version_tuple)
from skiffbox.guest.api.tls import TLSStream
from skiffbox.guest.errors import EngineError, InvalidParameter

log = logging.getLogger("skiffd.http")

# A full disk or quota, a read-only data root: reported as dockerd does ("<path>: no space left on device").
_RESOURCE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.ENOMEM}
_VERSION_PREFIX = re.compile(r"^/v([0-9][0-9.]*)(/.*)$")
# How long a hijacked stream waits for the client to read the 101 headers before sending anyway (clients read
# them at once; this bounds the wait for one that does not).
HEADERS_READ_TIMEOUT = 5.0


async def until_peer_read(writer: ByteWriter, timeout: float = HEADERS_READ_TIMEOUT) -> None:
    """Return once the client has read everything sent so far, on a Unix socket (elsewhere at once).

    docker-py reads a hijacked stream from the socket beneath the buffered reader that parsed the 101 headers, so
    bytes that arrive with the headers sit in that buffer and are lost to it (its attach with logs lost the
    output); dockerd is only usually slow enough to send them later. On AF_UNIX, SIOCOUTQ counts the bytes sent
    and not yet read by the peer: zero means the client's header read is done and the stream can start. TCP has
    no such count (its ACKs say the kernel received, not that the client read): there, as with dockerd, timing.
    """
    sock = writer.get_extra_info("socket")
    if sock is None or sock.family != socket.AF_UNIX:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    unread = array.array("i", [0])
    delay = 0.0002
    while True:
        try:
            fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, unread)  # TIOCOUTQ is SIOCOUTQ on Linux
        except OSError:
            return
        if unread[0] == 0 or loop.time() >= deadline:
            return
        await asyncio.sleep(delay)  # the kernel has no wake-up for "the peer read": poll, briefly
        delay = min(delay * 2, 0.01)


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


class _Connection:
    def __init__(self, app: App, reader: ByteReader, writer: ByteWriter) -> None:
        self.app = app
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=1024 * 1024)
        sslobj = writer.get_extra_info("ssl_object")
        self.peer_cert = sslobj.getpeercert() if sslobj is not None else None

    async def next_event(self) -> Any:
        while True:
            ev = self.h11.next_event()
            if ev is h11.NEED_DATA:
                try:
                    data = await self.reader.read(READ_SIZE)
                except (ConnectionError, OSError):
                    data = b""
                self.h11.receive_data(data)
                continue
            return ev

    async def send(self, *events: Any) -> None:
        for ev in events:
            data = self.h11.send(ev)
            if data:
                self.writer.write(data)
        await self.writer.drain()

    async def serve(self) -> None:
        try:
            while True:
                try:
                    ev = await self.next_event()
                except h11.RemoteProtocolError as e:
                    await self._send_plain_error(e.error_status_hint, str(e))
                    return
                if isinstance(ev, (h11.ConnectionClosed,)) or ev is h11.PAUSED:
                    return
                if not isinstance(ev, h11.Request):
                    return
                hijacked = await self._handle(ev)
                if hijacked:
                    return
                if self.h11.our_state is h11.MUST_CLOSE or self.h11.their_state is h11.MUST_CLOSE:
                    return
                try:
                    self.h11.start_next_cycle()
                except h11.LocalProtocolError:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:  # never let one connection's bug kill the server
            log.exception("connection failed")
        finally:
            try:
                self.writer.close()
            except Exception:
                pass

    async def _send_plain_error(self, status: int, message: str) -> None:
        body = json.dumps({"message": message}).encode()
        try:
            self.writer.write(
                b"HTTP/1.1 %d Bad Request\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                b"Connection: close\r\n\r\n%s" % (status, len(body), body)
            )
            await self.writer.drain()
        except Exception:
            pass

    def _common_headers(self) -> list[tuple[str, str]]:
        return [
            ("Api-Version", API_VERSION),
            ("Docker-Experimental", "false"),
            ("Ostype", "linux"),
            ("Server", SERVER_HEADER),
        ]

    async def _handle(self, h11req: h11.Request) -> bool:
        req = Request(self, h11req)
        try:
            reply = await self.app.dispatch(req)
        except EngineError as e:
            reply = error_response(e.status, e.message)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            if isinstance(e, OSError) and e.errno in _RESOURCE_ERRNOS:  # the machine's state, not a bug
                log.warning("%s %s: %s", req.method, req.raw_path, e)
                text = (e.strerror or str(e)).lower()
                reply = error_response(500, f"{e.filename}: {text}" if e.filename else text)
            else:  # a bug: report it as a 500 and keep the traceback in the log
                log.error("handler %s %s failed:\n%s", req.method, req.raw_path, traceback.format_exc())
                reply = error_response(500, f"{type(e).__name__}: {e}")
        if isinstance(reply, Hijack):
            await self._hijack(req, reply)
            return True
        # Whatever the handler did not read of the body must be read before the next request.
        if not req._body_done and self.h11.their_state is h11.SEND_BODY:
            try:
                await req.drain()
            except EngineError:
                pass
        if isinstance(reply, Stream):
            await self._send_stream(req, reply)
        else:
            await self._send_response(req, reply)
        return False

    async def _send_response(self, req: Request, r: Response) -> None:
        headers = self._common_headers()
        if r.content_type:
            headers.append(("Content-Type", r.content_type))
        headers += list(r.headers.items())
        body = r.body if (req.method != "HEAD" and r.status not in (204, 304)) else b""
        if r.status not in (204, 304):
            headers.append(("Content-Length", str(len(r.body) if req.method == "HEAD" else len(body))))
        await self.send(h11.Response(status_code=r.status, headers=headers, reason=_reason(r.status)))
        if body:
            await self.send(h11.Data(data=body))
        await self.send(h11.EndOfMessage())

    async def _send_stream(self, req: Request, s: Stream) -> None:
        headers = self._common_headers() + [("Content-Type", s.content_type)] + list(s.headers.items())
        headers.append(("Transfer-Encoding", "chunked"))
        await self.send(h11.Response(status_code=s.status, headers=headers, reason=_reason(s.status)))
        chunks = s.chunks
        try:
            if req.method != "HEAD":
                async for chunk in chunks:
                    if chunk:
                        await self.send(h11.Data(data=chunk))
            await self.send(h11.EndOfMessage())
        except (ConnectionError, OSError):
            raise
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except Exception:
                    pass

    async def _hijack(self, req: Request, hj: Hijack) -> None:
        if not req._body_done and self.h11.their_state is h11.SEND_BODY:
            await req.drain()
        upgrade = "upgrade" in req.headers.get("connection", "").lower() and "upgrade" in req.headers
        if upgrade:
            head = (
                f"HTTP/1.1 101 UPGRADED\r\nContent-Type: {hj.content_type}\r\n"
                "Connection: Upgrade\r\nUpgrade: tcp\r\n"
            )
        else:
            head = f"HTTP/1.1 200 OK\r\nContent-Type: {hj.content_type}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in self._common_headers()) + "\r\n"
        pending, _closed = self.h11.trailing_data
        self.writer.write(head.encode("latin-1"))
        await self.writer.drain()
        await until_peer_read(self.writer)
        raw = RawConn(self.reader, self.writer, pending)
        try:
            await hj.run(raw)
        except (ConnectionError, OSError):
            pass
        except Exception:
            log.exception("hijacked stream for %s failed", req.raw_path)


class App:
    """Routes requests, strips and checks the `/vX.Y` prefix, and serves listeners."""

    def __init__(self, router: Router, body_check: BodyCheck | None = None,
                 query_check: QueryCheck | None = None) -> None:
        self.router = router
        self.body_check = body_check
        self.query_check = query_check  # the one check of query parameters (validate.py), before any handler
        self._servers: list[asyncio.base_events.Server] = []
        self._conns: set[asyncio.Task[None]] = set()

    async def dispatch(self, req: Request) -> Reply:
        m = _VERSION_PREFIX.match(req.raw_path)
        if m:
            version, path = m.group(1), m.group(2)
            if version_tuple(version) < version_tuple(MIN_API_VERSION):
                raise InvalidParameter(
                    f"client version {version} is too old. Minimum supported API version is "
                    f"{MIN_API_VERSION}, please upgrade your client to a newer version"
                )
            if version_tuple(version) > version_tuple(API_VERSION):
                raise InvalidParameter(
                    f"client version {version} is too new. Maximum supported API version is {API_VERSION}"
                )
            req.api_version = version
            req.path = path
        handler, params = self.router.match(req.method, req.path)
        req.params = params
        req.body_check = self.body_check
        if self.query_check is not None:
            self.query_check(req.method, req.path, req.query)
        return await handler(req)

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                         ssl_ctx: ssl.SSLContext | None = None) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            if ssl_ctx is None:
                await _Connection(self, reader, writer).serve()
                return
            tls = TLSStream(reader, writer, ssl_ctx)
            try:
                await tls.handshake()
            except (ssl.SSLError, ConnectionError, OSError, asyncio.TimeoutError) as e:
                log.info("TLS handshake with %s refused: %s", writer.get_extra_info("peername"), e)
                writer.close()
                return
            await _Connection(self, tls, tls).serve()
        finally:
            self._conns.discard(task)

    async def listen_unix(self, path: str, mode: int = 0o660) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        srv = await asyncio.start_unix_server(self._on_client, path=path, limit=READ_SIZE)
        os.chmod(path, mode)
        self._servers.append(srv)

    async def listen_tcp(self, host: str, port: int, ssl_ctx: ssl.SSLContext | None) -> None:
        async def on_client(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            await self._on_client(r, w, ssl_ctx)

        srv = await asyncio.start_server(on_client, host=host or None, port=port, limit=READ_SIZE)
        self._servers.append(srv)

    async def close(self) -> None:
        for s in self._servers:
            s.close()
        conns = list(self._conns)
        for t in conns:
            t.cancel()
        # A cancelled request undoes what it began (a start tears down its container): let it finish before the
        # engine closes and the process exits, or its mounts and processes outlive the daemon.
        if conns:
            await asyncio.wait(conns, timeout=30)
        for s in self._servers:
            try:
                await asyncio.wait_for(s.wait_closed(), 2)
            except (asyncio.TimeoutError, Exception):
                pass
