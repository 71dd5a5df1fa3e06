"""`machine quickstart --dashboard`: the machine made ready (here with the `none` driver: an engine URL, nothing
to boot), then the dashboard served for it and the user's browser (whatever $BROWSER names) opened on the URL."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

MACHINE = str(Path(sys.executable).with_name("machine"))


def test_quickstart_opens_the_dashboard(tmp_path: Path) -> None:
    opened = tmp_path / "opened"
    browser = tmp_path / "browser"
    browser.write_text(f'#!/bin/sh\necho "$1" > {opened}\n')
    browser.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "MACHINE_"))}
    env.update(MACHINE_STORAGE_PATH=str(tmp_path / "store"), MACHINE_DRIVER="none", NONE_URL="tcp://127.0.0.1:2399",
               BROWSER=f"{browser} %s", HOME=str(tmp_path), PYTHONUNBUFFERED="1", DISPLAY="")
    proc = subprocess.Popen([MACHINE, "quickstart", "--dashboard"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("Dashboard for machine default: http://127.0.0.1:"), (line, proc.stderr.read() if proc.poll() is not None else "")
        url = line.split(": ", 1)[1].strip()
        deadline = time.monotonic() + 20
        while not opened.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert opened.read_text().strip() == url  # the browser was asked to open exactly the token URL
        port = url.split(":")[2].split("/")[0]
        token = url.split("token=")[1]
        req = urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"Cookie": f"skiff_dashboard_{port}={token}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert '<meta name="skiff-engine" content="default">' in r.read().decode()
    finally:
        proc.terminate()
        proc.wait(10)
        for f in (proc.stdout, proc.stderr):
            if f:
                f.close()
    assert (tmp_path / "store" / "machines" / "default" / "config.json").is_file()
