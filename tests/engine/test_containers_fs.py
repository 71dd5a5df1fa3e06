"""The container filesystem as generations of files: docker cp both ways, diff, commit (then run the new
image), export — through the real docker CLI."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine.containers_fixtures import remove_all
from tests.engine.harness import Skiffd, TestImages


@pytest.fixture(scope="module")
def bb(skiffd: Skiffd, images: TestImages) -> Iterator[str]:
    skiffd.docker("pull", "-q", images.busybox)
    yield images.busybox
    remove_all(skiffd)


@pytest.fixture(autouse=True)
def _cleanup(skiffd: Skiffd) -> Iterator[None]:
    yield
    remove_all(skiffd)


def test_diff_reports_added_changed_deleted(skiffd: Skiffd, bb: str) -> None:
    skiffd.docker("run", "--name", "chg", bb, "sh", "-c",
                  "mkdir -p /newdir/sub && echo x > /newdir/sub/f && rm /bin/vi && echo extra >> /etc/passwd")
    lines = skiffd.docker("diff", "chg").stdout.splitlines()
    assert lines == ["C /bin", "D /bin/vi", "C /etc", "C /etc/passwd", "A /newdir", "A /newdir/sub", "A /newdir/sub/f"]
    # The runtime's mount points (/etc/hosts, /dev, /proc, …) never show up.
    skiffd.docker("run", "--name", "clean", bb, "true")
    assert skiffd.docker("diff", "clean").stdout == ""


def test_cp_into_and_out_of_running_and_stopped(skiffd: Skiffd, bb: str, tmp_path: Path) -> None:
    src = tmp_path / "payload"
    (src / "nested").mkdir(parents=True)
    (src / "a.txt").write_text("alpha\n")
    (src / "nested" / "b.bin").write_bytes(bytes(range(256)) * 100)
    (src / "link").symlink_to("a.txt")
    skiffd.docker("run", "-d", "--name", "cp1", bb, "sleep", "1000")
    skiffd.docker("cp", str(src), "cp1:/tmp/")
    r = skiffd.docker("exec", "cp1", "sh", "-c", "cat /tmp/payload/a.txt; wc -c < /tmp/payload/nested/b.bin; "
                      "readlink /tmp/payload/link; stat -c %u:%g /tmp/payload/a.txt")
    assert r.stdout.split() == ["alpha", "25600", "a.txt", "0:0"]
    skiffd.docker("cp", str(src / "a.txt"), "cp1:/tmp/renamed.txt")
    assert skiffd.docker("exec", "cp1", "cat", "/tmp/renamed.txt").stdout == "alpha\n"
    out = tmp_path / "out"
    out.mkdir()
    skiffd.docker("cp", "cp1:/tmp/payload", str(out))
    assert (out / "payload" / "nested" / "b.bin").read_bytes() == (src / "nested" / "b.bin").read_bytes()
    assert (out / "payload" / "link").is_symlink()
    # The bind-mounted /etc/hosts is copied with its real content.
    skiffd.docker("cp", "cp1:/etc/hosts", str(out / "hosts"))
    assert "localhost" in (out / "hosts").read_text()
    # Stopped containers too (the rootfs is mounted for the copy, then unmounted).
    skiffd.docker("stop", "-t", "0", "cp1")
    skiffd.docker("cp", str(src / "a.txt"), "cp1:/root/")
    skiffd.docker("cp", "cp1:/root/a.txt", str(out / "again.txt"))
    assert (out / "again.txt").read_text() == "alpha\n"
    # Errors clients key on.
    r = skiffd.docker("cp", "cp1:/nonexistent", str(out), check=False)
    assert r.returncode != 0 and "Could not find the file /nonexistent" in r.stderr
    r = skiffd.docker("cp", str(src / "a.txt"), "cp1:/no/such/dir/", check=False)
    assert r.returncode != 0


def test_archive_api_stat_header(skiffd: Skiffd, bb: str) -> None:
    skiffd.docker("run", "--name", "st", bb, "sh", "-c", "mkdir /d && echo hi > /d/f && chmod 4755 /d/f")
    api = skiffd.client().api
    stream, stat = api.get_archive("st", "/d")
    assert stat["name"] == "d" and stat["mode"] & (1 << 31) and stat["mode"] & 0o777 == 0o755
    data = b"".join(stream)
    names = tarfile.open(fileobj=io.BytesIO(data)).getnames()
    assert names == ["d", "d/f"]
    _, stat = api.get_archive("st", "/d/f")
    assert stat["mode"] == 0o755 | (1 << 23) and stat["size"] == 3  # Go's ModeSetuid
    _, stat = api.get_archive("st", "/bin/sh")
    assert stat["mode"] & (1 << 27) and stat["linkTarget"] == "/bin/busybox"
    # A tar that climbs out of the destination is refused.
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("../../escape")
        ti.size = 1
        tf.addfile(ti, io.BytesIO(b"x"))
    with pytest.raises(Exception) as ei:
        api.put_archive("st", "/d", buf.getvalue())
    assert "400" in str(ei.value) or "invalid" in str(ei.value).lower()


def test_archive_of_a_stopped_containers_volume(skiffd: Skiffd, bb: str) -> None:
    """What a stopped container wrote into its volume is copied from (and into) the volume, as dockerd does;
    the rootfs below the mount point is empty (docker-py's ArchiveTest)."""
    api = skiffd.client().api
    cid = api.create_container(bb, 'sh -c "echo -n hello > /vol1/data.txt"', volumes=["/vol1"])["Id"]
    api.start(cid)
    assert api.wait(cid)["StatusCode"] == 0
    stream, stat = api.get_archive(cid, "/vol1/data.txt")
    assert stat["name"] == "data.txt" and stat["size"] == 5
    assert tarfile.open(fileobj=io.BytesIO(b"".join(stream))).extractfile("data.txt").read() == b"hello"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("in.txt")
        ti.size = 2
        tf.addfile(ti, io.BytesIO(b"in"))
    assert api.put_archive(cid, "/vol1", buf.getvalue())
    _, stat = api.get_archive(cid, "/vol1/in.txt")
    assert stat["size"] == 2
    assert skiffd.docker("run", "--rm", "--volumes-from", cid, bb, "cat", "/vol1/in.txt").stdout == "in"


def test_commit_then_run_new_image(skiffd: Skiffd, bb: str) -> None:
    skiffd.docker("run", "--name", "base", "-e", "KEEP=1", bb, "sh", "-c", "echo committed > /greeting; rm /bin/vi")
    iid = skiffd.docker("commit", "-m", "add greeting", "-a", "tester", "-c", 'CMD ["cat", "/greeting"]',
                        "-c", "ENV EXTRA=2", "base", "skiff/committed:v1").stdout.strip()
    assert iid.startswith("sha256:")
    assert skiffd.docker("run", "--rm", "skiff/committed:v1").stdout == "committed\n"
    r = skiffd.docker("run", "--rm", "skiff/committed:v1", "sh", "-c", "echo $KEEP$EXTRA; test -e /bin/vi || echo novi")
    assert r.stdout.split() == ["12", "novi"]
    img = json.loads(skiffd.docker("image", "inspect", "skiff/committed:v1").stdout)[0]
    assert img["Config"]["Cmd"] == ["cat", "/greeting"] and img["Comment"] == "add greeting"
    assert img["Author"] == "tester" and len(img["RootFS"]["Layers"]) == 2
    hist = skiffd.docker("history", "--no-trunc", "--format", "{{.Comment}}", "skiff/committed:v1").stdout
    assert "add greeting" in hist
    skiffd.docker("rmi", "skiff/committed:v1", check=False)


def test_export(skiffd: Skiffd, bb: str, tmp_path: Path) -> None:
    skiffd.docker("run", "--name", "exp", bb, "sh", "-c", "echo data > /exported.txt")
    out = tmp_path / "exp.tar"
    skiffd.docker("export", "-o", str(out), "exp")
    with tarfile.open(out) as tf:
        names = set(tf.getnames())
        assert "exported.txt" in names and "bin/busybox" in names and "etc/passwd" in names
        f = tf.extractfile("exported.txt")
        assert f is not None and f.read() == b"data\n"
    # export streams through a pipe as well
    p = subprocess.run(["docker", "export", "exp"], env=skiffd.env(), capture_output=True)
    assert p.returncode == 0 and len(p.stdout) == out.stat().st_size
