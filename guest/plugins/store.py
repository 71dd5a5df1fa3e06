"""Engine plugins as far as skiffd can have them: made from a local context (`docker plugin create`), listed,
inspected, configured and removed, but never enabled: skiffd does not run plugin processes (its volume and network
drivers are built in), so every plugin stays disabled and enabling one is a 501 that says so.

A plugin is a folder under <data-root>/plugins/<id>: plugin.json (what inspect shows, written atomically) and
rootfs.tar (the context's rootfs/, re-packed without its prefix, whose sha256 is the layer's diff ID).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import secrets
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from skiffbox.guest import __version__
from skiffbox.guest.contracts import EventSink
from skiffbox.guest.errors import Conflict, InvalidParameter, NotFound, NotImplementedYet
from skiffbox.guest.images.reference import parse_normalized
from skiffbox.guest.util.atomicfile import TMP_PREFIX, atomic_write_json, fsync_dir
from skiffbox.guest.util.filters import Filters, bool_filter

log = logging.getLogger("skiffd")

LIST_FILTERS = {"capability", "enable"}
NO_PLUGIN_PROCESSES = ("skiff does not run engine plugins (its volume and network drivers are built in): "
                       "the plugin stays disabled")
_MAX_CONFIG = 1 << 20


def not_found(ref: str) -> NotFound:
    return NotFound(f'plugin "{ref}" not found')


def plugin_name(ref: str) -> str:
    """A plugin's name as dockerd keeps it: the familiar reference with a tag (`vieux/sshfs:latest`)."""
    try:
        return parse_normalized(ref).tag_or_latest().familiar()
    except InvalidParameter as e:
        raise InvalidParameter(f"failed to parse reference {ref}: {e.message}") from None


def _go(obj: Any, fields: dict[str, Any]) -> dict[str, Any]:
    """`obj` decoded into a Go struct with `fields` (name → zero value): JSON keys match case-insensitively,
    absent fields take their zero value, unknown keys are dropped."""
    given = {str(k).lower(): v for k, v in (obj.items() if isinstance(obj, dict) else [])}
    return {name: copy.deepcopy(given[name.lower()]) if given.get(name.lower()) is not None else copy.deepcopy(zero)
            for name, zero in fields.items()}


def normalize_config(raw: Any, diff_id: str) -> dict[str, Any]:
    """config.json as dockerd's types.PluginConfig shows it."""
    if not isinstance(raw, dict):
        raise InvalidParameter("invalid plugin config: config.json must hold a JSON object")
    arg = {"Description": "", "Name": "", "Settable": None, "Value": None}
    env = {"Description": "", "Name": "", "Settable": None, "Value": None}
    cfg = _go(raw, {"Args": {}, "Description": "", "DockerVersion": "", "Documentation": "", "Entrypoint": None,
                    "Env": None, "Interface": {}, "IpcHost": False, "Linux": {}, "Mounts": None, "Network": {},
                    "PidHost": False, "PropagatedMount": "", "User": {}, "WorkDir": ""})
    cfg["Args"] = _go(cfg["Args"], arg)
    cfg["Env"] = [_go(e, env) for e in cfg["Env"]] if isinstance(cfg["Env"], list) else []
    cfg["Interface"] = _go(cfg["Interface"], {"Socket": "", "Types": None})
    cfg["Linux"] = _go(cfg["Linux"], {"AllowAllDevices": False, "Capabilities": None, "Devices": None})
    cfg["Network"] = _go(cfg["Network"], {"Type": ""})
    cfg["DockerVersion"] = __version__
    cfg["rootfs"] = {"diff_ids": [diff_id], "type": "layers"}
    return cfg


def _settings(cfg: dict[str, Any]) -> dict[str, Any]:
    return {"Args": list(cfg["Args"].get("Value") or []), "Devices": [],
            "Env": [f"{e['Name']}={e['Value']}" for e in cfg["Env"] if e.get("Value") is not None], "Mounts": []}


