"""Benchmark: containers — skiffd vs dockerd (Debian's 20.10 + containerd) vs podman 4.3 (its Docker API
service), all driven by the same docker CLI on the same machine.

* run    — `docker run --rm busybox true`, median of N runs (≥ 20), engines interleaved run by run so that
           background load hits all of them alike; 2 warm-up runs each.
* ps     — `docker ps -a` with 200 (created) containers: median of 10.
* memory — engine + per-container helpers (skiffd + conmons; dockerd + containerd + shims; podman service +
           conmons) with 100 running `sleep` containers: sum of PSS (and RSS) from /proc/<pid>/smaps_rollup.

Every daemon runs inside one network namespace made for the benchmark, each with its own state dirs, and
everything (containers, daemons, namespace, dirs) is removed at the end.

Usage (root): python bench/run.py [--runs 20] [--ps-containers 200] [--mem-containers 100]
              [--engines skiffd,dockerd,podman] [--json results.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.engine.harness import (ImageSpec, NetNS, Skiffd, busybox_rootfs_layer, rmtree, stop_pid,  # noqa: E402
                                  tempdir, wait_for, write_docker_archive)

_spec = importlib.util.spec_from_file_location("bench_build", REPO / "bench" / "build.py")
_bb = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
_spec.loader.exec_module(_bb)  # type: ignore[union-attr]
Dockerd = _bb.Dockerd

IMAGE = "bench/busybox:latest"

PODMAN_CONF = """[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


class Podman:
    """`podman system service` (Debian's 4.3) in `ns`: runc, cgroupfs, limits this machine allows (probe_runtime.md §3)."""

    def __init__(self, ns: NetNS, workdir: Path) -> None:
        self.dir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "containers.conf").write_text(PODMAN_CONF)
        self.sock = str(workdir / "podman.sock")
        self.host = f"unix://{self.sock}"
        self.log = open(workdir / "podman.log", "wb")
        env = dict(os.environ, CONTAINERS_CONF=str(workdir / "containers.conf"))
        self.proc = subprocess.Popen(
            ns.cmd(["podman", "--root", str(workdir / "root"), "--runroot", str(workdir / "run"),
                    "--tmpdir", str(workdir / "tmp"), "--network-config-dir", str(workdir / "net"),
                    "system", "service", "--time=0", self.host]),
            stdout=self.log, stderr=self.log, env=env, start_new_session=True)
        wait_for(lambda: subprocess.run(["docker", "-H", self.host, "version"], capture_output=True).returncode == 0,
                 timeout=60, what="podman service")

    def stop(self) -> None:
        stop_pid(self.proc, timeout=30)
        self.log.close()
        # podman's storage leaves its overlay mount behind when the service stops
        subprocess.run(["umount", "-R", str(self.dir / "root" / "overlay")], capture_output=True)


class Engine:
    def __init__(self, name: str, host: str, proc: subprocess.Popen, marker: str, cfg: Path) -> None:
        self.name, self.host, self.proc, self.marker, self.cfg = name, host, proc, marker, cfg

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env.update(DOCKER_HOST=self.host, DOCKER_CONFIG=str(self.cfg), DOCKER_CLI_HINTS="false", DOCKER_BUILDKIT="0")
        return env

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run(["docker", *args], env=self.env(), capture_output=True, text=True, timeout=300)
        if check and r.returncode != 0:
            raise RuntimeError(f"[{self.name}] docker {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}")
        return r

    def timed(self, *args: str) -> float:
        t = time.perf_counter()
        self.docker(*args)
        return time.perf_counter() - t

    def processes(self) -> list[int]:
        """The engine's process and every helper whose command line names its state dirs (monitors, shims)."""
        pids = {self.proc.pid}
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ")
            except OSError:
                continue
            if self.marker.encode() in cmd:
                pids.add(int(d))
        return sorted(pids)

    def memory(self) -> dict[str, Any]:
        pss = rss = 0
        pids = self.processes()
        for pid in pids:
            try:
                for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1])
                    elif line.startswith("Rss:"):
                        rss += int(line.split()[1])
            except OSError:
                pass
        return {"processes": len(pids), "pss_mib": round(pss / 1024, 1), "rss_mib": round(rss / 1024, 1)}

    def clean(self) -> None:
        ids = self.docker("ps", "-aq", check=False).stdout.split()
        for i in range(0, len(ids), 50):
            self.docker("rm", "-f", *ids[i:i + 50], check=False)


def _remove_empty_cgroups(parents: list[str]) -> None:
    """dockerd and podman leave their cgroup parents behind; remove them bottom-up where empty
    (rmdir fails on a cgroup still in use, e.g. by another engine running right now)."""
    root = Path("/sys/fs/cgroup")
    for h in [p for p in root.iterdir() if p.is_dir()]:
        for name in parents:
            top = h / name
            if not top.is_dir():
                continue
            for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda t: -t[0].count("/")):
                try:
                    os.rmdir(dirpath)
                except OSError:
                    pass


