"""The HTTP side of the Docker Engine API as handlers see it: requests, replies, routes.

Handlers are `async def handler(req: Request) -> Reply` registered on a `Router` (module-level handlers
`async def h(ctx, req)` are bound to their context with `Router.bind`). A reply is a `Response` (bytes), a
`Stream` (chunked, each chunk flushed) or a `Hijack` (raw bidirectional stream after `101 UPGRADED`, for
attach and exec). `EngineError`s raised anywhere become `{"message": …}` with Docker's status. The server
that runs them (connections, listeners, TLS) is guest/api/server.py.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, Union
from urllib.parse import parse_qs, unquote, urlsplit

import h11

from skiffbox.guest.api.validate import decode_json, go_parse_int
from skiffbox.guest.errors import EngineError, InvalidParameter, NotFound

MIN_API_VERSION = "1.24"
API_VERSION = "1.50"
SERVER_HEADER = "Docker/skiff-0.1.0 (linux)"  # the Go client reads the OS from "Docker/<v> (<os>)"

READ_SIZE = 256 * 1024  # one socket read
_MAX_JSON_BODY = 64 * 1024 * 1024


def version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.split(".") if p.isdigit())


class ByteReader(Protocol):
    """The read side of a connection: asyncio's StreamReader, or server.py's TLSStream."""

    async def read(self, n: int = -1) -> bytes: ...


class ByteWriter(Protocol):
    """The write side of a connection: asyncio's StreamWriter, or server.py's TLSStream."""

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def can_write_eof(self) -> bool: ...

    def write_eof(self) -> None: ...

    def get_extra_info(self, name: str, default: Any = None) -> Any: ...

    def close(self) -> None: ...


class RequestSource(Protocol):
    """Where a request's body comes from: the server's connection, as h11 events."""

    peer_cert: dict[str, Any] | None

    async def next_event(self) -> Any: ...


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

    def __init__(self, reader: ByteReader, writer: ByteWriter, pending: bytes) -> None:
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
    def __init__(self, conn: RequestSource, h11req: h11.Request) -> None:
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
        """The first value, as Go's `FormValue` (docker-py sends a Dockerfile from outside the context as
        `dockerfile=NAME&dockerfile=CONTENT`, and dockerd reads NAME)."""
        vals = self.query.get(name)
        return vals[0] if vals else default

    def q_all(self, name: str) -> list[str]:
        return self.query.get(name, [])

    def q_bool(self, name: str, default: bool = False) -> bool:
        """As moby's httputils.BoolValueOrDefault: absent is `default`; any value is true but "", "0", "no",
        "false" and "none" (any case, spaces around), so no value is ever refused."""
        v = self.q(name)
        if v is None:
            return default
        return v.strip().lower() not in ("", "0", "no", "false", "none")

    def q_int(self, name: str, default: int | None = None) -> int | None:
        """As strconv.Atoi reads a non-empty value (an empty one is `default`)."""
        v = self.q(name)
        if v is None or v == "":
            return default
        return go_parse_int(v)

    def q_int_or_zero(self, name: str) -> int:
        """As moby's httputils.Int64ValueOrZero (build's memory and CPU sizes): a value strconv cannot read is 0."""
        try:
            return self.q_int(name) or 0
        except InvalidParameter:
            return 0

    def q_json(self, name: str, default: Any = None) -> Any:
        v = self.q(name)
        if not v:
            return default
        try:
            return json.loads(v)
        except ValueError:
            raise InvalidParameter(f"invalid JSON in query parameter {name}") from None

    def version_at_least(self, v: str) -> bool:
        return version_tuple(self.api_version) >= version_tuple(v)

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
QueryCheck = Callable[[str, str, dict[str, list[str]]], None]  # (method, path, query); raises EngineError
_Ctx = TypeVar("_Ctx")
# A module-level handler: `async def h(engine, req)`, registered with Router.bind.
Route = tuple[str, str, Callable[[_Ctx, Request], Awaitable[Reply]]]


# ---------------------------------------------------------------------------------------------
# Routing
# ---------------------------------------------------------------------------------------------


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
            raise MethodNotAllowed()
        raise NotFound("page not found")


class MethodNotAllowed(EngineError):
    status = 405

    def __init__(self) -> None:
        super().__init__("method not allowed")