def privileges(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """moby's computePrivileges: what a plugin's config asks of the host."""
    out: list[dict[str, Any]] = []

    def add(name: str, values: list[str]) -> None:
        out.append({"Name": name, "Description": "", "Value": values})
    if cfg["Network"].get("Type") not in ("", "null", "bridge", None):
        add("network", [cfg["Network"]["Type"]])
    if cfg["IpcHost"]:
        add("host ipc namespace", ["true"])
    if cfg["PidHost"]:
        add("host pid namespace", ["true"])
    mounts = [str(m.get("Source") or m.get("source")) for m in cfg.get("Mounts") or [] if isinstance(m, dict)
              and (m.get("Source") or m.get("source"))]
    if mounts:
        add("mount", mounts)
    devices = [str(d.get("Path") or d.get("path")) for d in cfg["Linux"].get("Devices") or [] if isinstance(d, dict)
               and (d.get("Path") or d.get("path"))]
    if devices:
        add("device", devices)
    if cfg["Linux"].get("AllowAllDevices"):
        add("allow-all-devices", ["true"])
    if cfg["Linux"].get("Capabilities"):
        add("capabilities", [str(c) for c in cfg["Linux"]["Capabilities"]])
    return out


class PluginStore:
    def __init__(self, root: Path, events: EventSink) -> None:
        self.dir = Path(root) / "plugins"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._events = events
        self._plugins: dict[str, dict[str, Any]] = {}
        for d in self.dir.iterdir():
            if d.name.startswith(TMP_PREFIX):  # a create or remove cut short
                shutil.rmtree(d, ignore_errors=True)
                continue
            try:
                self._plugins[d.name] = json.loads((d / "plugin.json").read_text())
            except (OSError, ValueError) as e:
                log.error("plugins: %s is unreadable (%s), skipped", d, e)

    def _find(self, ref: str) -> dict[str, Any]:
        try:
            name = plugin_name(ref)
        except InvalidParameter:
            name = ""
        for p in self._plugins.values():
            if p["Name"] == name:
                return p
        matches = [p for pid, p in self._plugins.items() if ref and pid.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        raise not_found(ref)

    def inspect(self, ref: str) -> dict[str, Any]:
        return copy.deepcopy(self._find(ref))

    def ls(self, f: Filters) -> list[dict[str, Any]]:
        enabled = bool_filter(f.get("enable"), "enable")
        caps = f.get("capability") or []

        def keep(p: dict[str, Any]) -> bool:
            types = p["Config"]["Interface"].get("Types") or []
            return ((enabled is None or p["Enabled"] == enabled)
                    and (not caps or any(f"docker.{c}/" in t or t.split("/")[0].endswith(c) for c in caps for t in types)))
        return [copy.deepcopy(p) for p in self._plugins.values() if keep(p)]

    def create(self, ref: str, context: IO[bytes]) -> None:
        """A plugin from a context tar (config.json and rootfs/), stored whole before it is listed."""
        name = plugin_name(ref)
        if any(p["Name"] == name for p in self._plugins.values()):
            raise Conflict(f"plugin {name} already exists")
        pid = secrets.token_hex(32)
        work = self.dir / f"{TMP_PREFIX}{pid}"
        work.mkdir()
        try:
            raw, diff_id = _unpack_context(context, work / "rootfs.tar")
            cfg = normalize_config(raw, diff_id)
            plugin = {"Config": cfg, "Enabled": False, "Id": pid, "Name": name, "PluginReference": name,
                      "Settings": _settings(cfg)}
            atomic_write_json(work / "plugin.json", plugin)
            os.replace(work, self.dir / pid)
            fsync_dir(self.dir)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        self._plugins[pid] = plugin
        self._events.publish("plugin", "create", pid, {"name": name})

    def set(self, ref: str, args: list[str]) -> None:
        p = self._find(ref)
        updated = copy.deepcopy(p)
        for a in args:
            key, sep, value = str(a).partition("=")
            env = next((e for e in updated["Config"]["Env"] if e["Name"] == key), None)
            if key == "args":
                updated["Settings"]["Args"] = value.split()
            elif env is not None and sep and "value" in (env.get("Settable") or []):
                updated["Settings"]["Env"] = [e for e in updated["Settings"]["Env"] if not e.startswith(key + "=")]
                updated["Settings"]["Env"].append(f"{key}={value}")
            elif env is not None:
                raise InvalidParameter(f'setting "{key}" cannot be set: it is not settable')
            else:
                raise InvalidParameter(f'setting "{key}" not found in the plugin configuration')
        atomic_write_json(self.dir / p["Id"] / "plugin.json", updated)
        self._plugins[p["Id"]] = updated

    def privileges(self, remote: str, fetch: Any) -> list[dict[str, Any]]:
        """What installing `remote` would grant it, from its config in the registry (`fetch(ref)` returns the
        config's JSON). As dockerd, a registry that cannot be reached answers with no privileges."""
        name = plugin_name(remote)
        try:
            cfg = normalize_config(fetch(name), "")
        except Exception as e:
            log.info("plugins: privileges of %s: %s (answered with none, as dockerd does)", name, e)
            return []
        return privileges(cfg)

    def enable(self, ref: str) -> None:
        self._find(ref)
        raise NotImplementedYet(NO_PLUGIN_PROCESSES)

    def disable(self, ref: str) -> None:
        p = self._find(ref)
        raise Conflict(f"plugin is already disabled: plugin {p['Name']} found but disabled")

    def remove(self, ref: str) -> None:
        p = self._find(ref)
        gone = self.dir / f"{TMP_PREFIX}rm-{p['Id']}"
        os.replace(self.dir / p["Id"], gone)  # one rename: a crash leaves it whole or swept at the next start
        fsync_dir(self.dir)
        del self._plugins[p["Id"]]
        shutil.rmtree(gone, ignore_errors=True)
        self._events.publish("plugin", "remove", p["Id"], {"name": p["Name"]})


def _members(tf: tarfile.TarFile) -> Iterator[tuple[str, tarfile.TarInfo]]:
    for m in tf:
        name = m.name
        while name.startswith("./"):
            name = name[2:]
        yield name.lstrip("/"), m


def _unpack_context(context: IO[bytes], rootfs_tar: Path) -> tuple[Any, str]:
    """config.json's JSON and the diff ID of rootfs/ re-packed into `rootfs_tar` (nothing is extracted)."""
    raw: Any = None
    digest = hashlib.sha256()
    try:
        with tarfile.open(fileobj=context, mode="r|*") as src, open(rootfs_tar, "wb") as out:
            hashing = _HashingWriter(out, digest)
            with tarfile.open(fileobj=hashing, mode="w|", format=tarfile.PAX_FORMAT) as dst:  # type: ignore[call-overload]
                for name, m in _members(src):
                    if name == "config.json" and m.isfile():
                        f = src.extractfile(m)
                        if f is None or m.size > _MAX_CONFIG:
                            raise InvalidParameter("invalid plugin config: config.json is too large")
                        try:
                            raw = json.loads(f.read())
                        except ValueError as e:
                            raise InvalidParameter(f"invalid plugin config: config.json: {e}") from None
                    elif name.startswith("rootfs/") and name != "rootfs/":
                        m.name = name[len("rootfs/"):]
                        dst.addfile(m, src.extractfile(m) if m.isfile() else None)
            out.flush()
            os.fsync(out.fileno())
    except (tarfile.TarError, EOFError) as e:
        raise InvalidParameter(f"failed to read from tar: {e or 'unexpected EOF'}") from None
    if raw is None:
        raise InvalidParameter("invalid plugin context: config.json not found")
    return raw, "sha256:" + digest.hexdigest()


class _HashingWriter:
    def __init__(self, out: IO[bytes], digest: Any) -> None:
        self._out, self._digest = out, digest

    def write(self, b: bytes) -> int:
        self._digest.update(b)
        return self._out.write(b)

