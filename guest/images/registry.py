"""A Distribution v2 / OCI registry client (blocking; the image service runs it in worker threads).

* Transport: loopback registries (localhost, 127.0.0.0/8, ::1) over plain HTTP; others over HTTPS, verified
  with the system CAs plus `/etc/docker/certs.d/<host>/ca.crt`; `insecure-registries` (names or CIDRs) try
  HTTPS without verification, then plain HTTP. A mirror (`http(s)://host[:port][/path]`) is used with the
  scheme it names. Every connection (token servers and blob redirects too) goes through the proxy
  guest/images/proxy.py picks: http:// requests in absolute form to the proxy, https:// through a
  CONNECT tunnel.
* Auth: whatever the registry asks for in its 401 challenge: Bearer tokens from the realm (anonymous, with
  Basic credentials, an identity/refresh token, or a registry token as is) or Basic on every request.
  A later 401 (expired token, insufficient scope) fetches a new token once.
* Manifests are asked for with every Accept type we handle; digests are verified; blob GETs follow
  redirects (without the Authorization header when the host changes) and resume with Range after a
  broken connection.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import ipaddress
import json
import logging
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

from skiffbox.guest.errors import EngineError, InvalidParameter, SystemError_, Unauthorized
from skiffbox.guest.images.proxy import Proxy, ProxyConnectError, ProxySettings

log = logging.getLogger("skiffd.registry")

MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MT_DOCKER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MT_OCI_LAYER_GZ = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json", "application/vnd.docker.distribution.manifest.v1+prettyjws")
INDEX_TYPES = (MT_OCI_INDEX, MT_DOCKER_LIST)
MANIFEST_TYPES = (MT_OCI_MANIFEST, MT_DOCKER_MANIFEST)
ACCEPT = ", ".join([MT_OCI_INDEX, MT_DOCKER_LIST, MT_OCI_MANIFEST, MT_DOCKER_MANIFEST])

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


@dataclass
class AuthConfig:
    username: str = ""
    password: str = ""
    identitytoken: str = ""
    registrytoken: str = ""
    serveraddress: str = ""

    @classmethod
    def from_header(cls, value: str | None) -> "AuthConfig | None":
        """X-Registry-Auth: base64url(JSON); the CLI sends `e30=` ({}) when it has no credentials."""
        if not value:
            return None
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            j = json.loads(raw or b"{}")
        except (ValueError, TypeError):
            try:
                j = json.loads(base64.b64decode(value + "=" * (-len(value) % 4)))
            except (ValueError, TypeError):
                raise InvalidParameter("invalid X-Registry-Auth header: not base64url-encoded JSON") from None
        return cls.from_dict(j)

    @classmethod
    def from_dict(cls, j: Any) -> "AuthConfig | None":
        if not isinstance(j, dict):
            return None
        a = cls(str(j.get("username") or ""), str(j.get("password") or ""), str(j.get("identitytoken") or ""),
                str(j.get("registrytoken") or ""), str(j.get("serveraddress") or ""))
        if j.get("auth") and not a.username:
            try:
                u, _, p = base64.b64decode(j["auth"]).decode().partition(":")
                a.username, a.password = u, p
            except (ValueError, UnicodeDecodeError):
                pass
        if not (a.username or a.identitytoken or a.registrytoken):
            return None
        return a


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


def _dial_error(host: str, e: BaseException) -> str:
    """Go's wording, which users search for: `dial tcp h:5000: connect: connection refused`."""
    if isinstance(e, ConnectionRefusedError):
        return f"dial tcp {host}: connect: connection refused"
    if isinstance(e, socket.gaierror):
        return f"dial tcp: lookup {host.rsplit(':', 1)[0]}: no such host"
    if isinstance(e, (socket.timeout, TimeoutError)):
        return f"dial tcp {host}: i/o timeout"
    return str(e) or type(e).__name__


