"""HTTP to one registry host: the transport under guest/images/registry.py's client.

Loopback registries (localhost, 127.0.0.0/8, ::1) are spoken to over plain HTTP; others over HTTPS, verified
with the system CAs plus `/etc/docker/certs.d/<host>/ca.crt`; `insecure-registries` (names or CIDRs) try HTTPS
without verification, then plain HTTP. A mirror (`http(s)://host[:port][/path]`) is used with the scheme it
names. Every connection (token servers and blob redirects too) goes through the proxy guest/images/proxy.py
picks: http:// requests in absolute form to the proxy, https:// through a CONNECT tunnel. Connections are kept
alive in a small pool; network errors are worded as Go's, which users search for.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import socket
import ssl
import threading
from typing import BinaryIO
from urllib.parse import urlsplit, urlunsplit

from skiffbox.guest.errors import EngineError, InvalidParameter, SystemError_
from skiffbox.guest.images.proxy import Proxy, ProxyConnectError, ProxySettings

MAX_MANIFEST = 4 << 20
USER_AGENT = "skiff/0.1 (docker-compatible)"
_TIMEOUT = 60.0


class RegistryError(EngineError):
    """An error answered by a registry: `code` is the first Distribution error code (MANIFEST_UNKNOWN…)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = {401: 401, 403: 403, 404: 404, 429: 429}.get(status, 500 if status >= 500 else 400)
        self.http_status = status
        self.code = code


def error_body(body: bytes) -> tuple[str, str]:
    """(code, message) of a Distribution error body (`{"errors": [{"code", "message"}]}`), else its text."""
    try:
        errs = json.loads(body).get("errors") or []
        if errs:
            e = errs[0]
            return str(e.get("code") or ""), str(e.get("message") or "")
    except (ValueError, AttributeError):
        pass
    return "", body[:200].decode("utf-8", "replace").strip()


def is_loopback(host: str) -> bool:
    h = host.rsplit(":", 1)[0] if not host.startswith("[") else host[1:].split("]")[0]
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def is_insecure(host: str, insecure: list[str]) -> bool:
    if host in insecure:
        return True
    h = host.rsplit(":", 1)[0] if not host.startswith("[") else host[1:].split("]")[0]
    if h in insecure:
        return True
    cidrs = [e for e in insecure if "/" in e]
    if not cidrs:
        return False
    try:
        ip = ipaddress.ip_address(h)
    except ValueError:
        try:  # a name: only looked up when CIDRs are configured
            ip = ipaddress.ip_address(socket.gethostbyname(h))
        except (OSError, UnicodeError):
            return False
    for entry in insecure:
        if "/" in entry:
            try:
                if ip in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
        elif entry == h:
            return True
    return False


def dial_error(host: str, e: BaseException) -> str:
    """Go's wording, which users search for: `dial tcp h:5000: connect: connection refused`."""
    if isinstance(e, ConnectionRefusedError):
        return f"dial tcp {host}: connect: connection refused"
    if isinstance(e, socket.gaierror):
        return f"dial tcp: lookup {host.rsplit(':', 1)[0]}: no such host"
    if isinstance(e, (socket.timeout, TimeoutError)):
        return f"dial tcp {host}: i/o timeout"
    return str(e) or type(e).__name__


def net_error(method: str, url: str, host: str, e: BaseException) -> str:
    """`Get "http://h/v2/": dial tcp h: connect: connection refused` (a proxy error names the proxy)."""
    why = str(e) if isinstance(e, ProxyConnectError) else dial_error(host, e)
    return f'{method.capitalize()} "{url}": {why}'


def _proxy_of(conn: http.client.HTTPConnection) -> Proxy | None:
    proxy: Proxy | None = getattr(conn, "skiff_proxy", None)
    return proxy


