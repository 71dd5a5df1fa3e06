"""Layer tars written from a container's upper dir never follow what the container swaps in.

`docker commit --pause=false` reads the upper dir of a running container, which owns every name in it:
it can replace a file or a directory by a symlink to a host path at any moment. The writer walks by
descriptor (guest/images/treewalk.py), so the secret of a host file this test owns never reaches an
image, through the real docker CLI against a real skiffd. Also: the writer's output for a rich tree
(whiteouts, opaque directories, hard links, xattrs, special files)."""

from __future__ import annotations

import ctypes
import io
import json
import os
import secrets
import shutil
import stat
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from skiffbox.guest.images.layers import write_tar
from tests.engine.containers_fixtures import remove_all
from tests.engine.harness import Skiffd, TestImages


@pytest.fixture(scope="module")
def bb(skiffd: Skiffd, images: TestImages) -> Iterator[str]:
    skiffd.docker("pull", "-q", images.busybox)
    yield images.busybox
    remove_all(skiffd)


@pytest.fixture
def host_dir() -> Iterator[Path]:
    d = Path(f"/tmp/skiff-commit-escape-{secrets.token_hex(6)}")
    d.mkdir()
    yield d
    shutil.rmtree(d)


def layer_files(saved: bytes) -> Iterator[tuple[str, bytes]]:
    """Every regular file of every layer in a `docker save` archive (layers compressed or not)."""
    outer = tarfile.open(fileobj=io.BytesIO(saved))
    for m in outer.getmembers():
        if not m.isfile():
            continue
        data = outer.extractfile(m).read()  # type: ignore[union-attr]
        try:
            layer = tarfile.open(fileobj=io.BytesIO(data), mode="r:*")
            inner = layer.getmembers()
        except tarfile.TarError:
            continue  # a manifest or config
        for x in inner:
            if x.isfile():
                yield f"{m.name}:{x.name}", layer.extractfile(x).read()  # type: ignore[union-attr]


_RENAME_EXCHANGE = 2


def exchanger(upper: Path, pairs: list[tuple[str, str]], stop: threading.Event) -> threading.Thread:
    """Swap each pair of names in the container's upper dir atomically, again and again: what a container
    shipping a renameat2(RENAME_EXCHANGE) binary does in its own root (busybox has no such applet, and
    its shell loops leave a moment where the name is missing, which only makes a walk fail)."""
    libc = ctypes.CDLL(None, use_errno=True)
    at_fdcwd = -100

    def run() -> None:
        paths = [(os.fsencode(upper / a), os.fsencode(upper / b)) for a, b in pairs]
        while not stop.is_set():
            for a, b in paths:
                if libc.renameat2(at_fdcwd, a, at_fdcwd, b, _RENAME_EXCHANGE) != 0:
                    raise OSError(ctypes.get_errno(), "renameat2")

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


