"""Which HTTP proxy a registry connection goes through, with Go's net/http rules (dockerd's behaviour).

dockerd copies daemon.json `proxies` over HTTP_PROXY/HTTPS_PROXY/NO_PROXY in its own environment at start
(config wins), and Go's `http.ProxyFromEnvironment` then picks, per request URL: HTTPS_PROXY for https://,
HTTP_PROXY for http://, none when NO_PROXY matches or the host is loopback. skiffd does the same:
`guest.config` exports the merged settings, `ProxySettings.from_env()` reads them.
"""

from __future__ import annotations

import base64
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit, urlunsplit

DEFAULT_PORTS = {"http": 80, "https": 443}


class ProxyConnectError(OSError):
    """The proxy could not be reached, or refused the CONNECT tunnel; the text is shown to the user."""


@dataclass(frozen=True)
class Proxy:
    host: str
    port: int
    username: str = ""
    password: str = ""

    @property
    def addr(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def auth_headers(self) -> dict[str, str]:
        if not self.username:
            return {}
        tok = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return {"Proxy-Authorization": f"Basic {tok}"}


def parse_proxy(value: str) -> Proxy:
    """`http://user:pass@host:3128`, or `host:3128` (Go reads a URL without a scheme as http://)."""
    v = value.strip()
    if "://" not in v:
        v = "http://" + v
    u = urlsplit(v)
    if u.scheme != "http":
        # Go also speaks https:// and socks5:// proxies; we only tunnel through plain HTTP ones.
        raise ValueError(f"invalid proxy address {mask_credentials(value)!r}: unsupported proxy scheme {u.scheme!r} "
                         "(only http:// proxies are supported)")
    try:
        port = u.port or DEFAULT_PORTS["http"]
    except ValueError:
        raise ValueError(f"invalid proxy address {mask_credentials(value)!r}: bad port") from None
    if not u.hostname:
        raise ValueError(f"invalid proxy address {mask_credentials(value)!r}: no host")
    return Proxy(u.hostname, port, unquote(u.username or ""), unquote(u.password or ""))


def mask_credentials(url: str) -> str:
    """As moby's config.MaskCredentials: `http://u:p@h` → `http://xxxxx:xxxxx@h` (for /info and logs)."""
    try:
        u = urlsplit(url if "://" in url else "http://" + url)
    except ValueError:
        return url
    if u.username is None and u.password is None:
        return url
    host = u.netloc.rpartition("@")[2]
    masked = urlunsplit((u.scheme, f"xxxxx:xxxxx@{host}", u.path, u.query, u.fragment))
    return masked if "://" in url else masked[len("http://"):]


def split_host_port(netloc: str, scheme: str) -> tuple[str, int]:
    """`h:5000` / `[::1]:5000` / `h` → (lower-case host, port with the scheme's default)."""
    if netloc.startswith("["):
        host, _, rest = netloc[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif netloc.count(":") == 1:
        host, _, port = netloc.partition(":")
    else:
        host, port = netloc, ""
    return host.lower().rstrip("."), int(port) if port.isdigit() else DEFAULT_PORTS.get(scheme, 443)


@dataclass(frozen=True)
class _Match:
    host: str = ""  # ".example.com" for domains
    match_host: bool = False  # "example.com" also matches the bare domain, ".example.com" only sub-domains
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    net: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    port: int | None = None


@dataclass
class NoProxy:
    """NO_PROXY as golang.org/x/net/http/httpproxy reads it: a comma list of `*`, CIDRs, IPs and domains,
    each optionally with `:port`; `example.com` matches it and its sub-domains, `.example.com` (or
    `*.example.com`) only the sub-domains."""

    all: bool = False
    entries: list[_Match] = field(default_factory=list)

    @classmethod
    def parse(cls, value: str) -> "NoProxy":
        out = cls()
        for raw in value.split(","):
            p = raw.strip().lower()
            if not p:
                continue
            if p == "*":
                return cls(all=True)
            try:
                if "/" in p:
                    out.entries.append(_Match(net=ipaddress.ip_network(p, strict=False)))
                    continue
            except ValueError:
                pass
            host, port = p, None
            if p.startswith("["):
                h, _, rest = p[1:].partition("]")
                host = h
                if rest.startswith(":") and rest[1:].isdigit():
                    port = int(rest[1:])
            elif p.count(":") == 1:
                h, _, pt = p.partition(":")
                if not h:
                    continue  # no host part: malformed, ignored as Go does
                if pt.isdigit():
                    host, port = h, int(pt)
            try:
                out.entries.append(_Match(ip=ipaddress.ip_address(host), port=port))
                continue
            except ValueError:
                pass
            if host.startswith("*."):
                host = host[1:]
            match_host = not host.startswith(".")
            out.entries.append(_Match(host=host if not match_host else "." + host, match_host=match_host, port=port))
        return out

    def matches(self, host: str, port: int) -> bool:
        if self.all:
            return True
        try:
            ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
        except ValueError:
            ip = None
        for m in self.entries:
            if m.net is not None:
                if ip is not None and ip in m.net:
                    return True
            elif m.ip is not None:
                if ip is not None and ip == m.ip and (m.port is None or m.port == port):
                    return True
            elif host.endswith(m.host) or (m.match_host and host == m.host[1:]):
                if m.port is None or m.port == port:
                    return True
        return False


def _env(environ: Mapping[str, str], *names: str) -> str:
    for n in names:
        v = environ.get(n)
        if v:
            return v
    return ""


@dataclass
class ProxySettings:
    http: Proxy | None = None
    https: Proxy | None = None
    no_proxy: NoProxy = field(default_factory=NoProxy)

    @classmethod
    def parse(cls, http: str, https: str, no_proxy: str) -> "ProxySettings":
        """Raises ValueError for a proxy address we cannot use (checked at daemon start)."""
        return cls(parse_proxy(http) if http else None, parse_proxy(https) if https else None, NoProxy.parse(no_proxy))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "ProxySettings":
        e = os.environ if environ is None else environ
        return cls.parse(_env(e, "HTTP_PROXY", "http_proxy"), _env(e, "HTTPS_PROXY", "https_proxy"),
                         _env(e, "NO_PROXY", "no_proxy"))

    def for_target(self, scheme: str, netloc: str) -> Proxy | None:
        """The proxy for a request to `scheme://netloc`, or None to connect directly."""
        proxy = self.https if scheme.startswith("https") else self.http
        if proxy is None:
            return None
        host, port = split_host_port(netloc, "https" if scheme.startswith("https") else "http")
        if host == "localhost":
            return None
        try:
            if ipaddress.ip_address(host).is_loopback:
                return None
        except ValueError:
            pass
        if self.no_proxy.matches(host, port):
            return None
        return proxy
