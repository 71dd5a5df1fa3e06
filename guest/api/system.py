"""System endpoints: /_ping, /version, /info, /events, /system/df."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import socket
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

from skiffbox.guest import __version__, hostinfo
from skiffbox.guest.api.http import API_VERSION, MIN_API_VERSION, Request, Response, Router, Stream, json_response
from skiffbox.guest.engine import Engine
from skiffbox.guest.images.proxy import mask_credentials
from skiffbox.guest.util.filters import match_labels, parse_filters
from skiffbox.guest.util.timefmt import parse_time

GIT_COMMIT = "skiff"


def router(engine: Engine) -> Router:
    r = Router()

    async def ping(req: Request) -> Response:
        headers = {
            "Cache-Control": "no-cache, no-store, must-revalidate",
            "Pragma": "no-cache",
            "Builder-Version": "1",
            "Swarm": "inactive",
        }
        return Response(200, b"OK", "text/plain; charset=utf-8", headers)

    r.add("GET", "/_ping", ping)
    r.add("HEAD", "/_ping", ping)

    @r.route("GET", "/version")
    async def version(req: Request) -> Response:
        return json_response(version_info())

    @r.route("GET", "/info")
    async def info(req: Request) -> Response:
        return json_response(await engine_info(engine))

    @r.route("GET", "/events")
    async def events(req: Request) -> Stream:
        return Stream(_event_stream(engine, req))

    @r.route("GET", "/system/df")
    async def df(req: Request) -> Response:
        out: dict[str, Any] = {"LayersSize": 0, "Images": [], "Containers": [], "Volumes": [], "BuildCache": []}
        for svc in (engine.images, engine.containers, engine.volumes):
            if svc is not None and hasattr(svc, "disk_usage"):
                out.update(await svc.disk_usage())
        return json_response(out)

    return r


def version_info() -> dict[str, Any]:
    details = {
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": GIT_COMMIT,
        "GoVersion": f"python{platform.python_version()}",
        "Os": "linux",
        "Arch": hostinfo.go_arch(),
        "KernelVersion": hostinfo.kernel_version(),
        "BuildTime": "2026-11-28T00:00:00.000000000+00:00",
        "Experimental": "false",
    }
    components = [{"Name": "Engine", "Version": __version__, "Details": details}]
    for rt in hostinfo.runtimes():
        components.append({"Name": rt.name, "Version": rt.version, "Details": {"GitCommit": ""}})
    return {
        "Platform": {"Name": f"Skiff Engine {__version__}"},
        "Components": components,
        "Version": __version__,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": GIT_COMMIT,
        "GoVersion": details["GoVersion"],
        "Os": "linux",
        "Arch": hostinfo.go_arch(),
        "KernelVersion": hostinfo.kernel_version(),
        "BuildTime": details["BuildTime"],
    }


async def engine_info(engine: Engine) -> dict[str, Any]:
    counts = {"Containers": 0, "ContainersRunning": 0, "ContainersPaused": 0, "ContainersStopped": 0}
    if engine.containers is not None:
        counts.update(engine.containers.counts())
    images = engine.images.count() if engine.images is not None else 0
    rts = hostinfo.runtimes()
    default_rt = engine.cfg.runtime or (engine.containers.runtime_name if engine.containers is not None else (rts[-1].name if rts else "runc"))
    cfg = engine.cfg
    insecure = ["127.0.0.0/8", "::1/128"] + [r for r in cfg.insecure_registries if "/" in r]
    # Mirrors as validated at start (trailing slash, as dockerd normalises them); they serve docker.io only.
    index_configs = {"docker.io": {"Name": "docker.io", "Mirrors": list(cfg.registry_mirrors), "Secure": True, "Official": True}}
    for r in cfg.insecure_registries:
        if "/" not in r:
            index_configs[r] = {"Name": r, "Mirrors": [], "Secure": False, "Official": False}
    return {
        "ID": engine.id,
        **counts,
        "Images": images,
        "Driver": "overlay2",
        "DriverStatus": [["Backing Filesystem", _backing_fs(str(engine.root))], ["Supports d_type", "true"],
                         ["Using metacopy", "false"], ["Native Overlay Diff", "true"], ["userxattr", "false"]],
        "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "null"], "Authorization": None,
                    "Log": ["json-file", "k8s-file"]},
        "MemoryLimit": True,
        "SwapLimit": os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes") or hostinfo.cgroup_version() == "2",
        "CpuCfsPeriod": True,
        "CpuCfsQuota": True,
        "CPUShares": True,
        "CPUSet": True,
        "PidsLimit": True,
        "IPv4Forwarding": _read("/proc/sys/net/ipv4/ip_forward") == "1",
        "BridgeNfIptables": True,
        "BridgeNfIp6tables": True,
        "Debug": cfg.log_level == "debug",
        "NFd": len(os.listdir("/proc/self/fd")),
        "OomKillDisable": False,
        "NGoroutines": len(asyncio.all_tasks()),
        "SystemTime": time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime()),
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": hostinfo.cgroup_version(),
        "NEventsListener": len(engine.events._subs),
        "KernelVersion": hostinfo.kernel_version(),
        "OperatingSystem": hostinfo.operating_system(),
        "OSVersion": "",
        "OSType": "linux",
        "Architecture": os.uname().machine,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {"AllowNondistributableArtifactsCIDRs": [], "AllowNondistributableArtifactsHostnames": [],
                           "InsecureRegistryCIDRs": insecure, "IndexConfigs": index_configs,
                           "Mirrors": list(cfg.registry_mirrors)},
        "NCPU": os.cpu_count() or 1,
        "MemTotal": hostinfo.mem_total(),
        "GenericResources": None,
        "DockerRootDir": str(engine.root),
        "HttpProxy": mask_credentials(cfg.http_proxy),  # as moby: credentials never leave the daemon
        "HttpsProxy": mask_credentials(cfg.https_proxy),
        "NoProxy": cfg.no_proxy,
        "Name": socket.gethostname(),
        "Labels": cfg.labels,
        "ExperimentalBuild": False,
        "ServerVersion": __version__,
        "Runtimes": {rt.name: {"path": rt.path} for rt in rts},
        "DefaultRuntime": default_rt,
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": False,
                  "Error": "", "RemoteManagers": None},
        "LiveRestoreEnabled": True,
        "Isolation": "",
        "InitBinary": "catatonit",
        "ContainerdCommit": {"ID": ""},
        "RuncCommit": {"ID": ""},
        "InitCommit": {"ID": ""},
        "SecurityOptions": ["name=seccomp,profile=builtin"],
        "CDISpecDirs": [],
        "Warnings": [],
    }


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _backing_fs(path: str) -> str:
    best, fs = "", "extfs"
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                mnt, typ = parts[1], parts[2]
                if path.startswith(mnt) and len(mnt) > len(best):
                    best, fs = mnt, typ
    except OSError:
        pass
    return {"ext4": "extfs", "ext3": "extfs"}.get(fs, fs)


def _event_matches(ev: dict[str, Any], flt: dict[str, list[str]]) -> bool:
    if not flt:
        return True
    attrs = ev["Actor"]["Attributes"]
    if "type" in flt and ev["Type"] not in flt["type"]:
        return False
    if "event" in flt and ev["Action"].split(":")[0] not in flt["event"] and ev["Action"] not in flt["event"]:
        return False
    for kind in ("container", "image", "network", "volume"):
        if kind in flt:
            if ev["Type"] != kind:
                return False
            ident = {ev["Actor"]["ID"], attrs.get("name", "")}
            if kind == "image":
                ident.add(attrs.get("name", ""))
            if not any(v in ident or ev["Actor"]["ID"].startswith(v) for v in flt[kind]):
                return False
    if "label" in flt:
        labels = {k: v for k, v in attrs.items()}
        if not match_labels(labels, flt["label"]):
            return False
    if "scope" in flt and ev.get("scope") not in flt["scope"]:
        return False
    return True


async def _event_stream(engine: Engine, req: Request) -> AsyncIterator[bytes]:
    flt = parse_filters(req.q("filters"))
    since = parse_time(req.q("since"))
    until = parse_time(req.q("until"))
    q = engine.events.subscribe()
    try:
        if since is not None:
            for ev in engine.events.history():
                if ev["timeNano"] / 1e9 >= since and (until is None or ev["timeNano"] / 1e9 <= until) and _event_matches(ev, flt):
                    yield json.dumps(ev).encode() + b"\n"
        # Flush the headers straight away: clients block on them before anything happens.
        yield b""
        while True:
            timeout = None
            if until is not None:
                timeout = until - time.time()
                if timeout <= 0:
                    return
            try:
                ev = await asyncio.wait_for(q.get(), timeout)
            except asyncio.TimeoutError:
                return
            if ev["timeNano"] / 1e9 < (since or 0):
                continue
            if _event_matches(ev, flt):
                yield json.dumps(ev).encode() + b"\n"
    finally:
        engine.events.unsubscribe(q)
