"""Where the engine is and how to authenticate, read exactly as the docker CLI reads it.

- Host: `-H/--host` > `--machine NAME` > `DOCKER_HOST` > `unix:///var/run/docker.sock` (Windows: docker's
  npipe, which skiff cannot use: the error says to run `machine env` or use `--machine`).
  `tcp://h` without a port gets 2375 (2376 with TLS); a bare `h:p` or `h` is TCP (docker's opts.ParseHost).
- TLS: `--tlsverify` or a non-empty `DOCKER_TLS_VERIFY` (any value, "0" too, as the Go CLI does) means
  TLS with server verification; `--tls` or a non-empty `DOCKER_TLS` means TLS without verification.
  Certificates: `--tlscacert/--tlscert/--tlskey`, default `$DOCKER_CERT_PATH/{ca,cert,key}.pem`, where
  DOCKER_CERT_PATH defaults to the config dir (~/.docker). Client cert/key are used only if both exist.
- `DOCKER_CONFIG` (default ~/.docker) holds config.json: registry credentials (`auths`, `credsStore`,
  `credHelpers`) and the `psFormat`/`imagesFormat`/… defaults for listing commands.
- `DOCKER_API_VERSION` pins the API version instead of negotiating.
- `--machine NAME` reads the Skiff machine store (machine/store.py, machine/host.py) for the engine URL and
  the client certificates, so `skiff --machine dev ps` works without `eval $(machine env dev)`.
"""

from __future__ import annotations

import os

from skiffbox.client.transport import Endpoint, loads

TYPE_CHECKING = False  # no runtime `typing` import: it costs startup time and annotations are strings
if TYPE_CHECKING:
    from typing import Any

DEFAULT_UNIX = "unix:///var/run/docker.sock"
DEFAULT_NPIPE = "npipe:////./pipe/docker_engine"  # docker's default on Windows
NOTHING_CONFIGURED = ("no engine configured: run `machine env NAME` (or eval it: "
                      "`machine env NAME | Invoke-Expression` in PowerShell) or use `skiff --machine NAME`")
# Added under docker's "Cannot connect" when that was the default socket (a first-hour Mac user's case).
UNCONFIGURED_HINT = 'no engine configured: run `eval "$(machine env NAME)"` or use `skiff --machine NAME`'
INDEX_SERVER = "https://index.docker.io/v1/"


class ConfigError(Exception):
    pass


def config_dir() -> str:
    return os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")


class GlobalOptions:
    """The global flags; None means "not given" (the environment decides)."""

    def __init__(self, hosts: list[str], tls: bool | None = None, tlsverify: bool | None = None,
                 tlscacert: str | None = None, tlscert: str | None = None, tlskey: str | None = None,
                 machine: str | None = None, config: str | None = None, context: str | None = None) -> None:
        self.hosts, self.tls, self.tlsverify = hosts, tls, tlsverify
        self.tlscacert, self.tlscert, self.tlskey = tlscacert, tlscert, tlskey
        self.machine, self.config, self.context = machine, config, context


