"""The rules behind proxies and mirrors, checked directly: Go's NO_PROXY matching, proxy URLs, credentials
masking, daemon.json over the environment, moby's mirror validation, and where a mirror client sends."""

from __future__ import annotations

import pytest

from skiffbox.guest.config import DaemonConfig, apply_proxy_env, validate_mirror
from skiffbox.guest.images.proxy import NoProxy, ProxySettings, mask_credentials, parse_proxy
from skiffbox.guest.images.registry import RegistryClient

P = "http://proxy.corp:3128"


@pytest.mark.parametrize("no_proxy, target, direct", [
    ("", "https://registry.example", False),
    ("*", "https://registry.example", True),
    ("registry.example", "https://registry.example", True),
    ("registry.example", "https://eu.registry.example", True),  # a bare domain covers sub-domains
    ("registry.example", "https://notregistry.example", False),
    (".registry.example", "https://registry.example", False),  # a leading dot: only sub-domains
    (".registry.example", "https://eu.registry.example", True),
    ("*.registry.example", "https://eu.registry.example", True),
    ("Registry.Example", "https://REGISTRY.example", True),  # case-insensitive
    ("registry.example:5000", "https://registry.example:5000", True),
    ("registry.example:5000", "https://registry.example", False),  # :443 by default
    ("registry.example:443", "https://registry.example", True),
    ("10.1.2.3", "http://10.1.2.3:5000", True),
    ("10.1.2.3:5000", "http://10.1.2.3:5000", True),
    ("10.1.2.3:5001", "http://10.1.2.3:5000", False),
    ("10.0.0.0/8", "http://10.1.2.3:5000", True),
    ("10.0.0.0/8", "http://11.1.2.3:5000", False),
    ("2001:db8::/32", "https://[2001:db8::5]:5000", True),
    ("[2001:db8::5]:5000", "https://[2001:db8::5]:5000", True),
    (" a.example , , registry.example ", "https://registry.example", True),  # spaces and empty entries
    ("", "http://localhost:5000", True),  # loopback never goes through a proxy (Go's net/http)
    ("", "http://127.0.0.5:5000", True),
    ("", "http://[::1]:5000", True),
])
def test_no_proxy_like_go(no_proxy: str, target: str, direct: bool) -> None:
    s = ProxySettings.parse(P, P, no_proxy)
    scheme, _, netloc = target.partition("://")
    assert (s.for_target(scheme, netloc) is None) is direct


def test_proxy_per_scheme() -> None:
    s = ProxySettings.parse("http://h1:1", "http://h2:2", "")
    assert s.for_target("http", "r.example").addr == "h1:1"
    assert s.for_target("https", "r.example").addr == "h2:2"
    assert s.for_target("https-insecure", "r.example").addr == "h2:2"
    only_http = ProxySettings.parse("http://h1:1", "", "")
    assert only_http.for_target("https", "r.example") is None


def test_parse_proxy() -> None:
    p = parse_proxy("http://us%40er:p%3Ass@proxy.corp:3128")
    assert (p.host, p.port, p.username, p.password) == ("proxy.corp", 3128, "us@er", "p:ss")
    assert p.auth_headers() == {"Proxy-Authorization": "Basic dXNAZXI6cDpzcw=="}
    assert parse_proxy("proxy.corp:8080").addr == "proxy.corp:8080"  # no scheme: http://
    assert parse_proxy("http://proxy.corp").port == 80
    assert parse_proxy("http://proxy.corp").auth_headers() == {}
    with pytest.raises(ValueError, match="unsupported proxy scheme 'socks5'"):
        parse_proxy("socks5://u:secret@h:1080")
    with pytest.raises(ValueError) as e:
        parse_proxy("https://u:secret@h:3128")
    assert "secret" not in str(e.value)


def test_mask_credentials() -> None:
    assert mask_credentials("http://user:pw@proxy:3128") == "http://xxxxx:xxxxx@proxy:3128"
    assert mask_credentials("http://proxy:3128") == "http://proxy:3128"
    assert mask_credentials("") == ""


def test_daemon_json_overrides_environment() -> None:
    env = {"HTTP_PROXY": "http://env:1", "https_proxy": "http://env:2", "NO_PROXY": "a.example"}
    cfg = DaemonConfig(http_proxy="http://cfg:3")
    apply_proxy_env(cfg, env)
    assert (cfg.http_proxy, cfg.https_proxy, cfg.no_proxy) == ("http://cfg:3", "http://env:2", "a.example")
    # The merged values are exported (both spellings), where the registry client reads them.
    assert env["HTTP_PROXY"] == env["http_proxy"] == "http://cfg:3"
    assert env["HTTPS_PROXY"] == "http://env:2"
    s = ProxySettings.from_env(env)
    assert s.http is not None and s.http.addr == "cfg:3"
    assert s.for_target("http", "a.example") is None


def test_bad_proxy_stops_the_daemon() -> None:
    with pytest.raises(SystemExit, match="unsupported proxy scheme"):
        apply_proxy_env(DaemonConfig(https_proxy="socks5://h:1"), {})


@pytest.mark.parametrize("url, norm", [
    ("http://127.0.0.1:5001", "http://127.0.0.1:5001/"),
    ("https://mirror.gcr.io/", "https://mirror.gcr.io/"),
    ("https://mirror.example/hub", "https://mirror.example/hub/"),
])
def test_validate_mirror(url: str, norm: str) -> None:
    assert validate_mirror(url) == norm


@pytest.mark.parametrize("url, why", [
    ("mirror.example", "no scheme specified"),
    ("mirror.example:5000", "no scheme specified"),
    ("ftp://mirror.example", "unsupported scheme"),
    ("https://mirror.example/#x", "query or fragment"),
    ("https://u:pw@mirror.example", "username/password not allowed"),
])
def test_validate_mirror_refuses(url: str, why: str) -> None:
    with pytest.raises(ValueError, match=f"invalid mirror: {why}"):
        validate_mirror(url)


def test_mirror_client_endpoint() -> None:
    """A mirror client keeps the docker.io name (for records) and talks to the mirror, under its path."""
    none = ProxySettings()
    c = RegistryClient("docker.io", "library/busybox", mirror="https://mirror.example/hub/", proxies=none)
    assert (c.domain, c.host, c.base_url()) == ("docker.io", "mirror.example", "https://mirror.example/hub")
    assert RegistryClient("docker.io", "x/y", mirror="http://10.0.0.1:5000/", proxies=none).base_url() == "http://10.0.0.1:5000"
    # https mirrors keep TLS; verified unless the host is insecure or loopback.
    assert RegistryClient("docker.io", "x/y", mirror="https://m.example/", proxies=none).scheme == "https"
    assert RegistryClient("docker.io", "x/y", mirror="https://m.example/", insecure=["m.example"], proxies=none).scheme == "https-insecure"
    assert RegistryClient("docker.io", "x/y", mirror="https://127.0.0.1:5001/", proxies=none).scheme == "https-insecure"


def test_no_proxy_parse_ignores_malformed() -> None:
    assert NoProxy.parse(":80, ,").entries == []
