"""OCI runtime spec (`config.json`) from a container record, with Docker's defaults.

Docker's defaults copied here: the default device cgroup rules, /dev/shm of 64 MiB, and the mounts a Docker
container sees; resource limits map HostConfig onto `linux.resources`. Its privileges (capabilities, seccomp,
masked paths) come from security.py, the user it runs as from users.py. The cgroup path is absolute
(`/skiff/<id>`): runc and crun read a relative one differently (probe_runtime.md).
"""

from __future__ import annotations

import copy
import functools
import os
import signal as _signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skiffbox.guest.containers import security
from skiffbox.guest.containers.users import ExecUser
from skiffbox.guest.errors import InvalidParameter


DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_SHM = 64 * 1024 * 1024

DEFAULT_DEVICE_RULES: list[dict[str, Any]] = [
    {"allow": False, "access": "rwm"},
    {"allow": True, "type": "c", "access": "m"},
    {"allow": True, "type": "b", "access": "m"},
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},  # null
    {"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"},  # random
    {"allow": True, "type": "c", "major": 1, "minor": 7, "access": "rwm"},  # full
    {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},  # tty
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},  # zero
    {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},  # urandom
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},  # /dev/pts/*
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},  # ptmx
    {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rwm"},  # tun
]

_RLIMITS = {
    "core": "RLIMIT_CORE", "cpu": "RLIMIT_CPU", "data": "RLIMIT_DATA", "fsize": "RLIMIT_FSIZE", "locks": "RLIMIT_LOCKS",
    "memlock": "RLIMIT_MEMLOCK", "msgqueue": "RLIMIT_MSGQUEUE", "nice": "RLIMIT_NICE", "nofile": "RLIMIT_NOFILE",
    "nproc": "RLIMIT_NPROC", "rss": "RLIMIT_RSS", "rtprio": "RLIMIT_RTPRIO", "rttime": "RLIMIT_RTTIME",
    "sigpending": "RLIMIT_SIGPENDING", "stack": "RLIMIT_STACK", "as": "RLIMIT_AS",
}

INIT_PATH_IN_CONTAINER = "/sbin/docker-init"


def init_binary() -> str | None:
    """The `--init` binary: catatonit (Podman's) or tini (Docker's docker-init), both from Debian."""
    for p in ("/usr/bin/catatonit", "/usr/libexec/podman/catatonit", "/usr/bin/tini-static", "/usr/bin/tini",
              "/usr/bin/docker-init"):
        if os.access(p, os.X_OK):
            return p
    return None


# ---------------------------------------------------------------------------------------------
# The spec
# ---------------------------------------------------------------------------------------------


def parse_signal(sig: str | int | None, default: int = _signal.SIGTERM) -> int:
    if sig is None or sig == "":
        return int(default)
    if isinstance(sig, int):
        return sig
    s = str(sig).strip().upper()
    if s.isdigit():
        return int(s)
    if not s.startswith("SIG"):
        s = "SIG" + s
    try:
        return int(getattr(_signal, s))
    except AttributeError:
        if s.startswith("SIGRTMIN+"):
            return int(_signal.SIGRTMIN) + int(s[9:])
        raise InvalidParameter(f"invalid signal: {sig}") from None


def merge_env(*envs: list[str] | None) -> list[str]:
    """Later lists override earlier keys; order of first appearance is kept (Docker's ReplaceOrAppendEnvValues)."""
    out: dict[str, str] = {}
    for env in envs:
        for kv in env or []:
            k, sep, _ = kv.partition("=")
            if not sep:
                # `-e NAME` with no value and no such variable in the client: Docker drops it.
                continue
            out[k] = kv
    return list(out.values())


@dataclass
class SpecInputs:
    """What the service knows at start time, beyond the record."""

    rootfs: Path
    cgroup_path: str
    hostname_file: Path | None = None
    hosts_file: Path | None = None
    resolv_file: Path | None = None
    netns_path: str | None = None  # join this netns; None = new one (or host when NetworkMode=host)
    ipc_path: str | None = None
    pid_path: str | None = None
    extra_mounts: list[dict[str, Any]] = field(default_factory=list)
    cgroup_v2: bool = False
    init_binary: str | None = None
    link_env: list[str] = field(default_factory=list)  # legacy links' variables (links.py); the user's Env wins


