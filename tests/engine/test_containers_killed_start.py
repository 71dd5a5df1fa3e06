"""skiffd SIGKILLed in the middle of a container start (the daemon's test hook SKIFFD_TEST_PAUSE_BEFORE holds the
start at a chosen point): the restarted daemon finds out what became of it. A process that got to run is
re-adopted as running (its output, published port, exec, stop and rm all work); one that never ran leaves a
clean `created` container and nothing else (no conmon, netns file, cgroup, rootfs mount, runtime state)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine.conftest import _start
from tests.engine.containers_fixtures import conmon_pids, remove_all
from tests.engine.harness import NetNS, Skiffd, TestImages, tempdir, wait_for

TICKER = ("mkdir -p /www && echo served > /www/index.html && httpd -p 80 -h /www; "
          "i=0; while true; do echo tick$i; i=$((i+1)); sleep 0.1; done")


@pytest.fixture(params=["crun", "runc"])
def hooked(request: pytest.FixtureRequest, netns: NetNS,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Skiffd, pytest.MonkeyPatch]]:
    """A daemon on each runtime (they tell `created` from `running` their own way), whose starts pause at the
    point the test sets in SKIFFD_TEST_PAUSE_BEFORE before restarting it."""
    if shutil.which(request.param) is None:
        pytest.skip(f"{request.param} is not installed")
    yield from ((d, monkeypatch) for d in _start(netns, tempdir("skiffd-killed-"), ["--runtime", request.param]))


def inspect(d: Skiffd, ref: str) -> dict:
    return json.loads(d.docker("inspect", ref).stdout)[0]


def wget_in_ns(d: Skiffd, url: str) -> str:
    return d.ns.run(["timeout", "10", "busybox", "wget", "-qO-", url]).stdout


def kill_during_start(d: Skiffd, mp: pytest.MonkeyPatch, point: str, image: str, *args: str) -> tuple[str, int]:
    """Create a container, start it, SIGKILL the daemon while the start is held at `point`; restart the daemon
    (without the hook). Returns the container id and the pid its process had (0 if none was made)."""
    cid = d.docker("create", "--name", "ctr", "-p", "28383:80", image, *args).stdout.strip()
    starter = subprocess.Popen(["docker", "start", "ctr"], env=d.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: f"start paused before {point}" in d.logfile.read_text(), what=f"the start at {point}")
        bundle = d.exec_root / "containers" / cid
        pid = 0
        if point != "launch":
            wait_for(lambda: (bundle / "pidfile").exists(), what="the container's pid file")
            pid = int((bundle / "pidfile").read_text())
        if point == "running-saved":
            wait_for(lambda: "tick3" in d.docker("logs", "ctr").stdout, what="output before the kill")
        d.kill()
    finally:
        starter.wait(30)
    assert starter.returncode != 0  # the client lost its daemon
    mp.delenv("SKIFFD_TEST_PAUSE_BEFORE")
    d.start()
    return cid, pid


def assert_nothing_left(d: Skiffd, cid: str) -> None:
    assert not conmon_pids(cid) and not d.cgroup_leftovers(cid)
    netns_dir = d.exec_root / "netns"
    assert not netns_dir.exists() or not os.listdir(netns_dir)
    assert not (d.exec_root / "runtime").exists() or not any(
        (p / cid).exists() for p in (d.exec_root / "runtime").iterdir() if p.is_dir())
    assert not [m for m in Path("/proc/mounts").read_text().split("\n") if cid in m]


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_killed_after_the_process_started(hooked: tuple[Skiffd, pytest.MonkeyPatch], images: TestImages) -> None:
    d, mp = hooked
    d.docker("pull", "-q", images.busybox)
    mp.setenv("SKIFFD_TEST_PAUSE_BEFORE", "running-saved")
    d.restart()
    try:
        cid, pid = kill_during_start(d, mp, "running-saved", images.busybox, "sh", "-c", TICKER)
        assert _alive(pid)
        assert "ctr Up" in d.docker("ps", "--format", "{{.Names}} {{.Status}}").stdout
        state = inspect(d, "ctr")["State"]
        assert state["Running"] and state["Status"] == "running" and state["Pid"] == pid
        # Its output from before the kill is there and more keeps coming; its port is published; exec works.
        n1 = d.docker("logs", "ctr").stdout.count("tick")
        wait_for(lambda: d.docker("logs", "ctr").stdout.count("tick") > n1 + 3, what="more output")
        assert "tick0\n" in d.docker("logs", "ctr").stdout
        assert "80/tcp -> 0.0.0.0:28383" in d.docker("port", "ctr").stdout
        assert wget_in_ns(d, "http://127.0.0.1:28383/") == "served\n"
        assert d.docker("exec", "ctr", "echo", "exec-ok").stdout == "exec-ok\n"
        t = time.monotonic()
        d.docker("stop", "-t", "1", "ctr")
        assert time.monotonic() - t < 8 and not _alive(pid)
        assert inspect(d, "ctr")["State"]["Status"] == "exited"
        assert wget_in_ns(d, "http://127.0.0.1:28383/") == ""
        d.docker("rm", "ctr")
        assert_nothing_left(d, cid)
    finally:
        remove_all(d)


def test_killed_after_the_process_started_and_it_exited_meanwhile(hooked: tuple[Skiffd, pytest.MonkeyPatch],
                                                                  images: TestImages) -> None:
    d, mp = hooked
    d.docker("pull", "-q", images.busybox)
    mp.setenv("SKIFFD_TEST_PAUSE_BEFORE", "running-saved")
    d.restart()
    try:
        cid, pid = kill_during_start(d, mp, "running-saved", images.busybox, "sh", "-c",
                                     "i=0; while [ $i -lt 15 ]; do echo tick$i; i=$((i+1)); sleep 0.1; done; exit 3")
        wait_for(lambda: inspect(d, "ctr")["State"]["Status"] == "exited", what="the exit seen")
        state = inspect(d, "ctr")["State"]
        assert state["ExitCode"] == 3 and not state["Running"]
        assert "tick14" in d.docker("logs", "ctr").stdout
        assert d.docker("wait", "ctr").stdout.strip() == "3"
        d.docker("rm", "ctr")
        assert_nothing_left(d, cid)
    finally:
        remove_all(d)


@pytest.mark.parametrize("point", ["launch", "start"])
def test_killed_before_the_process_ran(hooked: tuple[Skiffd, pytest.MonkeyPatch], images: TestImages,
                                       point: str) -> None:
    """Before conmon (`launch`) or with the container created but not started (`start`): nothing ran, so the
    container is `created`, without any of what the start had set up, and starts normally afterwards."""
    d, mp = hooked
    d.docker("pull", "-q", images.busybox)
    mp.setenv("SKIFFD_TEST_PAUSE_BEFORE", point)
    d.restart()
    try:
        cid, pid = kill_during_start(d, mp, point, images.busybox, "sh", "-c", TICKER)
        if pid:
            assert not _alive(pid)
        state = inspect(d, "ctr")["State"]
        assert state["Status"] == "created" and not state["Running"] and state["Pid"] == 0
        assert d.docker("logs", "ctr").stdout == ""
        assert_nothing_left(d, cid)
        assert not [m for m in Path("/proc/mounts").read_text().split("\n") if str(d.data_root) in m]
        # It starts now (its port is free again) and is removed cleanly.
        d.docker("start", "ctr")
        wait_for(lambda: "tick3" in d.docker("logs", "ctr").stdout, what="output")
        wait_for(lambda: wget_in_ns(d, "http://127.0.0.1:28383/") == "served\n", timeout=10, what="the port")
        d.docker("rm", "-f", "ctr")
        assert_nothing_left(d, cid)
    finally:
        remove_all(d)


def test_start_cancelled_after_create_leaves_no_init(hooked: tuple[Skiffd, pytest.MonkeyPatch],
                                                    images: TestImages) -> None:
    """The daemon stopped while a start waits right after `runtime create` reported (launch had not returned, as
    when that report times out): the cancelled start kills the created init (it waited on its exec fifo, parented
    to pid 1, after every test run) and leaves no conmon, cgroup, runtime state or mount."""
    d, mp = hooked
    d.docker("pull", "-q", images.busybox)
    mp.setenv("SKIFFD_TEST_PAUSE_BEFORE", "launched")
    d.restart()
    try:
        cid = d.docker("create", "--name", "ctr", images.busybox, "sleep", "60").stdout.strip()
        starter = subprocess.Popen(["docker", "start", "ctr"], env=d.env(), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE)
        try:
            wait_for(lambda: "start paused before launched" in d.logfile.read_text(), what="the start after create")
            pid = int((d.exec_root / "containers" / cid / "pidfile").read_text())
            assert _alive(pid)
            d.stop()  # SIGTERM: the daemon cancels the requests in progress, this start among them
        finally:
            starter.wait(30)
        assert not _alive(pid), "the created init outlived its failed start"
        assert_nothing_left(d, cid)
        mp.delenv("SKIFFD_TEST_PAUSE_BEFORE")
        d.start()
        assert inspect(d, "ctr")["State"]["Status"] == "created"
        d.docker("start", "ctr")
        d.docker("rm", "-f", "ctr")
        assert_nothing_left(d, cid)
    finally:
        remove_all(d)
