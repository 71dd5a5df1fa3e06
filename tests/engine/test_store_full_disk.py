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

import pytest

from tests.engine.harness import NetNS, Skiffd, busybox_rootfs_layer, rmtree, tempdir
from skiffbox.guest.util.atomicfile import TMP_PREFIX


@pytest.fixture()
def small_disk_daemon(netns: NetNS) -> Iterator[Skiffd]:
    d = tempdir("skiffd-full-")
    data = d / "data"
    data.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m,mode=0711", "skiff-test-full", str(data)], check=True)
    daemon: Skiffd | None = None
    try:
        daemon = Skiffd(netns, d)
        yield daemon
    finally:
        if daemon is not None:
            daemon.stop()
        # Container mounts under the data root first (none are expected), then the tmpfs itself.
        for m in sorted((ln.split()[1] for ln in Path("/proc/mounts").read_text().splitlines()
                         if ln.split()[1].startswith(str(data))), reverse=True):
            subprocess.run(["umount", m], check=True)
        rmtree(d)


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