def _mounts(host_config: dict[str, Any], inputs: SpecInputs, readonly_rootfs: bool) -> list[dict[str, Any]]:
    shm = host_config.get("ShmSize") or DEFAULT_SHM
    sys_opts = ["nosuid", "noexec", "nodev", "ro"]
    privileged = bool(host_config.get("Privileged"))
    if privileged:
        sys_opts = ["nosuid", "noexec", "nodev"]
    mounts = [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": sys_opts},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["ro" if not privileged else "rw", "nosuid", "noexec", "nodev"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
    ]
    ipc_mode = host_config.get("IpcMode") or "private"
    if inputs.ipc_path is None and ipc_mode != "host":
        mounts.append({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                       "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={int(shm)}"]})
    elif ipc_mode == "host":
        mounts.append({"destination": "/dev/shm", "type": "bind", "source": "/dev/shm", "options": ["rbind", "rprivate"]})
    for dest, src in (("/etc/resolv.conf", inputs.resolv_file), ("/etc/hostname", inputs.hostname_file),
                      ("/etc/hosts", inputs.hosts_file)):
        if src is not None:
            opts = ["rbind", "rprivate"] + (["ro"] if readonly_rootfs else [])
            mounts.append({"destination": dest, "type": "bind", "source": str(src), "options": opts})
    if inputs.init_binary:
        mounts.append({"destination": INIT_PATH_IN_CONTAINER, "type": "bind", "source": inputs.init_binary,
                       "options": ["bind", "ro", "nosuid", "nodev"]})
    user_dests = set()
    for m in inputs.extra_mounts:
        user_dests.add(m["destination"])
    # A user mount on a default destination replaces the default (e.g. `--tmpfs /dev/shm`, `-v x:/etc/hosts`).
    mounts = [m for m in mounts if m["destination"] not in user_dests]
    mounts += sorted(inputs.extra_mounts, key=lambda m: str(m["destination"]).rstrip("/").count("/"))
    return mounts


def bind_mounts(host_config: dict[str, Any]) -> list[dict[str, Any]]:
    """The always-available basics: `-v /host:/ctr[:ro]`, `--mount type=bind|tmpfs`, `--tmpfs`.

    Named and anonymous volumes are the volume service's; `Binds` entries whose source is not an absolute
    path are left to it."""
    out: list[dict[str, Any]] = []
    for b in host_config.get("Binds") or []:
        parts = b.split(":")
        if len(parts) < 2 or not parts[0].startswith("/"):
            continue
        src, dst = parts[0], parts[1]
        mode = parts[2] if len(parts) > 2 else ""
        opts = ["rbind"]
        flags = mode.split(",") if mode else []
        opts.append("ro" if "ro" in flags else "rw")
        prop = next((f for f in flags if f in ("private", "rprivate", "shared", "rshared", "slave", "rslave")), "rprivate")
        opts.append(prop)
        if not os.path.exists(src):
            os.makedirs(src, exist_ok=True)  # Docker creates a missing bind source for -v (not for --mount)
        out.append({"destination": dst, "type": "bind", "source": src, "options": opts})
    for m in host_config.get("Mounts") or []:
        typ = (m.get("Type") or "volume").lower()
        dst = m.get("Target") or m.get("Destination")
        if not dst:
            raise InvalidParameter("mount target is required")
        if typ == "bind":
            src = m.get("Source") or ""
            if not src.startswith("/"):
                raise InvalidParameter(f"invalid mount config for type \"bind\": invalid mount path: '{src}' mount path must be absolute")
            if not os.path.exists(src):
                raise InvalidParameter(f"invalid mount config for type \"bind\": bind source path does not exist: {src}")
            opts = ["rbind", "ro" if m.get("ReadOnly") else "rw"]
            prop = ((m.get("BindOptions") or {}).get("Propagation")) or "rprivate"
            opts.append(prop)
            out.append({"destination": dst, "type": "bind", "source": src, "options": opts})
        elif typ == "tmpfs":
            to = m.get("TmpfsOptions") or {}
            opts = ["nosuid", "nodev", "noexec"]
            if to.get("SizeBytes"):
                opts.append(f"size={int(to['SizeBytes'])}")
            if to.get("Mode"):
                opts.append(f"mode={int(to['Mode']):o}")
            if m.get("ReadOnly"):
                opts.append("ro")
            out.append({"destination": dst, "type": "tmpfs", "source": "tmpfs", "options": opts})
    for dst, optstr in (host_config.get("Tmpfs") or {}).items():
        opts = ["nosuid", "nodev", "noexec"] + [o for o in (optstr or "").split(",") if o]
        out.append({"destination": dst, "type": "tmpfs", "source": "tmpfs", "options": opts})
    return out


