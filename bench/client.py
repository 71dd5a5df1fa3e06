"""Benchmark: `skiff ps` / `skiff images` wall time against the Go docker CLI on the same skiffd.

Target (issue 8): within 2x of the Go client. Each sample is one whole CLI process, timed around
`subprocess.run` (start-up, API negotiation, the request, formatting, exit), clients interleaved sample by
sample so background load hits both alike, after warm-up runs.

skiff is measured two ways:
* **skiff** — as a normal (non-editable) install starts it: a plain venv whose site-packages has a
  `.pth` path entry to this checkout, bytecode compiled (pip compiles on install). This is the figure the
  target is about.
* **skiff (editable)** — the `.venv/bin/skiff` console script of this checkout's `pip install -e`, whose
  import hook alone costs ~20 ms per start; shown for transparency.

The engine: a fresh skiffd in a network namespace made for the run (harness of tests/engine), a local
registry with the test images, 3 images pulled and 20 containers (10 running, 10 exited) so both
listings have rows to format. Everything is removed at the end. `--host` uses an existing engine instead.

Usage (root): python bench/client.py [--runs 30] [--json results.json] [--host unix:///path.sock]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.srcview import source_view  # noqa: E402

COMMANDS = (["ps"], ["ps", "-a"], ["images"])


def plain_venv(root: Path) -> Path:
    """A venv without pip whose site-packages points at this checkout's source view (no import hooks)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    site = next(root.glob("lib/python3*/site-packages"))
    (site / "skiff-checkout.pth").write_text(str(source_view()) + "\n")
    script = root / "bin" / "skiff"
    script.write_text(f"#!{root / 'bin' / 'python'}\nimport sys\nfrom skiffbox.cli.skiff import main\nsys.exit(main())\n")
    script.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([str(root / "bin" / "python"), "-m", "compileall", "-q", str(REPO / "cli"), str(REPO / "machine")],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    return script


def start_engine(work: Path, cleanup: list, ns_name: str):
    """A fresh skiffd in its own network namespace with a local registry of the test images; the stop
    functions go on `cleanup`. Returns (daemon, images)."""
    from tests.engine.harness import NetNS, Registry, Skiffd, push_test_images

    ns = NetNS(ns_name)
    cleanup.append(ns.remove)
    reg = Registry(ns, work)
    cleanup.append(reg.stop)
    imgs = push_test_images(reg, work)
    daemon = Skiffd(ns, work / "engine")
    cleanup.append(daemon.stop)
    return daemon, imgs


def client_env(host: str, cfg: Path | str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_") and k != "PYTHONDONTWRITEBYTECODE"}
    env.update(DOCKER_HOST=host, DOCKER_CONFIG=str(cfg), DOCKER_CLI_HINTS="false", **extra)
    return env


def run_cleanup(cleanup: list, work: Path) -> None:
    """Undo in reverse order, going on past failures, then remove the work directory."""
    for fn in reversed(cleanup):
        try:
            fn()
        except Exception as e:  # keep cleaning up
            print(f"cleanup: {e}", file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)


def populate(docker_env: dict[str, str], images: list[str]) -> None:
    def d(*args: str, check: bool = True) -> None:
        subprocess.run(["docker", *args], env=docker_env, check=check, capture_output=True)

    for ref in images:
        d("pull", "-q", ref)
    for i in range(10):
        d("run", "-d", "--name", f"bench-up-{i}", "-l", f"n={i}", "-p", f"{18000 + i}:80", images[0], "sleep", "3600")
        d("run", "--name", f"bench-done-{i}", images[0], "sh", "-c", f"exit {i % 3}", check=False)  # exits i % 3


def measure(clients: dict[str, list[str]], env: dict[str, str], runs: int, warmup: int = 3,
            commands: dict[str, list[str]] | None = None) -> dict:
    """Medians per command ({label: argv tail}, default COMMANDS), clients alternating sample by sample."""
    results: dict = {}
    for key, cmd in (commands or {" ".join(c): c for c in COMMANDS}).items():
        times: dict[str, list[float]] = {name: [] for name in clients}
        outputs: dict[str, str] = {}
        for i in range(warmup + runs):
            order = list(clients.items())
            if i % 2:
                order.reverse()
            for name, argv in order:
                t0 = time.perf_counter()
                r = subprocess.run([*argv, *cmd], env=env, capture_output=True, text=True)
                dt = time.perf_counter() - t0
                if r.returncode != 0:
                    raise RuntimeError(f"{name} {key} failed: {r.stderr}")
                outputs[name] = r.stdout
                if i >= warmup:
                    times[name].append(dt)
        results[key] = {
            name: {"median_ms": round(statistics.median(t) * 1000, 1), "min_ms": round(min(t) * 1000, 1),
                   "p90_ms": round(sorted(t)[int(len(t) * 0.9) - 1] * 1000, 1), "runs": len(t)}
            for name, t in times.items()
        }
        rows = {name: len(out.splitlines()) for name, out in outputs.items()}
        results[key]["rows"] = rows
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--json", help="write the results here too")
    ap.add_argument("--host", help="use this engine (DOCKER_HOST form) instead of starting one")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="skiff-bench-client-"))
    cleanup = []
    try:
        script = plain_venv(work / "venv")
        if args.host:
            host, cfg = args.host, work / "cfg"
            cfg.mkdir()
        else:
            daemon, imgs = start_engine(work, cleanup, "skb")
            host, cfg = daemon.host, daemon.docker_config
        env = client_env(host, cfg)
        if not args.host:
            populate(env, [imgs.busybox, imgs.multilayer, imgs.busybox_oci])
            # Cleanup runs in reverse: appended last, this runs first, while the daemon still answers
            # (running containers outlive a daemon stop by design).
            cleanup.append(lambda: subprocess.run(
                "docker rm -f $(docker ps -aq)", shell=True, env=env, capture_output=True))
        clients = {"docker": ["docker"], "skiff": [str(script)],
                   "skiff (editable)": [str(REPO / ".venv" / "bin" / "skiff")]}
        load = os.getloadavg()
        res = measure(clients, env, args.runs)
        res["_meta"] = {"load_avg": [round(x, 2) for x in load], "runs": args.runs, "cpus": os.cpu_count(),
                        "when": time.strftime("%Y-%m-%d %H:%M"), "docker": subprocess.run(
                            ["docker", "--version"], capture_output=True, text=True).stdout.strip()}
        print(f"load average at start: {load[0]:.1f} ({os.cpu_count()} CPUs), {args.runs} runs each\n")
        print("| command | docker median (ms) | skiff median (ms) | ratio | skiff (editable) median (ms) | rows |")
        print("|---|---|---|---|---|---|")
        for key, r in res.items():
            if key.startswith("_"):
                continue
            dm, sm, em = r["docker"]["median_ms"], r["skiff"]["median_ms"], r["skiff (editable)"]["median_ms"]
            print(f"| `{key}` | {dm} | {sm} | {sm / dm:.2f}x | {em} | {r['rows']['skiff']} |")
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    finally:
        run_cleanup(cleanup, work)


if __name__ == "__main__":
    main()
