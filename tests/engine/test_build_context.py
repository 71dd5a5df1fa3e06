"""Build context and COPY/ADD rules without a daemon: safe extraction, .dockerignore on the server,
Dockerfile lookup, source resolution, Docker's destination rules, --chown lookups, tar auto-extraction."""

from __future__ import annotations

import asyncio
import gzip
import io
import os
import shutil
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from skiffbox.guest.build.context import ContextError, receive
from skiffbox.guest.build import copying
from tests.engine.harness import tempdir


@pytest.fixture()
def work() -> Path:
    d = tempdir("skiff-buildctx-unit-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def tar_bytes(entries: list[tuple[str, str, bytes | str]], gz: bool = False) -> bytes:
    """entries: (name, kind, data-or-linkname) with kind in file/dir/sym/link/fifo/chr."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, kind, data in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1_600_000_000
            if kind == "file":
                raw = data.encode() if isinstance(data, str) else data
                ti.size = len(raw)
                ti.mode = 0o640
                tf.addfile(ti, io.BytesIO(raw))
                continue
            ti.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "link": tarfile.LNKTYPE,
                       "fifo": tarfile.FIFOTYPE, "chr": tarfile.CHRTYPE}[kind]
            ti.mode = 0o755
            if kind in ("sym", "link"):
                ti.linkname = str(data)
            tf.addfile(ti)
    raw = buf.getvalue()
    return gzip.compress(raw) if gz else raw


async def chunks(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


def get(data: bytes, dest: Path, dockerfile: str = "Dockerfile"):
    return asyncio.run(receive(chunks(data), dest, dockerfile))


def test_context_extracts_with_modes_and_mtimes(work: Path) -> None:
    data = tar_bytes([("Dockerfile", "file", "FROM x\n"), ("dir", "dir", b""), ("dir/a.txt", "file", "a"),
                      ("./dir/link", "sym", "a.txt"), ("hard", "link", "dir/a.txt"), ("pipe", "fifo", b""),
                      ("dev", "chr", b"")])
    ctx = get(data, work / "c")
    assert ctx.dockerfile == b"FROM x\n"
    root = ctx.root
    assert (root / "dir/a.txt").read_text() == "a"
    assert os.stat(root / "dir/a.txt").st_mode & 0o777 == 0o640
    assert int(os.stat(root / "dir/a.txt").st_mtime) == 1_600_000_000
    assert os.readlink(root / "dir/link") == "a.txt"
    assert os.stat(root / "hard").st_ino == os.stat(root / "dir/a.txt").st_ino
    assert not (root / "pipe").exists() and not (root / "dev").exists()  # special files are skipped


def test_context_gzip_and_plain_dockerfile_body(work: Path) -> None:
    ctx = get(tar_bytes([("Dockerfile", "file", "FROM gz\n")], gz=True), work / "gz")
    assert ctx.dockerfile == b"FROM gz\n"
    ctx = get(b"FROM stdin\nRUN true\n", work / "plain")  # `docker build - < Dockerfile`
    assert ctx.dockerfile == b"FROM stdin\nRUN true\n"
    assert list(ctx.root.iterdir()) == []


@pytest.mark.parametrize("entries,msg", [
    ([("../evil", "file", "x")], "'..' is not allowed"),
    ([("a/../../evil", "file", "x")], "'..' is not allowed"),
    ([("link", "sym", "/etc"), ("link/passwd", "file", "pwned")], "goes through a symlink"),
    ([("link", "sym", "../.."), ("link/x", "file", "pwned")], "goes through a symlink"),
    ([("h", "link", "/etc/passwd")], "is not in it"),
])
def test_context_refuses_escapes(work: Path, entries: list, msg: str) -> None:
    with pytest.raises(ContextError, match=msg):
        get(tar_bytes([("Dockerfile", "file", "FROM x\n"), *entries]), work / "c")
    assert not Path("/etc/passwd").read_text().startswith("pwned")


def test_dockerfile_lookup(work: Path) -> None:
    ctx = get(tar_bytes([("dockerfile", "file", "FROM lower\n")]), work / "a")
    assert ctx.dockerfile == b"FROM lower\n"
    ctx = get(tar_bytes([("build/Custom.df", "file", "FROM custom\n")]), work / "b", "build/Custom.df")
    assert ctx.dockerfile == b"FROM custom\n"
    with pytest.raises(ContextError, match="Cannot locate specified Dockerfile: Nope"):
        get(tar_bytes([("Dockerfile", "file", "FROM x\n")]), work / "c", "Nope")
    with pytest.raises(ContextError, match="Cannot locate specified Dockerfile"):
        get(tar_bytes([("Dockerfile", "sym", "/etc/hostname")]), work / "d")  # a symlink cannot leave the context


def test_dockerignore_on_the_server(work: Path) -> None:
    ctx = get(tar_bytes([("Dockerfile", "file", "FROM x\n"), (".dockerignore", "file", "logs\n!logs/keep\n*.tmp\nDockerfile\n"),
                         ("logs/a", "file", "a"), ("logs/keep", "file", "k"), ("x.tmp", "file", "t"), ("src/y.tmp", "file", "t"),
                         ("src/main", "file", "m")]), work / "c")
    assert ctx.dockerfile == b"FROM x\n"  # read before it leaves the context
    found = sorted(str(p.relative_to(ctx.root)) for p in ctx.root.rglob("*"))
    assert found == [".dockerignore", "logs", "logs/keep", "src", "src/main", "src/y.tmp"]


# ---------------------------------------------------------------------------------------------
# COPY / ADD
# ---------------------------------------------------------------------------------------------


def make_tree(root: Path, files: dict[str, str]) -> None:
    for name, data in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(data)


def test_resolve_sources_globs_symlinks_and_errors(work: Path) -> None:
    src = work / "src"
    make_tree(src, {"a.txt": "a", "b.txt": "b", "d/c.txt": "c", "d/e/f.txt": "f"})
    os.symlink("/d/c.txt", src / "abs-link")  # absolute: resolved inside the root, not the host
    os.symlink("/etc/passwd", src / "escape")
    names = lambda srcs: [s.rel for s in srcs]  # noqa: E731
    assert names(copying.resolve_sources(src, ["*.txt"], in_context=True)) == ["a.txt", "b.txt"]
    assert names(copying.resolve_sources(src, ["d/*"], in_context=True)) == ["d/c.txt", "d/e"]
    link = copying.resolve_sources(src, ["abs-link"], in_context=True)[0]
    assert link.path == src / "d/c.txt" and link.name == "abs-link"
    assert names(copying.resolve_sources(src, ["/a.txt", "./b.txt"], in_context=True)) == ["a.txt", "b.txt"]
    with pytest.raises(copying.CopyError, match="file not found in build context"):
        copying.resolve_sources(src, ["escape"], in_context=True)
    with pytest.raises(copying.CopyError, match="no source files were specified"):
        copying.resolve_sources(src, ["*.nope"], in_context=True)
    with pytest.raises(copying.CopyError, match="Forbidden path outside the build context"):
        copying.resolve_sources(src, ["../x"], in_context=True)


def test_checksum_ignores_mtime_but_not_content_or_mode(work: Path) -> None:
    src = work / "src"
    make_tree(src, {"a.txt": "a", "d/b": "b"})
    s = lambda *p: copying.source_checksum(copying.resolve_sources(src, list(p), in_context=True))  # noqa: E731
    one, d, multi = s("a.txt"), s("d"), s("a.txt", "d")
    assert one.startswith("file:") and d.startswith("dir:") and multi.startswith("multi:")
    os.utime(src / "a.txt", (5, 5))
    assert s("a.txt") == one
    os.chmod(src / "a.txt", 0o600)
    assert s("a.txt") != one
    (src / "d/b").write_text("changed")
    assert s("d") != d


def test_copy_destination_rules(work: Path) -> None:
    src, root = work / "src", work / "rootfs"
    make_tree(src, {"a.txt": "a", "b.txt": "b", "d/c.txt": "c", "d/e/f.txt": "f"})
    make_tree(root, {"existing/keep": "k", "etc/passwd": "root:x:0:0::/:/bin/sh\napp:x:1001:1002::/:/bin/sh\n",
                     "etc/group": "root:x:0:\napp:x:1002:\n"})
    os.symlink("/existing", root / "linkdir")
    res = lambda *p: copying.resolve_sources(src, list(p), in_context=True)  # noqa: E731
    copying.copy_into(root, "/new/name.txt", res("a.txt"), owner=(0, 0))  # file to a new path: that name
    assert (root / "new/name.txt").read_text() == "a"
    copying.copy_into(root, "/existing", res("a.txt"), owner=(0, 0))  # to an existing dir: inside it
    assert (root / "existing/a.txt").read_text() == "a"
    copying.copy_into(root, "/slash/", res("a.txt", "b.txt"), owner=(0, 0))
    assert sorted(os.listdir(root / "slash")) == ["a.txt", "b.txt"]
    with pytest.raises(copying.CopyError, match="more than one source file"):
        copying.copy_into(root, "/noslash", res("a.txt", "b.txt"), owner=(0, 0))
    copying.copy_into(root, "/tree", res("d"), owner=(0, 0))  # a directory copies its contents
    assert sorted(str(p.relative_to(root / "tree")) for p in (root / "tree").rglob("*")) == ["c.txt", "e", "e/f.txt"]
    copying.copy_into(root, "/linkdir/", res("b.txt"), owner=(0, 0))  # dest symlinks resolve inside the root
    assert (root / "existing/b.txt").read_text() == "b"
    owner = copying.parse_chown(root, "app")
    assert owner == (1001, 1002)
    copying.copy_into(root, "/owned/deep/", res("a.txt"), owner=owner, chmod=0o600)
    st = os.stat(root / "owned/deep/a.txt")
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (1001, 1002, 0o600)
    assert os.stat(root / "owned").st_uid == 1001  # new parents get the --chown owner
    assert copying.parse_chown(root, "7:app") == (7, 1002)
    with pytest.raises(copying.CopyError, match="can't find uid for user nobody"):
        copying.parse_chown(root, "nobody")
    assert copying.normalize_dest("/work", "rel/") == "/work/rel/"
    assert copying.normalize_dest("/work", "../x") == "/x"
    assert copying.normalize_dest("", ".") == "/"


def test_add_extracts_local_archives(work: Path) -> None:
    src, root = work / "src", work / "rootfs"
    src.mkdir()
    root.mkdir()
    (src / "pkg.tar.gz").write_bytes(tar_bytes([("top/inner.txt", "file", "inner")], gz=True))
    (src / "plain.txt").write_text("not an archive")
    copying.copy_into(root, "/opt/", copying.resolve_sources(src, ["pkg.tar.gz", "plain.txt"], in_context=True),
                      owner=(0, 0), decompress=True, what="ADD")
    assert (root / "opt/top/inner.txt").read_text() == "inner"
    assert (root / "opt/plain.txt").read_text() == "not an archive"
    assert not (root / "opt/pkg.tar.gz").exists()


def test_context_without_end_blocks_is_accepted_but_truncated_data_is_not(work: Path) -> None:
    full = tar_bytes([("Dockerfile", "file", "FROM x\n"), ("last.txt", "file", "47 bytes of data" * 3)])
    # what the docker CLI sends with `-f` outside the context: the last member's data, then nothing
    cut = full[: 512 * 3 + 48]
    ctx = get(cut, work / "ok")
    assert (ctx.root / "last.txt").read_text() == "47 bytes of data" * 3
    with pytest.raises(ContextError, match="truncated"):
        get(full[: 512 * 3 + 20], work / "bad")
    # the same with --compress (gzip around the unterminated tar)
    ctx = get(gzip.compress(cut), work / "gz")
    assert (ctx.root / "last.txt").read_text() == "47 bytes of data" * 3
    with pytest.raises(ContextError, match="not a valid archive"):
        get(b"\x1f\x8b" + b"garbage" * 100, work / "badgz")