def resources(hc: dict[str, Any], cgroup_v2: bool) -> dict[str, Any]:
    res: dict[str, Any] = {"devices": copy.deepcopy(DEFAULT_DEVICE_RULES)}
    if hc.get("Privileged"):
        res["devices"] = [{"allow": True, "access": "rwm"}]
    for rule in hc.get("DeviceCgroupRules") or []:
        # "c 1:3 rwm", "a *:* rwm"
        try:
            typ, nums, access = rule.split()
            major, minor = nums.split(":")
        except ValueError:
            raise InvalidParameter(f"invalid device cgroup rule: {rule!r}") from None
        d: dict[str, Any] = {"allow": True, "type": typ, "access": access}
        if major != "*":
            d["major"] = int(major)
        if minor != "*":
            d["minor"] = int(minor)
        res["devices"].append(d)
    mem: dict[str, Any] = {}
    limit = int(hc.get("Memory") or 0)
    if limit:
        if limit < 6 * 1024 * 1024:
            raise InvalidParameter("Minimum memory limit allowed is 6MB")
        mem["limit"] = limit
        swap = int(hc.get("MemorySwap") or 0)
        if swap == 0:
            swap = 2 * limit  # Docker: unset swap = as much swap as memory
        if swap > 0 and swap < limit:
            raise InvalidParameter("Minimum memoryswap limit should be larger than memory limit, see usage")
        if _swap_accounting(cgroup_v2):
            mem["swap"] = swap
    if hc.get("MemoryReservation"):
        mem["reservation"] = int(hc["MemoryReservation"])
    sw = hc.get("MemorySwappiness")
    if sw is not None and sw >= 0 and not cgroup_v2:
        mem["swappiness"] = int(sw)
    if hc.get("OomKillDisable"):
        mem["disableOOMKiller"] = True
    if mem:
        res["memory"] = mem
    cpu: dict[str, Any] = {}
    if hc.get("CpuShares"):
        cpu["shares"] = int(hc["CpuShares"])
    nano = int(hc.get("NanoCpus") or hc.get("NanoCPUs") or 0)
    if nano:
        if nano > (os.cpu_count() or 1) * 1_000_000_000:
            raise InvalidParameter(f"Range of CPUs is from 0.01 to {os.cpu_count()}.00, as there are only {os.cpu_count()} CPUs available")
        cpu["period"] = 100000
        cpu["quota"] = nano * 100000 // 1_000_000_000
    if hc.get("CpuQuota"):
        cpu["quota"] = int(hc["CpuQuota"])
        cpu["period"] = int(hc.get("CpuPeriod") or 100000)
    elif hc.get("CpuPeriod"):
        cpu["period"] = int(hc["CpuPeriod"])
    if hc.get("CpusetCpus"):
        cpu["cpus"] = _cpuset(str(hc["CpusetCpus"]), "cpus", "CPUs", "/sys/devices/system/cpu/online")
    if hc.get("CpusetMems"):
        cpu["mems"] = _cpuset(str(hc["CpusetMems"]), "mems", "memory nodes", "/sys/devices/system/node/online")
    if cpu:
        res["cpu"] = cpu
    pids = hc.get("PidsLimit")
    if pids is not None and int(pids) > 0:
        res["pids"] = {"limit": int(pids)}
    return res


