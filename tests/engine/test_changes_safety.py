"""`docker diff` (guest/containers/changes.py) walks the upper dir by descriptor.

A running container owns every name in its upper dir: it can swap a directory for a symlink to a host
directory at any moment, and a walk by path would then list the host directory's names as the
container's changes. Built here from plain directories (a real Container record over a temp data dir,
no daemon): Docker's Kind rules on a rich tree, and a swapper thread exchanging a directory with a
symlink to a host directory while the changes are listed again and again."""

from __future__ import annotations

import ctypes
import os
import secrets
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from skiffbox.guest.containers.changes import changes
from skiffbox.guest.containers.store import Container

_RENAME_EXCHANGE = 2


@pytest.fixture
def root() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="skiff-changes-"))
    yield d
    shutil.rmtree(d)


def container(root: Path, lowers: list[Path]) -> Container:
    """A container record whose image layers are `lowers` (bottom first), as the service stores it."""
    data = root / "ctr"
    for sub in ("upper", "init"):
        (data / "fs" / sub).mkdir(parents=True)
    return Container({"Id": secrets.token_hex(32), "Name": "/t", "Skiff": {"LowerDirs": [str(p) for p in lowers]}},
                     data, root / "bundle")


def files(base: Path, *paths: str) -> None:
    for p in paths:
        (base / p).parent.mkdir(parents=True, exist_ok=True)
        (base / p).write_text(p)


def whiteout(base: Path, path: str) -> None:
    (base / path).parent.mkdir(parents=True, exist_ok=True)
    os.mknod(base / path, stat.S_IFCHR | 0o000, os.makedev(0, 0))


def test_kinds_of_a_rich_tree(root: Path) -> None:
    low1, low2 = root / "l1", root / "l2"
    files(low1, "etc/passwd", "etc/group", "bin/vi", "bin/sh", "opt/old/x", "gone/file", "var/keep")
    whiteout(low2, "gone")  # the top image layer deleted /gone
    c = container(root, [low1, low2])
    files(c.init_layer, "etc/hosts")
    up = c.upper
    files(up, "etc/passwd", "etc/new", "etc/hosts", "gone/file", "newdir/sub/f", "opt/new", "opt/old/y")
    whiteout(up, "bin/vi")
    whiteout(up, "bin/never-there")  # hides nothing: not a change
    whiteout(up, "var/keep")
    os.setxattr(up / "opt", "trusted.overlay.opaque", b"y")  # rm -rf /opt; mkdir /opt in the container
    (up / "link").symlink_to("/etc")
    os.mkfifo(up / "fifo")
    got = [(e["Kind"], e["Path"]) for e in changes(c)]
    assert got == [
        (0, "/bin"), (2, "/bin/vi"),
        (0, "/etc"), (0, "/etc/hosts"), (1, "/etc/new"), (0, "/etc/passwd"),
        (1, "/fifo"),
        (1, "/gone"), (1, "/gone/file"),  # below a directory that is new to the image: added
        (1, "/link"),
        (1, "/newdir"), (1, "/newdir/sub"), (1, "/newdir/sub/f"),
        (0, "/opt"), (1, "/opt/new"), (0, "/opt/old"), (1, "/opt/old/y"),
        (0, "/var"), (2, "/var/keep"),
    ]
    # Nothing in the upper dir: no changes; no upper dir at all: none either.
    shutil.rmtree(up)
    up.mkdir()
    assert changes(c) == []
    up.rmdir()
    assert changes(c) == []


def exchanger(a: Path, b: Path, stop: threading.Event, swaps: list[int]) -> threading.Thread:
    """Exchanges the names `a` and `b` atomically, as fast as it can, as a container process can."""
    libc = ctypes.CDLL(None, use_errno=True)
    at_fdcwd = -100

    def run() -> None:
        while not stop.is_set():
            if libc.renameat2(at_fdcwd, bytes(a), at_fdcwd, bytes(b), _RENAME_EXCHANGE) != 0:
                raise OSError(ctypes.get_errno(), "renameat2")
            swaps[0] += 1

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_a_directory_swapped_for_a_host_symlink_never_lists_host_names(root: Path) -> None:
    host = root / "host"
    marker = "HOSTNAME-" + secrets.token_hex(4)
    files(host, *(f"{marker}-{i}" for i in range(20)), f"{marker}-dir/inner")
    low = root / "l1"
    (low / "w").mkdir(parents=True)
    c = container(root, [low])
    w = c.upper / "w"
    files(w, *(f"d/own-{i}" for i in range(20)))
    (w / "dl").symlink_to(host)
    # Unswapped: the link is a change, what it points to is not.
    assert [e["Path"] for e in changes(c)] == ["/w", "/w/d"] + [f"/w/d/own-{i}" for i in sorted(map(str, range(20)))] \
        + ["/w/dl"]
    stop, swaps = threading.Event(), [0]
    t = exchanger(w / "d", w / "dl", stop, swaps)
    walks, through_dir, deadline = 0, 0, time.monotonic() + 4
    try:
        while time.monotonic() < deadline:
            paths = [e["Path"] for e in changes(c)]
            walks += 1
            leaked = [p for p in paths if marker in p]
            assert not leaked, f"walk {walks} (after {swaps[0]} swaps) listed host names: {leaked[:3]}"
            through_dir += any(p.startswith(("/w/d/own-", "/w/dl/own-")) for p in paths)
    finally:
        stop.set()
        t.join()
    # The race was real: many swaps during many walks, and walks did go into the swapped directory.
    assert swaps[0] > 1000 and walks > 50 and through_dir > 10, (swaps[0], walks, through_dir)