def _net_error(method: str, url: str, host: str, e: BaseException) -> str:
    """`Get "http://h/v2/": dial tcp h: connect: connection refused` (a proxy error names the proxy)."""
    why = str(e) if isinstance(e, ProxyConnectError) else _dial_error(host, e)
    return f'{method.capitalize()} "{url}": {why}'


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    params = {k.lower(): v for k, v in re.findall(r'(\w+)="([^"]*)"', rest)}
    return scheme.lower(), params


def _errors(body: bytes) -> tuple[str, str]:
    try:
        errs = json.loads(body).get("errors") or []
        if errs:
            e = errs[0]
            return str(e.get("code") or ""), str(e.get("message") or "")
    except (ValueError, AttributeError):
        pass
    return "", body[:200].decode("utf-8", "replace").strip()


class Resp:
    """An HTTP response; `read()` streams the body and returns the connection to the pool at the end."""

    def __init__(self, client: "RegistryClient", key: tuple[str, str], conn: http.client.HTTPConnection,
                 r: http.client.HTTPResponse, url: str) -> None:
        self._client, self._key, self._conn, self.r, self.url = client, key, conn, r, url
        self.status = r.status
        self.headers = r.headers
        self._done = False

    def header(self, name: str, default: str = "") -> str:
        return self.r.getheader(name, default) or default

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
                self._client._put_conn(self._key, self._conn)
            else:
                self._conn.close()

    def close(self) -> None:
        if not self._done:
            self._done = True
            self._conn.close()


@dataclass
class _Token:
    value: str
    expires: float


