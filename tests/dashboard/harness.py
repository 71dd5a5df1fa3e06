"""Real parts for the dashboard's browser tests and bench/dashboard.py: `machine dashboard --no-browser` started
inside the engine harness's network namespace against a skiffd, and Debian's headless chromium driven by Selenium,
also inside the namespace.

Why everything runs in the namespace: a container's published port listens on 127.0.0.1 of the skiffd's
namespace, and the test clicks the port's link, so the browser must be there too. The caller moves its own
thread into the namespace (`thread_in_netns`; setns is per thread for network namespaces); chromedriver and
chromium, started from that thread, are born there, and Selenium's requests to chromedriver and the caller's
own requests to the dashboard are made from there. The thread goes back to its namespace afterwards."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.engine.harness import VENV_BIN, NetNS, Skiffd, stop_pid

CLONE_NEWNET = 0x40000000


@contextlib.contextmanager
def thread_in_netns(ns: NetNS) -> Iterator[None]:
    libc = ctypes.CDLL(None, use_errno=True)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(ns.path, os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns into the test namespace")
        try:
            yield
        finally:
            if libc.setns(home, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back home")
    finally:
        os.close(home)
        os.close(target)


@dataclass
class Dashboard:
    url: str  # with the token
    port: int
    token: str
    proc: subprocess.Popen

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.contextmanager
def serve(argv_prefix: list[str], env: dict[str, str], machine: str = "") -> Iterator[Dashboard]:
    """`machine dashboard --no-browser [MACHINE]` run through `argv_prefix` (a namespace's nsenter, or nothing)."""
    argv = [*argv_prefix, str(VENV_BIN / "machine"), "dashboard", "--no-browser", *([machine] if machine else [])]
    proc = subprocess.Popen(argv, env={**env, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert "http://127.0.0.1:" in line, f"no URL from machine dashboard: {line!r}"
        url = line.split(": ", 1)[1].strip()
        port = int(url.split(":")[2].split("/")[0])
        yield Dashboard(url, port, url.split("token=")[1], proc)
    finally:
        stop_pid(proc)
        if proc.stdout:
            proc.stdout.close()


@contextlib.contextmanager
def dashboard_for(skiffd: Skiffd, machine: str = "", store: Path | None = None) -> Iterator[Dashboard]:
    """`machine dashboard --no-browser [MACHINE]` in the skiffd's namespace, the skiffd being the local engine;
    the machine store is `store`, else a new empty one."""
    own = store is None
    store = store or Path(tempfile.mkdtemp(prefix="skiff-dash-store-", dir=os.environ.get("SKIFF_TEST_TMP", "/var/tmp")))
    try:
        with serve(skiffd.ns.cmd([]), {**skiffd.env(), "MACHINE_STORAGE_PATH": str(store)}, machine) as d:
            try:
                yield d
            finally:
                # A test that failed half-way leaves its containers: remove them so skiffd stops without mounts left.
                left = skiffd.docker("ps", "-aq", check=False).stdout.split()
                if left:
                    skiffd.docker("rm", "-f", *left, check=False)
    finally:
        if own:
            shutil.rmtree(store, ignore_errors=True)


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """Debian's chromium, headless, through Debian's chromedriver (call from the thread in the namespace)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    driver_bin, browser_bin = shutil.which("chromedriver"), shutil.which("chromium")
    if not driver_bin or not browser_bin:
        raise RuntimeError("chromium and chromium-driver are needed (scripts/debian-packages.txt; run scripts/setup.sh)")
    profile = tempfile.mkdtemp(prefix="skiff-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser_bin
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1360,860",
              f"--user-data-dir={profile}", "--no-first-run", "--disable-extensions", "--lang=en-US"):
        opts.add_argument(a)
    log = Path(profile + ".driver.log")
    drv = webdriver.Chrome(service=Service(driver_bin, log_output=str(log)), options=opts)
    try:
        yield drv
    finally:
        drv.quit()
        shutil.rmtree(profile, ignore_errors=True)
        log.unlink(missing_ok=True)
