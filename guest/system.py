"""The engine's own figures: version, info (counts, storage, runtimes, registry settings) and disk usage.
The HTTP layer (guest/api/system.py) serves them as they are."""

from __future__ import annotations

import asyncio
import os
import platform
import socket
import time
from typing import TYPE_CHECKING, Any

from skiffbox.guest import __version__, hostinfo
from skiffbox.guest.images.proxy import mask_credentials

if TYPE_CHECKING:
    from skiffbox.guest.engine import Engine

GIT_COMMIT = "skiff"


def version_info(api_version: str, min_api_version: str) -> dict[str, Any]:
    """`/version`: the engine and its runtimes; the API versions are the HTTP layer's, passed in."""
    details = {
        "ApiVersion": api_version,
        "MinAPIVersion": min_api_version,
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
        "ApiVersion": api_version,
        "MinAPIVersion": min_api_version,
        "GitCommit": GIT_COMMIT,
        "GoVersion": details["GoVersion"],
        "Os": "linux",
        "Arch": hostinfo.go_arch(),
        "KernelVersion": hostinfo.kernel_version(),
        "BuildTime": details["BuildTime"],
    }


async def engine_info(engine: Engine) -> dict[str, Any]:
    """`/info`: counts, storage, runtimes, registry and proxy settings, as dockerd reports them."""
    counts = engine.containers.counts()
    images = engine.images.count()
    rt = engine.containers.runtime
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
        "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "null", "overlay"], "Authorization": None,
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
        "NEventsListener": engine.events.listeners(),
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
        "Runtimes": {name: {"path": path} for name, path in rt.names().items()},
        "DefaultRuntime": rt.default_name,
        "Swarm": engine.swarm.info(),
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


async def disk_usage(engine: Engine) -> dict[str, Any]:
    """`/system/df`: each service reports its own part."""
    out: dict[str, Any] = {"LayersSize": 0, "Images": [], "Containers": [], "Volumes": [], "BuildCache": []}
    out.update(await engine.images.disk_usage())
    out.update(await engine.containers.disk_usage())
    out.update(await engine.volumes.disk_usage())
    return out
