"""Volumes used by real containers, through the docker CLI and docker-py: named volumes keep data, bind mounts show
host files, `:ro` refuses writes, copy-up of image content, anonymous volumes from VOLUME, --mount, --tmpfs,
--volumes-from, option volumes (tmpfs), 409 for a volume in use, df figures."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from tests.engine.harness import ImageSpec, Registry, Skiffd, TestImages, busybox_rootfs_layer, tempdir, rmtree, write_docker_archive


def _volume_image_layer() -> bytes:
    """/srv/data owned by uid 33 (mode 0750) holding two files, a symlink and a subdir: what copy-up must keep."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        def add(name: str, kind: bytes, data: bytes = b"", mode: int = 0o644, uid: int = 0, link: str = "") -> None:
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode, ti.uid, ti.gid, ti.mtime, ti.linkname = kind, mode, uid, uid, 1700000000, link
            ti.size = len(data) if kind == tarfile.REGTYPE else 0
            tf.addfile(ti, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
        add("srv", tarfile.DIRTYPE, mode=0o755)
        add("srv/data", tarfile.DIRTYPE, mode=0o750, uid=33)
        add("srv/data/hello.txt", tarfile.REGTYPE, b"from-image\n", uid=33)
        add("srv/data/sub", tarfile.DIRTYPE, mode=0o700, uid=33)
        add("srv/data/sub/deep.txt", tarfile.REGTYPE, b"deep\n", mode=0o600, uid=33)
        add("srv/data/link", tarfile.SYMTYPE, link="hello.txt", mode=0o777, uid=33)
    return buf.getvalue()


@pytest.fixture(scope="module")
def volimage(registry: Registry, session_dir: Path) -> str:
    work = session_dir / "volimage"
    work.mkdir(exist_ok=True)
    spec = ImageSpec([busybox_rootfs_layer(), _volume_image_layer()], extra_config={"Volumes": {"/srv/data": {}}})
    arc = write_docker_archive(spec, work / "volimage.tar", "test/volimage:latest")
    registry.push_archive(arc, "test/volimage:latest")
    return f"{registry.addr}/test/volimage:latest"


@pytest.fixture(scope="module")
def d(skiffd: Skiffd, images: TestImages, volimage: str) -> Skiffd:
    skiffd.docker("pull", "-q", images.busybox)
    skiffd.docker("pull", "-q", volimage)
    return skiffd


@pytest.fixture(autouse=True)
def _clean(d: Skiffd):
    yield
    ids = d.docker("ps", "-aq").stdout.split()
    if ids:
        d.docker("rm", "-f", "-v", *ids, check=False)
    vols = d.docker("volume", "ls", "-q").stdout.split()
    if vols:
        d.docker("volume", "rm", "-f", *vols, check=False)


@pytest.fixture()
def hostdir() -> Path:
    p = tempdir("skvol-host-")
    yield p
    rmtree(p)


def test_named_volume_keeps_data(d: Skiffd, images: TestImages) -> None:
    bb = images.busybox
    d.docker("run", "--rm", "-v", "keepdata:/data", bb, "sh", "-c", "echo persisted > /data/f")
    assert d.docker("run", "--rm", "-v", "keepdata:/data", bb, "cat", "/data/f").stdout == "persisted\n"
    assert "keepdata" in d.docker("volume", "ls", "-q").stdout.split()  # created on first use
    mp = json.loads(d.docker("volume", "inspect", "keepdata").stdout)[0]["Mountpoint"]
    assert Path(mp, "f").read_text() == "persisted\n"
    # --mount type=volume, read-only
    r = d.docker("run", "--rm", "--mount", "type=volume,src=keepdata,dst=/data,readonly", bb, "sh", "-c",
                 "cat /data/f; echo x > /data/g", check=False)
    assert "persisted" in r.stdout and r.returncode != 0 and "Read-only file system" in r.stderr
    # in use → 409; after the container goes it can be removed
    d.docker("run", "-d", "--name", "user", "-v", "keepdata:/data", bb, "sleep", "300")
    r = d.docker("volume", "rm", "keepdata", check=False)
    assert r.returncode != 0 and "volume is in use" in r.stderr
    insp = json.loads(d.docker("inspect", "user").stdout)[0]
    m = next(x for x in insp["Mounts"] if x["Destination"] == "/data")
    assert m["Type"] == "volume" and m["Name"] == "keepdata" and m["Driver"] == "local" and m["RW"] is True
    assert [c for c in d.docker("ps", "-q", "--filter", "volume=keepdata").stdout.split()] == [insp["Id"][:12]]
    df = d.client().df()
    assert next(v for v in df["Volumes"] if v["Name"] == "keepdata")["UsageData"]["RefCount"] == 1
    d.docker("rm", "-f", "user")
    d.docker("volume", "rm", "keepdata")


def test_bind_mounts_and_readonly(d: Skiffd, images: TestImages, hostdir: Path) -> None:
    bb = images.busybox
    (hostdir / "hostfile").write_text("from-host\n")
    assert d.docker("run", "--rm", "-v", f"{hostdir}:/h", bb, "cat", "/h/hostfile").stdout == "from-host\n"
    d.docker("run", "--rm", "-v", f"{hostdir}:/h", bb, "sh", "-c", "echo back > /h/written")
    assert (hostdir / "written").read_text() == "back\n"
    r = d.docker("run", "--rm", "-v", f"{hostdir}:/h:ro", bb, "sh", "-c", "echo no > /h/nope", check=False)
    assert r.returncode != 0 and "Read-only file system" in r.stderr and not (hostdir / "nope").exists()
    r = d.docker("run", "--rm", "-v", "rovol:/v:ro", bb, "touch", "/v/x", check=False)
    assert r.returncode != 0 and "Read-only file system" in r.stderr


def test_copy_up_and_anonymous_volumes(d: Skiffd, volimage: str) -> None:
    # An image VOLUME makes an anonymous volume, filled with the image's content (owner, modes, links kept).
    cid = d.docker("run", "-d", volimage, "sleep", "300").stdout.strip()
    out = d.docker("exec", cid, "sh", "-c", "cat /srv/data/hello.txt /srv/data/link /srv/data/sub/deep.txt; "
                                            "stat -c '%u %a' /srv/data /srv/data/sub").stdout
    assert out == "from-image\nfrom-image\ndeep\n33 750\n33 700\n"
    m = next(x for x in json.loads(d.docker("inspect", cid).stdout)[0]["Mounts"] if x["Destination"] == "/srv/data")
    assert m["Type"] == "volume" and len(m["Name"]) == 64
    anon = m["Name"]
    labels = json.loads(d.docker("volume", "inspect", anon).stdout)[0]["Labels"]
    assert labels == {"com.docker.volume.anonymous": ""}
    assert Path(m["Source"], "hello.txt").read_text() == "from-image\n"
    # the same anonymous volume comes back after a restart, with what was written
    d.docker("exec", cid, "sh", "-c", "echo mine > /srv/data/mine")
    d.docker("restart", "-t", "0", cid)
    assert d.docker("exec", cid, "cat", "/srv/data/mine").stdout == "mine\n"
    # rm -v takes anonymous volumes with it
    d.docker("rm", "-f", "-v", cid)
    assert anon not in d.docker("volume", "ls", "-q").stdout.split()
    # a named volume on that path is filled the same way, once, while it is empty
    d.docker("run", "--rm", "-v", "named-cu:/srv/data", volimage, "sh", "-c", "rm /srv/data/hello.txt")
    out = d.docker("run", "--rm", "-v", "named-cu:/srv/data", volimage, "ls", "/srv/data").stdout.split()
    assert "hello.txt" not in out and "sub" in out  # not copied again into a non-empty volume
    # nocopy: an empty volume stays empty
    out = d.docker("run", "--rm", "-v", "nocopy-vol:/srv/data:nocopy", volimage, "ls", "-A", "/srv/data").stdout
    assert out == ""
    # --rm removes anonymous volumes too (docker run -v /path)
    before = set(d.docker("volume", "ls", "-q").stdout.split())
    d.docker("run", "--rm", "-v", "/scratch", volimage, "sh", "-c", "echo x > /scratch/x")
    assert set(d.docker("volume", "ls", "-q").stdout.split()) == before
    # and prune takes the anonymous ones left by containers that are gone
    d.docker("run", "--name", "leaver", volimage, "true")
    d.docker("rm", "leaver")
    left = set(d.docker("volume", "ls", "-q").stdout.split()) - before
    assert len(left) == 1
    assert left.pop() in d.docker("volume", "prune", "-f").stdout


def test_volumes_from_mount_and_tmpfs(d: Skiffd, images: TestImages, hostdir: Path) -> None:
    bb = images.busybox
    (hostdir / "b").write_text("bind-content\n")
    d.docker("create", "--name", "src", "-v", "vf-named:/named", "-v", "/anon", "-v", f"{hostdir}:/bind", bb, "true")
    d.docker("run", "--rm", "-v", "vf-named:/named", bb, "sh", "-c", "echo shared > /named/s")
    out = d.docker("run", "--rm", "--volumes-from", "src", bb, "sh", "-c",
                   "cat /named/s /bind/b; ls -d /anon").stdout
    assert out == "shared\nbind-content\n/anon\n"
    r = d.docker("run", "--rm", "--volumes-from", "src:ro", bb, "touch", "/named/t", check=False)
    assert r.returncode != 0 and "Read-only file system" in r.stderr
    out = d.docker("run", "--rm", "--tmpfs", "/tt:size=1m", "--mount", "type=tmpfs,dst=/t2,tmpfs-size=2097152", bb,
                   "sh", "-c", "grep -E ' /tt | /t2 ' /proc/mounts").stdout
    assert "tmpfs /tt tmpfs" in out and "tmpfs /t2 tmpfs" in out and "size=1024k" in out and "size=2048k" in out
    r = d.docker("run", "--rm", "-v", "a1:/x", "-v", "a2:/x", bb, "true", check=False)
    assert r.returncode != 0 and "Duplicate mount point" in r.stderr


def test_option_volume_tmpfs(d: Skiffd, images: TestImages) -> None:
    bb = images.busybox
    d.docker("volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=8m", "tmpv")
    cid = d.docker("run", "-d", "-v", "tmpv:/m", bb, "sleep", "300").stdout.strip()
    out = d.docker("exec", cid, "sh", "-c", "grep ' /m ' /proc/mounts; echo hi > /m/f; cat /m/f").stdout
    assert "tmpfs /m tmpfs" in out and "size=8192k" in out and out.endswith("hi\n")
    mp = json.loads(d.docker("volume", "inspect", "tmpv").stdout)[0]["Mountpoint"]
    assert any(line.split()[1] == mp for line in open("/proc/mounts"))  # mounted while in use
    d.docker("rm", "-f", cid)
    assert not any(line.split()[1] == mp for line in open("/proc/mounts"))  # unmounted after the last user
    d.docker("volume", "rm", "tmpv")
    # the same through --mount volume-opt (the volume is created with those options on first use)
    out = d.docker("run", "--rm", "--mount", "type=volume,src=mvol,dst=/m2,volume-opt=type=tmpfs,volume-opt=device=tmpfs,"
                   "volume-opt=o=size=4m", bb, "grep", " /m2 ", "/proc/mounts").stdout
    assert "tmpfs /m2 tmpfs" in out and "size=4096k" in out
    assert json.loads(d.docker("volume", "inspect", "mvol").stdout)[0]["Options"]["type"] == "tmpfs"


def test_docker_py(d: Skiffd, images: TestImages) -> None:
    c = d.client()
    v = c.volumes.create("pyvol2")
    try:
        c.containers.run(images.busybox, ["sh", "-c", "echo py > /v/f"], volumes={"pyvol2": {"bind": "/v", "mode": "rw"}},
                         remove=True)
        out = c.containers.run(images.busybox, ["cat", "/v/f"], volumes=["pyvol2:/v:ro"], remove=True)
        assert out == b"py\n"
    finally:
        v.remove()


def test_option_volume_bind(d: Skiffd, images: TestImages, hostdir: Path) -> None:
    (hostdir / "seed").write_text("seeded\n")
    d.docker("volume", "create", "-o", "type=none", "-o", "o=bind", "-o", f"device={hostdir}", "bindvol")
    out = d.docker("run", "--rm", "-v", "bindvol:/b", images.busybox, "sh", "-c", "cat /b/seed; echo new > /b/new").stdout
    assert out == "seeded\n" and (hostdir / "new").read_text() == "new\n"
    d.docker("volume", "rm", "bindvol")
    assert (hostdir / "seed").exists()  # removing the volume leaves the device's files alone
    d.docker("volume", "create", "-o", "type=none", "-o", "o=bind", "-o", "device=/nonexistent/skiff", "badbind")
    r = d.docker("run", "--rm", "-v", "badbind:/b", images.busybox, "true", check=False)
    assert r.returncode != 0 and "no such file or directory" in r.stderr
