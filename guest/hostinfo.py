"""Facts about the machine the engine runs on (kernel, OS, cgroups, runtimes), computed once."""

from __future__ import annotations

import functools
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "ppc64le": "ppc64le", "s390x": "s390x"}


def go_arch() -> str:
    m = platform.machine()
    return _ARCH.get(m, m)


def kernel_version() -> str:
    return os.uname().release


@functools.cache
def operating_system() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


def mem_total() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@functools.cache
def cgroup_version() -> str:
    """"2" on a unified hierarchy (the guest VM), "1" on v1 or hybrid hosts (our test machines)."""
    return "2" if Path("/sys/fs/cgroup/cgroup.controllers").exists() else "1"


def cgroup_hybrid_controllers() -> str:
    """Controllers on the v2 mount of a hybrid host; non-empty breaks `crun create` (see probe_runtime.md)."""
    try:
        return Path("/sys/fs/cgroup/unified/cgroup.controllers").read_text().strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class RuntimeInfo:
    name: str
    path: str
    version: str


@functools.cache
def runtimes() -> tuple[RuntimeInfo, ...]:
    found = []
    for name in ("crun", "runc"):
        path = shutil.which(name)
        if not path:
            continue
        try:
            out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=5).stdout
            version = out.splitlines()[0].split()[-1] if out else ""
        except (OSError, subprocess.SubprocessError):
            version = ""
        found.append(RuntimeInfo(name, path, version))
    return tuple(found)
