"""Writing registry credentials where the docker CLI keeps them, so a `login` by either client serves both.

Reading lives in config.py (`credentials()`); this module stores and erases, as docker's cli/config does:
- a `docker-credential-<helper>` named by `credHelpers[registry]` or `credsStore` gets `store` (JSON
  {"ServerURL","Username","Secret"} on stdin; an identity token is stored as Username "<token>") and
  `erase` (the server address on stdin); config.json then keeps an empty `auths` entry for the server;
- otherwise config.json's `auths[server] = {"auth": base64(user:password)}` (or `identitytoken`).
config.json is rewritten the way the Go CLI writes it (tab-indented, via a temporary file and rename, mode
0600), keeping every key skiff does not know about.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess

from skiffbox.cli.skiffclient import config

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class CredStoreError(Exception):
    pass


def convert_to_hostname(address: str) -> str:
    """credentials.ConvertToHostname: "https://host:5000/v2/" -> "host:5000" (other schemes stay as they are)."""
    scheme, sep, rest = address.partition("://")
    if sep:
        if scheme not in ("http", "https"):
            return address
        address = rest
    return address.split("/", 1)[0]


def _path() -> str:
    return os.path.join(config.config_dir(), "config.json")


def load() -> dict[str, Any]:
    try:
        with open(_path(), "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return {}
    if not data.strip():
        return {}
    try:
        cfg = json.loads(data)
    except ValueError as e:
        raise CredStoreError(f"{_path()}: {e}") from None
    return cfg if isinstance(cfg, dict) else {}


def save(cfg: dict[str, Any]) -> None:
    """configfile.Save: tab-indented JSON, written to a temporary file and renamed over config.json."""
    from skiffbox.cli.skiffclient.files import write_atomically

    path = _path()
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    write_atomically(path, [json.dumps(cfg, indent="\t", ensure_ascii=False).encode()], 0o600, prefix="config.json")
    config._cfg_cache = None  # later reads in this process see the new file


def helper_for(cfg: dict[str, Any], server: str) -> str:
    return (cfg.get("credHelpers") or {}).get(convert_to_hostname(server)) or cfg.get("credsStore") or ""


def _helper(helper: str, action: str, data: bytes) -> None:
    try:
        r = subprocess.run([f"docker-credential-{helper}", action], input=data, capture_output=True, timeout=60)
    except FileNotFoundError:
        err, out = f'exec: "docker-credential-{helper}": executable file not found in $PATH', ""
    except (OSError, subprocess.TimeoutExpired) as e:
        err, out = str(e), ""
    else:
        if r.returncode == 0:
            return
        err, out = f"exit status {r.returncode}", r.stdout.decode(errors="replace").strip()
    verb = "storing" if action == "store" else "erasing"
    raise CredStoreError(f"error {verb} credentials - err: {err}, out: `{out}`")


def store(server: str, username: str, password: str, identitytoken: str = "") -> str:
    """Save a login for `server` (the address docker keys it by); returns docker's warning when the secret
    went into config.json in the clear."""
    cfg = load()
    helper = helper_for(cfg, server)
    auths = cfg.setdefault("auths", {})
    if helper:
        secret = {"ServerURL": server, "Username": "<token>" if identitytoken else username,
                  "Secret": identitytoken or password}
        try:
            _helper(helper, "store", (json.dumps(secret) + "\n").encode())
        except CredStoreError as e:
            raise CredStoreError(f"Error saving credentials: {e}") from None
        auths[server] = {}
    else:
        entry: dict[str, str] = {}
        if not identitytoken:
            entry["auth"] = base64.b64encode(f"{username}:{password}".encode()).decode()
        else:
            entry["identitytoken"] = identitytoken
        auths[server] = entry
    save(cfg)
    if helper:
        return ""
    return (f"\nWARNING! Your credentials are stored unencrypted in '{_path()}'.\n"
            "Configure a credential helper to remove this warning. See\n"
            "https://docs.docker.com/go/credential-store/\n\n")


def erase(server: str) -> str | None:
    """Forget `server`; returns an error text, or None."""
    cfg = load()
    helper = helper_for(cfg, server)
    if helper:
        try:
            _helper(helper, "erase", server.encode())
        except CredStoreError as e:
            return str(e)
    cfg.setdefault("auths", {}).pop(server, None)
    save(cfg)  # as docker's file store does, even when there was nothing to remove
    return None
