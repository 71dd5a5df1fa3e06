"""Hostile layers lose nothing and escape nothing.

The unpacker (guest/images/layers.py) is driven directly with crafted tars, and the same tars are
served by a scripted registry to a real skiffd: the pull fails with a clear message, leaves no image, no
temp files, and nothing outside the store is touched."""

from __future__ import annotations

import gzip
import io
import json
import os
import stat
import tarfile
from pathlib import Path

import pytest

from skiffbox.guest.images.layers import LayerError, Limits, ratio_check, unpack, write_tar
from skiffbox.guest.images.streams import HashingReader, decompressed
from tests.engine.harness import NetNS, Skiffd
from tests.engine.images_fixtures import FakeRegistry, image_routes


def tar_of(*entries: tuple) -> bytes:
    """entries: (name, kind, data_or_linkname, extra dict)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for e in entries:
            name, kind = e[0], e[1]
            arg = e[2] if len(e) > 2 else None
            extra = e[3] if len(e) > 3 else {}
            ti = tarfile.TarInfo(name)
            ti.mode = extra.get("mode", 0o755 if kind == "dir" else 0o644)
            ti.uid, ti.gid = extra.get("uid", 0), extra.get("gid", 0)
            ti.mtime = 1700000000
            ti.pax_headers = extra.get("pax", {})
            if kind == "file":
                data = arg or b""
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
                continue
            ti.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE, "chr": tarfile.CHRTYPE,
                       "blk": tarfile.BLKTYPE, "fifo": tarfile.FIFOTYPE}[kind]
            if kind in ("sym", "hard"):
                ti.linkname = arg
            if kind in ("chr", "blk"):
                ti.devmajor, ti.devminor = extra.get("dev", (1, 3))
            tf.addfile(ti)
    return buf.getvalue()


def do_unpack(data: bytes, dest: Path, limits: Limits | None = None) -> str:
    dest.mkdir(exist_ok=True)
    r = HashingReader(io.BytesIO(data))
    unpack(r, dest, limits)
    r.drain()
    return r.digest


@pytest.fixture()
def box(tmp_path: Path) -> tuple[Path, Path]:
    """(layer dir, an outside dir that must stay empty)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    return tmp_path / "layer", outside


