"""Reproducer (a script, not a test): is a container's name resolvable by a peer right after `docker run -d`
returns, on a loaded machine? It starts its own netns + registry + skiffd (the test harness), CPU hogs it owns
(stopped by PID), then loops: run -d a named container on a user network, and at once look its names up from a
peer (`ping -c 1`, as test_user_network_names_and_aliases does). Every few rounds the container is removed and its
name reused by a new one.

    .venv/bin/python -m tests.engine.names_race_repro --rounds 200 --hogs 4
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from tests.engine.harness import NetNS, Registry, Skiffd, push_test_images, rmtree, stop_pid, tempdir


def hogs(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--hogs", type=int, default=4)
    ap.add_argument("--reuse", type=int, default=3, help="reuse a removed container's name every N rounds (0: never)")
    ap.add_argument("--diag", action="store_true", help="on a failure, show the bridge's MAC and the peer's ARP cache")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (skiffd and dnsmasq logs)")
    args = ap.parse_args()
    work = tempdir("names-repro-")
    ns = NetNS("skr")
    reg = d = None
    load: list[subprocess.Popen] = []
    fails = 0
    try:
        reg = Registry(ns, work)
        imgs = push_test_images(reg, work)
        d = Skiffd(ns, work / "d")
        bb = imgs.busybox
        d.docker("pull", "-q", bb)
        d.docker("network", "create", "rnet")
        d.docker("run", "-d", "--name", "web", "--network", "rnet", bb, "sleep", "3600")
        load = hogs(args.hogs)
        times = []
        for i in range(args.rounds):
            name = f"c{i}"
            if args.reuse and i % args.reuse == 0 and i:
                d.docker("rm", "-f", f"c{i - 1}")
                name = f"c{i - 1}"
            t0 = time.monotonic()
            d.docker("run", "-d", "--name", name, "--network", "rnet", "--network-alias", f"al{i}", bb, "sleep", "3600")
            t1 = time.monotonic()
            r = d.docker("exec", "web", "sh", "-c", f"ping -c 1 -W 3 {name} >/dev/null && ping -c 1 -W 3 al{i} >/dev/null",
                         check=False)
            times.append(t1 - t0)
            if r.returncode != 0:
                fails += 1
                print(f"round {i}: FAIL {name}: {r.stdout.strip()} {r.stderr.strip()} (run took {t1 - t0:.2f}s)", flush=True)
                later = d.docker("exec", "web", "ping", "-c", "1", "-W", "3", name, check=False)
                print(f"   again at once: rc={later.returncode} {later.stderr.strip()}", flush=True)
                if args.diag:
                    print("   bridge:", d.ns.run(["ip", "-br", "link", "show", "type", "bridge"]).stdout.strip(), flush=True)
                    print("   peer's neighbours:", d.docker("exec", "web", "ip", "neigh", check=False).stdout.strip(), flush=True)
            elif i % 10 == 0:
                print(f"round {i}: ok (run {t1 - t0:.2f}s)", flush=True)
        times.sort()
        print(f"{fails} failures in {args.rounds} rounds; run -d median {times[len(times) // 2]:.2f}s max {times[-1]:.2f}s")
        warn = [line for line in d.logfile.read_text().splitlines() if "did not answer" in line or "name server" in line]
        print("\n".join(warn[-20:]))
    finally:
        for p in load:
            stop_pid(p)
        if d is not None:
            for f in (d.exec_root / "network" / "dns").glob("*/log"):
                (work / f"dnsmasq-{f.parent.name}.log").write_bytes(f.read_bytes())
            ids = d.docker("ps", "-aq", check=False).stdout.split()
            if ids:
                d.docker("rm", "-f", *ids, check=False)
            d.docker("network", "rm", "rnet", check=False)
            d.stop()
        if reg is not None:
            reg.stop()
        ns.remove()
        if args.keep:
            print(f"work dir (logs): {work}")
        else:
            rmtree(work)
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
