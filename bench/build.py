"""Benchmark: `docker build` of a small multi-step Dockerfile, skiffd vs dockerd's classic builder.

Both daemons run on this machine, each inside its own network namespace with its own data root, and
are driven by the same docker CLI with DOCKER_BUILDKIT=0 (the classic `/build` endpoint). The base image
comes from a local registry (Debian's docker-registry, loaded from busybox-static), pulled once into each
daemon before timing. Two measurements per daemon:

* build   — `docker build --no-cache` (every step runs: 3 RUN containers, COPYs, config steps)
* rebuild — `docker build` of the unchanged context (every step from the cache)

Usage (root): python bench/build.py [--runs N] [--json results.json]
Writes a table to stdout and, with --json, the raw timings.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.engine.harness import NetNS, Registry, Skiffd, push_test_images, stop_pid, tempdir, wait_for  # noqa: E402

DOCKERFILE = """\
FROM {base}
ENV APP=/app MODE=bench
LABEL org.example.bench=build
WORKDIR /app
COPY src/ ./src/
COPY config.txt ./
RUN mkdir -p /app/out && cat src/*.txt > /app/out/all.txt
ARG LEVEL=2
RUN for i in 1 2 3 4 5; do echo "line $i level $LEVEL" >> /app/out/log.txt; done
RUN wc -l /app/out/log.txt > /app/out/count
EXPOSE 8080
USER www
CMD ["cat", "/app/out/count"]
"""


class Dockerd:
    """dockerd (Debian's docker.io) in `ns`, with its own data root, for the baseline."""

    def __init__(self, ns: NetNS, workdir: Path) -> None:
        self.dir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.sock = str(workdir / "docker.sock")
        self.host = f"unix://{self.sock}"
        self.log = open(workdir / "dockerd.log", "wb")
        self.proc = subprocess.Popen(
            ns.cmd(["dockerd", "--host", self.host, "--data-root", str(workdir / "data"),
                    "--exec-root", str(workdir / "exec"), "--pidfile", str(workdir / "docker.pid"),
                    "--iptables=true"]),
            stdout=self.log, stderr=self.log, start_new_session=True)
        wait_for(lambda: subprocess.run(["docker", "-H", self.host, "version"], capture_output=True).returncode == 0,
                 timeout=60, what="dockerd")

    def stop(self) -> None:
        stop_pid(self.proc, timeout=30)
        self.log.close()


def docker(host: str, *args: str, config: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env.update(DOCKER_HOST=host, DOCKER_BUILDKIT="0", DOCKER_CONFIG=str(config), DOCKER_CLI_HINTS="false")
    r = subprocess.run(["docker", *args], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}")
    return r


def timed(host: str, args: list[str], config: Path) -> float:
    t = time.perf_counter()
    docker(host, *args, config=config)
    return time.perf_counter() - t


def make_context(d: Path, base: str) -> None:
    (d / "src").mkdir(parents=True)
    for i in range(20):
        (d / "src" / f"part{i:02d}.txt").write_text(f"part {i}\n" * 50)
    (d / "config.txt").write_text("key=value\n")
    (d / "Dockerfile").write_text(DOCKERFILE.format(base=base))


def bench(host: str, ctx: Path, config: Path, runs: int) -> dict[str, list[float]]:
    tag = "bench/build:latest"
    docker(host, "build", "-t", tag, str(ctx), config=config)  # warm-up: base image, caches, first layers
    out: dict[str, list[float]] = {"build": [], "rebuild": []}
    for _ in range(runs):
        out["build"].append(timed(host, ["build", "--no-cache", "-t", tag, str(ctx)], config))
        out["rebuild"].append(timed(host, ["build", "-t", tag, str(ctx)], config))
    check = docker(host, "run", "--rm", tag, config=config).stdout.strip()
    assert check.startswith("5 "), check
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--only", choices=["skiffd", "dockerd"])
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (daemons, namespaces)", file=sys.stderr)
        return 2
    work = tempdir("skiff-bench-build-")
    ns = NetNS("skb")
    reg = None
    daemons: list = []
    results: dict[str, dict[str, list[float]]] = {}
    try:
        reg = Registry(ns, work)
        imgs = push_test_images(reg, work)
        ctx = work / "ctx"
        make_context(ctx, imgs.busybox)
        config = work / "docker-config"
        config.mkdir()
        if a.only != "dockerd":
            s = Skiffd(ns, work / "skiffd")
            daemons.append(s)
            docker(s.host, "pull", imgs.busybox, config=config)
            results["skiffd"] = bench(s.host, ctx, config, a.runs)
        if a.only != "skiffd":
            d = Dockerd(ns, work / "dockerd")
            daemons.append(d)
            docker(d.host, "pull", imgs.busybox, config=config)
            results["dockerd"] = bench(d.host, ctx, config, a.runs)
    finally:
        for d in daemons:
            d.stop()
        if reg is not None:
            reg.stop()
        ns.remove()
        subprocess.run(["umount", "-R", "-l", str(work)], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)

    print(f"docker build, {a.runs} runs each, median (min-max) seconds")
    print(f"{'daemon':<8} {'build (no cache)':>22} {'rebuild (cached)':>22}")
    for name, r in results.items():
        cells = [f"{statistics.median(r[k]):.3f} ({min(r[k]):.2f}-{max(r[k]):.2f})" for k in ("build", "rebuild")]
        print(f"{name:<8} {cells[0]:>22} {cells[1]:>22}")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"runs": a.runs, "dockerfile": DOCKERFILE, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