@pytest.mark.slow
def test_commit_of_running_container_never_reads_host_files(skiffd: Skiffd, bb: str, host_dir: Path,
                                                         tmp_path: Path) -> None:
    # The container's files have the secret's length: a read through a swapped-in link would take all of it.
    secret = f"host-secret-{secrets.token_hex(8)}\n"
    inside = "x" * (len(secret) - 1) + "\n"
    (host_dir / "secret").write_text(secret)
    for i in range(1, 201):  # the names the container's directory has: a walk by path that meets the
        (host_dir / f"a{i}").write_text(secret)  # symlink halfway through reads these
    # /w/d: a directory of files, swapped with /w/dl, a symlink to the host directory; /w/f: a file,
    # swapped with /w/fl, a symlink to the host file. /w/g: the container's own shell loop, a file then
    # a symlink to the host file.
    skiffd.docker("run", "-d", "--name", "swapper", bb, "sh", "-c",
                  f"mkdir -p /w/d && cd /w/d && for i in $(seq 200); do echo -n '{inside}' > a$i; done && "
                  f"echo -n '{inside}' > /w/f && ln -s {host_dir} /w/dl && ln -s {host_dir}/secret /w/fl && "
                  "touch /w/ready && "
                  f"while true; do echo -n '{inside}' > /w/g; rm /w/g; ln -s {host_dir}/secret /w/g; rm /w/g; done")
    upper = Path(json.loads(skiffd.docker("inspect", "swapper").stdout)[0]["GraphDriver"]["Data"]["UpperDir"])
    deadline = time.monotonic() + 30
    while not (upper / "w" / "ready").exists():
        assert time.monotonic() < deadline, "the container did not set up its files"
        time.sleep(0.1)
    stop = threading.Event()
    swap = exchanger(upper, [("w/d", "w/dl"), ("w/f", "w/fl")], stop)
    tags: list[str] = []
    failed = 0
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            tag = f"skiff/commit-race:{len(tags) + failed}"
            r = skiffd.docker("commit", "--pause=false", "swapper", tag, check=False)
            if r.returncode == 0:
                tags.append(tag)
            else:
                failed += 1
        stop.set()
        swap.join()
        assert len(tags) >= 10, (len(tags), failed)
        out = tmp_path / "saved.tar"
        skiffd.docker("save", "-o", str(out), *tags, timeout=300)
        saved = out.read_bytes()
        out.unlink()
        files = dict(layer_files(saved))
        leaked = sorted(k for k, v in files.items() if secret.encode() in v)
        assert leaked == [], f"a host file went into committed images ({len(tags)} commits, {failed} failed)"
        # The layers do hold the container's files (under either name).
        assert any(k.endswith(("w/d/a1", "w/dl/a1")) for k in files), sorted(files)[:20]
    finally:
        stop.set()
        swap.join()
        remove_all(skiffd)
        if tags:
            skiffd.docker("rmi", *tags, check=False, timeout=300)


def test_layer_tar_of_a_rich_tree(tmp_path: Path) -> None:
    """The layer format: sorted names, whiteouts as `.wh.`, opaque directories, hard links once, safe
    xattrs only, special files as entries (never opened), sockets left out."""
    up = tmp_path / "upper"
    (up / "d" / "o").mkdir(parents=True)
    (up / "d" / "f").write_bytes(b"data")
    os.link(up / "d" / "f", up / "d" / "hl")
    os.setxattr(up / "d" / "f", "user.k", b"v")
    os.setxattr(up / "d" / "f", "trusted.no", b"x")
    os.setxattr(up / "d" / "o", "trusted.overlay.opaque", b"y")
    os.mknod(up / "d" / "gone", stat.S_IFCHR | 0o000, os.makedev(0, 0))
    os.mknod(up / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mkfifo(up / "fifo")
    (up / "ln").symlink_to("/etc/passwd")
    os.chmod(up / "d" / "o", 0o751)
    os.chmod(up / "null", 0o666)  # mknod applies the umask
    import socket
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(up / "sock"))
    s.close()
    buf = io.BytesIO()
    write_tar(up, buf)
    got = [(m.name, m.type, m.mode, m.linkname, {k: v for k, v in m.pax_headers.items() if "xattr" in k})
           for m in tarfile.open(fileobj=io.BytesIO(buf.getvalue()))]
    assert got == [
        ("d", tarfile.DIRTYPE, 0o755, "", {}),
        ("d/f", tarfile.REGTYPE, 0o644, "", {"SCHILY.xattr.user.k": "v"}),
        ("d/.wh.gone", tarfile.REGTYPE, 0o600, "", {}),  # in the order of the name it hides
        ("d/hl", tarfile.LNKTYPE, 0o644, "d/f", {"SCHILY.xattr.user.k": "v"}),
        ("d/o", tarfile.DIRTYPE, 0o751, "", {}),
        ("d/o/.wh..wh..opq", tarfile.REGTYPE, 0o751, "", {}),
        ("fifo", tarfile.FIFOTYPE, 0o644, "", {}),
        ("ln", tarfile.SYMTYPE, 0o777, "/etc/passwd", {}),
        ("null", tarfile.CHRTYPE, 0o666, "", {}),
    ]
    # Without conversion the whiteout is the device it is on disk.
    buf = io.BytesIO()
    write_tar(up, buf, convert_whiteouts=False)
    names = [m.name for m in tarfile.open(fileobj=io.BytesIO(buf.getvalue()))]
    assert "d/gone" in names and "d/o/.wh..wh..opq" not in names