def _cpu_list(text: str) -> set[int] | None:
    """The kernel's list format ("0-2,4") as a set; None when it is not one."""
    out: set[int] = set()
    for part in text.strip().split(","):
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            return None
        out.update(range(int(lo), int(hi if sep else lo) + 1))
    return out


def _cpuset(value: str, kind: str, what: str, online_file: str) -> str:
    """--cpuset-cpus / --cpuset-mems checked as dockerd does, so a bad one is a 400 at create or update and not a
    runtime failure at start."""
    wanted = _cpu_list(value)
    if wanted is None or len(wanted) > 65536:
        raise InvalidParameter(f"Invalid value {value} for cpuset {kind}")
    try:
        online_text = Path(online_file).read_text().strip()
    except OSError:
        return value  # nothing to check against (no NUMA information): the runtime decides
    if not wanted <= (_cpu_list(online_text) or set()):
        raise InvalidParameter(f"Requested {what} are not available - requested {value}, available: {online_text}")
    return value


@functools.cache
def _swap_accounting(cgroup_v2: bool) -> bool:
    if cgroup_v2:
        return True
    return os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")


def build_process(config: dict[str, Any], host_config: dict[str, Any], user: ExecUser, args: list[str],
                  caps: list[str], *, tty: bool, env: list[str] | None = None, cwd: str | None = None) -> dict[str, Any]:
    env = merge_env(["PATH=" + DEFAULT_PATH], env if env is not None else config.get("Env"))
    if not any(e.startswith("HOME=") for e in env):
        env.append(f"HOME={user.home or '/'}")
    if tty and not any(e.startswith("TERM=") for e in env):
        env.append("TERM=xterm")
    root = user.uid == 0
    proc: dict[str, Any] = {
        "terminal": tty,
        "user": {"uid": user.uid, "gid": user.gid, **({"additionalGids": user.additional_gids} if user.additional_gids else {})},
        "args": args,
        "env": env,
        "cwd": cwd or config.get("WorkingDir") or "/",
        "capabilities": {
            "bounding": caps,
            "effective": caps if root else [],
            "permitted": caps if root else [],
        },
        "noNewPrivileges": security.no_new_privileges(host_config),
    }
    for ul in host_config.get("Ulimits") or []:
        name = _RLIMITS.get(ul.get("Name", ""))
        if not name:
            raise InvalidParameter(f"invalid ulimit type: {ul.get('Name')}")
        proc.setdefault("rlimits", []).append({"type": name, "soft": int(ul["Soft"]), "hard": int(ul["Hard"])})
    if host_config.get("OomScoreAdj"):
        proc["oomScoreAdj"] = int(host_config["OomScoreAdj"])
    return proc


def command_line(config: dict[str, Any]) -> list[str]:
    ep = config.get("Entrypoint") or []
    cmd = config.get("Cmd") or []
    if isinstance(ep, str):
        ep = ["/bin/sh", "-c", ep]
    if isinstance(cmd, str):
        cmd = ["/bin/sh", "-c", cmd]
    args = list(ep) + list(cmd)
    if not args:
        raise InvalidParameter("no command specified")
    return args