class Resp:
    """An HTTP response; `read()` streams the body and returns the connection to the pool at the end."""

    def __init__(self, transport: RegistryTransport, key: tuple[str, str], conn: http.client.HTTPConnection,
                 r: http.client.HTTPResponse, url: str) -> None:
        self._transport, self._key, self._conn, self.r, self.url = transport, key, conn, r, url
        self.status = r.status
        self.headers = r.headers
        self._done = False

    def header(self, name: str, default: str = "") -> str:
        return self.r.getheader(name, default) or default

    @property
    def proxy(self) -> Proxy | None:
        """The proxy the answer came through (errors name it: the answer may be the proxy's own)."""
        return _proxy_of(self._conn)

    def read(self, n: int = -1) -> bytes:
        if self._done:
            return b""
        data = self.r.read(n) if n and n > 0 else self.r.read()
        if not data or self.r.isclosed():
            self._release()
        return data

    def read_all(self, limit: int = MAX_MANIFEST) -> bytes:
        data = self.r.read(limit + 1)
        if len(data) > limit:
            self.close()
            raise InvalidParameter("registry response too large")
        self._release()
        return data

    def _release(self) -> None:
        if not self._done:
            self._done = True
            if self.r.isclosed() and not self.r.will_close:
                self._transport.put_conn(self._key, self._conn)
            else:
                self._conn.close()

    def close(self) -> None:
        if not self._done:
            self._done = True
            self._conn.close()