def _median_ms(xs: list[float]) -> float:
    return round(statistics.median(xs) * 1000, 1)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--ps-containers", type=int, default=200)
    ap.add_argument("--mem-containers", type=int, default=100)
    ap.add_argument("--engines", default="skiffd,dockerd,podman")
    ap.add_argument("--skiffd-args", default="", help="extra skiffd flags, e.g. '--runtime crun'")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    wanted = args.engines.split(",")

    ns = NetNS("skbench")
    work = tempdir("skiff-bench-run-")
    daemons: list[Any] = []
    engines: list[Engine] = []
    results: dict[str, Any] = {"runs": args.runs, "engines": {}}
    try:
        arc = write_docker_archive(ImageSpec([busybox_rootfs_layer()]), work / "busybox.tar", IMAGE)
        cfg = work / "docker-config"
        cfg.mkdir()
        if "skiffd" in wanted:
            # the bench measures the engine, not its debug logging (the last --log-level wins)
            sk = Skiffd(ns, work / "skiffd", ["--log-level", "info"] + args.skiffd_args.split())
            daemons.append(sk)
            engines.append(Engine("skiffd", sk.host, sk.proc, str(sk.exec_root), cfg))
        if "dockerd" in wanted:
            dd = Dockerd(ns, work / "dockerd")
            daemons.append(dd)
            engines.append(Engine("dockerd", dd.host, dd.proc, str(dd.dir / "exec"), cfg))
        if "podman" in wanted:
            pm = Podman(ns, work / "podman")
            daemons.append(pm)
            engines.append(Engine("podman", pm.host, pm.proc, str(pm.dir / "run"), cfg))
        for e in engines:
            e.docker("load", "-q", "-i", str(arc))
            for _ in range(2):
                e.docker("run", "--rm", IMAGE, "true")
            results["engines"][e.name] = {}

        # run --rm, interleaved
        times: dict[str, list[float]] = {e.name: [] for e in engines}
        for _ in range(args.runs):
            for e in engines:
                times[e.name].append(e.timed("run", "--rm", IMAGE, "true"))
        for e in engines:
            r = results["engines"][e.name]
            r["run_rm_ms"] = {"median": _median_ms(times[e.name]), "min": round(min(times[e.name]) * 1000, 1),
                              "max": round(max(times[e.name]) * 1000, 1)}

        # ps -a with N created containers
        for e in engines:
            for _ in range(args.ps_containers):
                e.docker("create", IMAGE, "true")
        ps: dict[str, list[float]] = {e.name: [] for e in engines}
        for _ in range(10):
            for e in engines:
                ps[e.name].append(e.timed("ps", "-a"))
        for e in engines:
            results["engines"][e.name]["ps_a_ms"] = _median_ms(ps[e.name])
            e.clean()

        # memory with N running containers
        for e in engines:
            base = e.memory()
            for _ in range(args.mem_containers):
                e.docker("run", "-d", IMAGE, "sleep", "100000")
            time.sleep(2)
            results["engines"][e.name]["memory_idle"] = base
            results["engines"][e.name]["memory_running"] = e.memory()
            e.clean()
    finally:
        for e in engines:
            try:
                e.clean()
            except Exception:
                pass
        for d in daemons:
            try:
                d.stop()
            except Exception as ex:
                print(f"stopping {d}: {ex}", file=sys.stderr)
        ns.remove()
        rmtree(work)
        _remove_empty_cgroups([{"dockerd": "docker", "podman": "libpod_parent"}[e.name] for e in engines
                               if e.name in ("dockerd", "podman")])

    print(report(results, args))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def report(results: dict[str, Any], args: argparse.Namespace) -> str:
    eng = results["engines"]
    lines = [f"| engine | run --rm true (median of {args.runs}) | ps -a ({args.ps_containers} ctrs) | "
             f"PSS with {args.mem_containers} running (processes) | PSS idle |", "|---|---|---|---|---|"]
    for name, r in eng.items():
        m, i = r.get("memory_running", {}), r.get("memory_idle", {})
        lines.append(f"| {name} | {r['run_rm_ms']['median']} ms (min {r['run_rm_ms']['min']}) | {r.get('ps_a_ms')} ms | "
                     f"{m.get('pss_mib')} MiB ({m.get('processes')}) | {i.get('pss_mib')} MiB |")
    if "skiffd" in eng and "dockerd" in eng:
        s, d = eng["skiffd"], eng["dockerd"]
        lines.append("")
        lines.append(f"run --rm: skiffd/dockerd = {s['run_rm_ms']['median'] / d['run_rm_ms']['median']:.2f} (target ≤ 0.60); "
                     f"ps -a: {s['ps_a_ms'] / d['ps_a_ms']:.2f} (≤ 1); memory: "
                     f"{s['memory_running']['pss_mib'] / d['memory_running']['pss_mib']:.2f} (≤ 1)")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
