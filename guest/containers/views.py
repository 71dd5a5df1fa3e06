"""Docker's JSON views of a container: inspect (`ContainerInspectResponse`), the `ps` summary
(`ContainerSummary`) with its human status text, and the `ps` filters."""

from __future__ import annotations

import functools
import re
import time
from datetime import datetime
from typing import Any

from skiffbox.guest.containers.store import Container
from skiffbox.guest.errors import InvalidParameter
from skiffbox.guest.util.filters import bool_filter, match_labels
from skiffbox.guest.util.humanize import human_duration

LIST_FILTERS = {"ancestor", "before", "expose", "exited", "health", "id", "isolation", "is-task", "label", "name",
                "network", "publish", "since", "status", "volume"}
STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")


@functools.lru_cache(maxsize=4096)
def _ts(s: str | None) -> float:
    if not s or s.startswith("0001-"):
        return 0.0
    main, _, frac = s.rstrip("Z").partition(".")
    try:
        dt = datetime.fromisoformat(main + "+00:00")
    except ValueError:
        return 0.0
    return dt.timestamp() + (float("0." + frac) if frac else 0.0)


def state_name(c: Container) -> str:
    st = c.state
    return st.get("Status") or "created"


def status_text(c: Container, now: float | None = None) -> str:
    now = time.time() if now is None else now
    st = c.state
    status = state_name(c)
    if status in ("running", "paused"):
        up = "Up " + human_duration(now - _ts(st.get("StartedAt")))
        if status == "paused":
            return up + " (Paused)"
        health = (st.get("Health") or {}).get("Status")
        if health:
            return f"{up} ({'health: starting' if health == 'starting' else health})"
        return up
    if status == "restarting":
        return f"Restarting ({st.get('ExitCode', 0)}) {human_duration(now - _ts(st.get('FinishedAt')))} ago"
    if status == "removing":
        return "Removal In Progress"
    if status == "dead":
        return "Dead"
    if status == "exited" or _ts(st.get("FinishedAt")):
        fin = _ts(st.get("FinishedAt"))
        if not fin:
            return f"Exited ({st.get('ExitCode', 0)})"
        return f"Exited ({st.get('ExitCode', 0)}) {human_duration(now - fin)} ago"
    return "Created"


def command_text(c: Container) -> str:
    parts = [c.rec.get("Path") or ""] + list(c.rec.get("Args") or [])
    return " ".join(p for p in parts if p != "" or len(parts) == 1)


def ports_list(c: Container) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    ports = (c.rec.get("NetworkSettings") or {}).get("Ports") or {}
    seen = set()
    for key, binds in ports.items():
        num, _, proto = key.partition("/")
        if not binds:
            out.append({"PrivatePort": int(num), "Type": proto or "tcp"})
            continue
        for b in binds:
            ent = {"IP": b.get("HostIp") or "0.0.0.0", "PrivatePort": int(num), "PublicPort": int(b.get("HostPort") or 0),
                   "Type": proto or "tcp"}
            k = tuple(sorted(ent.items()))
            if k not in seen:
                seen.add(k)
                out.append(ent)
    for key in (c.config.get("ExposedPorts") or {}):
        if key not in ports:
            num, _, proto = key.partition("/")
            out.append({"PrivatePort": int(num), "Type": proto or "tcp"})
    return out


def summary(c: Container, size: tuple[int, int] | None = None) -> dict[str, Any]:
    ns = c.rec.get("NetworkSettings") or {}
    out: dict[str, Any] = {
        "Id": c.id,
        "Names": ["/" + c.name],
        "Image": c.config.get("Image") or c.rec.get("Image"),
        "ImageID": c.rec.get("Image"),
        "Command": command_text(c),
        "Created": int(_ts(c.rec.get("Created"))),
        "Ports": ports_list(c),
        "Labels": c.config.get("Labels") or {},
        "State": state_name(c),
        "Status": status_text(c),
        "HostConfig": {"NetworkMode": c.host_config.get("NetworkMode") or "bridge"},
        "NetworkSettings": {"Networks": ns.get("Networks") or {}},  # serialised at once: no copy needed
        "Mounts": [_summary_mount(m) for m in c.rec.get("Mounts") or []],
    }
    if size is not None:
        out["SizeRw"], out["SizeRootFs"] = size
    return out


def _summary_mount(m: dict[str, Any]) -> dict[str, Any]:
    return {k: m.get(k) for k in ("Type", "Name", "Source", "Destination", "Driver", "Mode", "RW", "Propagation") if k in m}


