"""Wall time of `machine env` and `machine ls` (10 machines) as whole processes, as a shell runs them.

Setup: a temporary store with 10 `none`-driver machines whose engine URL is a local mutual-TLS HTTPS
server answering /version (so `ls` really queries 10 engines over TLS, in parallel). Each command runs
`--runs` times after a warm-up (which also writes the bytecode caches, as an installed package has).
Reported: median and p90 wall ms and median CPU ms (user+sys), next to `python -c pass` (the interpreter's own start-up) and the
same commands forced through the typer front end (MACHINE_NO_FAST_PATH=1).

    .venv/bin/python bench/machine_cli.py [--runs 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BIN = Path(sys.executable).parent


class _Version(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        body = json.dumps({"Version": "bench", "ApiVersion": "1.44"}).encode() if self.path.endswith("/version") else b"OK"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a: object) -> None:
        pass


def tls_server(mdir: Path) -> tuple[http.server.ThreadingHTTPServer, int]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(mdir / "server.pem", mdir / "server-key.pem")
    ctx.load_verify_locations(mdir / "ca.pem")
    ctx.verify_mode = ssl.CERT_REQUIRED  # like skiffd --tlsverify
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Version)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, srv.server_address[1]


def timed(argv: list[str], env: dict[str, str], runs: int) -> tuple[list[float], list[float]]:
    """Wall ms and CPU ms (user+sys of the child: steadier than wall time on a busy machine)."""
    import resource

    subprocess.run(argv, env=env, capture_output=True, check=True)  # warm-up, writes .pyc
    wall, cpu = [], []
    for _ in range(runs):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(argv, env=env, capture_output=True, check=True)
        wall.append((time.perf_counter() - t0) * 1000)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append((r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime) * 1000)
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="machine-bench-") as tmp:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "DOCKER_HOST")}
        env.update(MACHINE_STORAGE_PATH=f"{tmp}/store", SHELL="/bin/bash")
        m = str(BIN / "machine")
        # placeholder URL first: the server needs a machine's certs to start
        subprocess.run([m, "create", "-d", "none", "--url", "tcp://127.0.0.1:9", "m1"], env=env, capture_output=True, check=True)
        srv, port = tls_server(Path(tmp) / "store" / "machines" / "m1")
        cfg_path = Path(tmp) / "store" / "machines" / "m1" / "config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["Driver"]["URL"] = f"tcp://127.0.0.1:{port}"
        cfg_path.write_text(json.dumps(cfg))
        for i in range(2, 11):
            subprocess.run([m, "create", "-d", "none", "--url", f"tcp://127.0.0.1:{port}", f"m{i}"], env=env,
                           capture_output=True, check=True)
        ls_out = subprocess.run([m, "ls"], env=env, capture_output=True, text=True, check=True).stdout
        assert ls_out.count("vbench") == 10, ls_out
        slow = dict(env, MACHINE_NO_FAST_PATH="1")
        cases = {
            "python -c pass": ([sys.executable, "-c", "pass"], env),
            "machine env m1": ([m, "env", "m1"], env),
            "machine ls (10 machines)": ([m, "ls"], env),
            "machine env m1 (typer path)": ([m, "env", "m1"], slow),
            "machine ls (typer path)": ([m, "ls"], slow),
        }
        results = {}
        for label, (argv, e) in cases.items():
            wall, cpu = timed(argv, e, a.runs)
            ts = sorted(wall)
            results[label] = {"median_ms": round(statistics.median(ts), 1),
                              "p90_ms": round(ts[int(0.9 * (len(ts) - 1))], 1),
                              "cpu_median_ms": round(statistics.median(cpu), 1), "runs": len(ts)}
        srv.shutdown()
    w = max(len(k) for k in results)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'command':<{w}}  median ms  p90 ms  cpu ms")
    for k, r in results.items():
        print(f"{k:<{w}}  {r['median_ms']:>9}  {r['p90_ms']:>6}  {r['cpu_median_ms']:>6}")
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
