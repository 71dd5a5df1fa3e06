"""Benchmark: the dashboard (issue #18) in Debian's headless chromium against a skiffd in its own namespace.

* paint  — first contentful paint of the dashboard page (a fresh navigation each time), median of N.
* update — how long after `docker run -d` returns the new container shows as running in the open
           Containers page (the list follows the engine's /events stream: no polling), median and max of N.
           The target is under 200 ms.

Everything (namespace, registry, skiffd, dashboard, browser) is made for the run and removed at the end.
Usage (root): python bench/dashboard.py [--runs 10] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.dashboard.harness import chromium, dashboard_for, thread_in_netns  # noqa: E402
from tests.engine.harness import NetNS, Registry, Skiffd, push_test_images, rmtree, tempdir  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    ns = NetNS("skb")
    work = tempdir("skiff-bench-dash-")
    reg = daemon = None
    try:
        reg = Registry(ns, work)
        image = push_test_images(reg, work).busybox
        daemon = Skiffd(ns, work / "skiffd")
        daemon.docker("pull", "-q", image)
        with dashboard_for(daemon) as dash, thread_in_netns(ns), chromium() as drv:
            wait = WebDriverWait(drv, 10, poll_frequency=0.005)
            drv.get(dash.url)
            paints = []
            for _ in range(a.runs):
                drv.get(dash.base + "/#/containers")
                wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#live.on")))
                paints.append(drv.execute_script(
                    "return performance.getEntriesByName('first-contentful-paint')[0].startTime"))
            updates = []
            for i in range(a.runs):
                daemon.docker("run", "-d", "--name", f"b{i}", image, "sleep", "60")
                t = time.monotonic()
                wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, f'tr[data-name="b{i}"][data-state="running"]')))
                updates.append((time.monotonic() - t) * 1000)
                daemon.docker("rm", "-f", f"b{i}")
        res = {"paint_ms_median": statistics.median(paints), "update_ms_median": statistics.median(updates),
               "update_ms_max": max(updates), "runs": a.runs}
        print(f"first contentful paint: median {res['paint_ms_median']:.0f} ms ({a.runs} loads)")
        print(f"list update after docker run -d: median {res['update_ms_median']:.0f} ms, "
              f"max {res['update_ms_max']:.0f} ms ({a.runs} runs; target < 200 ms)")
        if a.json:
            Path(a.json).write_text(json.dumps(res, indent=2))
    finally:
        if daemon is not None:
            daemon.stop()
        if reg is not None:
            reg.stop()
        ns.remove()
        rmtree(work)


if __name__ == "__main__":
    main()
