"""skiffd's configuration: command-line flags merged over /etc/skiff/daemon.json (dockerd's keys)."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from skiffbox.guest.images.proxy import ProxySettings, mask_credentials

DEFAULT_SOCKET = "unix:///run/skiff/skiff.sock"
DEFAULT_CONFIG_FILE = "/etc/skiff/daemon.json"


@dataclass
class DaemonConfig:
    hosts: list[str] = field(default_factory=lambda: [DEFAULT_SOCKET])
    tlsverify: bool = False
    tlscacert: str | None = None
    tlscert: str | None = None
    tlskey: str | None = None
    data_root: Path = Path("/var/lib/skiff")
    exec_root: Path = Path("/run/skiff")
    pidfile: Path | None = None
    insecure_registries: list[str] = field(default_factory=list)
    registry_mirrors: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    log_level: str = "info"
    runtime: str | None = None  # None = detect (crun if usable, else runc)
    cgroup_parent: str = "skiff"  # containers' cgroups go under it (unless their own CgroupParent), conmon's too
    http_proxy: str = ""
    https_proxy: str = ""
    no_proxy: str = ""

    @property
    def tls(self) -> bool:
        return bool(self.tlscert and self.tlskey)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="skiffd", description="Skiff container engine (Docker Engine API)")
    p.add_argument("-H", "--host", action="append", dest="hosts", help="socket to listen on (repeatable)")
    p.add_argument("--tlsverify", action="store_true", default=None, help="require client certificates signed by --tlscacert")
    p.add_argument("--tlscacert")
    p.add_argument("--tlscert")
    p.add_argument("--tlskey")
    p.add_argument("--data-root")
    p.add_argument("--exec-root")
    p.add_argument("-p", "--pidfile")
    p.add_argument("--config-file", default=None)
    p.add_argument("--insecure-registry", action="append", dest="insecure_registries")
    p.add_argument("--registry-mirror", action="append", dest="registry_mirrors")
    p.add_argument("--label", action="append", dest="labels")
    p.add_argument("-l", "--log-level")
    p.add_argument("--runtime", choices=["runc", "crun"])
    p.add_argument("--cgroup-parent", help="parent cgroup of the containers' cgroups (default skiff)")
    p.add_argument("--version", "-v", action="store_true")
    return p


def load_config(argv: list[str] | None = None) -> tuple[DaemonConfig, argparse.Namespace]:
    args = build_parser().parse_args(argv)
    cfg = DaemonConfig()
    path = args.config_file or (DEFAULT_CONFIG_FILE if os.path.exists(DEFAULT_CONFIG_FILE) else None)
    if path:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise SystemExit(f"skiffd: cannot read config file {path}: {e}")
        _apply_file(cfg, data)
    if args.hosts:
        cfg.hosts = args.hosts
    for name in ("tlscacert", "tlscert", "tlskey", "log_level", "runtime", "cgroup_parent"):
        v = getattr(args, name)
        if v is not None:
            setattr(cfg, name, v)
    if args.tlsverify is not None:
        cfg.tlsverify = args.tlsverify
    if args.data_root:
        cfg.data_root = Path(args.data_root)
    if args.exec_root:
        cfg.exec_root = Path(args.exec_root)
    if args.pidfile:
        cfg.pidfile = Path(args.pidfile)
    for name in ("insecure_registries", "registry_mirrors", "labels"):
        v = getattr(args, name)
        if v:
            getattr(cfg, name).extend(v)
    if cfg.tlsverify and not (cfg.tlscacert and cfg.tlscert and cfg.tlskey):
        raise SystemExit("skiffd: --tlsverify needs --tlscacert, --tlscert and --tlskey")
    try:
        cfg.registry_mirrors = [validate_mirror(m) for m in cfg.registry_mirrors]
    except ValueError as e:
        raise SystemExit(f"skiffd: {e}") from None
    apply_proxy_env(cfg)
    return cfg, args


def validate_mirror(url: str) -> str:
    """moby's registry.ValidateMirror: http(s)://host[:port][/path], no query, fragment or credentials;
    normalised with a trailing slash (as /info shows it)."""
    if not isinstance(url, str):
        raise ValueError(f"invalid mirror: {url!r} is not a string")
    scheme, sep, _ = url.partition("://")
    if not sep or not scheme:
        raise ValueError(f"invalid mirror: no scheme specified for {url!r}: must use either 'https://' or 'http://'")
    try:
        u = urlsplit(url)
        u.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ValueError(f"invalid mirror: {url!r} is not a valid URI") from None
    if u.scheme not in ("http", "https"):
        raise ValueError(f"invalid mirror: unsupported scheme {u.scheme!r} in {url!r}: must use either 'https://' or 'http://'")
    if u.query or u.fragment or url.endswith(("?", "#")):
        raise ValueError(f"invalid mirror: query or fragment at end of the URI {url!r}")
    if u.username is not None or "@" in u.netloc:
        raise ValueError(f"invalid mirror: username/password not allowed in URI {mask_credentials(url)!r}")
    if not u.hostname:
        raise ValueError(f"invalid mirror: {url!r} is not a valid URI")
    return url.rstrip("/") + "/"


def apply_proxy_env(cfg: DaemonConfig, environ: MutableMapping[str, str] | None = None) -> None:
    """Proxies from daemon.json win over the environment; the result goes back into the environment (as
    moby's configureProxyEnv), where the registry client reads it (guest/images/proxy.py)."""
    env = os.environ if environ is None else environ
    for attr, name in (("http_proxy", "HTTP_PROXY"), ("https_proxy", "HTTPS_PROXY"), ("no_proxy", "NO_PROXY")):
        value = getattr(cfg, attr) or env.get(name) or env.get(name.lower()) or ""
        setattr(cfg, attr, value)
        if value:
            env[name] = env[name.lower()] = value
    try:
        ProxySettings.parse(cfg.http_proxy, cfg.https_proxy, cfg.no_proxy)
    except ValueError as e:
        raise SystemExit(f"skiffd: {e}") from None


def _apply_file(cfg: DaemonConfig, data: dict[str, Any]) -> None:
    simple = {
        "hosts": "hosts", "tlsverify": "tlsverify", "tlscacert": "tlscacert", "tlscert": "tlscert",
        "tlskey": "tlskey", "insecure-registries": "insecure_registries", "registry-mirrors": "registry_mirrors",
        "labels": "labels", "log-level": "log_level", "default-runtime": "runtime",
        "cgroup-parent": "cgroup_parent",
    }
    for key, attr in simple.items():
        if key in data:
            setattr(cfg, attr, data[key])
    if "data-root" in data:
        cfg.data_root = Path(data["data-root"])
    if "exec-root" in data:
        cfg.exec_root = Path(data["exec-root"])
    if "pidfile" in data:
        cfg.pidfile = Path(data["pidfile"])
    proxies = data.get("proxies") or {}
    if not isinstance(proxies, dict):
        raise SystemExit('skiffd: daemon.json: "proxies" must be an object with http-proxy, https-proxy, no-proxy')
    cfg.http_proxy = str(proxies.get("http-proxy") or cfg.http_proxy)
    cfg.https_proxy = str(proxies.get("https-proxy") or cfg.https_proxy)
    cfg.no_proxy = str(proxies.get("no-proxy") or cfg.no_proxy)
    if not isinstance(cfg.registry_mirrors, list):
        raise SystemExit('skiffd: daemon.json: "registry-mirrors" must be a list of URLs')
