"""Contexts: which engine `skiff` (and the docker CLI) talk to when neither -H nor DOCKER_HOST says.

Stored exactly where and how the docker CLI stores them, so the selection is shared by both clients:
- `config.json` "currentContext": the selected context ("default", or absent, means DOCKER_HOST / the
  local socket);
- `contexts/meta/<sha256(name)>/meta.json`: {"Name", "Metadata": {"Description"}, "Endpoints": {"docker":
  {"Host", "SkipTLSVerify"}}} and `contexts/tls/<sha256(name)>/docker/{ca,cert,key}.pem`.

A Skiff machine is a context too: `skiff context use dev` writes a docker context "dev" for machine dev
(its engine URL and the store's client certificates) and selects it, so `docker ps` and `skiff ps` both
reach dev, as `--machine dev` and `eval $(machine env dev)` do. Its meta carries "SkiffMachine": skiff
asks the machine store for the current URL each time (a VM's address can change across restarts) and
rewrites the meta when it moved, so the docker CLI follows too.

Precedence is docker's: -H > --context > DOCKER_HOST > DOCKER_CONTEXT > currentContext (and skiff's
--machine beside -H).
"""

from __future__ import annotations

import os

from skiffbox.cli.skiffclient import config

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from skiffbox.client.transport import Endpoint

DEFAULT = "default"
DEFAULT_DESCRIPTION = "Current DOCKER_HOST based configuration"


def context_id(name: str) -> str:
    import hashlib  # not on the path of a plain `skiff ps` with the default context

    return hashlib.sha256(name.encode()).hexdigest()


def meta_path(name: str) -> str:
    return os.path.join(config.config_dir(), "contexts", "meta", context_id(name), "meta.json")


def tls_dir(name: str) -> str:
    return os.path.join(config.config_dir(), "contexts", "tls", context_id(name), "docker")


def load_meta(name: str) -> dict[str, Any]:
    """The meta of docker context `name`; ConfigError with docker's text when there is none."""
    import json

    path = meta_path(name)
    try:
        with open(path, "rb") as f:
            meta = json.loads(f.read())
    except FileNotFoundError:
        raise config.ConfigError(f'context "{name}": context not found: open {path}: no such file or directory') \
            from None
    except (OSError, ValueError) as e:
        raise config.ConfigError(f'context "{name}": {e}') from None
    return meta if isinstance(meta, dict) else {}


def stored_names() -> list[str]:
    import json

    root = os.path.join(config.config_dir(), "contexts", "meta")
    names = []
    try:
        entries = os.listdir(root)
    except OSError:
        return []
    for d in entries:
        try:
            with open(os.path.join(root, d, "meta.json"), "rb") as f:
                names.append(str(json.loads(f.read()).get("Name", "")))
        except (OSError, ValueError, AttributeError):
            continue
    return sorted(n for n in names if n)


def current(opts: Any = None) -> str:
    """resolveContextName: the context in effect for these global options and this environment."""
    if opts is not None and getattr(opts, "context", None):
        return str(opts.context)
    if opts is not None and (opts.hosts or getattr(opts, "machine", None)):
        return DEFAULT
    if os.environ.get("DOCKER_HOST"):
        return DEFAULT
    if os.environ.get("DOCKER_CONTEXT"):
        return os.environ["DOCKER_CONTEXT"]
    return str(config.load_config_file().get("currentContext") or DEFAULT)


def machine_names() -> list[str]:
    try:
        from skiffbox.machine.store import Store
    except ImportError:  # the client installed without the machine package
        return []
    try:
        return list(Store().names())
    except Exception:  # noqa: BLE001 - an unreadable store lists nothing
        return []


def endpoint(name: str, opts: Any) -> Endpoint | None:
    """The engine of context `name`, or None for "default" (DOCKER_HOST / the local socket decides)."""
    if name == DEFAULT:
        return None
    try:
        meta = load_meta(name)
    except config.ConfigError:
        if name in machine_names():  # a machine never `context use`d: its engine all the same
            return config.machine_endpoint(name, opts)
        raise
    machine = (meta.get("Metadata") or {}).get("SkiffMachine")
    if machine:
        ep = config.machine_endpoint(machine, opts)
        if ((meta.get("Endpoints") or {}).get("docker") or {}).get("Host") != ep.url:
            try:
                write_machine_context(machine)  # the VM moved: keep the docker CLI's copy current
            except (OSError, config.ConfigError):
                pass
        return ep
    docker = (meta.get("Endpoints") or {}).get("docker") or {}
    ep = config.parse_host(str(docker.get("Host") or ""), True)
    ep.url = str(docker.get("Host") or ep.url)
    tls = tls_dir(name)
    files = {k: os.path.join(tls, f"{k}.pem") for k in ("ca", "cert", "key")}
    if ep.scheme == "tcp" and any(os.path.exists(p) for p in files.values()):
        ep.tls = True
        ep.verify = not docker.get("SkipTLSVerify")
        ep.ca = files["ca"] if os.path.exists(files["ca"]) else None
        if os.path.exists(files["cert"]) and os.path.exists(files["key"]):
            ep.cert, ep.key = files["cert"], files["key"]
    return ep


def _write(path: str, data: bytes, mode: int) -> None:
    from skiffbox.cli.skiffclient.files import write_atomically

    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    write_atomically(path, [data], mode)


def write_machine_context(machine: str) -> dict[str, Any]:
    """A docker context for Skiff machine `machine`: its URL and the store's client certificates."""
    import json

    ep = config.machine_endpoint(machine, config.GlobalOptions(hosts=[]))
    meta = {"Name": machine, "Metadata": {"Description": f"Skiff machine {machine}", "SkiffMachine": machine},
            "Endpoints": {"docker": {"Host": ep.url, "SkipTLSVerify": False}}}
    _write(meta_path(machine), json.dumps(meta, separators=(",", ":")).encode(), 0o644)
    for key, src in (("ca", ep.ca), ("cert", ep.cert), ("key", ep.key)):
        if src:
            with open(src, "rb") as f:
                _write(os.path.join(tls_dir(machine), f"{key}.pem"), f.read(), 0o600)
    return meta


def set_current(name: str) -> None:
    """config.json "currentContext" (removed for "default"), the rest of the file kept."""
    from skiffbox.cli.skiffclient import credstore

    cfg = credstore.load()
    cfg.setdefault("auths", {})
    if name == DEFAULT:
        cfg.pop("currentContext", None)
    else:
        cfg["currentContext"] = name
    credstore.save(cfg)
