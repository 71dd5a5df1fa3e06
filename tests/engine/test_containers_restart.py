"""Live restore: skiffd killed with SIGKILL while containers run. conmon keeps them (and their logs) going;
the restarted daemon re-adopts them, notices the ones that exited meanwhile, and nothing leaks."""

from __future__ import annotations

import json
import os
import time

from tests.engine.containers_fixtures import conmon_pids, remove_all
from tests.engine.harness import Skiffd, TestImages, wait_for


def inspect(d: Skiffd, ref: str) -> dict:
    return json.loads(d.docker("inspect", ref).stdout)[0]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_sigkill_daemon_and_readopt(fresh_skiffd: Skiffd, images: TestImages) -> None:
    d = fresh_skiffd
    bb = images.busybox
    d.docker("pull", "-q", bb)
    try:
        ticker = d.docker("run", "-d", "--name", "ticker", bb, "sh", "-c",
                          "i=0; while true; do echo tick$i; i=$((i+1)); sleep 0.1; done").stdout.strip()
        quitter = d.docker("run", "-d", "--name", "quitter", bb, "sh", "-c", "sleep 1.5; exit 7").stdout.strip()
        d.docker("run", "-d", "--name", "tty", "-t", bb, "sh").stdout.strip()
        wait_for(lambda: "tick5" in d.docker("logs", "ticker").stdout, what="ticks")
        pid = inspect(d, "ticker")["State"]["Pid"]
        # The monitor left the daemon's cgroup (systemd would kill it with the daemon's unit otherwise).
        (mon,) = conmon_pids(ticker)
        cg = open(f"/proc/{mon}/cgroup").read()
        if os.path.isdir("/sys/fs/cgroup/systemd") or os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
            assert f"/{d.cgroup_parent}/conmon" in cg, cg

        d.kill()
        assert _alive(pid), "the container died with the daemon"
        time.sleep(2.0)  # quitter exits while nobody watches; conmon records it
        d.start()

        ps = d.docker("ps", "--format", "{{.Names}} {{.Status}}").stdout
        assert "ticker Up" in ps and "tty Up" in ps and "quitter" not in ps
        j = inspect(d, "ticker")
        assert j["State"]["Running"] and j["State"]["Pid"] == pid
        q = inspect(d, "quitter")
        assert q["State"]["Status"] == "exited" and q["State"]["ExitCode"] == 7
        assert d.docker("wait", "quitter").stdout.strip() == "7"

        # Logs went on while the daemon was down and keep going.
        n1 = d.docker("logs", "ticker").stdout.count("tick")
        time.sleep(0.5)
        n2 = d.docker("logs", "ticker").stdout.count("tick")
        assert n2 > n1 > 20
        assert d.docker("exec", "ticker", "echo", "exec-ok").stdout == "exec-ok\n"

        # The re-adopted container stops, and its exit is seen through the adopted monitor.
        t = time.monotonic()
        d.docker("stop", "-t", "1", "ticker")
        assert time.monotonic() - t < 8
        assert inspect(d, "ticker")["State"]["ExitCode"] in (137, 143)
        assert not _alive(pid)
        for cid in (ticker, quitter):
            assert not conmon_pids(cid) and not d.cgroup_leftovers(cid)
        # A second daemon restart with a stopped container in the store changes nothing.
        d.restart()
        assert inspect(d, "ticker")["State"]["Status"] == "exited"
    finally:
        ids = d.docker("ps", "-aq", "--no-trunc", check=False).stdout.split()
        remove_all(d)
    for cid in ids:
        assert not conmon_pids(cid) and not d.cgroup_leftovers(cid)
    assert not os.listdir(d.exec_root / "containers")


def test_restart_policy_applies_at_daemon_start(fresh_skiffd: Skiffd, images: TestImages) -> None:
    d = fresh_skiffd
    d.docker("pull", "-q", images.busybox)
    try:
        d.docker("run", "-d", "--name", "always", "--restart", "always", images.busybox, "sleep", "1000")
        d.docker("run", "-d", "--name", "stopped", "--restart", "unless-stopped", images.busybox, "sleep", "1000")
        d.docker("stop", "-t", "0", "stopped")
        d.docker("stop", "-t", "0", "always")  # a manual stop; `always` still comes back with the daemon
        d.restart()
        wait_for(lambda: inspect(d, "always")["State"]["Running"], what="always restarted")
        assert not inspect(d, "stopped")["State"]["Running"]
    finally:
        remove_all(d)
