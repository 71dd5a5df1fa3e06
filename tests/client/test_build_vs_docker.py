"""`skiff build` next to `docker build` (classic builder, DOCKER_BUILDKIT=0) against one skiffd: the same
streamed output and exit statuses, .dockerignore applied on the client with docker's rules, -f outside the
context, --build-arg/--target/-t/-q/--no-cache/--pull, and a context larger than memory would like streamed."""

from __future__ import annotations

import io
import os
import re
import resource
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.client.compare import SKIFF, Pair


@pytest.fixture(scope="module")
def bb(pair: Pair) -> str:
    assert pair.docker("pull", "-q", pair.images.busybox).returncode == 0
    return pair.images.busybox


_DEPRECATED = re.compile(r"DEPRECATED: The legacy builder is deprecated.*?environment-variable\.\n\n?", re.S)
_IDS = re.compile(r"\b[0-9a-f]{12}\b")


def _same_build(pair: Pair, *args: str, **kw) -> tuple:
    """Build with both, docker first once more so that both find the same cache; intermediate container
    and image ids differ from run to run, all else must not."""
    pair.docker("build", *args, **kw)
    d, s = pair.both("build", *args, **kw)
    dout, sout = _IDS.sub("<id>", d.stdout), _IDS.sub("<id>", s.stdout)
    derr = _IDS.sub("<id>", _DEPRECATED.sub("", d.stderr)).replace("docker", "skiff")
    serr = _IDS.sub("<id>", s.stderr).replace("docker", "skiff")
    assert (d.returncode, dout, derr) == (s.returncode, sout, serr), f"{d}\n\n{s}"
    return d, s


def _ctx(tmp: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        p = tmp / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return tmp


def test_build_output_like_docker(pair: Pair, bb: str, tmp_path: Path) -> None:
    ctx = _ctx(tmp_path / "c", {
        "Dockerfile": f"FROM {bb} AS base\nARG A=default\nRUN echo \"a=$A\" > /a\nCOPY . /ctx\n"
                      "FROM base AS final\nRUN ls -A /ctx | sort > /listing\nCMD [\"cat\", \"/a\", \"/listing\"]\n",
        ".dockerignore": "# comment\n*.log\nsecret/\n!keep.log\n**/tmp*\nsub/**/*.bak\n",
        "app.txt": "app\n", "debug.log": "x\n", "keep.log": "kept\n", "secret/key": "k\n",
        "sub/tmpfile": "t\n", "sub/a/b/c.bak": "b\n", "sub/a/b/c.txt": "c\n",
    })
    _same_build(pair, "-t", "b-like:1", "-t", "b-like:2", "--build-arg", "A=given", str(ctx))
    r = pair.docker("run", "--rm", "b-like:2")
    assert r.stdout.splitlines() == ["a=given", ".dockerignore", "Dockerfile", "app.txt", "keep.log", "sub"], r
    assert pair.docker("run", "--rm", "b-like:1", "find", "/ctx/sub").stdout.split() == \
        ["/ctx/sub", "/ctx/sub/a", "/ctx/sub/a/b", "/ctx/sub/a/b/c.txt"]
    _same_build(pair, "-t", "b-like:3", str(ctx))  # cached: "---> Using cache" lines
    s = pair.skiff("build", "--compress", "--ulimit", "nofile=512:1024", "-t", "b-like:gz", str(ctx))
    assert s.returncode == 0 and "Successfully tagged b-like:gz" in s.stdout, s
    _same_build(pair, "--no-cache", "--pull", "--target", "base", "-t", "b-like:base", str(ctx))
    assert "/listing" not in pair.docker("run", "--rm", "b-like:base", "ls", "/").stdout
    # -q prints only the image id, which names the image just built
    d, s = pair.both("build", "-q", "-t", "b-like:q", str(ctx))
    assert d.returncode == s.returncode == 0 and re.fullmatch(r"sha256:[0-9a-f]{64}\n", s.stdout), s
    assert pair.docker("image", "inspect", "-f", "{{.Id}}", "b-like:q").stdout == s.stdout
    assert pair.skiff("builder", "build", "-q", str(ctx)).stdout == s.stdout  # cached: the same image


def test_build_dockerfile_outside_context_and_stdin(pair: Pair, bb: str, tmp_path: Path) -> None:
    ctx = _ctx(tmp_path / "ctx", {"data.txt": "data\n"})
    outside = tmp_path / "elsewhere" / "Build.df"
    outside.parent.mkdir()
    outside.write_text(f"FROM {bb}\nCOPY data.txt /data.txt\nCMD [\"cat\", \"/data.txt\"]\n")
    s = pair.skiff("build", "-f", str(outside), "-t", "b-out", str(ctx))
    assert s.returncode == 0, s
    assert pair.docker("run", "--rm", "b-out").stdout == "data\n"
    s = pair.skiff("build", "-f", "-", "-t", "b-stdin", str(ctx), input=outside.read_text())
    assert s.returncode == 0 and "Successfully tagged b-stdin:latest" in s.stdout, s
    # a subdirectory Dockerfile, relative to the current directory
    _ctx(ctx, {"sub/Dockerfile": f"FROM {bb}\nCOPY data.txt /d\n"})
    _same_build(pair, "-f", str(ctx / "sub" / "Dockerfile"), str(ctx))
    # the whole context from stdin as a tar
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in (("Dockerfile", f"FROM {bb}\nCOPY f /f\n".encode()), ("f", b"from stdin tar\n")):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    r = subprocess.run([SKIFF, "build", "-t", "b-tar", "-"], input=buf.getvalue(), env=pair.env,
                       capture_output=True, timeout=120)
    assert r.returncode == 0, r
    assert pair.docker("run", "--rm", "b-tar", "cat", "/f").stdout == "from stdin tar\n"


def test_build_errors_like_docker(pair: Pair, bb: str, tmp_path: Path) -> None:
    ctx = _ctx(tmp_path / "e", {"Dockerfile": f"FROM {bb}\nRUN echo before; exit 3\n", "Other": "FROM\n"})
    _same_build(pair, str(ctx))  # a failing RUN: its status and docker's message
    _same_build(pair, "-f", "Other", str(ctx))  # -f is relative to the current directory, not the context
    _same_build(pair, "-f", str(ctx / "Other"), str(ctx))
    _same_build(pair, "-q", str(ctx))
    _same_build(pair, "-f", str(ctx / "missing"), str(ctx))
    _same_build(pair, str(tmp_path / "nosuch"))
    _same_build(pair, "-t", "Bad:Tag", str(ctx))
    _same_build(pair, "-f", "-", "-", input="FROM x\n")
    _same_build(pair)
    _same_build(pair, "--target", "nosuchstage", str(ctx))


def test_large_context_is_streamed(pair: Pair, bb: str, tmp_path: Path) -> None:
    """A 300 MB context: uploaded chunk by chunk (skiff's peak memory stays far below the context size),
    excluded files never sent, and the final upload size printed as docker prints it."""
    ctx = _ctx(tmp_path / "big", {"Dockerfile": f"FROM {bb}\nCOPY big.bin /big.bin\nRUN ls -l /big.bin\n",
                                  ".dockerignore": "ignored/\n"})
    with open(ctx / "big.bin", "wb") as f:
        f.truncate(300 * 1024 * 1024)
    (ctx / "ignored").mkdir()
    with open(ctx / "ignored" / "huge.bin", "wb") as f:
        f.truncate(2 * 1024 * 1024 * 1024)  # sparse: would be 2 GB on the wire if it were not excluded
    code = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True); "
            "print(r.returncode); print(repr(r.stdout[:60])); print(r.stdout.decode()); "
            "print('MAXRSS', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    r = subprocess.run(["python3", "-c", code, SKIFF, "build", "-t", "b-big", str(ctx)], env=pair.env,
                       capture_output=True, text=True, timeout=600)
    assert r.stdout.startswith("0\n"), r
    assert "Sending build context to Docker daemon  314.6MB\\r\\r\\nStep 1/3" in r.stdout  # docker's bytes
    assert "314572800 " in r.stdout  # ls -l inside the build
    maxrss_kb = int(r.stdout.rsplit("MAXRSS ", 1)[1])
    assert maxrss_kb < 100 * 1024, f"skiff build used {maxrss_kb} KiB for a 300 MB context"
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > 0
    pair.docker("rmi", "b-big")


