"""A small HTTP/1.1 server on asyncio + h11, made for the Docker Engine API.

Why not a framework: attach and exec need connection hijacking (`101 UPGRADED`, then the raw socket),
`wait` needs its headers flushed before the body exists, and errors must be `application/json` exactly.
h11 gives us the protocol state machine and leaves the socket to us, so all three are direct.

Handlers are `async def handler(req: Request) -> Reply` registered on a `Router`. A reply is a
`Response` (bytes), a `Stream` (chunked, each chunk flushed) or a `Hijack` (raw bidirectional stream).
`EngineError`s raised anywhere become `{"message": …}` with Docker's status; anything else is a 500 with
the message, and the traceback goes to the log.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import ssl
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, TypeVar, Union
from urllib.parse import parse_qs, unquote, urlsplit

import h11

from skiffbox.guest.api.validate import decode_json
from skiffbox.guest.errors import EngineError, InvalidParameter, NotFound

log = logging.getLogger("skiffd.http")

MIN_API_VERSION = "1.24"
API_VERSION = "1.50"
SERVER_HEADER = "Docker/skiff-0.1.0 (linux)"  # the Go client reads the OS from "Docker/<v> (<os>)"

_READ_SIZE = 256 * 1024
_MAX_JSON_BODY = 64 * 1024 * 1024


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


def _vtuple(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.split(".") if p.isdigit())


# ---------------------------------------------------------------------------------------------
# Replies
# ---------------------------------------------------------------------------------------------


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str | None = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Stream:
    """A chunked body; each yielded chunk is written and flushed at once (progress, logs, events)."""

    chunks: AsyncIterator[bytes]
    status: int = 200
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


class RawConn:
    """The hijacked connection: bytes already read by h11 come first, then the socket."""

    def __init__(self, reader: Any, writer: Any, pending: bytes) -> None:
        self._reader = reader
        self.writer = writer
        self._pending = pending

    async def read(self, n: int = 65536) -> bytes:
        if self._pending:
            data, self._pending = self._pending[:n], self._pending[n:]
            return data
        try:
            return await self._reader.read(n)
        except (ConnectionError, OSError):
            return b""

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    def close_write(self) -> None:
        try:
            if self.writer.can_write_eof():
                self.writer.write_eof()
        except (OSError, RuntimeError):
            pass


@dataclass
class Hijack:
    """Take over the connection after `101 UPGRADED` (or `200` for clients that did not ask to upgrade)."""

    run: Callable[[RawConn], Awaitable[None]]
    content_type: str = "application/vnd.docker.raw-stream"


Reply = Union[Response, Stream, Hijack]


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(status, json.dumps(obj).encode(), "application/json", headers or {})


def no_content() -> Response:
    return Response(204, b"", None)


def error_response(status: int, message: str) -> Response:
    return json_response({"message": message}, status)


# ---------------------------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------------------------


class Request:
    def __init__(self, conn: "_Connection", h11req: h11.Request) -> None:
        self._conn = conn
        self.method: str = h11req.method.decode()
        target = h11req.target.decode("latin-1")
        parts = urlsplit(target)
        self.raw_path = unquote(parts.path)
        self.query: dict[str, list[str]] = parse_qs(parts.query, keep_blank_values=True)
        self.headers: dict[str, str] = {k.decode().lower(): v.decode("latin-1") for k, v in h11req.headers}
        self.api_version: str = API_VERSION
        self.path: str = self.raw_path
        self.params: dict[str, str] = {}
        self._body_done = False
        self.peer_cert: dict[str, Any] | None = conn.peer_cert
        self.body_check: BodyCheck | None = None  # set by the App: the one check of JSON bodies (validate.py)

    # query helpers -----------------------------------------------------------------------------
    def q(self, name: str, default: str | None = None) -> str | None:
        vals = self.query.get(name)
        return vals[-1] if vals else default

    def q_all(self, name: str) -> list[str]:
        return self.query.get(name, [])

    def q_bool(self, name: str, default: bool = False) -> bool:
        v = self.q(name)
        if v is None:
            return default
        return v.strip().lower() not in ("", "0", "false", "no")

    def q_int(self, name: str, default: int | None = None) -> int | None:
        v = self.q(name)
        if v is None or v == "":
            return default
        try:
            return int(v)
        except ValueError:
            raise InvalidParameter(f"invalid value for {name}: {v!r}") from None

    def q_json(self, name: str, default: Any = None) -> Any:
        v = self.q(name)
        if not v:
            return default
        try:
            return json.loads(v)
        except ValueError:
            raise InvalidParameter(f"invalid JSON in query parameter {name}") from None

    def version_at_least(self, v: str) -> bool:
        return _vtuple(self.api_version) >= _vtuple(v)

    # body -------------------------------------------------------------------------------------
    async def stream(self) -> AsyncIterator[bytes]:
        """The request body as it arrives (chunked tar uploads are never held whole in memory)."""
        while not self._body_done:
            ev = await self._conn.next_event()
            if isinstance(ev, h11.Data):
                if ev.data:
                    yield bytes(ev.data)
            elif isinstance(ev, h11.EndOfMessage):
                self._body_done = True
            else:
                self._body_done = True
                raise InvalidParameter("connection closed before the request body was complete")

    async def body(self, limit: int = _MAX_JSON_BODY) -> bytes:
        buf = bytearray()
        async for chunk in self.stream():
            buf += chunk
            if len(buf) > limit:
                raise InvalidParameter("request body too large")
        return bytes(buf)

    async def json(self, default: Any = None) -> Any:
        raw = await self.body()
        if not raw.strip():
            return default
        obj = decode_json(raw)
        if self.body_check is not None:
            self.body_check(self.method, self.path, obj)
        return obj

    async def drain(self) -> None:
        async for _ in self.stream():
            pass


Handler = Callable[[Request], Awaitable[Reply]]
BodyCheck = Callable[[str, str, Any], None]  # (method, path without /vX.Y, decoded body); raises EngineError
_Ctx = TypeVar("_Ctx")
# A module-level handler: `async def h(engine, req)`, registered with Router.bind.
Route = tuple[str, str, Callable[[_Ctx, Request], Awaitable[Reply]]]


# ---------------------------------------------------------------------------------------------
# Routing
# ---------------------------------------------------------------------------------------------

_VERSION_PREFIX = re.compile(r"^/v([0-9][0-9.]*)(/.*)$")


class Router:
    """Routes `METHOD /path/{param}` patterns; `{name*}` matches across slashes (image names)."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        rx = "^"
        for part in re.split(r"(\{[a-zA-Z_]+\*?\})", pattern):
            if part.startswith("{"):
                name = part.strip("{}")
                if name.endswith("*"):
                    rx += f"(?P<{name[:-1]}>.+)"
                else:
                    rx += f"(?P<{name}>[^/]+)"
            else:
                rx += re.escape(part)
        self._routes.append((method.upper(), re.compile(rx + "$"), handler))

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            self.add(method, pattern, fn)
            return fn

        return deco

    def bind(self, ctx: _Ctx, routes: Iterable[Route[_Ctx]]) -> "Router":
        """Register module-level handlers `async def h(ctx, req)` with their context (the engine) bound."""
        for method, pattern, fn in routes:
            self.add(method, pattern, functools.partial(fn, ctx))
        return self

    def include(self, other: "Router") -> None:
        self._routes.extend(other._routes)

    def match(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        allowed = False
        lookup = "GET" if method == "HEAD" else method
        for m, rx, h in self._routes:
            mt = rx.match(path)
            if not mt:
                continue
            if m == method or m == lookup:
                return h, mt.groupdict()
            allowed = True
        if allowed:
            raise _MethodNotAllowed()
        raise NotFound("page not found")


class _MethodNotAllowed(EngineError):
    status = 405

    def __init__(self) -> None:
        super().__init__("method not allowed")


# ---------------------------------------------------------------------------------------------
# TLS over memory BIOs
# ---------------------------------------------------------------------------------------------


class TLSStream:
    """Server-side TLS done by hand over a plain TCP stream, standing in for both reader and writer.

    Why not asyncio's SSL transport: it cannot half-close. The docker CLI sends close_notify as soon as
    stdin ends on a hijacked attach/exec stream (Go's CloseWrite) and keeps reading; asyncio then shuts
    the whole connection and the container's output is lost. Here close_notify is just EOF on the read
    side, and we go on writing until we are done.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ctx: ssl.SSLContext) -> None:
        self._reader = reader
        self._writer = writer
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._obj = ctx.wrap_bio(self._in, self._out, server_side=True)
        self._eof = False

    async def handshake(self, timeout: float = 30.0) -> None:
        async def run() -> None:
            while True:
                try:
                    self._obj.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    await self._flush()
                    data = await self._reader.read(_READ_SIZE)
                    if not data:
                        raise ConnectionResetError("client closed during the TLS handshake")
                    self._in.write(data)
                except ssl.SSLError:
                    await self._flush()  # send the alert so the client learns why
                    raise
            await self._flush()

        await asyncio.wait_for(run(), timeout)

    async def _flush(self) -> None:
        data = self._out.read()
        if data:
            self._writer.write(data)
            await self._writer.drain()

    async def read(self, n: int = _READ_SIZE) -> bytes:
        while not self._eof:
            try:
                return self._obj.read(n)
            except ssl.SSLWantReadError:
                await self._flush()  # e.g. TLS 1.3 key updates
                data = await self._reader.read(_READ_SIZE)
                if not data:
                    self._eof = True
                    break
                self._in.write(data)
            except ssl.SSLZeroReturnError:  # close_notify: the client finished sending
                self._eof = True
        return b""

    def write(self, data: bytes) -> None:
        self._obj.write(data)
        out = self._out.read()
        if out:
            self._writer.write(out)

    async def drain(self) -> None:
        await self._writer.drain()

    def can_write_eof(self) -> bool:
        return False

    def write_eof(self) -> None:
        raise RuntimeError("TLS streams close whole")

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "ssl_object":
            return self._obj
        return self._writer.get_extra_info(name, default)

    def close(self) -> None:
        try:
            self._obj.unwrap()
        except ssl.SSLError:
            pass
        try:
            out = self._out.read()
            if out:
                self._writer.write(out)
        except Exception:
            pass
        self._writer.close()


# ---------------------------------------------------------------------------------------------
# Connections
# ---------------------------------------------------------------------------------------------


class _Connection:
    def __init__(self, app: "App", reader: Any, writer: Any) -> None:
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
                    data = await self.reader.read(_READ_SIZE)
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
        except Exception as e:  # a bug: report it as a 500 and keep the traceback in the log
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
        raw = RawConn(self.reader, self.writer, pending)
        try:
            await hj.run(raw)
        except (ConnectionError, OSError):
            pass
        except Exception:
            log.exception("hijacked stream for %s failed", req.raw_path)


# ---------------------------------------------------------------------------------------------
# The application
# ---------------------------------------------------------------------------------------------


class App:
    """Routes requests, strips and checks the `/vX.Y` prefix, and serves listeners."""

    def __init__(self, router: Router, body_check: BodyCheck | None = None) -> None:
        self.router = router
        self.body_check = body_check
        self._servers: list[asyncio.base_events.Server] = []
        self._conns: set[asyncio.Task[None]] = set()

    async def dispatch(self, req: Request) -> Reply:
        m = _VERSION_PREFIX.match(req.raw_path)
        if m:
            version, path = m.group(1), m.group(2)
            if _vtuple(version) < _vtuple(MIN_API_VERSION):
                raise InvalidParameter(
                    f"client version {version} is too old. Minimum supported API version is "
                    f"{MIN_API_VERSION}, please upgrade your client to a newer version"
                )
            if _vtuple(version) > _vtuple(API_VERSION):
                raise InvalidParameter(
                    f"client version {version} is too new. Maximum supported API version is {API_VERSION}"
                )
            req.api_version = version
            req.path = path
        handler, params = self.router.match(req.method, req.path)
        req.params = params
        req.body_check = self.body_check
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
        import os

        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        srv = await asyncio.start_unix_server(self._on_client, path=path, limit=_READ_SIZE)
        os.chmod(path, mode)
        self._servers.append(srv)

    async def listen_tcp(self, host: str, port: int, ssl_ctx: ssl.SSLContext | None) -> None:
        async def on_client(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            await self._on_client(r, w, ssl_ctx)

        srv = await asyncio.start_server(on_client, host=host or None, port=port, limit=_READ_SIZE)
        self._servers.append(srv)

    async def close(self) -> None:
        for s in self._servers:
            s.close()
        for t in list(self._conns):
            t.cancel()
        for s in self._servers:
            try:
                await asyncio.wait_for(s.wait_closed(), 2)
            except (asyncio.TimeoutError, Exception):
                pass


def server_tls_context(cacert: str | None, cert: str, key: str, verify: bool) -> ssl.SSLContext:
    """Mutual TLS like dockerd's --tlsverify: clients must present a certificate signed by the CA."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    if verify:
        if not cacert:
            raise InvalidParameter("--tlsverify needs --tlscacert")
        ctx.load_verify_locations(cacert)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx
