"""`stats` and `top` from the container's cgroup (v1 and v2) and /proc.

The CLI computes CPU % from the difference between `cpu_stats` and `precpu_stats` in one document, so a
one-off sample (`stream=0`) is two reads apart; `one-shot=1` skips the second read, as Docker does.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skiffbox.guest import hostinfo
from skiffbox.guest.containers import cgroups
from skiffbox.guest.containers.store import Container
from skiffbox.guest.errors import Conflict, InvalidParameter, SystemError_
from skiffbox.guest.util.timefmt import rfc3339

if TYPE_CHECKING:
    from skiffbox.guest.containers.service import ContainerService

_CGROOT = Path("/sys/fs/cgroup")
_NS = 1_000_000_000
_CLK_TCK = os.sysconf("SC_CLK_TCK")
PRE_SAMPLE_DELAY = 0.5


def _read(p: Path) -> str:
    try:
        return p.read_text()
    except OSError:
        return ""


def _int(p: Path, default: int = 0) -> int:
    s = _read(p).strip()
    if s == "max":
        return default
    try:
        return int(s.split()[0]) if s else default
    except ValueError:
        return default


def _kv(p: Path) -> dict[str, int]:
    out = {}
    for line in _read(p).splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


def cgroup_dir(svc: "ContainerService", c: Container, controller: str) -> Path:
    rel = cgroups.container_path(c, svc.cgroup_parent).lstrip("/")
    if svc.cgroup_v2:
        return _CGROOT / rel
    return _CGROOT / controller / rel


def system_cpu_ns() -> int:
    for line in _read(Path("/proc/stat")).splitlines():
        if line.startswith("cpu "):
            return sum(int(x) for x in line.split()[1:8]) * _NS // _CLK_TCK
    return 0


def _cpu(svc: "ContainerService", c: Container) -> dict[str, Any]:
    ncpu = os.cpu_count() or 1
    if svc.cgroup_v2:
        st = _kv(cgroup_dir(svc, c, "") / "cpu.stat")
        usage: dict[str, int | list[int] | None] = {"total_usage": st.get("usage_usec", 0) * 1000,
                 "usage_in_kernelmode": st.get("system_usec", 0) * 1000,
                 "usage_in_usermode": st.get("user_usec", 0) * 1000}
        thr = {"periods": st.get("nr_periods", 0), "throttled_periods": st.get("nr_throttled", 0),
               "throttled_time": st.get("throttled_usec", 0) * 1000}
    else:
        d = cgroup_dir(svc, c, "cpuacct")
        percpu = [int(x) for x in _read(d / "cpuacct.usage_percpu").split()]
        st = _kv(d / "cpuacct.stat")
        usage = {"total_usage": _int(d / "cpuacct.usage"), "percpu_usage": percpu or None,
                 "usage_in_kernelmode": st.get("system", 0) * _NS // _CLK_TCK,
                 "usage_in_usermode": st.get("user", 0) * _NS // _CLK_TCK}
        ts = _kv(cgroup_dir(svc, c, "cpu") / "cpu.stat")
        thr = {"periods": ts.get("nr_periods", 0), "throttled_periods": ts.get("nr_throttled", 0),
               "throttled_time": ts.get("throttled_time", 0)}
    return {"cpu_usage": usage, "system_cpu_usage": system_cpu_ns(), "online_cpus": ncpu, "throttling_data": thr}


def _memory(svc: "ContainerService", c: Container) -> dict[str, Any]:
    total = hostinfo.mem_total()
    if svc.cgroup_v2:
        d = cgroup_dir(svc, c, "")
        limit = _int(d / "memory.max", total)
        return {"usage": _int(d / "memory.current"), "stats": _kv(d / "memory.stat"), "limit": min(limit, total) or total}
    d = cgroup_dir(svc, c, "memory")
    limit = _int(d / "memory.limit_in_bytes", total)
    return {"usage": _int(d / "memory.usage_in_bytes"), "max_usage": _int(d / "memory.max_usage_in_bytes"),
            "failcnt": _int(d / "memory.failcnt"), "stats": _kv(d / "memory.stat"), "limit": min(limit, total) or total}


def _blkio(svc: "ContainerService", c: Container) -> dict[str, Any]:
    entries = []
    if svc.cgroup_v2:
        for line in _read(cgroup_dir(svc, c, "") / "io.stat").splitlines():
            parts = line.split()
            if not parts or ":" not in parts[0]:
                continue
            major, minor = (int(x) for x in parts[0].split(":"))
            kv = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
            entries.append({"major": major, "minor": minor, "op": "read", "value": int(kv.get("rbytes", 0))})
            entries.append({"major": major, "minor": minor, "op": "write", "value": int(kv.get("wbytes", 0))})
    else:
        for line in _read(cgroup_dir(svc, c, "blkio") / "blkio.throttle.io_service_bytes_recursive").splitlines():
            parts = line.split()
            if len(parts) == 3 and ":" in parts[0]:
                major, minor = (int(x) for x in parts[0].split(":"))
                entries.append({"major": major, "minor": minor, "op": parts[1].lower(), "value": int(parts[2])})
    return {"io_service_bytes_recursive": entries or None, "io_serviced_recursive": None, "io_queue_recursive": None,
            "io_service_time_recursive": None, "io_wait_time_recursive": None, "io_merged_recursive": None,
            "io_time_recursive": None, "sectors_recursive": None}


def _networks(pid: int) -> dict[str, Any] | None:
    if not pid:
        return None
    out = {}
    for line in _read(Path(f"/proc/{pid}/net/dev")).splitlines()[2:]:
        name, _, rest = line.partition(":")
        name = name.strip()
        f = rest.split()
        if name == "lo" or len(f) < 16:
            continue
        out[name] = {"rx_bytes": int(f[0]), "rx_packets": int(f[1]), "rx_errors": int(f[2]), "rx_dropped": int(f[3]),
                     "tx_bytes": int(f[8]), "tx_packets": int(f[9]), "tx_errors": int(f[10]), "tx_dropped": int(f[11])}
    return out


def _pids(svc: "ContainerService", c: Container) -> dict[str, Any]:
    d = cgroup_dir(svc, c, "pids")
    out: dict[str, Any] = {"current": _int(d / "pids.current")}
    lim = _read(d / "pids.max").strip()
    if lim and lim != "max":
        out["limit"] = int(lim)
    return out


def sample(svc: "ContainerService", c: Container) -> dict[str, Any]:
    if not c.running:
        return {"read": "0001-01-01T00:00:00Z", "pids_stats": {}, "blkio_stats": _blkio_empty(), "num_procs": 0,
                "storage_stats": {}, "cpu_stats": _cpu_empty(), "memory_stats": {}, "name": "/" + c.name, "id": c.id}
    return {
        "read": rfc3339(time.time()),
        "pids_stats": _pids(svc, c),
        "blkio_stats": _blkio(svc, c),
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": _cpu(svc, c),
        "memory_stats": _memory(svc, c),
        "name": "/" + c.name,
        "id": c.id,
        "networks": _networks(int(c.state.get("Pid") or 0)),
    }


def _cpu_empty() -> dict[str, Any]:
    return {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}


def _blkio_empty() -> dict[str, Any]:
    return {k: None for k in ("io_service_bytes_recursive", "io_serviced_recursive", "io_queue_recursive",
                              "io_service_time_recursive", "io_wait_time_recursive", "io_merged_recursive",
                              "io_time_recursive", "sectors_recursive")}


async def stats_stream(svc: "ContainerService", c: Container, *, stream: bool, one_shot: bool) -> AsyncIterator[bytes]:
    prev = None
    if not one_shot and c.running:
        prev = sample(svc, c)
        await asyncio.sleep(PRE_SAMPLE_DELAY)
    while True:
        cur = sample(svc, c)
        cur["preread"] = prev["read"] if prev else "0001-01-01T00:00:00Z"
        cur["precpu_stats"] = prev["cpu_stats"] if prev else _cpu_empty()
        yield json.dumps(cur).encode() + b"\n"
        if not stream or c.removed:
            return
        prev = cur
        await asyncio.sleep(1.0)


async def top(svc: "ContainerService", c: Container, ps_args: str) -> dict[str, Any]:
    if not c.running:
        raise Conflict(f"container {c.id} is not running")
    if c.paused:
        raise Conflict(f"container {c.id} is paused, unpause the container before running top")
    procs_file = cgroup_dir(svc, c, "pids") / "cgroup.procs" if not svc.cgroup_v2 else cgroup_dir(svc, c, "") / "cgroup.procs"
    pids = {int(x) for x in _read(procs_file).split()}
    args = ps_args.split() if ps_args else ["-ef"]
    try:
        r = await asyncio.to_thread(subprocess.run, ["ps", *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        raise SystemError_(f"running ps: {e}") from None
    if r.returncode != 0:
        raise SystemError_(f"ps: {r.stderr.strip() or r.stdout.strip()}")
    lines = [l for l in r.stdout.splitlines() if l.strip()]
    if not lines:
        return {"Titles": [], "Processes": []}
    titles = lines[0].split()
    try:
        pid_col = titles.index("PID")
    except ValueError:
        raise InvalidParameter("Couldn't find PID field in ps output") from None
    procs = []
    for line in lines[1:]:
        fields = line.split(None, len(titles) - 1)
        try:
            pid = int(fields[pid_col])
        except (IndexError, ValueError):
            continue
        if pid in pids:
            procs.append(fields)
    svc.event(c, "top")
    return {"Titles": titles, "Processes": procs}