@pytest.mark.parametrize("entries,msg", [
    ((("../escape", "file", b"x"),), "'..' is not allowed"),
    ((("a/../../escape", "file", b"x"),), "'..' is not allowed"),
    ((("/etc/evil", "file", b"x"),), "absolute paths are not allowed"),
    ((("dev/null", "chr", None, {"dev": (1, 3)}),), "device file 'dev/null' is not allowed"),
    ((("dev/sda", "blk", None, {"dev": (8, 0)}),), "device file"),
    ((("up", "sym", "../../../../etc/passwd"),), "points outside the image"),
    ((("a/b/up", "sym", "../../../x"),), "points outside the image"),
    ((("hl", "hard", "../../etc/passwd"),), "'..' is not allowed"),
    ((("hl", "hard", "/etc/passwd"),), "absolute paths are not allowed"),
    ((("hl", "hard", "nothere"),), "is not in the layer"),
    ((("f", "file", b"x"), ("f/g", "file", b"y")), "goes through a symlink or a file"),
    ((("dir/.wh.", "file", b""),), "invalid whiteout"),
])
def test_hostile_entries_are_refused(box: tuple[Path, Path], entries: tuple, msg: str) -> None:
    layer, outside = box
    with pytest.raises(LayerError, match=msg.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        do_unpack(tar_of(*entries), layer)
    assert os.listdir(outside) == []


def test_writes_through_symlinks_are_refused(box: tuple[Path, Path]) -> None:
    layer, outside = box
    # An absolute symlink is fine in an image (it resolves inside the container) …
    ok = tar_of(("etc", "dir"), ("link", "sym", str(outside)))
    do_unpack(ok, layer)
    assert os.readlink(layer / "link") == str(outside)
    # … but nothing is ever written through one, whichever way the path goes.
    for evil in (tar_of(("link", "sym", str(outside)), ("link/pwned", "file", b"x")),
                 tar_of(("d", "dir"), ("d/l", "sym", str(outside)), ("d/l/sub/pwned", "file", b"x")),
                 tar_of(("link", "sym", str(outside)), ("link/.wh.x", "file", b"")),
                 tar_of(("link", "sym", str(outside)), ("link/.wh..wh..opq", "file", b"")),
                 tar_of(("t", "file", b"secret"), ("link", "sym", str(outside)), ("link/h", "hard", "t"))):
        dest = layer.parent / f"l{hash(evil) & 0xffff}"
        with pytest.raises(LayerError, match="goes through a symlink"):
            do_unpack(evil, dest)
        assert os.listdir(outside) == []
    # A hard link whose *target path* crosses a symlink is refused as well.
    hl = tar_of(("link", "sym", str(outside.parent)), ("h", "hard", "link/outside"))
    with pytest.raises(LayerError):
        do_unpack(hl, layer.parent / "hl")


def test_bombs_are_refused(tmp_path: Path) -> None:
    many = tar_of(*[(f"f{i}", "file", b"") for i in range(50)])
    with pytest.raises(LayerError, match="more than 20 entries"):
        do_unpack(many, tmp_path / "a", Limits(max_entries=20))
    big = tar_of(("big", "file", b"\0" * 300_000))
    with pytest.raises(LayerError, match="larger than the limit"):
        do_unpack(big, tmp_path / "b", Limits(max_size=100_000))
    deep = tar_of(("/".join(["d"] * 40) + "/f", "file", b"x"))
    with pytest.raises(LayerError, match="too deep"):
        do_unpack(deep, tmp_path / "c", Limits(max_depth=20))
    # A gzip bomb is stopped while decompressing, long before it is all written.
    zeros = tar_of(("z", "file", b"\0" * (20 << 20)))
    gz = gzip.compress(zeros, 9)
    assert len(zeros) / len(gz) > 500
    lim = Limits(max_ratio=100, ratio_floor=1 << 20)
    comp = HashingReader(io.BytesIO(gz))
    tar = HashingReader(decompressed(comp), check=ratio_check(lim, lambda: comp.count))
    (tmp_path / "d").mkdir()
    with pytest.raises(LayerError, match="compression bomb"):
        unpack(tar, tmp_path / "d", lim)
    written = sum(p.stat().st_size for p in (tmp_path / "d").rglob("*") if p.is_file())
    assert written < 4 << 20


def test_metadata_whiteouts_and_xattrs(tmp_path: Path) -> None:
    data = tar_of(
        ("bin", "dir"),
        ("bin/su", "file", b"#!", {"mode": 0o4755, "uid": 0}),
        ("home", "dir", None, {"uid": 1000, "gid": 1000, "mode": 0o700}),
        ("home/f", "file", b"x", {"uid": 1000, "gid": 1000, "pax": {"SCHILY.xattr.user.note": "hi",
                                                                   "SCHILY.xattr.trusted.overlay.redirect": "/etc",
                                                                   "SCHILY.xattr.trusted.overlay.opaque": "y"}}),
        ("pipe", "fifo"),
        ("gone/.wh.old", "file", b""),
        ("emptied/.wh..wh..opq", "file", b""),
        ("emptied/kept", "file", b"k"),
        ("dup", "file", b"first"),
        ("dup", "file", b"second"),
        ("h1", "file", b"same"),
        ("h2", "hard", "h1"),
        ("here", "file", b"own"),
        (".wh.here", "file", b""),  # a whiteout never hides its own layer's file
        (".wh..wh.plnk", "file", b""),  # AUFS metadata: dropped
    )
    dest = tmp_path / "l"
    do_unpack(data, dest)
    su = os.stat(dest / "bin/su")
    assert stat.S_IMODE(su.st_mode) == 0o4755  # setuid survives (chmod after chown)
    home = os.stat(dest / "home")
    assert (home.st_uid, home.st_gid, stat.S_IMODE(home.st_mode)) == (1000, 1000, 0o700)
    assert os.getxattr(dest / "home/f", "user.note") == b"hi"
    assert "trusted.overlay.redirect" not in os.listxattr(dest / "home/f")
    assert "trusted.overlay.opaque" not in os.listxattr(dest / "home/f")
    assert stat.S_ISFIFO(os.lstat(dest / "pipe").st_mode)
    wh = os.lstat(dest / "gone/old")
    assert stat.S_ISCHR(wh.st_mode) and wh.st_rdev == 0
    assert os.getxattr(dest / "emptied", "trusted.overlay.opaque") == b"y"
    assert (dest / "dup").read_bytes() == b"second"
    assert os.stat(dest / "h1").st_ino == os.stat(dest / "h2").st_ino
    assert (dest / "here").read_bytes() == b"own"
    assert not (dest / ".wh..wh.plnk").exists() and not (dest / ".wh.here").exists()
    assert int(os.stat(dest / "bin").st_mtime) == 1700000000
    # And back: the overlay encoding becomes Docker's tar encoding again.
    buf = io.BytesIO()
    write_tar(dest, buf)
    buf.seek(0)
    names = {m.name: m for m in tarfile.open(fileobj=buf)}
    assert "gone/.wh.old" in names and names["gone/.wh.old"].isreg() and names["gone/.wh.old"].size == 0
    assert "emptied/.wh..wh..opq" in names
    assert names["h2"].islnk() and names["h2"].linkname == "h1"
    assert names["home/f"].pax_headers.get("SCHILY.xattr.user.note") == "hi"
    assert not any("trusted" in k for m in names.values() for k in m.pax_headers)
    assert names["bin/su"].mode == 0o4755


def test_replacing_entries(tmp_path: Path) -> None:
    data = tar_of(("x", "dir"), ("x/inner", "file", b"1"), ("x", "file", b"now a file"),
                  ("y", "file", b"f"), ("y", "dir"), ("y/z", "file", b"z"),
                  (".wh.w", "file", b""), ("w", "file", b"after its whiteout"))
    do_unpack(data, tmp_path / "l")
    assert (tmp_path / "l/x").read_bytes() == b"now a file"
    assert (tmp_path / "l/y/z").read_bytes() == b"z"
    assert (tmp_path / "l/w").read_bytes() == b"after its whiteout"


# ---------------------------------------------------------------------------------------------
# Through a real daemon
# ---------------------------------------------------------------------------------------------


def _leftovers(d: Skiffd) -> list[str]:
    root = d.data_root / "image"
    out = [p.name for p in (root / "l").iterdir()]
    out += [p.name for p in (root / "blobs" / "tmp").iterdir()]
    return out


@pytest.mark.parametrize("case", ["dotdot", "device", "symlink-write", "diffid", "blobdigest", "manifest-json",
                                  "manifest-digest-path", "config-json", "layer-count"])
def test_hostile_images_fail_cleanly(fresh_skiffd: Skiffd, netns: NetNS, tmp_path: Path, case: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    good = tar_of(("etc", "dir"), ("etc/ok", "file", b"fine"))
    expected = {
        "dotdot": "'..' is not allowed",
        "device": "device file 'dev/mem' is not allowed",
        "symlink-write": "goes through a symlink",
        "diffid": "content does not match the image config",
        "blobdigest": "filesystem layer verification failed for digest",
        "manifest-json": "invalid manifest: not JSON",
        "manifest-digest-path": "invalid digest",
        "config-json": "invalid image config",
        "layer-count": "the manifest has 1 layers, the config 2 diff IDs",
    }[case]
    kw: dict = {}
    layers = [good]
    if case == "dotdot":
        layers = [tar_of(("../../../../../../../" + str(outside)[1:] + "/pwned", "file", b"x"))]
    elif case == "device":
        layers = [tar_of(("dev", "dir"), ("dev/mem", "chr", None, {"dev": (1, 1)}))]
    elif case == "symlink-write":
        layers = [tar_of(("l", "sym", str(outside)), ("l/pwned", "file", b"x"))]
    elif case == "diffid":
        cfg = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "1" * 64]}}
        kw["config"] = cfg
    elif case == "blobdigest":
        kw["serve_layers"] = [gzip.compress(tar_of(("etc", "dir"), ("etc/ok", "file", b"evil")), mtime=0)]
    elif case == "manifest-json":
        kw["manifest_override"] = b"{not json"
    elif case == "manifest-digest-path":
        kw["manifest_override"] = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                                              "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 2,
                                                         "digest": "sha256:../../../../etc/passwd"}, "layers": []}).encode()
    elif case == "config-json":
        kw["serve_config"] = b"{nope"
        kw["config"] = None
    elif case == "layer-count":
        kw["config"] = {"architecture": "amd64", "os": "linux",
                        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "1" * 64, "sha256:" + "2" * 64]}}
    routes, _ = image_routes("evil/img", "latest", layers, **kw)
    if case == "config-json":
        # The config blob is served under its honest digest with other bytes: the digest check fires
        # first, so give it a config that is valid by digest but not JSON instead.
        bad = b"{nope"
        from tests.engine.images_fixtures import sha
        m = json.loads(routes["/v2/evil/img/manifests/latest"][2])
        m["config"]["digest"], m["config"]["size"] = sha(bad), len(bad)
        mb = json.dumps(m).encode()
        routes["/v2/evil/img/manifests/latest"] = (200, {"Content-Type": m["mediaType"]}, mb)
        routes[f"/v2/evil/img/blobs/{sha(bad)}"] = (200, {}, bad)
    fake = FakeRegistry(netns, tmp_path, 5201, routes)
    try:
        r = fresh_skiffd.docker("pull", f"{fake.addr}/evil/img:latest", check=False)
    finally:
        fake.stop()
    assert r.returncode == 1
    assert expected in r.stderr, r.stderr
    assert "Traceback" not in fresh_skiffd.log_tail(20000)
    assert fresh_skiffd.docker("images", "-aq").stdout.strip() == ""
    assert _leftovers(fresh_skiffd) == []
    assert os.listdir(outside) == []
    assert fresh_skiffd._ping()  # still serving
