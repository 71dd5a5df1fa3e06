"""A container's privileges, with Docker's defaults: its capabilities (the 14 defaults, `--cap-add/--cap-drop`,
all of the daemon's bounding set when privileged), its seccomp filter (moby's default profile, seccomp.json,
filtered by capabilities, arch and kernel; or the profile `--security-opt seccomp=` names), no-new-privileges,
and the /proc and /sys paths masked or made read-only."""

from __future__ import annotations

import functools
import json
import os
import platform
from pathlib import Path
from typing import Any

from skiffbox.guest.errors import InvalidParameter

DEFAULT_CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
]

ALL_CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN",
    "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
]

MASKED_PATHS = [
    "/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
    "/sys/devices/virtual/powercap",
]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

_SECCOMP_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x",
                 "riscv64": "riscv64", "i686": "x86"}


def _norm_cap(c: str) -> str:
    c = c.strip().upper()
    return c if c.startswith("CAP_") else "CAP_" + c


@functools.cache
def available_caps() -> list[str]:
    """ALL_CAPS is in kernel number order; keep those in our own bounding set (a container cannot get more)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapBnd:"):
                bnd = int(line.split()[1], 16)
                return [c for i, c in enumerate(ALL_CAPS) if bnd & (1 << i)]
    except OSError:
        pass
    return list(ALL_CAPS)


def capabilities(cap_add: list[str] | None, cap_drop: list[str] | None, privileged: bool) -> list[str]:
    if privileged:
        return available_caps()
    add = [_norm_cap(c) for c in cap_add or []]
    drop = [_norm_cap(c) for c in cap_drop or []]
    for c in add + drop:
        if c != "CAP_ALL" and c not in ALL_CAPS:
            raise InvalidParameter(f"unknown capability: {c!r}")
    caps = available_caps() if "CAP_ALL" in add else list(DEFAULT_CAPS)
    for c in add:
        if c != "CAP_ALL" and c not in caps:
            caps.append(c)
    if "CAP_ALL" in drop:
        caps = [c for c in add if c != "CAP_ALL"]
    else:
        caps = [c for c in caps if c not in drop]
    return caps


@functools.cache
def _default_profile() -> dict[str, Any]:
    profile: dict[str, Any] = json.loads((Path(__file__).parent / "seccomp.json").read_text())
    return profile


def _kernel_at_least(v: str) -> bool:
    def nums(s: str) -> tuple[int, ...]:
        out = []
        for p in s.split(".")[:2]:
            digits = "".join(ch for ch in p if ch.isdigit())
            out.append(int(digits or 0))
        return tuple(out)

    return nums(os.uname().release) >= nums(v)


def seccomp_to_oci(profile: dict[str, Any], caps: list[str]) -> dict[str, Any]:
    """moby's profile format → OCI `linux.seccomp`: keep rules whose includes/excludes match caps and arch."""
    arch = _SECCOMP_ARCH.get(platform.machine(), platform.machine())
    out: dict[str, Any] = {"defaultAction": profile.get("defaultAction", "SCMP_ACT_ERRNO")}
    if "defaultErrnoRet" in profile:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    arches: list[str] = []
    for m in profile.get("archMap") or []:
        native = m["architecture"]
        if native.lower().endswith(("x86_64",)) and arch != "amd64":
            continue
        if native.lower().endswith("aarch64") and arch != "arm64":
            continue
        if native.lower().endswith(("ppc64le", "s390x", "riscv64")) and not native.lower().endswith(arch):
            continue
        arches = [native] + list(m.get("subArchitectures") or [])
        break
    if not arches and profile.get("architectures"):
        arches = list(profile["architectures"])
    if arches:
        out["architectures"] = arches
    syscalls = []
    for rule in profile.get("syscalls") or []:
        inc = rule.get("includes") or {}
        exc = rule.get("excludes") or {}
        if inc.get("caps") and not all(c in caps for c in inc["caps"]):
            continue
        if inc.get("arches") and arch not in inc["arches"]:
            continue
        if inc.get("minKernel") and not _kernel_at_least(inc["minKernel"]):
            continue
        if exc.get("caps") and any(c in caps for c in exc["caps"]):
            continue
        if exc.get("arches") and arch in exc["arches"]:
            continue
        names = rule.get("names") or ([rule["name"]] if rule.get("name") else [])
        r: dict[str, Any] = {"names": names, "action": rule["action"]}
        if rule.get("args"):
            r["args"] = [{k: v for k, v in a.items() if k in ("index", "value", "valueTwo", "op")} for a in rule["args"]]
        if "errnoRet" in rule:
            r["errnoRet"] = rule["errnoRet"]
        syscalls.append(r)
    out["syscalls"] = syscalls
    return out



def no_new_privileges(hc: dict[str, Any]) -> bool:
    for opt in hc.get("SecurityOpt") or []:
        k, sep, v = opt.replace("=", ":", 1).partition(":")
        if k == "no-new-privileges":
            return (v or "true").lower() in ("true", "1", "")
    return False


def seccomp(hc: dict[str, Any], caps: list[str]) -> dict[str, Any] | None:
    if hc.get("Privileged"):
        return None
    for opt in hc.get("SecurityOpt") or []:
        k, sep, v = opt.partition("=")
        if not sep:
            k, sep, v = opt.partition(":")
        if k == "seccomp":
            if v == "unconfined":
                return None
            if v in ("", "builtin", "default"):
                break
            try:
                prof = json.loads(v)
            except ValueError:
                raise InvalidParameter("Decoding seccomp profile failed: invalid JSON") from None
            return seccomp_to_oci(prof, caps)
    return seccomp_to_oci(_default_profile(), caps)
