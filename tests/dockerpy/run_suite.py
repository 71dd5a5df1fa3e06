"""Run docker-py 7.0.0's integration suite against dockerd and skiffd and print the comparison.

    .venv/bin/python -m tests.dockerpy.run_suite                      # both daemons, whole suite
    .venv/bin/python -m tests.dockerpy.run_suite --daemons skiffd -k exec
    .venv/bin/python -m tests.dockerpy.run_suite --out /var/tmp/dpy   # keep results (JSON) and logs

Needs root (network namespaces), Debian's docker.io, docker-registry, skopeo and busybox-static, and the
package index (the sdist is downloaded once into $SKIFF_DOCKERPY_CACHE).
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.dockerpy import suite


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--daemons", default=",".join(suite.DAEMONS), help="comma-separated: dockerd,skiffd")
    p.add_argument("-k", dest="keyword", help="pytest -k expression")
    p.add_argument("--out", type=Path, help="keep results and logs here (default: a temp folder, removed)")
    p.add_argument("--parallel", action="store_true", help="run the daemons' suites at the same time")
    p.add_argument("--timeout", type=float, default=3600, help="bound for each daemon's whole run (s)")
    p.add_argument("tests", nargs="*", help="node ids relative to the sdist (default: tests/integration)")
    a = p.parse_args(argv)
    kinds = [k for k in a.daemons.split(",") if k]
    if bad := set(kinds) - set(suite.DAEMONS):
        p.error(f"unknown daemon(s) {', '.join(sorted(bad))}: choose from {', '.join(suite.DAEMONS)}")
    sdist = suite.fetch_sdist()
    python = suite.suite_python(sdist)
    out = a.out or suite.new_workdir()
    out.mkdir(parents=True, exist_ok=True)
    extra = ["-k", a.keyword] if a.keyword else []

    def one(kind: str) -> dict[str, suite.Outcome]:
        res = suite.run_suite(kind, sdist, python, out / kind, a.tests or None, total_timeout=a.timeout, extra=extra)
        suite.save(res, out / f"{kind}.json")
        return res

    try:
        with ThreadPoolExecutor(len(kinds) if a.parallel else 1) as pool:
            results = dict(zip(kinds, pool.map(one, kinds)))
    finally:
        if a.out is None:
            suite.cleanup_workdir(out)
    print(suite.table(results))
    if "dockerd" in results and "skiffd" in results:
        gap = suite.diff(results["dockerd"], results["skiffd"])
        print(f"\n{len(gap)} test(s) pass on dockerd but not on skiffd:")
        for n in gap:
            print(f"  {n}: {results['skiffd'].get(n, suite.Outcome('missing')).detail}")
        return 1 if gap else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