class RegistryClient:
    """One registry host, one repository (plus extra scopes, e.g. a mount source when pushing)."""

    def __init__(self, domain: str, repo: str, auth: AuthConfig | None = None, insecure: list[str] | None = None,
                 push: bool = False, endpoint: str | None = None, mirror: str | None = None,
                 proxies: ProxySettings | None = None) -> None:
        """`endpoint` is the host to talk to for `domain` (registry-1.docker.io for docker.io); `mirror` a
        validated mirror URL used instead of it; `proxies` default to the daemon's (its environment)."""
        self.domain = domain
        self.host = endpoint or domain
        self._prefix = ""  # a mirror's path: the API is at <mirror>/v2/
        self._mirror_scheme: str | None = None
        if mirror:
            u = urlsplit(mirror)
            self.host, self._prefix, self._mirror_scheme = u.netloc, u.path.rstrip("/"), u.scheme
        self.proxies = proxies if proxies is not None else ProxySettings.from_env()
        self.repo = repo
        self.auth = auth
        self.push = push
        self.insecure = list(insecure or [])
        self._pool: dict[tuple[str, str], list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._challenge: tuple[str, dict[str, str]] | None = None
        self._tokens: dict[str, _Token] = {}
        self._ctx: dict[bool, ssl.SSLContext] = {}
        self._schemes: list[str] | None = None  # picked on first use, in a worker thread (may resolve DNS)
        self._scheme: str | None = None

    # -- transport -------------------------------------------------------------------------------
    @property
    def scheme(self) -> str:
        if self._scheme is None:
            self._schemes = self._pick_schemes()
            self._scheme = self._schemes[0]
        return self._scheme

    @scheme.setter
    def scheme(self, value: str) -> None:
        self._scheme = value

    def _can_fall_back(self) -> bool:
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
        import os

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
        if scheme == "http":  # requests in absolute form to the proxy (see _raw)
            conn = http.client.HTTPConnection(proxy.host, proxy.port, timeout=_TIMEOUT)
        else:  # TLS to the registry inside a CONNECT tunnel (certificate checked against the registry's name)
            conn = http.client.HTTPSConnection(proxy.host, proxy.port, timeout=_TIMEOUT,
                                               context=self._ssl_context(scheme == "https"))
            host, _, port = netloc.rpartition(":") if not netloc.endswith("]") else (netloc, "", "")
            if not host or not port.isdigit():
                host, port = netloc, "443"
            conn.set_tunnel(host.strip("[]"), int(port), headers=proxy.auth_headers())
        conn.skiff_proxy = proxy  # type: ignore[attr-defined]
        return conn

    @staticmethod
    def _connect(conn: http.client.HTTPConnection) -> None:
        """Open a proxied connection up front, so a dead or refusing proxy is reported as such (Go's text)."""
        proxy: Proxy | None = getattr(conn, "skiff_proxy", None)
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
            raise ProxyConnectError(f"proxyconnect tcp: {_dial_error(proxy.addr, e)}") from None

    def _get_conn(self, key: tuple[str, str]) -> http.client.HTTPConnection:
        with self._lock:
            lst = self._pool.get(key)
            if lst:
                return lst.pop()
        return self._new_conn(*key)

    def _put_conn(self, key: tuple[str, str], conn: http.client.HTTPConnection) -> None:
        with self._lock:
            self._pool.setdefault(key, []).append(conn)

    def close(self) -> None:
        with self._lock:
            for lst in self._pool.values():
                for c in lst:
                    c.close()
            self._pool.clear()

    def _raw(self, method: str, url: str, headers: dict[str, str], body: bytes | BinaryIO | None = None) -> Resp:
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
                proxy: Proxy | None = getattr(conn, "skiff_proxy", None)
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

    def _raw_other(self, method: str, url: str, headers: dict[str, str], body: bytes | None = None) -> Resp:
        """A request to another host (token server, blob storage): its network errors name that URL and
        never trigger the registry's HTTPS → HTTP fallback."""
        try:
            return self._raw(method, url, headers, body)
        except ssl.SSLError as e:
            raise SystemError_(f'{method.capitalize()} "{url}": tls: {getattr(e, "reason", None) or e}') from None
        except (OSError, http.client.HTTPException) as e:
            raise SystemError_(_net_error(method, url, urlsplit(url).netloc, e)) from None

    def base_url(self) -> str:
        s = "https" if self.scheme.startswith("https") else "http"
        return f"{s}://{self.host}{self._prefix}"

    def _as_http(self, url: str) -> str:
        """The same URL over plain HTTP (an insecure registry that does not speak TLS)."""
        return urlunsplit(("http",) + tuple(urlsplit(url))[1:])

    # -- auth ----------------------------------------------------------------------------------
    def _scope(self, extra: list[str] | None) -> list[str]:
        scopes = [f"repository:{self.repo}:{'pull,push' if self.push else 'pull'}"] if self.repo else []
        return scopes + list(extra or [])

    def _auth_header(self, extra_scopes: list[str] | None, force_new: bool = False) -> dict[str, str]:
        if self._challenge is None:
            return {}
        kind, params = self._challenge
        if kind == "basic":
            if self.auth and self.auth.username:
                tok = base64.b64encode(f"{self.auth.username}:{self.auth.password}".encode()).decode()
                return {"Authorization": f"Basic {tok}"}
            return {}
        if kind != "bearer":
            return {}
        if self.auth and self.auth.registrytoken:
            return {"Authorization": f"Bearer {self.auth.registrytoken}"}
        scopes = self._scope(extra_scopes)
        key = " ".join(scopes)
        t = self._tokens.get(key)
        if t is None or force_new or t.expires < time.time():
            t = self._fetch_token(params, scopes)
            self._tokens[key] = t
        return {"Authorization": f"Bearer {t.value}"}

    def _fetch_token(self, params: dict[str, str], scopes: list[str]) -> _Token:
        realm = params.get("realm")
        if not realm:
            raise Unauthorized(f"registry {self.host} asked for a token without a realm")
        service = params.get("service", "")
        headers: dict[str, str] = {}
        if self.auth and self.auth.identitytoken:
            form = urlencode({"grant_type": "refresh_token", "refresh_token": self.auth.identitytoken,
                              "service": service, "scope": " ".join(scopes), "client_id": "docker"}).encode()
            r = self._raw_other("POST", realm, {"Content-Type": "application/x-www-form-urlencoded"}, form)
        else:
            q: list[tuple[str, str]] = [("service", service)] if service else []
            q += [("scope", s) for s in scopes]
            if self.auth and self.auth.username:
                q += [("account", self.auth.username), ("client_id", "docker"), ("offline_token", "true")]
                tok = base64.b64encode(f"{self.auth.username}:{self.auth.password}".encode()).decode()
                headers["Authorization"] = f"Basic {tok}"
            sep = "&" if "?" in realm else "?"
            r = self._raw_other("GET", realm + sep + urlencode(q), headers)
        body = r.read_all()
        if r.status != 200:
            code, msg = _errors(body)
            if r.status in (401, 403):
                # Not a 401 to the client: the docker CLI would then prompt for a password on stdin.
                try:
                    msg = json.loads(body).get("details") or msg
                except (ValueError, AttributeError):
                    pass
                raise RegistryError(r.status, "UNAUTHORIZED", msg or "authentication required")
            raise SystemError_(f"token server {realm} answered {r.status}: {msg}")
        try:
            j = json.loads(body)
        except ValueError:
            raise SystemError_(f"token server {realm} sent invalid JSON") from None
        value = j.get("token") or j.get("access_token")
        if not value:
            raise SystemError_(f"token server {realm} sent no token")
        ttl = int(j.get("expires_in") or 60)
        return _Token(value, time.time() + max(ttl - 5, 10))

    def request(self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes | BinaryIO | None = None,
                extra_scopes: list[str] | None = None, follow: bool = True) -> Resp:
        """A registry request with auth (challenge on first 401, one retry) and redirects for GET/HEAD."""
        url = path if "://" in path else self.base_url() + path
        hdrs = dict(headers or {})
        retried = False
        https_proxy_error: str | None = None  # a proxy refusing the HTTPS attempt of an insecure registry
        while True:
            try:
                r = self._raw(method, url, {**hdrs, **self._auth_header(extra_scopes, force_new=retried)}, body)
            except ssl.SSLError as e:
                if self._can_fall_back():
                    self.scheme = "http"
                    url = self._as_http(url)
                    continue
                if "WRONG_VERSION_NUMBER" in str(e):
                    why = "http: server gave HTTP response to HTTPS client"
                elif isinstance(e, ssl.SSLCertVerificationError):  # Go: tls: failed to verify certificate: x509: …
                    why = f"tls: failed to verify certificate: {e.verify_message or e.reason}"
                else:
                    why = f"tls: {getattr(e, 'reason', None) or e}"
                raise SystemError_(f'{method.capitalize()} "{url}": {why}') from None
            except (OSError, http.client.HTTPException) as e:
                if self._can_fall_back():
                    if isinstance(e, ProxyConnectError):
                        https_proxy_error = _net_error(method, url, self.host, e)
                    self.scheme = "http"
                    url = self._as_http(url)
                    continue
                # Plain HTTP failed too: the proxy's answer to the HTTPS attempt says more.
                raise SystemError_(https_proxy_error or _net_error(method, url, self.host, e)) from None
            if r.status == 401 and not retried:
                challenge = r.header("WWW-Authenticate")
                r.read_all()
                if not challenge:
                    return r
                self._challenge = _parse_challenge(challenge)
                retried = True
                if hasattr(body, "seek"):
                    body.seek(0)  # type: ignore[union-attr]
                continue
            if follow and method in ("GET", "HEAD") and r.status in (301, 302, 303, 307, 308):
                loc = r.header("Location")
                r.read_all()
                return self._follow(method, urljoin(url, loc), hdrs)
            return r

    def _follow(self, method: str, url: str, headers: dict[str, str], hops: int = 0) -> Resp:
        """Redirects (CDNs, object stores): keep Authorization only on the registry's own host."""
        if hops > 5:
            raise SystemError_(f"registry {self.host}: too many redirects")
        same = urlsplit(url).netloc == self.host
        h = {**headers, **(self._auth_header(None) if same else {})}
        r = self._raw_other(method, url, h)
        if r.status in (301, 302, 303, 307, 308):
            loc = r.header("Location")
            r.read_all()
            return self._follow(method, urljoin(url, loc), headers, hops + 1)
        return r

    def _fail(self, r: Resp, what: str) -> RegistryError:
        try:
            body = r.read_all(1 << 20)
        except EngineError:
            body = b""
        code, msg = _errors(body)
        if not code:
            code = {401: "UNAUTHORIZED", 403: "DENIED", 404: "NOT_FOUND", 429: "TOOMANYREQUESTS"}.get(r.status, "UNKNOWN")
            if "html" in r.header("Content-Type"):
                msg = ""  # an error page (often the proxy's own): the status says more than its markup
            msg = msg or f"{what}: HTTP {r.status} {r.r.reason}".rstrip()
            proxy: Proxy | None = getattr(r._conn, "skiff_proxy", None)
            if proxy is not None:
                msg += f" (through proxy {proxy.addr})"
        return RegistryError(r.status, code, msg)

    # -- operations ----
    def login(self) -> None:
        """`docker login`: GET /v2/ with the credentials (through the token server if there is one)."""
        try:
            r = self.request("GET", "/v2/")
        except RegistryError as e:
            raise Unauthorized(f"login attempt to {self.base_url()}/v2/ failed: unauthorized: {e.message}") from None
        r.read_all()
        if r.status == 401:
            raise Unauthorized(f"login attempt to {self.base_url()}/v2/ failed with status: 401 Unauthorized")
        if r.status != 200:
            raise SystemError_(f"login attempt to {self.base_url()}/v2/ failed with status: {r.status}")

    def get_manifest(self, ref: str) -> tuple[bytes, str, str]:
        """(bytes, media type, digest) of a tag or digest; the digest is checked against the bytes."""
        r = self.request("GET", f"/v2/{self.repo}/manifests/{ref}", {"Accept": ACCEPT})
        if r.status != 200:
            raise self._fail(r, "manifest")
        body = r.read_all(MAX_MANIFEST)
        mt = (r.header("Content-Type") or "").split(";")[0].strip()
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if ref.startswith("sha256:") and digest != ref:
            raise InvalidParameter(f"manifest verification failed for digest {ref}")
        hdr = r.header("Docker-Content-Digest")
        if hdr and hdr.startswith("sha256:") and hdr != digest:
            raise InvalidParameter(f"manifest verification failed for digest {hdr}")
        if not mt or mt in ("application/json", "text/plain"):
            try:
                mt = json.loads(body).get("mediaType") or mt
            except (ValueError, AttributeError):
                pass
        return body, mt, digest

    def list_tags(self) -> list[str]:
        """All tags of the repository (following `Link` pagination)."""
        tags: list[str] = []
        path = f"/v2/{self.repo}/tags/list?n=1000"
        for _ in range(100):
            r = self.request("GET", path)
            if r.status != 200:
                raise self._fail(r, "tags")
            tags += list(json.loads(r.read_all()).get("tags") or [])
            link = r.header("Link")
            m = re.match(r"<([^>]+)>", link or "")
            if not m:
                break
            path = m.group(1)
        return tags

    def head_manifest(self, ref: str) -> str | None:
        r = self.request("HEAD", f"/v2/{self.repo}/manifests/{ref}", {"Accept": ACCEPT})
        r.read_all()
        if r.status != 200:
            return None
        return r.header("Docker-Content-Digest") or None

    def open_blob(self, digest: str, offset: int = 0) -> tuple[Resp, int]:
        """A streaming GET of a blob from `offset`; returns the response and the blob's total size (or -1)."""
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        r = self.request("GET", f"/v2/{self.repo}/blobs/{digest}", headers)
        if r.status not in (200, 206):
            raise self._fail(r, f"blob {digest}")
        total = -1
        cr = r.header("Content-Range")
        if r.status == 206 and "/" in cr:
            try:
                total = int(cr.rsplit("/", 1)[1])
            except ValueError:
                pass
        elif r.header("Content-Length"):
            total = int(r.header("Content-Length")) + (offset if r.status == 206 else 0)
        if offset and r.status == 200:  # no Range support: skip what we already have
            left = offset
            while left:
                b = r.read(min(left, 1 << 20))
                if not b:
                    raise SystemError_(f"blob {digest} ended early")
                left -= len(b)
        return r, total

    def blob_exists(self, digest: str) -> int | None:
        r = self.request("HEAD", f"/v2/{self.repo}/blobs/{digest}")
        r.read_all()
        if r.status == 200:
            return int(r.header("Content-Length") or 0)
        if r.status == 404:
            return None
        raise RegistryError(r.status, "UNKNOWN", f"HEAD blob {digest}: HTTP {r.status}")

    def mount_blob(self, digest: str, from_repo: str) -> bool:
        q = urlencode({"mount": digest, "from": from_repo})
        r = self.request("POST", f"/v2/{self.repo}/blobs/uploads/?{q}", {"Content-Length": "0"}, b"",
                         extra_scopes=[f"repository:{from_repo}:pull"])
        r.read_all()
        if r.status == 201:
            return True
        if r.status == 202:  # mount refused, upload started: cancel it
            loc = r.header("Location")
            if loc:
                self.request("DELETE", urljoin(self.base_url() + "/", loc)).read_all()
            return False
        return False

    def upload_blob(self, digest: str, f: BinaryIO, size: int) -> None:
        r = self.request("POST", f"/v2/{self.repo}/blobs/uploads/", {"Content-Length": "0"}, b"")
        r.read_all()
        if r.status != 202:
            raise self._fail(r, "blob upload")
        loc = urljoin(self.base_url() + "/", r.header("Location"))
        sep = "&" if "?" in loc else "?"
        f.seek(0)
        r = self.request("PUT", f"{loc}{sep}digest={digest}",
                         {"Content-Type": "application/octet-stream", "Content-Length": str(size)}, f)
        if r.status != 201:
            raise self._fail(r, "blob upload")
        r.read_all()

    def put_manifest(self, ref: str, body: bytes, media_type: str) -> str:
        r = self.request("PUT", f"/v2/{self.repo}/manifests/{ref}", {"Content-Type": media_type}, body)
        if r.status not in (200, 201):
            raise self._fail(r, "manifest upload")
        r.read_all()
        return "sha256:" + hashlib.sha256(body).hexdigest()


class BlobReader:
    """A blob as one continuous stream; a broken connection is resumed with `Range` (a few times)."""

    def __init__(self, client: RegistryClient, digest: str, retries: int = 3) -> None:
        self.client = client
        self.digest = digest
        self.offset = 0
        self.retries = retries
        self.resp, self.total = client.open_blob(digest)

    def read(self, n: int = -1) -> bytes:
        while True:
            try:
                data = self.resp.read(n if n and n > 0 else 256 * 1024)
                if not data and self.total >= 0 and self.offset < self.total:
                    raise http.client.IncompleteRead(b"", self.total - self.offset)
                self.offset += len(data)
                return data
            except (OSError, http.client.HTTPException) as e:
                self.resp.close()
                if self.retries <= 0:
                    raise SystemError_(f"download of {self.digest} failed: {e}") from None
                self.retries -= 1
                log.info("resuming %s at %d after: %s", self.digest, self.offset, e)
                time.sleep(0.5)
                self.resp, _ = self.client.open_blob(self.digest, self.offset)

    def close(self) -> None:
        self.resp.close()
