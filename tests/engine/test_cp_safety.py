"""`docker cp` never reads or writes outside the container (the CVE-2018-15664 pattern), through the real
docker CLI and docker-py against a real skiffd: hostile tars sent to PUT /containers/{id}/archive, symlinks
in the destination path, and a container that keeps swapping a directory for a symlink while files are
copied in and out. The symlinks point at a host directory this test owns: the daemon runs on this host, so
a path followed by host path strings would land there."""

from __future__ import annotations

import io
import os
import secrets
import shutil
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import docker.errors
import pytest

from skiffbox.guest.containers.archive import Bind, CpExtractor, Mounts, Scope, cp_rules
from skiffbox.guest.errors import Conflict, InvalidParameter
from skiffbox.guest.images import tarsafety
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


@pytest.fixture
def host_dir() -> Iterator[Path]:
    """An existing, empty host directory that a container symlink names: an escape would write here."""
    d = Path(f"/tmp/skiff-cp-escape-{secrets.token_hex(6)}")
    d.mkdir()
    yield d
    shutil.rmtree(d)


def tar_of(*entries: tuple) -> bytes:
    """("name", "file", data) | ("name", "dir") | ("name", "sym", target) | ("name", "hard", target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, *rest in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = int(time.time())
            if kind == "file":
                ti.size, ti.mode = len(rest[0]), 0o644
                tf.addfile(ti, io.BytesIO(rest[0]))
                continue
            ti.type, ti.mode = {"dir": (tarfile.DIRTYPE, 0o755), "sym": (tarfile.SYMTYPE, 0o777),
                                "hard": (tarfile.LNKTYPE, 0o644)}[kind]
            if rest:
                ti.linkname = rest[0]
            tf.addfile(ti)
    return buf.getvalue()


def status_of(fn) -> int:  # type: ignore[no-untyped-def]
    try:
        fn()
    except docker.errors.APIError as e:
        return int(e.status_code or 0)
    return 200


def run_sh(skiffd: Skiffd, bb: str, name: str, script: str) -> None:
    skiffd.docker("run", "-d", "--name", name, bb, "sh", "-c", script)


def in_container(skiffd: Skiffd, name: str, script: str) -> str:
    return skiffd.docker("exec", name, "sh", "-c", script).stdout


@pytest.fixture
def scope(tmp_path: Path) -> Iterator[Scope]:
    """A container root (merged /usr, links that climb, a loop) with a volume mounted at /mnt/vol."""
    root = tmp_path / "root"
    (root / "usr" / "lib").mkdir(parents=True)
    (root / "mnt" / "vol").mkdir(parents=True)
    (root / "lib").symlink_to("usr/lib")
    (root / "up").symlink_to("../../../../usr")
    (root / "abs").symlink_to("/usr/lib")
    (root / "loop").symlink_to("loop")
    (root / "f").write_text("x")
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "v").write_text("v")
    sc = Scope(root, Mounts([Bind("/mnt/vol", str(vol), False)]))
    yield sc
    sc.close()


def resolved(sc: Scope, path: str, follow_last: bool = True) -> tuple[str, int | None, str | None]:
    loc = sc.resolve(path, follow_last)
    ino = os.fstat(loc.fd).st_ino if loc.fd is not None else None
    loc.close()
    return loc.cpath, ino, loc.bind.dest if loc.bind else None


def test_scope_resolves_like_follow_symlink_in_scope(scope: Scope, tmp_path: Path) -> None:
    root, usr_lib = tmp_path / "root", (tmp_path / "root" / "usr" / "lib").stat().st_ino
    assert resolved(scope, "/lib") == ("/usr/lib", usr_lib, None)
    assert resolved(scope, "/up/lib") == ("/usr/lib", usr_lib, None)  # `..` stops at the root
    assert resolved(scope, "/abs") == ("/usr/lib", usr_lib, None)  # an absolute target starts at the root
    assert resolved(scope, "/abs", follow_last=False) == ("/abs", (root / "abs").lstat().st_ino, None)
    assert resolved(scope, "/lib/nothere/x") == ("/usr/lib/nothere/x", None, None)
    assert resolved(scope, "/f/x") == ("/f/x", None, None)  # through a file: missing
    assert resolved(scope, "/../../f") == ("/f", (root / "f").stat().st_ino, None)
    assert resolved(scope, "/") == ("/", root.stat().st_ino, None)
    assert resolved(scope, "/mnt/vol/v") == ("/mnt/vol/v", (tmp_path / "vol" / "v").stat().st_ino, "/mnt/vol")
    assert resolved(scope, "/mnt/vol/../../f")[2] is None  # `..` leaves the mount
    with pytest.raises(InvalidParameter, match="too many levels"):
        scope.resolve("/loop/x", True)


def extract_at(sc: Scope, path: str, data: bytes, no_overwrite: bool = False) -> None:
    loc = sc.resolve(path, True)
    try:
        ex = CpExtractor(sc, loc, cp_rules(no_overwrite), chown_root=True)
    finally:
        loc.close()
    tarsafety.extract(ex, io.BytesIO(data), "r|*", "the archive")


def test_extractor_follows_container_links_in_scope(scope: Scope, tmp_path: Path) -> None:
    root = tmp_path / "root"
    extract_at(scope, "/", tar_of(("lib/a", "file", b"a"), ("up/b", "file", b"b"), ("abs/c", "file", b"c"),
                                  ("mnt/vol/sub/d", "file", b"d")))
    assert sorted(p.name for p in (root / "usr" / "lib").iterdir()) == ["a", "c"]
    assert (root / "usr" / "b").read_text() == "b"
    assert (tmp_path / "vol" / "sub" / "d").read_text() == "d" and not (root / "mnt" / "vol" / "sub").exists()
    extract_at(scope, "/lib", tar_of(("e", "file", b"e")))  # the destination resolved in scope
    assert (root / "usr" / "lib" / "e").read_text() == "e"
    with pytest.raises(InvalidParameter, match="too many levels of symbolic links"):
        extract_at(scope, "/", tar_of(("loop/x", "file", b"x")))
    with pytest.raises(InvalidParameter, match="goes through a symlink"):  # dangles in the container
        extract_at(scope, "/", tar_of(("nowhere", "sym", "/no/such"), ("nowhere/x", "file", b"x")))
    with pytest.raises(InvalidParameter, match="outside the destination directory"):
        extract_at(scope, "/usr", tar_of(("l", "sym", "../../x")))
    with pytest.raises(Conflict, match="cannot overwrite directory 'lib' with non-directory"):
        extract_at(scope, "/usr", tar_of(("lib", "file", b"x")), no_overwrite=True)
    with pytest.raises(Conflict, match="cannot overwrite non-directory 'f' with directory"):
        extract_at(scope, "/", tar_of(("f", "dir")), no_overwrite=True)
    extract_at(scope, "/", tar_of(("f", "dir")))  # replaced when allowed
    assert (root / "f").is_dir()


def test_hostile_tars_are_refused_or_contained(skiffd: Skiffd, bb: str, host_dir: Path) -> None:
    pwned = f"pwned-{secrets.token_hex(4)}"
    run_sh(skiffd, bb, "hostile", f"mkdir -p /w/inside /a/b /a/bc && ln -s {host_dir} /w/esc && "
           "ln -s / /w/root && ln -s ../../../../../w/inside /w/up && exec sleep 1000")
    api = skiffd.client().api
    put = lambda path, data: lambda: api.put_archive("hostile", path, data)  # noqa: E731
    # Names that climb out: 400 before anything is written.
    assert status_of(put("/w", tar_of(("../x", "file", b"x")))) == 400
    assert status_of(put("/w", tar_of(("d/../../x", "file", b"x")))) == 400
    assert status_of(put("/w", tar_of(("hl", "hard", "../../etc/passwd")))) == 400
    # Absolute names (and hard link targets) are placed under the destination, as Docker does.
    assert status_of(put("/w", tar_of((f"/abs/{pwned}", "file", b"a"), ("/abs/hl", "hard", f"/abs/{pwned}")))) == 200
    assert in_container(skiffd, "hostile", f"cat /w/abs/{pwned} /w/abs/hl; ls /abs 2>&1 || true") == \
        "aa" + "ls: /abs: No such file or directory\n"
    assert not Path(f"/abs/{pwned}").exists()
    # A member below a container symlink that names a host path: resolved in the container (where
    # that path does not exist), never on the host.
    assert status_of(put("/w", tar_of(("esc/f", "file", b"x")))) == 400
    # The destination itself is such a symlink: it resolves inside the container root → 404.
    assert status_of(put("/w/esc", tar_of(("f", "file", b"x")))) == 404
    assert status_of(put("/w/esc/", tar_of(("f", "file", b"x")))) == 404
    # Symlinks in the destination that climb with `..` or point at `/` stay in the container root.
    assert status_of(put("/w/up", tar_of(("via-up", "file", b"up")))) == 200
    assert status_of(put("/w/root/w/inside", tar_of(("via-root", "file", b"root")))) == 200
    # A tar that makes a symlink to `/` and writes through it: contained (Docker follows it in the
    # container's root, as it would in a chroot).
    assert status_of(put("/w", tar_of(("l", "sym", "/"), (f"l/{pwned}", "file", b"x")))) == 200
    assert in_container(skiffd, "hostile", f"cat /w/inside/via-up /w/inside/via-root /{pwned}") == "uprootx"
    assert not Path(f"/{pwned}").exists()
    # The prefix bug: a relative symlink climbing out of /a/b into its sibling /a/bc is refused (it
    # used to pass a check that /a/bc "starts with" /a/b), and nothing lands in /a/bc.
    assert status_of(put("/a/b", tar_of(("l", "sym", "../bc"), ("l/f", "file", b"x")))) == 400
    assert status_of(put("/a/b", tar_of(("l", "sym", "../bc")))) == 400
    assert in_container(skiffd, "hostile", "ls -A /a/bc /a/b") == "/a/b:\n\n/a/bc:\n"
    assert list(host_dir.iterdir()) == []


def test_cp_of_symlinks_resolves_in_container(skiffd: Skiffd, bb: str, host_dir: Path, tmp_path: Path) -> None:
    (host_dir / "secret").write_text("host secret\n")
    run_sh(skiffd, bb, "links", f"mkdir -p /w/real && echo inside > /w/real/f && ln -s {host_dir} /w/esc && "
           f"ln -s {host_dir}/secret /w/secret && ln -s /w/real /w/abs && exec sleep 1000")
    api = skiffd.client().api
    # HEAD/stat: the link target is reported as the container path it resolves to.
    _, st = api.get_archive("links", "/w/abs")
    assert st["mode"] & (1 << 27) and st["linkTarget"] == "/w/real"
    # The CLI copies a link as a link; with -L it follows it, inside the container (where it dangles).
    skiffd.docker("cp", "links:/w/secret", str(tmp_path / "s"))
    assert (tmp_path / "s").is_symlink() and (tmp_path / "s").readlink() == host_dir / "secret"
    r = skiffd.docker("cp", "-L", "links:/w/secret", str(tmp_path / "s2"), check=False)
    assert r.returncode != 0 and "Could not find the file" in r.stderr and not (tmp_path / "s2").exists()
    r = skiffd.docker("cp", "links:/w/esc/secret", str(tmp_path / "s3"), check=False)
    assert r.returncode != 0 and "Could not find the file" in r.stderr and not (tmp_path / "s3").exists()
    assert status_of(lambda: api.get_archive("links", "/w/esc/")) == 404
    # Copying the directory sends the links as links, never what they point at on the host.
    stream, _ = api.get_archive("links", "/w")
    data = b"".join(stream)
    assert b"host secret" not in data
    members = {m.name: m for m in tarfile.open(fileobj=io.BytesIO(data))}
    assert members["w/esc"].issym() and members["w/esc"].linkname == str(host_dir)
    assert members["w/real/f"].isfile()
    # Through a link that stays inside, the content is the container's.
    skiffd.docker("cp", "links:/w/abs/f", str(tmp_path / "f"))
    assert (tmp_path / "f").read_text() == "inside\n"


@pytest.mark.slow
def test_swapping_symlink_never_leads_cp_out(skiffd: Skiffd, bb: str, host_dir: Path, tmp_path: Path) -> None:
    (host_dir / "secret").write_text("host secret\n")
    snapshot = sorted(p.name for p in host_dir.iterdir())
    # /w/d is a directory, then a symlink to the host directory, again and again (a walk of its 1000
    # files by path would meet the symlink halfway); /w/f is a file, then a symlink to the host file.
    run_sh(skiffd, bb, "swapper", "mkdir -p /w/d && cd /w/d && for i in $(seq 1000); do echo in > a$i; done && "
           "echo in > secret && cd / && while true; do echo in > /w/f; rm /w/f; "
           f"ln -s {host_dir}/secret /w/f; rm /w/f; done & "
           f"while true; do mv /w/d /w/real; ln -s {host_dir} /w/d; rm /w/d; mv /w/real /w/d; done")
    src = tmp_path / "src"
    (src / "d" / "sub").mkdir(parents=True)
    (src / "d" / "planted").write_text("x")
    (src / "d" / "sub" / "deep").write_text("y")
    api = skiffd.client().api
    into_d = tar_of(("planted", "file", b"x"), ("sub", "dir"), ("sub/deep", "file", b"y"))
    through_d = tar_of(("d/planted", "file", b"x"), ("d/sub/deep", "file", b"y"))
    stop = threading.Event()
    leaked: list[str] = []
    reads: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            for path in ("/w", "/w/d", "/w/d/", "/w/f", "export"):
                try:
                    if path == "export":
                        data = b"".join(api.export("swapper"))
                    else:
                        stream, _ = api.get_archive("swapper", path)
                        data = b"".join(stream)
                    if b"host secret" in data:
                        leaked.append(path)
                    reads.append(path)
                except Exception:  # an error answer, or a stream cut short: neither leaks
                    pass

    t = threading.Thread(target=reader)
    t.start()
    try:
        deadline = time.monotonic() + 20
        n = 0
        while time.monotonic() < deadline:
            for path, data in (("/w/d", into_d), ("/w/d/", into_d), ("/w", through_d), ("/w/d/sub", into_d)):
                status_of(lambda: api.put_archive("swapper", path, data))  # noqa: B023
                n += 1
        for _ in range(5):  # the CLI's own stat-then-put sequence
            skiffd.docker("cp", str(src / "d") + "/.", "swapper:/w/d", check=False)
            skiffd.docker("cp", str(src / "d"), "swapper:/w/", check=False)
            r = skiffd.docker("cp", "swapper:/w", str(tmp_path / f"out{n}"), check=False)
            n += 1
            assert "host secret" not in r.stdout
    finally:
        stop.set()
        t.join()
    assert n > 20 and len(reads) > 20, (n, len(reads))
    written = sorted(p.name for p in host_dir.iterdir())
    assert (written, leaked) == (snapshot, []), "docker cp wrote (left) or read (right) outside the container"
    for out in tmp_path.glob("out*"):
        for f in out.rglob("*"):
            if f.is_file() and not f.is_symlink():  # a copied link to the host file is fine: not followed
                assert "host secret" not in f.read_text(errors="replace"), f


def test_cp_keeps_docker_behaviours(skiffd: Skiffd, bb: str, tmp_path: Path) -> None:
    skiffd.docker("volume", "create", "cpvol")
    skiffd.docker("volume", "create", "cpro")
    try:
        run_sh(skiffd, bb, "beh", "mkdir -p /usr/xx /t/x && ln -s usr/xx /lx && mknod /t/zero c 1 5 && "
               "exec sleep 1000")
        skiffd.docker("run", "-d", "--name", "vols", "-v", "cpvol:/data", "-v", "cpro:/ro:ro", bb, "sleep", "1000")
        f = tmp_path / "x"
        f.write_text("file\n")
        os.chown(f, 1234, 5678)
        # -a keeps the owner, the default makes files root-owned.
        skiffd.docker("cp", "-a", str(f), "beh:/t/owned")
        skiffd.docker("cp", str(f), "beh:/t/rooted")
        assert in_container(skiffd, "beh", "stat -c %u:%g /t/owned /t/rooted").split() == ["1234:5678", "0:0"]
        # The CLI asks not to replace a directory by a file.
        r = skiffd.docker("cp", str(f), "beh:/t/", check=False)
        assert r.returncode != 0 and "cannot overwrite directory" in r.stderr
        # A member whose path meets a symlink the container has follows it in the container (merged /usr).
        api = skiffd.client().api
        api.put_archive("beh", "/", tar_of(("lx/f", "file", b"merged")))
        assert in_container(skiffd, "beh", "cat /usr/xx/f") == "merged"
        # A device node is archived as one, never opened (reading /dev/zero would never end).
        stream, st = api.get_archive("beh", "/t/zero")
        assert st["mode"] & (1 << 21)
        m = tarfile.open(fileobj=io.BytesIO(b"".join(stream))).getmembers()
        assert [(x.name, x.ischr(), x.devmajor, x.devminor) for x in m] == [("zero", True, 1, 5)]
        # Volumes of a running container are written and read where the container sees them.
        skiffd.docker("cp", str(f), "vols:/data/")
        api.put_archive("vols", "/", tar_of(("data/sub/g", "file", b"g")))
        assert in_container(skiffd, "vols", "cat /data/x /data/sub/g") == "file\ng"
        skiffd.docker("cp", "vols:/data", str(tmp_path / "out"))
        assert (tmp_path / "out" / "sub" / "g").read_text() == "g"
        r = skiffd.docker("cp", str(f), "vols:/ro/", check=False)
        assert r.returncode != 0 and "read-only" in r.stderr
    finally:
        remove_all(skiffd)
        skiffd.docker("volume", "rm", "cpvol", "cpro", check=False)
