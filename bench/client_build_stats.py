"""Benchmark: `skiff build` of a small context and `skiff stats --no-stream` against the Go docker CLI, on one
skiffd.

Each sample is one whole CLI process timed around `subprocess.run`; docker and skiff alternate sample by
sample so background load hits both alike, after warm-up runs. skiff runs as a regular install starts it
(bench/client.py's plain venv: no editable-install import hook, bytecode compiled).

* **build (cached)**: `build -q -t benchb .` of a 20-file context (FROM, COPY, RUN, CMD) whose layers are all
  in the cache after the warm-up: the client's part (tarring the context, .dockerignore, upload, streaming
  the output) dominates instead of the RUN step.
* **build (no cache)**: the same with `--no-cache` (the RUN step runs each time).
* **stats --no-stream**: 5 running containers, one sample of each.

Usage (root): python bench/client_build_stats.py [--runs 15] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from client import client_env, measure, plain_venv, run_cleanup, start_engine  # noqa: E402  (bench/client.py)


def make_context(root: Path, base: str) -> Path:
    ctx = root / "ctx"
    (ctx / "src").mkdir(parents=True)
    for i in range(20):
        (ctx / "src" / f"f{i}.txt").write_text(f"file {i}\n" * 50)
    (ctx / "notes.log").write_text("ignored\n")
    (ctx / ".dockerignore").write_text("*.log\n")
    (ctx / "Dockerfile").write_text(f"FROM {base}\nCOPY src /src\nRUN ls /src | wc -l > /count\nCMD [\"cat\", \"/count\"]\n")
    return ctx


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--json", help="write the results here too")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="skiff-bench-buildstats-"))
    cleanup: list = []
    try:
        script = plain_venv(work / "venv")
        daemon, imgs = start_engine(work, cleanup, "skbs")
        env = client_env(daemon.host, daemon.docker_config, DOCKER_BUILDKIT="0")
        subprocess.run(["docker", "pull", "-q", imgs.busybox], env=env, check=True, capture_output=True)
        for i in range(5):
            subprocess.run(["docker", "run", "-d", "--name", f"bench-stats-{i}", imgs.busybox, "sleep", "3600"],
                           env=env, check=True, capture_output=True)
        cleanup.append(lambda: subprocess.run("docker rm -f $(docker ps -aq)", shell=True, env=env,
                                              capture_output=True))
        ctx = make_context(work, imgs.busybox)
        cases = {"build (cached)": ["build", "-q", "-t", "benchb", str(ctx)],
                 "build (no cache)": ["build", "-q", "--no-cache", "-t", "benchb", str(ctx)],
                 "stats --no-stream": ["stats", "--no-stream"]}
        load = os.getloadavg()
        res = measure({"docker": ["docker"], "skiff": [str(script)]}, env, args.runs, warmup=2, commands=cases)
        res["_meta"] = {"load_avg": [round(x, 2) for x in load], "runs": args.runs, "cpus": os.cpu_count(),
                        "when": time.strftime("%Y-%m-%d %H:%M")}
        print(f"load average at start: {load[0]:.1f} ({os.cpu_count()} CPUs), {args.runs} runs each\n")
        print("| command | docker median (ms) | skiff median (ms) | ratio |")
        print("|---|---|---|---|")
        for key, r in res.items():
            if not key.startswith("_"):
                dm, sm = r["docker"]["median_ms"], r["skiff"]["median_ms"]
                print(f"| `{key}` | {dm} | {sm} | {sm / dm:.2f}x |")
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    finally:
        run_cleanup(cleanup, work)

if __name__ == "__main__":
    main()
