"""HTTP/1.1 to the engine over a unix socket, plain TCP or TCP+TLS, plus hijacked streams.

Why not http.client: importing it (and the email package behind it) costs ~40 ms, which alone would
spend most of `skiff ps`'s time budget against the Go client. The engine speaks a narrow HTTP/1.1
(Content-Length, chunked, or read-to-close bodies; `101 UPGRADED` for attach/exec), so a small reader on
a buffered socket is enough, and it gives us the raw socket after an upgrade for free. For the same
reason the plain (unix/TCP) path uses `_socket` and `_json` directly: `socket.py` and `json` pull in
enum, selectors and `re` (~10 ms together); TLS loads `ssl` (and with it `socket`) only when asked for.

API:
    t = Transport(Endpoint(...))
    resp = t.request("GET", "/v1.50/containers/json", query={"all": "1"})
    resp.status, resp.headers (lower-case keys), resp.read(), resp.json(), resp.iter_chunks(), resp.iter_lines()
    conn = t.hijack("POST", path, query, body=b"")     # after 101: conn.reader (buffered), conn.send(), conn.close_write()
    demux(reader) -> iterator of (stream, bytes)      # 8-byte frame headers of non-TTY attach/exec/logs
"""

from __future__ import annotations

import _socket
import os

TYPE_CHECKING = False  # no runtime `typing` import: it costs startup time and annotations are strings
if TYPE_CHECKING:
    import _json
    import ssl
    from collections.abc import Callable, Iterable, Iterator
    from typing import Any

USER_AGENT = f"Skiff-Client/0.1.0 ({'windows' if os.name == 'nt' else os.uname().sysname.lower()})"
_CHUNK = 64 * 1024


class TransportError(Exception):
    """The engine could not be reached or spoke something that is not HTTP."""


class Endpoint:
    """Where the engine is: `unix` (address = socket path) or `tcp` (address = host, port), with optional TLS
    material; `url` is shown in messages ("Cannot connect to the Docker daemon at …")."""

    def __init__(self, scheme: str, address: str, port: int = 0, url: str = "") -> None:
        self.scheme, self.address, self.port, self.url = scheme, address, port, url
        self.tls = False
        self.verify = False
        self.ca: str | None = None
        self.cert: str | None = None
        self.key: str | None = None
        self.server_hostname: str | None = None
        self.unconfigured = False  # docker's default socket, because nothing named an engine

    def host_header(self) -> str:
        # The Go client sends api.moby.localhost over unix sockets; for TCP the real host:port.
        if self.scheme == "unix":
            return "api.moby.localhost"
        return f"{self.address}:{self.port}"


