"""Registry traffic through an HTTP proxy (Debian's tinyproxy, in the test namespace): http:// registries
with absolute-form requests, https:// ones through a CONNECT tunnel, proxy credentials, NO_PROXY, loopback
never proxied, daemon.json over the environment, and clear errors when the proxy is down or refuses.

Loopback registries never use a proxy (Go's rule), so the namespace gets a non-loopback address
(10.99.0.1 on its `lo`) where a plain and a TLS registry listen."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.engine.harness import NetNS, Registry, TestImages, rmtree, tempdir
from tests.engine.registry_net_fixtures import ExtraRegistry, TinyProxy, extra_address, skiffd_with, start_fails

ADDR = "10.99.0.1"
PLAIN = f"{ADDR}:5002"
TLS = f"{ADDR}:5443"
DEAD_PROXY = "http://127.0.0.1:8899"  # nothing listens there


@dataclass
class Net:
    proxy: TinyProxy  # open
    auth_proxy: TinyProxy  # BasicAuth user / s3cret
    plain: ExtraRegistry
    tls: ExtraRegistry


@pytest.fixture(scope="module")
def net(netns: NetNS, registry: Registry, images: TestImages) -> Iterator[Net]:
    d = tempdir("skiff-proxy-")
    started: list = []
    try:
        with extra_address(netns, f"{ADDR}/32"):
            plain = ExtraRegistry(netns, d, PLAIN)
            started.append(plain)
            tls = ExtraRegistry(netns, d, TLS, tls=True, cert_ip=ADDR)
            started.append(tls)
            for reg in (plain, tls):
                reg.copy_from(images.busybox, "test/busybox:latest")
            proxy = TinyProxy(netns, d, 8888)
            started.append(proxy)
            auth_proxy = TinyProxy(netns, d, 8889, basic_auth=("user", "s3cret"))
            started.append(auth_proxy)
            yield Net(proxy, auth_proxy, plain, tls)
    finally:
        for p in reversed(started):
            p.stop()
        rmtree(d)


def _proxied(p: TinyProxy, since: int, needle: str) -> list[str]:
    return [r for r in p.requests()[since:] if needle in r]


def test_http_registry_through_proxy(netns: NetNS, net: Net) -> None:
    n0 = len(net.proxy.requests())
    with skiffd_with(netns, ["--insecure-registry", PLAIN],
                     daemon_json={"proxies": {"http-proxy": f"http://{net.proxy.addr}"}}) as d:
        d.docker("pull", f"{PLAIN}/test/busybox")
        assert d.docker("run", "--rm", f"{PLAIN}/test/busybox", "echo", "via-proxy").stdout == "via-proxy\n"
        seen = _proxied(net.proxy, n0, f"http://{PLAIN}/v2/")
        assert any(r.startswith(f"GET http://{PLAIN}/v2/test/busybox/manifests/latest") for r in seen), seen
        assert any("/blobs/sha256:" in r for r in seen), seen
        info = d.client().info()
        assert (info["HttpProxy"], info["HttpsProxy"], info["NoProxy"]) == (f"http://{net.proxy.addr}", "", "")


def test_https_registry_through_connect_tunnel(netns: NetNS, net: Net) -> None:
    """A TLS registry (self-signed, so listed as insecure: TLS without verification) via CONNECT."""
    n0 = len(net.proxy.requests())
    with skiffd_with(netns, ["--insecure-registry", TLS],
                     daemon_json={"proxies": {"https-proxy": f"http://{net.proxy.addr}"}}) as d:
        d.docker("pull", f"{TLS}/test/busybox")
        assert d.docker("run", "--rm", f"{TLS}/test/busybox", "echo", "tunnelled").stdout == "tunnelled\n"
        seen = _proxied(net.proxy, n0, TLS)
        assert seen and all(r.startswith(f"CONNECT {TLS} ") for r in seen), seen


def test_push_and_login_through_proxy(netns: NetNS, net: Net, images: TestImages) -> None:
    n0 = len(net.proxy.requests())
    with skiffd_with(netns, ["--insecure-registry", PLAIN],
                     daemon_json={"proxies": {"http-proxy": f"http://{net.proxy.addr}"}}) as d:
        d.docker("pull", images.busybox)  # loopback: direct
        d.docker("tag", images.busybox, f"{PLAIN}/test/pushed:1")
        d.docker("push", f"{PLAIN}/test/pushed:1")
        r = d.docker("login", PLAIN, "-u", "someone", "--password-stdin", input="pw\n")
        assert "Login Succeeded" in r.stdout
        seen = _proxied(net.proxy, n0, f"http://{PLAIN}/v2/")
        assert any(r.startswith(f"PUT http://{PLAIN}/v2/test/pushed/manifests/1") for r in seen), seen
        assert any(r.startswith(f"GET http://{PLAIN}/v2/ ") for r in seen), seen
        assert not _proxied(net.proxy, n0, "127.0.0.1:5000")
    r = netns.run(["curl", "-s", f"http://{PLAIN}/v2/test/pushed/tags/list"])
    assert '"1"' in r.stdout


def test_loopback_registry_never_proxied(netns: NetNS, net: Net, images: TestImages) -> None:
    n0 = len(net.proxy.requests())
    with skiffd_with(netns, daemon_json={"proxies": {"http-proxy": f"http://{net.proxy.addr}",
                                                     "https-proxy": f"http://{net.proxy.addr}"}}) as d:
        d.docker("pull", images.busybox)
    assert not _proxied(net.proxy, n0, "127.0.0.1:5000")
    assert not _proxied(net.proxy, n0, "localhost")


@pytest.mark.parametrize("no_proxy, bypass", [
    (ADDR, True),
    ("10.99.0.0/16", True),
    (f"example.com, {PLAIN}", True),
    ("*", True),
    (f"{ADDR}:5003", False),  # another port
    ("10.99.0.10, 10.98.0.0/16, registry.example", False),
])
def test_no_proxy(netns: NetNS, net: Net, no_proxy: str, bypass: bool) -> None:
    n0 = len(net.proxy.requests())
    with skiffd_with(netns, ["--insecure-registry", PLAIN],
                     daemon_json={"proxies": {"http-proxy": f"http://{net.proxy.addr}", "no-proxy": no_proxy}}) as d:
        d.docker("pull", f"{PLAIN}/test/busybox")
        assert d.client().info()["NoProxy"] == no_proxy
    assert bool(_proxied(net.proxy, n0, PLAIN)) is not bypass


def test_environment_proxies_and_daemon_json_wins(netns: NetNS, net: Net) -> None:
    n0 = len(net.proxy.requests())
    # The environment alone (upper or lower case, as Go reads them).
    with skiffd_with(netns, ["--insecure-registry", PLAIN], env={"http_proxy": f"http://{net.proxy.addr}"}) as d:
        d.docker("pull", f"{PLAIN}/test/busybox")
        assert d.client().info()["HttpProxy"] == f"http://{net.proxy.addr}"
    n1 = len(net.proxy.requests())
    assert _proxied(net.proxy, n0, PLAIN)
    # NO_PROXY from the environment.
    with skiffd_with(netns, ["--insecure-registry", PLAIN],
                     env={"HTTP_PROXY": f"http://{net.proxy.addr}", "NO_PROXY": ADDR}) as d:
        d.docker("pull", f"{PLAIN}/test/busybox")
    n2 = len(net.proxy.requests())
    assert not _proxied(net.proxy, n1, PLAIN)
    # daemon.json overrides a (dead) proxy from the environment.
    with skiffd_with(netns, ["--insecure-registry", PLAIN], env={"HTTP_PROXY": DEAD_PROXY},
                     daemon_json={"proxies": {"http-proxy": f"http://{net.proxy.addr}"}}) as d:
        d.docker("pull", f"{PLAIN}/test/busybox")
        assert d.client().info()["HttpProxy"] == f"http://{net.proxy.addr}"
    assert _proxied(net.proxy, n2, PLAIN)


def test_proxy_down_is_a_clear_error(netns: NetNS, net: Net) -> None:
    with skiffd_with(netns, ["--insecure-registry", PLAIN, "--insecure-registry", TLS],
                     daemon_json={"proxies": {"http-proxy": DEAD_PROXY, "https-proxy": DEAD_PROXY}}) as d:
        for ref in (f"{PLAIN}/test/busybox", f"{TLS}/test/busybox"):
            r = d.docker("pull", ref, check=False)
            assert r.returncode != 0
            assert "proxyconnect tcp: dial tcp 127.0.0.1:8899: connect: connection refused" in r.stderr, r.stderr
        r = d.docker("login", PLAIN, "-u", "a", "--password-stdin", input="b\n", check=False)
        assert r.returncode != 0 and "proxyconnect tcp: dial tcp 127.0.0.1:8899" in r.stderr, r.stderr
        assert "Traceback" not in d.log_tail(50000)


def test_proxy_credentials(netns: NetNS, net: Net) -> None:
    p = net.auth_proxy
    n0 = len(p.requests())
    good = f"http://user:s3cret@{p.addr}"
    with skiffd_with(netns, ["--insecure-registry", PLAIN, "--insecure-registry", TLS],
                     daemon_json={"proxies": {"http-proxy": good, "https-proxy": good}}) as d:
        d.docker("pull", f"{PLAIN}/test/busybox")
        d.docker("pull", f"{TLS}/test/busybox")
        info = d.client().info()
        # As dockerd: credentials are masked in /info.
        assert info["HttpProxy"] == info["HttpsProxy"] == f"http://xxxxx:xxxxx@{p.addr}"
    seen = p.requests()[n0:]
    assert any(r.startswith(f"GET http://{PLAIN}/v2/test/busybox/manifests/latest") for r in seen), seen
    assert any(r.startswith(f"CONNECT {TLS} ") for r in seen), seen
    # No credentials: the proxy answers 407; wrong ones: tinyproxy answers 401 (its quirk). Either way the
    # error names the proxy (an insecure registry's HTTPS attempt reports the refused CONNECT tunnel).
    for url, status in ((f"http://{p.addr}", "407 Proxy Authentication Required"), (f"http://user:wrong@{p.addr}", "401")):
        with skiffd_with(netns, ["--insecure-registry", PLAIN, "--insecure-registry", TLS],
                         daemon_json={"proxies": {"http-proxy": url, "https-proxy": url}}) as d:
            for ref in (f"{PLAIN}/test/busybox", f"{TLS}/test/busybox"):
                r = d.docker("pull", ref, check=False)
                assert r.returncode != 0 and f"proxy {p.addr}" in r.stderr and status in r.stderr, r.stderr
                assert "wrong" not in r.stderr
    # A secure (verified) registry has no HTTP fallback: the refused tunnel is the error.
    with skiffd_with(netns, daemon_json={"proxies": {"https-proxy": f"http://{p.addr}"}}) as d:
        r = d.docker("pull", f"{TLS}/test/busybox", check=False)
        assert r.returncode != 0
        assert (f'Get "https://{TLS}/v2/test/busybox/manifests/latest": proxyconnect tcp: proxy {p.addr} '
                "refused the CONNECT tunnel: 407 Proxy Authentication Required") in r.stderr, r.stderr
    # Through the tunnel TLS is end to end: the self-signed certificate is checked (and refused).
    with skiffd_with(netns, daemon_json={"proxies": {"https-proxy": good}}) as d:
        r = d.docker("pull", f"{TLS}/test/busybox", check=False)
        assert r.returncode != 0 and "tls: failed to verify certificate: self-signed certificate" in r.stderr, r.stderr
    # Only an HTTP proxy without credentials: the absolute-form request gets the 407.
    with skiffd_with(netns, ["--insecure-registry", PLAIN], daemon_json={"proxies": {"http-proxy": f"http://{p.addr}"}}) as d:
        r = d.docker("pull", f"{PLAIN}/test/busybox", check=False)
        assert r.returncode != 0 and f"proxy {p.addr} refused the request: 407" in r.stderr, r.stderr
    with skiffd_with(netns, ["--insecure-registry", PLAIN], daemon_json={"proxies": {"http-proxy": f"http://u:bad@{p.addr}"}}) as d:
        r = d.docker("pull", f"{PLAIN}/test/busybox", check=False)
        assert r.returncode != 0 and f"401 Unauthorized (through proxy {p.addr})" in r.stderr, r.stderr


def test_unusable_proxy_refused_at_start(netns: NetNS) -> None:
    out = start_fails(netns, [], daemon_json={"proxies": {"https-proxy": "socks5://u:hunter2@127.0.0.1:1080"}})
    assert "unsupported proxy scheme 'socks5'" in out and "hunter2" not in out and "Traceback" not in out