@pytest.mark.parametrize("patterns,path,excluded", [
    (["*.log"], "a.log", True), (["*.log"], "d/a.log", False), (["**/*.log"], "d/e/a.log", True),
    (["d"], "d/e/f", True), (["d/*"], "d/e", True), (["d/*", "!d/keep"], "d/keep", False),
    (["*", "!keep*"], "keeper", False), (["a?c"], "abc", True), (["a?c"], "a/c", False),
    (["[a-c]x"], "bx", True), (["[a-c]x"], "dx", False), (["a.c"], "abc", False), (["**"], "x/y", True), (["x/**"], "x/y/z", True),
    (["/abs/./p/../q"], "abs/q", True), (["!x", "x"], "x", True), (["x", "!x"], "x", False),
    (["**/tmp*"], "a/b/tmpfile", True), (["a/**/b"], "a/b", True), (["a/**/b"], "a/x/y/b", True),
    ([".git"], ".git/config", True), (["  spaced.txt  "], "spaced.txt", True), (["#c", "x"], "#c", False),
])
def test_dockerignore_matches_the_engine(patterns: list[str], path: str, excluded: bool) -> None:
    """The one matcher (guest/build/dockerignore.py), used by the client and the engine, gives docker's answers."""
    from skiffbox.guest.build.dockerignore import Matcher, read_patterns

    text = "\n".join(patterns) + "\n"
    assert Matcher(read_patterns(text)).matches(path) is excluded


def test_context_tar_entries(tmp_path: Path) -> None:
    from skiffbox.cli.skiffclient.buildcontext import tar_context
    from skiffbox.guest.build.dockerignore import Matcher, read_patterns

    _ctx(tmp_path, {"Dockerfile": "FROM x\n", ".dockerignore": "*\n!src\n", "src/a.py": "a", "other": "o",
                    "deep/x/Dockerfile.dev": "FROM y\n"})
    os.symlink("src/a.py", tmp_path / "link")
    os.mkfifo(tmp_path / "fifo")
    ign = Matcher(read_patterns((tmp_path / ".dockerignore").read_text()))
    data = b"".join(tar_context(str(tmp_path), ign, [".dockerignore", "deep/x/Dockerfile.dev"],
                                [(".dockerfile.abc", b"FROM z\n")]))
    tf = tarfile.open(fileobj=io.BytesIO(data))
    names = tf.getnames()
    assert names == [".dockerignore", "deep/x/Dockerfile.dev", "src", "src/a.py", ".dockerfile.abc"], names
    assert all(m.uid == 0 and m.gid == 0 for m in tf.getmembers())
    assert tf.extractfile("src/a.py").read() == b"a"