def inspect(c: Container, size: tuple[int, int] | None = None, exec_ids: list[str] | None = None,
            links: list[str] | None = None) -> dict[str, Any]:
    """`links`: HostConfig.Links as dockerd shows them (containers/links.py inspect_links)."""
    r = c.rec
    st = dict(c.state)
    st.setdefault("Health", None)
    if st.get("Health") is None:
        st.pop("Health")
    out: dict[str, Any] = {
        "Id": c.id,
        "Created": r["Created"],
        "Path": r.get("Path", ""),
        "Args": r.get("Args", []),
        "State": st,
        "Image": r.get("Image", ""),
        "ResolvConfPath": str(c.dir / "resolv.conf"),
        "HostnamePath": str(c.dir / "hostname"),
        "HostsPath": str(c.dir / "hosts"),
        "LogPath": str(c.log_path),
        "Name": "/" + c.name,
        "RestartCount": r.get("RestartCount", 0),
        "Driver": "overlay2",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": exec_ids or None,
        "HostConfig": {**r["HostConfig"], "Links": links},
        "GraphDriver": {"Name": "overlay2", "Data": {
            "LowerDir": ":".join(c.skiff.get("LowerDirs") or []),
            "MergedDir": str(c.rootfs), "UpperDir": str(c.upper), "WorkDir": str(c.work)}},
        "Mounts": r.get("Mounts") or [],
        "Config": r["Config"],
        "NetworkSettings": r.get("NetworkSettings") or {},
    }
    if size is not None:
        out["SizeRw"], out["SizeRootFs"] = size
    return out


# ---------------------------------------------------------------------------------------------
# ps filters
# ---------------------------------------------------------------------------------------------


def validate_filters(flt: dict[str, list[str]]) -> None:
    for s in flt.get("status", []):
        if s not in STATUSES:
            raise InvalidParameter(f"invalid filter 'status={s}'")
    for h in flt.get("health", []):
        if h not in ("starting", "healthy", "unhealthy", "none"):
            raise InvalidParameter(f"Unrecognised filter value for health: {h}")
    for e in flt.get("exited", []):
        if not e.lstrip("-").isdigit():
            raise InvalidParameter(f"invalid filter 'exited={e}'")


def matches(c: Container, flt: dict[str, list[str]], image_ids: set[str] | None, before: float | None,
            since: float | None) -> bool:
    if "id" in flt and not any(c.id.startswith(v) for v in flt["id"]):
        return False
    if "name" in flt and not any(re.search(v, "/" + c.name) or re.search(v, c.name) for v in flt["name"]):
        return False
    if "status" in flt and state_name(c) not in flt["status"]:
        return False
    if "label" in flt and not match_labels(c.config.get("Labels"), flt["label"]):
        return False
    if "exited" in flt:
        if state_name(c) != "exited" or str(c.state.get("ExitCode", 0)) not in flt["exited"]:
            return False
    if "health" in flt:
        h = (c.state.get("Health") or {}).get("Status") or "none"
        if h not in flt["health"]:
            return False
    if image_ids is not None and c.rec.get("Image") not in image_ids:
        return False
    if "network" in flt:
        nets = (c.rec.get("NetworkSettings") or {}).get("Networks") or {}
        ids = set(nets) | {(v or {}).get("NetworkID", "") for v in nets.values()}
        if not any(v in ids or any(i.startswith(v) for i in ids if i) for v in flt["network"]):
            return False
    if "volume" in flt:
        names = set()
        for m in c.rec.get("Mounts") or []:
            names.update({m.get("Name") or "", m.get("Destination") or "", m.get("Source") or ""})
        if not any(v in names for v in flt["volume"]):
            return False
    if "expose" in flt or "publish" in flt:
        keys = set((c.config.get("ExposedPorts") or {}).keys())
        pub = set()
        for k, binds in ((c.rec.get("NetworkSettings") or {}).get("Ports") or {}).items():
            for b in binds or []:
                pub.add(f"{b.get('HostPort')}/{k.partition('/')[2] or 'tcp'}")
        for v in flt.get("expose", []):
            if (v if "/" in v else f"{v}/tcp") not in keys:
                return False
        for v in flt.get("publish", []):
            if (v if "/" in v else f"{v}/tcp") not in pub:
                return False
    if "is-task" in flt and bool_filter(flt["is-task"], "is-task"):
        return False
    created = _ts(c.rec.get("Created"))
    if before is not None and created >= before:
        return False
    if since is not None and created <= since:
        return False
    return True


def created_ts(c: Container) -> float:
    return _ts(c.rec.get("Created"))