class RegistryTransport:
    """Connections to one registry host (and to the token servers and blob stores it sends us to)."""

    def __init__(self, host: str, insecure: list[str], proxies: ProxySettings, mirror: str | None = None) -> None:
        """`mirror`: a validated mirror URL, used with its scheme and path instead of `host`."""
        self.host = host
        self.prefix = ""  # a mirror's path: the API is at <mirror>/v2/
        self._mirror_scheme: str | None = None
        if mirror:
            u = urlsplit(mirror)
            self.host, self.prefix, self._mirror_scheme = u.netloc, u.path.rstrip("/"), u.scheme
        self.proxies = proxies
        self.insecure = insecure
        self._pool: dict[tuple[str, str], list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._ctx: dict[bool, ssl.SSLContext] = {}
        self._schemes: list[str] | None = None  # picked on first use, in a worker thread (may resolve DNS)
        self._scheme: str | None = None

    @property
    def scheme(self) -> str:
        if self._scheme is None:
            self._schemes = self._pick_schemes()
            self._scheme = self._schemes[0]
        return self._scheme

    @scheme.setter
    def scheme(self, value: str) -> None:
        self._scheme = value

    def can_fall_back(self) -> bool:
        return self.scheme == "https-insecure" and "http" in (self._schemes or [])[1:]

    def _pick_schemes(self) -> list[str]:
        if self._mirror_scheme == "http":
            return ["http"]
        if self._mirror_scheme == "https":  # as moby: the scheme it names; TLS unverified if insecure
            return ["https-insecure" if is_loopback(self.host) or is_insecure(self.host, self.insecure) else "https"]
        if is_loopback(self.host):
            return ["http"]
        if is_insecure(self.host, self.insecure):
            return ["https-insecure", "http"]
        return ["https"]

    def _ssl_context(self, verify: bool) -> ssl.SSLContext:
        """Built once per client and mode (loading the system CAs is not cheap)."""
        ctx = self._ctx.get(verify)
        if ctx is None:
            ctx = self._ctx[verify] = self._make_ssl_context(verify)
        return ctx

    def _make_ssl_context(self, verify: bool) -> ssl.SSLContext:
        if not verify:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        ctx = ssl.create_default_context()
        for base in ("/etc/skiff/certs.d", "/etc/docker/certs.d"):
            d = os.path.join(base, self.host)
            if os.path.isdir(d):
                for f in sorted(os.listdir(d)):
                    if f.endswith(".crt"):
                        ctx.load_verify_locations(os.path.join(d, f))
                    elif f.endswith(".cert") and os.path.exists(os.path.join(d, f[:-5] + ".key")):
                        ctx.load_cert_chain(os.path.join(d, f), os.path.join(d, f[:-5] + ".key"))
        return ctx

    def _new_conn(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        proxy = self.proxies.for_target(scheme, netloc)
        if proxy is None:
            if scheme == "http":
                return http.client.HTTPConnection(netloc, timeout=_TIMEOUT)
            return http.client.HTTPSConnection(netloc, timeout=_TIMEOUT, context=self._ssl_context(scheme == "https"))
        if scheme == "http":  # requests in absolute form to the proxy (see raw)
            conn = http.client.HTTPConnection(proxy.host, proxy.port, timeout=_TIMEOUT)
        else:  # TLS to the registry inside a CONNECT tunnel (certificate checked against the registry's name)
            conn = http.client.HTTPSConnection(proxy.host, proxy.port, timeout=_TIMEOUT,
                                               context=self._ssl_context(scheme == "https"))
            host, _, port = netloc.rpartition(":") if not netloc.endswith("]") else (netloc, "", "")
            if not host or not port.isdigit():
                host, port = netloc, "443"
            conn.set_tunnel(host.strip("[]"), int(port), headers=proxy.auth_headers())
        conn.skiff_proxy = proxy  # type: ignore[attr-defined]  # read back by _proxy_of
        return conn

    @staticmethod
    def _connect(conn: http.client.HTTPConnection) -> None:
        """Open a proxied connection up front, so a dead or refusing proxy is reported as such (Go's text)."""
        proxy = _proxy_of(conn)
        if proxy is None or conn.sock is not None:
            return
        try:
            conn.connect()
        except ssl.SSLError:
            raise
        except OSError as e:
            conn.close()
            msg = str(e)
            if msg.startswith("Tunnel connection failed"):  # the proxy answered CONNECT with an error status
                status = msg.partition(":")[2].strip()
                raise ProxyConnectError(f"proxyconnect tcp: proxy {proxy.addr} refused the CONNECT tunnel: {status}") from None
            raise ProxyConnectError(f"proxyconnect tcp: {dial_error(proxy.addr, e)}") from None

    def _get_conn(self, key: tuple[str, str]) -> http.client.HTTPConnection:
        with self._lock:
            lst = self._pool.get(key)
            if lst:
                return lst.pop()
        return self._new_conn(*key)

    def put_conn(self, key: tuple[str, str], conn: http.client.HTTPConnection) -> None:
        with self._lock:
            self._pool.setdefault(key, []).append(conn)

    def close(self) -> None:
        with self._lock:
            for lst in self._pool.values():
                for c in lst:
                    c.close()
            self._pool.clear()

    def raw(self, method: str, url: str, headers: dict[str, str], body: bytes | BinaryIO | None = None) -> Resp:
        u = urlsplit(url)
        scheme = u.scheme
        if scheme == "https" and self.scheme == "https-insecure" and u.netloc == self.host:
            scheme = "https-insecure"
        key = (scheme, u.netloc)
        path = u.path + (f"?{u.query}" if u.query else "")
        h = {"User-Agent": USER_AGENT, **headers}
        for attempt in range(2):
            conn = self._get_conn(key)
            try:
                self._connect(conn)
                proxy = _proxy_of(conn)
                if proxy is not None and scheme == "http":
                    conn.request(method, f"http://{u.netloc}{path}", body=body, headers={**h, **proxy.auth_headers()})
                else:
                    conn.request(method, path, body=body, headers=h)
                r = conn.getresponse()
                if r.status == 407 and proxy is not None and scheme == "http":  # the proxy's answer, not the registry's
                    r.read()
                    conn.close()
                    raise ProxyConnectError(f"proxy {proxy.addr} refused the request: 407 {r.reason} "
                                            "(check the user and password in the proxy URL)")
                return Resp(self, key, conn, r, url)
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
                conn.close()
                # A pooled keep-alive connection may have been closed by the server (or by a proxy that
                # closes after each request without saying so): retry once on a new one.
                if attempt == 0 and (body is None or isinstance(body, bytes) or hasattr(body, "seek")):
                    if hasattr(body, "seek"):
                        body.seek(0)  # type: ignore[union-attr]
                    continue
                raise SystemError_(f"registry {self.host}: {e}") from None
            except (OSError, http.client.HTTPException):
                conn.close()
                raise
        raise SystemError_(f"registry {self.host}: connection failed")

    def raw_other(self, method: str, url: str, headers: dict[str, str], body: bytes | None = None) -> Resp:
        """A request to another host (token server, blob storage): its network errors name that URL and
        never trigger the registry's HTTPS → HTTP fallback."""
        try:
            return self.raw(method, url, headers, body)
        except ssl.SSLError as e:
            raise SystemError_(f'{method.capitalize()} "{url}": tls: {getattr(e, "reason", None) or e}') from None
        except (OSError, http.client.HTTPException) as e:
            raise SystemError_(net_error(method, url, urlsplit(url).netloc, e)) from None

    def base_url(self) -> str:
        s = "https" if self.scheme.startswith("https") else "http"
        return f"{s}://{self.host}{self.prefix}"

    def as_http(self, url: str) -> str:
        """The same URL over plain HTTP (an insecure registry that does not speak TLS)."""
        return urlunsplit(("http",) + tuple(urlsplit(url))[1:])