def _split_url(raw: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of scheme://host[:port][/path]; IPv6 hosts in brackets. ValueError if malformed."""
    scheme, _, rest = raw.partition("://")
    netloc = rest.split("/", 1)[0]
    if netloc.startswith("["):
        host, _, tail = netloc[1:].partition("]")
        port = tail[1:] if tail.startswith(":") else ""
    else:
        host, _, port = netloc.rpartition(":") if ":" in netloc else (netloc, "", "")
    if port and not port.isdigit():
        raise ValueError(raw)
    return scheme.lower(), host, int(port) if port else None


def default_host(platform: str | None = None) -> str:
    """What docker talks to with nothing configured: the npipe on Windows, the unix socket elsewhere."""
    import sys

    return DEFAULT_NPIPE if (platform or sys.platform) == "win32" else DEFAULT_UNIX


def parse_host(raw: str, tls: bool) -> Endpoint:
    """docker's opts.ParseHost + ParseDockerDaemonHost."""
    raw = raw.strip()
    if not raw:
        raw = default_host()
    if raw == DEFAULT_NPIPE:
        raise ConfigError(NOTHING_CONFIGURED)
    if raw.startswith("npipe://"):
        raise ConfigError(f"{raw}: skiff does not talk to named pipes (Docker Desktop's); {NOTHING_CONFIGURED}")
    if "://" not in raw:
        raw = "tcp://" + raw
    if raw.startswith("unix://"):
        path = raw[len("unix://"):]
        if not path:
            raise ConfigError(f"invalid bind address format: {raw}")
        return Endpoint("unix", path, url=raw)
    try:
        scheme, host, port = _split_url(raw)
    except ValueError:
        raise ConfigError(f"invalid bind address format: {raw}") from None
    if scheme in ("tcp", "http", "https"):
        host = host or "localhost"
        port = port or (2376 if tls else 2375)
        shown = f"tcp://{host if ':' not in host else '[' + host + ']'}:{port}"
        return Endpoint("tcp", host, port, url=shown)
    if scheme == "ssh":
        raise ConfigError(f"{raw}: ssh:// hosts are not supported by skiff; use `machine env` or --machine")
    raise ConfigError(f"invalid bind address format: {raw}")


def _truthy_env(name: str) -> bool:
    return os.environ.get(name, "") != ""


def resolve_endpoint(opts: GlobalOptions) -> Endpoint:
    if opts.hosts and opts.context:
        raise ConfigError("conflicting options: cannot specify both --host and --context")
    try:
        return _resolve(opts)
    except ConfigError as e:
        if (opts.machine and not opts.hosts) or str(e) == NOTHING_CONFIGURED:
            raise
        raise ConfigError(f"Failed to initialize: unable to resolve docker endpoint: {e}") from None


def _resolve(opts: GlobalOptions) -> Endpoint:
    if len(opts.hosts) > 1:
        raise ConfigError("Specify only one -H")
    if opts.hosts:
        host = opts.hosts[0]
    elif opts.machine:
        return machine_endpoint(opts.machine, opts)
    else:
        from skiffbox.cli.skiffclient import contexts  # --context, DOCKER_CONTEXT, `context use` (contexts.py)

        ep = contexts.endpoint(contexts.current(opts), opts)
        if ep is not None:
            return ep
        host = os.environ.get("DOCKER_HOST", "")
    tlsverify = opts.tlsverify if opts.tlsverify is not None else _truthy_env("DOCKER_TLS_VERIFY")
    tls = (opts.tls if opts.tls is not None else _truthy_env("DOCKER_TLS")) or tlsverify
    ep = parse_host(host, tls)
    ep.unconfigured = not host.strip()
    if tls and ep.scheme == "tcp":
        cert_dir = os.environ.get("DOCKER_CERT_PATH") or config_dir()
        ca = opts.tlscacert or os.path.join(cert_dir, "ca.pem")
        cert = opts.tlscert or os.path.join(cert_dir, "cert.pem")
        key = opts.tlskey or os.path.join(cert_dir, "key.pem")
        ep.tls = True
        ep.verify = tlsverify
        ep.ca = ca if tlsverify else None
        if tlsverify and not os.path.exists(ca):
            raise ConfigError(f"open {ca}: no such file or directory")
        # Like the Go CLI: a client certificate is sent only when both files are there.
        if os.path.exists(cert) and os.path.exists(key):
            ep.cert, ep.key = cert, key
        elif opts.tlscert or opts.tlskey:
            missing = cert if not os.path.exists(cert) else key
            raise ConfigError(f"Could not load X509 key pair: open {missing}: no such file or directory")
    return ep


def machine_endpoint(name: str, opts: GlobalOptions) -> Endpoint:
    """The engine of machine NAME, with the store's client certificates (what `machine env` exports)."""
    try:
        from skiffbox.machine.host import Host, HostError  # lazy: only `--machine` pays for it
        from skiffbox.machine.store import Store, StoreError
    except ImportError as e:
        raise ConfigError(f"--machine needs Skiff's machine package: {e}") from None
    try:
        h = Host.load(Store(), name)
        url = h.url()
        auth = h.config()["HostOptions"]["AuthOptions"]
    except (StoreError, HostError) as e:
        raise ConfigError(str(e)) from None
    except Exception as e:  # a driver that cannot answer (VM stopped, VBoxManage missing, …)
        raise ConfigError(f'Error checking TLS connection: cannot get the URL of machine "{name}": {e}') from None
    if not url:
        raise ConfigError(f'machine "{name}" has no engine URL (is it running? try `machine start {name}`)')
    ep = parse_host(url, True)
    ep.tls = True
    ep.verify = True
    ep.ca = opts.tlscacert or auth.get("CaCertPath")
    ep.cert = opts.tlscert or auth.get("ClientCertPath")
    ep.key = opts.tlskey or auth.get("ClientKeyPath")
    ep.url = url
    return ep


# ---------------------------------------------------------------------------------------------
# config.json: defaults and registry credentials
# ---------------------------------------------------------------------------------------------

_cfg_cache: dict[str, Any] | None = None


def load_config_file() -> dict[str, Any]:
    global _cfg_cache
    if _cfg_cache is None:
        try:
            with open(os.path.join(config_dir(), "config.json"), "rb") as f:
                _cfg_cache = loads(f.read())
        except (OSError, ValueError):
            _cfg_cache = {}
    return _cfg_cache


def registry_key(registry: str) -> str:
    """The config.json key for a registry host (Docker Hub's is the legacy index URL)."""
    if registry in ("docker.io", "index.docker.io", "registry-1.docker.io", ""):
        return INDEX_SERVER
    return registry


def _normalize(key: str) -> str:
    if "://" in key:
        key = key.split("://", 1)[1]
    return key.split("/", 1)[0]


def credentials(registry: str) -> dict[str, str]:
    """{"username", "password", "serveraddress"[, "identitytoken"]} for a registry host, or {}."""
    cfg = load_config_file()
    key = registry_key(registry)
    helper = (cfg.get("credHelpers") or {}).get(registry) or cfg.get("credsStore")
    if helper:
        import subprocess  # only when a credential helper is configured

        try:
            r = subprocess.run([f"docker-credential-{helper}", "get"], input=key.encode(), capture_output=True,
                               timeout=30)
            if r.returncode == 0:
                d = loads(r.stdout)
                if d.get("Username") == "<token>":
                    return {"identitytoken": d.get("Secret", ""), "serveraddress": key}
                return {"username": d.get("Username", ""), "password": d.get("Secret", ""), "serveraddress": key}
        except (OSError, ValueError, subprocess.TimeoutExpired):
            pass
    auths = cfg.get("auths") or {}
    entry = auths.get(key)
    if entry is None:
        want = _normalize(key)
        entry = next((v for k, v in auths.items() if _normalize(k) == want), None)
    if not entry:
        return {}
    out: dict[str, str] = {"serveraddress": key}
    if entry.get("auth"):
        import base64

        user, _, pw = base64.b64decode(entry["auth"]).decode().partition(":")
        out.update(username=user, password=pw)
    if entry.get("identitytoken"):
        out["identitytoken"] = entry["identitytoken"]
    return out


def encode_auth(auth: dict[str, str]) -> str:
    """X-Registry-Auth: base64url of the JSON; `{}` ("e30=") when there are no credentials, as the CLI sends."""
    import base64
    import json

    return base64.urlsafe_b64encode(json.dumps(auth, separators=(",", ":")).encode()).decode()


def default_format(key: str) -> str:
    """config.json's psFormat, imagesFormat, networksFormat, volumesFormat, … (used when --format is absent)."""
    return str(load_config_file().get(key) or "")