class Response:
    """Status, lower-cased headers and a body read as it arrives. `mode`: length | chunked | close | none."""

    def __init__(self, status: int, reason: str, headers: dict[str, str], conn: _Conn | None, mode: str = "close",
                 left: int = 0, transport: Transport | None = None) -> None:
        self.status, self.reason, self.headers = status, reason, headers
        self._conn, self._mode, self._left = conn, mode, left
        self._done = False
        self._transport = transport

    # ---- body -------------------------------------------------------------------------------
    def read1(self) -> bytes:
        """The next piece of the body as it arrives (b"" at the end)."""
        if self._done or self._conn is None:
            return b""
        f = self._conn.rfile
        if self._mode == "none":
            return self._finish(b"")
        if self._mode == "length":
            if self._left <= 0:
                return self._finish(b"")
            data = f.read1(min(self._left, _CHUNK))
            if not data:
                raise TransportError("connection closed in the middle of a response body")
            self._left -= len(data)
            if self._left <= 0:
                self._finish(b"")
            return data
        if self._mode == "chunked":
            while True:
                if self._left == 0:
                    line = f.readline(1024)
                    if not line:
                        raise TransportError("connection closed in the middle of a chunked body")
                    size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                    if size == 0:
                        while True:  # trailers
                            t = f.readline(4096)
                            if t in (b"\r\n", b"\n", b""):
                                break
                        return self._finish(b"")
                    self._left = size
                data = f.read1(min(self._left, _CHUNK))
                if not data:
                    raise TransportError("connection closed in the middle of a chunk")
                self._left -= len(data)
                if self._left == 0:
                    f.readline(16)  # CRLF after the chunk
                if data:
                    return data
        data = f.read1(_CHUNK)  # read to close
        if not data:
            return self._finish(b"")
        return data

    def _finish(self, data: bytes) -> bytes:
        self._done = True
        conn, self._conn = self._conn, None
        if conn is not None:
            if self._mode != "close" and self.headers.get("connection", "").lower() != "close" and self._transport:
                self._transport._release(conn)
            else:
                conn.close()
        return data

    def iter_chunks(self) -> Iterator[bytes]:
        while True:
            data = self.read1()
            if not data:
                return
            yield data

    def read(self) -> bytes:
        return b"".join(self.iter_chunks())

    def iter_lines(self) -> Iterator[bytes]:
        buf = b""
        for chunk in self.iter_chunks():
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                yield line
        if buf:
            yield buf

    def json(self) -> Any:
        return loads(self.read() or b"null")

    def abort(self) -> None:
        """Stop a body being read in another thread (a followed log, the event stream): shutting the socket down
        wakes a blocked recv there (closing the descriptor would not); that reader then sees the end."""
        conn = self._conn
        if conn is not None and not self._done:
            try:
                conn.sock.shutdown(_socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        if not self._done:
            self._done = True
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()


class _Reader:
    """A read buffer over a socket (plain or TLS): readline / read1, what HTTP parsing needs."""

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> bool:
        try:
            data = self.sock.recv(_CHUNK)
        except TimeoutError:
            raise  # only with a read timeout (Transport.read_timeout): the caller decides what quiet means
        except (OSError, ValueError):
            data = b""
        if not data:
            return False
        self.buf += data
        return True

    def readline(self, limit: int = 65536) -> bytes:
        while True:
            i = self.buf.find(b"\n", 0, limit)
            if i >= 0:
                line, self.buf = self.buf[:i + 1], self.buf[i + 1:]
                return line
            if len(self.buf) >= limit or not self._fill():
                line, self.buf = self.buf[:limit], self.buf[limit:]
                return line

    def read1(self, n: int = _CHUNK) -> bytes:
        if not self.buf and not self._fill():
            return b""
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def close(self) -> None:
        self.buf = b""


class _Conn:
    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.rfile = _Reader(sock)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        try:
            self.rfile.close()
        finally:
            self.sock.close()


class Hijacked:
    """The raw stream after `101 UPGRADED`: read from `reader` (already-buffered bytes come first)."""

    def __init__(self, conn: _Conn, content_type: str, tls: bool = False) -> None:
        self._conn = conn
        self._tls = tls
        self.sock = conn.sock
        self.reader = conn.rfile
        self.content_type = content_type
        self._write_closed = False

    def read1(self, n: int = _CHUNK) -> bytes:
        return self.reader.read1(n)

    def send(self, data: bytes) -> None:
        self._conn.send(data)

    def close_write(self) -> None:
        """Signal stdin EOF: a TCP half-close, or over TLS a close_notify alert (what Go's tls.Conn.CloseWrite
        sends); reading goes on until the engine closes its side."""
        if self._write_closed:
            return
        self._write_closed = True
        try:
            if isinstance(self.sock, TLSStream):
                self.sock.close_write()
            else:
                self.sock.shutdown(_socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        self._conn.close()


_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")


def quote(s: str, safe: str = "") -> str:
    """Percent-encode like urllib.parse.quote (which would pull in urllib and ipaddress at startup)."""
    ok = _SAFE | frozenset(safe.encode())
    return "".join(chr(b) if b in ok else f"%{b:02X}" for b in str(s).encode("utf-8"))


def encode_query(query: dict[str, Any] | Iterable[tuple[str, Any]] | None) -> str:
    if not query:
        return ""
    items = query.items() if isinstance(query, dict) else query
    pairs = [f"{quote(k)}={quote(v, '/:')}" for k, v in items if v is not None]
    return "?" + "&".join(pairs) if pairs else ""


class Transport:
    """`timeout` bounds connecting; `read_timeout` every read after it (None: streams may stay quiet for as long
    as they like, as `logs -f` and `events` need; a read that times out raises TimeoutError). `ssl_context`: a
    ready client context (e.g. one shared by many machines) instead of one built from the endpoint's files."""

    def __init__(self, endpoint: Endpoint, timeout: float | None = None, read_timeout: float | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.read_timeout = read_timeout
        self._idle: list[_Conn] = []
        self._ssl_ctx = ssl_context

    # ---- connections ---------------------------------------------------------------------------
    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl_ctx is None:
            import ssl

            ep = self.endpoint
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            if ep.verify:
                if ep.ca:
                    ctx.load_verify_locations(ep.ca)
                else:
                    ctx.load_default_certs()
                ctx.check_hostname = True
                ctx.verify_mode = ssl.CERT_REQUIRED
            else:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            if ep.cert and ep.key:
                ctx.load_cert_chain(ep.cert, ep.key)
            self._ssl_ctx = ctx
        return self._ssl_ctx

    def connect(self, half_close: bool = False) -> _Conn:
        ep = self.endpoint
        s: _socket.socket | TLSStream
        try:
            if ep.scheme == "unix":
                if not hasattr(_socket, "AF_UNIX"):  # Windows builds of Python have none
                    raise TransportError(f"{ep.url}: this Python has no unix sockets; run `machine env NAME` "
                                         "(or eval it) or use `skiff --machine NAME` to reach an engine over TCP")
                s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
                s.settimeout(self.timeout)
                s.connect(ep.address)
            elif ep.tls:
                import socket

                s = socket.create_connection((ep.address, ep.port), timeout=self.timeout)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                name = ep.server_hostname or ep.address
                if half_close:
                    s = TLSStream(s, self._ssl_context(), name)
                else:
                    s = self._ssl_context().wrap_socket(s, server_hostname=name)
            else:
                s = _tcp_connect(ep.address, ep.port, self.timeout)
        except OSError as e:
            if type(e).__module__ == "ssl" or type(e).__name__.startswith("SSL"):
                # The engine answered but TLS failed (unknown CA, no client certificate, …): say why.
                raise TransportError(f"error during connect: {ep.url}: tls: {getattr(e, 'reason', None) or e}") from None
            raise ConnectFailed(ep, e) from None
        s.settimeout(self.read_timeout)
        return _Conn(s)

    def _release(self, conn: _Conn) -> None:
        if len(self._idle) < 4:
            self._idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()

    # ---- requests ------------------------------------------------------------------------------
    def _head(self, method: str, path: str, headers: dict[str, str], body_len: int | None) -> bytes:
        h = {"Host": self.endpoint.host_header(), "User-Agent": USER_AGENT}
        h.update(headers)
        if body_len is None:
            h["Transfer-Encoding"] = "chunked"
        elif body_len or method in ("POST", "PUT"):
            h["Content-Length"] = str(body_len)
        lines = [f"{method} {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in h.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _send(self, conn: _Conn, method: str, path: str, headers: dict[str, str],
              body: bytes | Iterable[bytes] | None) -> None:
        if body is None or isinstance(body, (bytes, bytearray)):
            data = bytes(body or b"")
            conn.send(self._head(method, path, headers, len(data)) + data)
            return
        conn.send(self._head(method, path, headers, None))
        for chunk in body:
            if chunk:
                conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        conn.send(b"0\r\n\r\n")

    def request(self, method: str, path: str, query: Any = None, headers: dict[str, str] | None = None,
                body: bytes | Iterable[bytes] | None = None) -> Response:
        full = path + encode_query(query)
        headers = dict(headers or {})
        reusable = isinstance(body, (bytes, bytearray)) or body is None
        # A kept-alive connection may have been closed by the server meanwhile: retry once on a fresh one.
        while self._idle and reusable:
            conn = self._idle.pop()
            try:
                self._send(conn, method, full, headers, body)
                return self._read_response(conn, method)
            except TimeoutError:  # read_timeout passed: the engine is slow, not the connection stale
                conn.close()
                raise
            except (OSError, TransportError):
                conn.close()
        conn = self.connect()
        try:
            self._send(conn, method, full, headers, body)
            return self._read_response(conn, method)
        except TimeoutError:
            conn.close()
            raise
        except OSError as e:
            conn.close()
            raise TransportError(f"error during connect: {e}") from None
        except BaseException:
            conn.close()
            raise

    def _read_status(self, conn: _Conn) -> tuple[int, str, dict[str, str]]:
        line = conn.rfile.readline(65537)
        if not line:
            raise TransportError("the engine closed the connection without answering")
        parts = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise TransportError(f"malformed HTTP response {line[:80]!r}")
        status = int(parts[1])
        reason = parts[2] if len(parts) > 2 else ""
        headers: dict[str, str] = {}
        while True:
            h = conn.rfile.readline(65537)
            if h in (b"\r\n", b"\n"):
                break
            if not h:
                raise TransportError("connection closed in the middle of response headers")
            k, _, v = h.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
        return status, reason, headers

    def _read_response(self, conn: _Conn, method: str) -> Response:
        status, reason, headers = self._read_status(conn)
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            mode, left = "none", 0
        else:
            mode, left = _body_framing(headers)
        resp = Response(status, reason, headers, conn, mode, left, transport=self)
        if mode == "none" or (mode == "length" and left == 0):
            resp._finish(b"")
        return resp

    def hijack(self, method: str, path: str, query: Any = None, headers: dict[str, str] | None = None,
               body: bytes = b"") -> Hijacked | Response:
        """Ask for `101 UPGRADED`; return the raw stream, or the error `Response` if the engine refused.
        Over TLS the connection is a TLSStream, which can half-close (an SSLSocket cannot)."""
        conn = self.connect(half_close=True)
        h = {"Connection": "Upgrade", "Upgrade": "tcp"}
        h.update(headers or {})
        try:
            self._send(conn, method, path + encode_query(query), h, body)
            status, reason, rh = self._read_status(conn)
        except BaseException:
            conn.close()
            raise
        if status == 101 or (status == 200 and "content-length" not in rh and "transfer-encoding" not in rh):
            return Hijacked(conn, rh.get("content-type", ""), self.endpoint.tls)
        return Response(status, reason, rh, conn, *_body_framing(rh))


def _body_framing(headers: dict[str, str]) -> tuple[str, int]:
    """How a response body that may have one is delimited: (mode, bytes left) for `Response`.
    Chunked wins over Content-Length (RFC 9112 6.3); with neither, the body runs to the close."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return "chunked", 0
    if "content-length" in headers:
        return "length", int(headers["content-length"])
    return "close", 0


class TLSStream:
    """TLS over a socket through memory BIOs, so that the write side can be closed with a close_notify alert
    while reading continues (ssl.SSLSocket can only shut TLS down both ways). Thread-safe for one reader
    and one writer, as a hijacked stream needs: stdin is copied in a thread while output is read."""

    def __init__(self, sock: Any, ctx: ssl.SSLContext, server_hostname: str) -> None:
        import ssl
        import threading

        self._ssl = ssl
        self.sock = sock
        self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._obj = ctx.wrap_bio(self._in, self._out, server_hostname=server_hostname)
        self._lock = threading.Lock()  # the SSL object
        self._send_lock = threading.Lock()  # keeps encrypted records in order on the wire
        while True:
            try:
                self._obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                if not self._feed():
                    raise ssl.SSLEOFError("EOF during the TLS handshake")
        self._flush()

    def _flush(self) -> None:
        with self._send_lock:
            with self._lock:
                data = self._out.read()
            if data:
                self.sock.sendall(data)

    def _feed(self) -> bool:
        data = self.sock.recv(65536)
        with self._lock:
            if data:
                self._in.write(data)
            else:
                self._in.write_eof()
        return bool(data)

    def settimeout(self, t: float | None) -> None:
        self.sock.settimeout(t)

    def recv(self, n: int) -> bytes:
        ssl = self._ssl
        while True:
            with self._lock:
                try:
                    return self._obj.read(n)
                except ssl.SSLWantReadError:
                    pass
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    return b""
            self._flush()  # e.g. a TLS 1.3 key update the read produced
            if not self._feed():
                with self._lock:
                    try:
                        return self._obj.read(n)
                    except ssl.SSLError:
                        return b""

    def sendall(self, data: bytes) -> None:
        with self._send_lock:
            with self._lock:
                self._obj.write(data)
                out = self._out.read()
            self.sock.sendall(out)

    def close_write(self) -> None:
        ssl = self._ssl
        with self._send_lock:
            with self._lock:
                try:
                    self._obj.unwrap()  # sends close_notify; the peer's arrives later
                except (ssl.SSLWantReadError, ssl.SSLError):
                    pass
                out = self._out.read()
            if out:
                self.sock.sendall(out)

    def shutdown(self, how: int) -> None:
        self.sock.shutdown(how)

    def close(self) -> None:
        self.sock.close()


def _tcp_connect(host: str, port: int, timeout: float | None) -> Any:
    """socket.create_connection, on `_socket`: try each address getaddrinfo gives."""
    err: OSError | None = None
    for family, type_, proto, _, addr in _socket.getaddrinfo(host, port, 0, _socket.SOCK_STREAM):
        s = _socket.socket(family, type_, proto)
        try:
            s.settimeout(timeout)
            s.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
            s.connect(addr)
            return s
        except OSError as e:
            err = e
            s.close()
    raise err or OSError(f"no address for {host}")


class _Ctx:
    # What _json.make_scanner reads from a JSONDecoder; plain types select its C fast paths.
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant: Callable[[str], float] | None = None
    memo: dict[str, str] = {}


_scanner: _json.make_scanner | None = None


def loads(data: bytes | str) -> Any:
    """json.loads without importing `json` (whose decoder compiles regexes with `re` at import)."""
    global _scanner
    text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
    try:
        if _scanner is None:
            import _json

            _Ctx.parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}.__getitem__
            # typeshed types the context as make_scanner; it reads the JSONDecoder attributes _Ctx has
            _scanner = _json.make_scanner(_Ctx)  # type: ignore[arg-type]
        i = len(text) - len(text.lstrip())
        obj, end = _scanner(text, i)
        if text[end:].strip():
            raise ValueError("extra data")
        return obj
    except (ImportError, StopIteration, ValueError):
        import json  # the full decoder gives the proper error (or handles what the fast path did not)

        return json.loads(text)


class ConnectFailed(TransportError):
    def __init__(self, endpoint: Endpoint, err: OSError) -> None:
        self.endpoint = endpoint
        self.err = err
        super().__init__(f"Cannot connect to the Docker daemon at {endpoint.url}. Is the docker daemon running?")
