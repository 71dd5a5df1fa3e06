"""A write that fails leaves the engine as it was, in memory and on disk: skiffd's data root on a small tmpfs,
filled up, then tag / rename / update / volume create / network create refused, with nothing half-done shown
before or after a restart and no temp file left behind."""

from __future__ import annotations

import errno
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.engine.harness import NetNS, Skiffd, busybox_rootfs_layer, rmtree, tempdir, wait_for
from skiffbox.guest.util.atomicfile import TMP_PREFIX


@pytest.fixture()
def small_disk_daemon(netns: NetNS) -> Iterator[Skiffd]:
    d = tempdir("skiffd-full-")
    data = d / "data"
    data.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m,mode=0711", "skiff-test-full", str(data)], check=True)
    daemon: Skiffd | None = None
    leftover: list[str] = []
    try:
        daemon = Skiffd(netns, d)
        yield daemon
    finally:
        if daemon is not None:
            leftover = daemon.close()
        # Container mounts under the data root first (none are expected), then the tmpfs itself.
        for m in sorted((ln.split()[1] for ln in Path("/proc/mounts").read_text().splitlines()
                         if ln.split()[1].startswith(str(data))), reverse=True):
            subprocess.run(["umount", m], check=True)
        rmtree(d)
    assert not leftover, f"skiffd's containers left these behind: {leftover}"


def _fill(path: Path) -> Path:
    """Fill the filesystem holding `path` to the last block."""
    filler = path / "filler"
    with open(filler, "wb", buffering=0) as f:
        for size in (1 << 20, 4096, 1):  # down to the last byte
            try:
                while f.write(b"\0" * size):
                    pass
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
    return filler


def _view(d: Skiffd) -> dict[str, str]:
    return {
        "images": d.docker("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").stdout,
        "ps": d.docker("ps", "-a", "--format", "{{.Names}} {{.Status}}").stdout,
        "inspect": json.dumps(json.loads(d.docker("inspect", "keeper").stdout)[0]["HostConfig"]["Memory"]),
        "volumes": d.docker("volume", "ls", "--format", "{{.Name}}").stdout,
        "networks": d.docker("network", "ls", "--format", "{{.Name}}").stdout,
    }


def _temp_files(root: Path) -> list[str]:
    return [str(p) for p in root.rglob(f"{TMP_PREFIX}*") if p.is_file()]


def test_failed_writes_leave_memory_and_disk_as_they_were(small_disk_daemon: Skiffd) -> None:
    d = small_disk_daemon
    d.docker("import", "-", "base:1", input=busybox_rootfs_layer(), text=False)
    d.docker("create", "--name", "keeper", "-m", "64m", "base:1", "sh")
    before = _view(d)
    filler = _fill(d.data_root)
    try:
        for args in (("tag", "base:1", "base:2"), ("tag", "base:1", "other/name:latest"), ("rename", "keeper", "k2"),
                     ("update", "-m", "96m", "keeper"), ("volume", "create", "fullvol"),
                     ("network", "create", "fullnet"), ("rm", "keeper")):
            r = d.docker(*args, check=False)
            assert r.returncode != 0, (args, r.stdout)
            assert "no space left on device" in r.stderr, (args, r.stderr)
            assert "OSError" not in r.stderr and "Errno" not in r.stderr, r.stderr  # dockerd's wording, not Python's
        assert _view(d) == before
        assert _temp_files(d.data_root) == []
        assert "Traceback" not in d.log_tail(100_000)  # a full disk is not a bug
    finally:
        os.unlink(filler)
    d.restart()
    assert _view(d) == before
    # With room again, the same requests go through.
    d.docker("tag", "base:1", "base:2")
    d.docker("rename", "keeper", "k2")
    assert "base:2" in d.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout
    d.docker("rm", "k2")


def _memory_max(pid: str) -> str:
    """The memory limit in force on `pid` (cgroup v1's memory controller here, v2's unified tree elsewhere)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, ctrl, rel = line.split(":", 2)
        if ctrl == "memory":
            return (Path("/sys/fs/cgroup/memory") / rel.lstrip("/") / "memory.limit_in_bytes").read_text().strip()
        if ctrl == "" and Path("/sys/fs/cgroup/cgroup.controllers").exists():
            return (Path("/sys/fs/cgroup") / rel.lstrip("/") / "memory.max").read_text().strip()
    raise AssertionError(f"no memory cgroup for {pid}")


def _containers(d: Skiffd) -> dict[str, Any]:
    out = {}
    for info in json.loads(d.docker("inspect", "runner", "idle").stdout):
        st = info["State"]
        out[info["Name"]] = ({k: st[k] for k in ("Status", "Running", "Pid", "ExitCode", "Error", "StartedAt")},
                             info["HostConfig"]["Memory"], sorted(info["NetworkSettings"]["Networks"]))
    return out


def test_failed_writes_leave_containers_as_they_were(small_disk_daemon: Skiffd) -> None:
    """stop, restart, update, network connect and disconnect, and start on a full disk: refused before anything changes (the stop
    signals nothing, the cgroup keeps its limit, no endpoint or process is left), in memory and after a restart."""
    d = small_disk_daemon
    d.docker("import", "-", "base:1", input=busybox_rootfs_layer(), text=False)
    d.docker("network", "create", "spare")
    d.docker("network", "create", "joined")
    d.docker("run", "-d", "--name", "runner", "-m", "64m", "--restart", "always", "base:1", "sleep", "600")
    try:
        _refused_on_a_full_disk(d)
    finally:
        d.docker("rm", "-f", "runner", "idle", check=False)


def _refused_on_a_full_disk(d: Skiffd) -> None:
    d.docker("create", "--name", "idle", "base:1", "sleep", "600")
    for name in ("runner", "idle"):
        d.docker("network", "connect", "joined", name)
    before = _containers(d)
    pid = str(before["/runner"][0]["Pid"])
    limit = _memory_max(pid)
    assert limit == str(64 << 20)
    filler = _fill(d.data_root)
    try:
        for args in (("stop", "-t", "1", "runner"), ("restart", "-t", "1", "runner"), ("update", "-m", "96m", "runner"),
                     ("network", "connect", "spare", "runner"), ("network", "connect", "spare", "idle"),
                     ("network", "disconnect", "joined", "runner"), ("network", "disconnect", "joined", "idle"),
                     ("start", "idle")):
            r = d.docker(*args, check=False)
            assert r.returncode != 0, (args, r.stdout)
            assert "no space left on device" in r.stderr, (args, r.stderr)
            assert _containers(d) == before, args
            assert _memory_max(pid) == limit, args
        links = subprocess.run(["nsenter", "-t", pid, "-n", "ip", "-o", "link"], capture_output=True, text=True,
                               check=True).stdout
        assert "eth1" in links and "eth2" not in links, links  # connect undone, disconnect too, in the netns
        assert _temp_files(d.data_root) == []
        assert "Traceback" not in d.log_tail(100_000)
    finally:
        os.unlink(filler)
    # The stop never happened: the restart policy still applies (a ManualStop kept in memory would block it).
    os.kill(int(pid), 9)
    wait_for(lambda: _containers(d)["/runner"][0]["Pid"] not in (0, int(pid)), what="runner restarted")
    d.restart()
    assert _containers(d)["/idle"] == before["/idle"]
    d.docker("start", "idle")
