"""Benchmark: networking — skiffd (netavark + aardvark-dns) vs dockerd (Debian's 20.10, libnetwork), same docker CLI.

* run --rm on the default bridge vs `--network none`: the difference is what networking costs per container
  (netns wiring, address, NAT rules, teardown). Also on a user-defined network (with DNS) and with a published port.
* `docker network create X` + `docker network rm X`.

Each engine runs in a network namespace made for the benchmark (so their bridges and iptables rules never meet
each other or the machine's own), with its own state dirs. Runs are interleaved engine by engine so background
load hits both alike; 2 warm-up runs each. Everything is removed at the end.

Usage (root): python bench/network.py [--runs 20] [--engines skiffd,dockerd] [--cases bridge,none,...] [--json out.json]
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

from tests.engine.harness import ImageSpec, NetNS, Skiffd, busybox_rootfs_layer, rmtree, tempdir, write_docker_archive  # noqa: E402

_spec = importlib.util.spec_from_file_location("bench_build", REPO / "bench" / "build.py")
_bb = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
_spec.loader.exec_module(_bb)  # type: ignore[union-attr]
Dockerd = _bb.Dockerd

IMAGE = "bench/busybox:latest"

CASES: list[tuple[str, list[str]]] = [
    ("bridge", ["run", "--rm", IMAGE, "true"]),
    ("none", ["run", "--rm", "--network", "none", IMAGE, "true"]),
    ("user_net", ["run", "--rm", "--network", "benchnet", IMAGE, "true"]),
    ("publish", ["run", "--rm", "-p", "18080:80", IMAGE, "true"]),
]


class Engine:
    def __init__(self, name: str, host: str, cfg: Path) -> None:
        self.name, self.host, self.cfg = name, host, cfg

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env.update(DOCKER_HOST=self.host, DOCKER_CONFIG=str(self.cfg), DOCKER_CLI_HINTS="false", DOCKER_BUILDKIT="0")
        r = subprocess.run(["docker", *args], env=env, capture_output=True, text=True, timeout=300)
        if check and r.returncode != 0:
            raise RuntimeError(f"[{self.name}] docker {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}")
        return r

    def timed(self, *args: str) -> float:
        t = time.perf_counter()
        self.docker(*args)
        return time.perf_counter() - t


def _stats(xs: list[float]) -> dict[str, float]:
    s = sorted(xs)
    return {"median": round(statistics.median(s) * 1000, 1), "min": round(s[0] * 1000, 1),
            "p90": round(s[min(len(s) - 1, int(len(s) * 0.9))] * 1000, 1)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--engines", default="skiffd,dockerd")
    ap.add_argument("--cases", default=",".join(c for c, _ in CASES) + ",net_create_rm",
                    help="subset of: " + ", ".join(c for c, _ in CASES) + ", net_create_rm")
    ap.add_argument("--skiffd-args", default="", help="extra skiffd flags, e.g. '--runtime crun'")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    wanted = args.engines.split(",")
    cases = [(c, cmd) for c, cmd in CASES if c in args.cases.split(",")]

    work = tempdir("skiff-bench-net-")
    namespaces: list[NetNS] = []
    daemons: list[Any] = []
    engines: list[Engine] = []
    results: dict[str, Any] = {"runs": args.runs, "engines": {}}
    try:
        arc = write_docker_archive(ImageSpec([busybox_rootfs_layer()]), work / "busybox.tar", IMAGE)
        cfg = work / "docker-config"
        cfg.mkdir()
        if "skiffd" in wanted:
            ns = NetNS("skbnet")
            namespaces.append(ns)
            sk = Skiffd(ns, work / "skiffd", ["--log-level", "info"] + args.skiffd_args.split())
            daemons.append(sk)
            engines.append(Engine("skiffd", sk.host, cfg))
        if "dockerd" in wanted:
            ns = NetNS("skbnet")
            namespaces.append(ns)
            dd = Dockerd(ns, work / "dockerd")
            daemons.append(dd)
            engines.append(Engine("dockerd", dd.host, cfg))
        for e in engines:
            e.docker("load", "-q", "-i", str(arc))
            e.docker("network", "create", "benchnet")
            for _, cmd in cases:
                for _ in range(2):
                    e.docker(*cmd)
            results["engines"][e.name] = {}

        times: dict[tuple[str, str], list[float]] = {}
        for i in range(args.runs):
            for case, cmd in cases:
                for e in engines:
                    times.setdefault((e.name, case), []).append(e.timed(*cmd))
            for e in engines if "net_create_rm" in args.cases else []:
                t = time.perf_counter()
                e.docker("network", "create", f"bn{i}")
                e.docker("network", "rm", f"bn{i}")
                times.setdefault((e.name, "net_create_rm"), []).append(time.perf_counter() - t)
        for (name, case), xs in times.items():
            results["engines"][name][case] = _stats(xs)
        for r in results["engines"].values():
            if "bridge" in r and "none" in r:
                r["network_overhead_ms"] = round(r["bridge"]["median"] - r["none"]["median"], 1)
    finally:
        for e in engines:
            try:
                ids = e.docker("ps", "-aq", check=False).stdout.split()
                if ids:
                    e.docker("rm", "-f", *ids, check=False)
                e.docker("network", "rm", "benchnet", check=False)
            except Exception:
                pass
        for d in daemons:
            try:
                d.stop()
            except Exception as ex:
                print(f"stopping {d}: {ex}", file=sys.stderr)
        for ns in namespaces:
            ns.remove()
        rmtree(work)

    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def report(results: dict[str, Any]) -> str:
    n = results["runs"]
    lines = [f"medians of {n} runs (min / p90), ms",
             "| engine | run --rm (bridge) | run --rm --network none | networking overhead | run --rm user net "
             "| run --rm -p | network create+rm |", "|---|---|---|---|---|---|---|"]
    for name, r in results["engines"].items():
        def cell(k: str) -> str:
            return f"{r[k]['median']} ({r[k]['min']} / {r[k]['p90']})" if k in r else "–"
        lines.append(f"| {name} | {cell('bridge')} | {cell('none')} | **{r.get('network_overhead_ms', '–')}** | "
                     f"{cell('user_net')} | {cell('publish')} | {cell('net_create_rm')} |")
    eng = results["engines"]
    if "skiffd" in eng and "dockerd" in eng and "network_overhead_ms" in eng["skiffd"]:
        s, d = eng["skiffd"]["network_overhead_ms"], eng["dockerd"]["network_overhead_ms"]
        lines.append("")
        lines.append(f"networking overhead: skiffd {s} ms vs dockerd {d} ms (target: skiffd ≤ dockerd) → "
                     f"{'met' if s <= d else 'NOT met'}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