def build_spec(rec: dict[str, Any], user: ExecUser, inputs: SpecInputs) -> dict[str, Any]:
    config = rec["Config"]
    hc = rec["HostConfig"]
    caps = security.capabilities(hc.get("CapAdd"), hc.get("CapDrop"), bool(hc.get("Privileged")))
    args = command_line(config)
    if inputs.init_binary:
        args = [INIT_PATH_IN_CONTAINER, "--"] + args
    env = merge_env(inputs.link_env, config.get("Env"), [f"HOSTNAME={config.get('Hostname') or ''}"] if not any(
        e.startswith("HOSTNAME=") for e in config.get("Env") or []) else [])
    process = build_process(config, hc, user, args, caps, tty=bool(config.get("Tty")), env=env)
    readonly = bool(hc.get("ReadonlyRootfs"))
    namespaces: list[dict[str, Any]] = [{"type": "mount"}]
    if inputs.pid_path:
        namespaces.append({"type": "pid", "path": inputs.pid_path})
    elif (hc.get("PidMode") or "") != "host":
        namespaces.append({"type": "pid"})
    if inputs.ipc_path:
        namespaces.append({"type": "ipc", "path": inputs.ipc_path})
    elif (hc.get("IpcMode") or "private") != "host":
        namespaces.append({"type": "ipc"})
    if (hc.get("UTSMode") or "") != "host":
        namespaces.append({"type": "uts"})
    net_mode = hc.get("NetworkMode") or "default"
    if net_mode != "host":
        namespaces.append({"type": "network", **({"path": inputs.netns_path} if inputs.netns_path else {})})
    if inputs.cgroup_v2 and (hc.get("CgroupnsMode") or "private") == "private":
        namespaces.append({"type": "cgroup"})
    linux: dict[str, Any] = {
        "namespaces": namespaces,
        "cgroupsPath": inputs.cgroup_path,
        "resources": resources(hc, inputs.cgroup_v2),
    }
    if not hc.get("Privileged"):
        linux["maskedPaths"] = list(hc.get("MaskedPaths") if hc.get("MaskedPaths") is not None else security.MASKED_PATHS)
        linux["readonlyPaths"] = list(hc.get("ReadonlyPaths") if hc.get("ReadonlyPaths") is not None else security.READONLY_PATHS)
        sc = security.seccomp(hc, caps)
        if sc is not None:
            linux["seccomp"] = sc
    if hc.get("Sysctls"):
        linux["sysctl"] = {k: str(v) for k, v in hc["Sysctls"].items()}
    devices = []
    for d in hc.get("Devices") or []:
        devices.append(_device(d))
    if devices:
        linux["devices"] = [x for x, _ in devices]
        linux["resources"]["devices"] += [r for _, r in devices]
    spec: dict[str, Any] = {
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": str(inputs.rootfs), "readonly": readonly},
        "hostname": config.get("Hostname") or "",
        "mounts": _mounts(hc, inputs, readonly),
        "linux": linux,
    }
    if (hc.get("UTSMode") or "") == "host":
        spec.pop("hostname")
    if config.get("Domainname"):
        spec["domainname"] = config["Domainname"]
    return spec


def _device(d: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`--device /dev/x[:/dev/y[:rwm]]`: the node in the container plus its cgroup rule."""
    host = d.get("PathOnHost") or ""
    try:
        st = os.stat(host)
    except OSError:
        raise InvalidParameter(f"error gathering device information while adding custom device \"{host}\": no such file or directory") from None
    import stat as _st

    if _st.S_ISCHR(st.st_mode):
        typ = "c"
    elif _st.S_ISBLK(st.st_mode):
        typ = "b"
    else:
        raise InvalidParameter(f"{host} is not a device")
    major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
    dev = {"path": d.get("PathInContainer") or host, "type": typ, "major": major, "minor": minor,
           "fileMode": _st.S_IMODE(st.st_mode), "uid": 0, "gid": 0}
    rule = {"allow": True, "type": typ, "major": major, "minor": minor, "access": d.get("CgroupPermissions") or "rwm"}
    return dev, rule


def exec_process(rec: dict[str, Any], user: ExecUser, cmd: list[str], *, tty: bool, env: list[str] | None,
                 workdir: str | None, privileged: bool) -> dict[str, Any]:
    """The `process` of an exec session: the container's settings with the exec's command, env and user."""
    hc = rec["HostConfig"]
    caps = security.capabilities(hc.get("CapAdd"), hc.get("CapDrop"), bool(hc.get("Privileged")) or privileged)
    base_env = merge_env(rec["Config"].get("Env"), env)
    proc = build_process(rec["Config"], hc, user, cmd, caps, tty=tty, env=base_env, cwd=workdir or None)
    return proc
