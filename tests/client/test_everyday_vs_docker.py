"""The everyday commands beyond run/ps (pause, top, diff, update, commit, export/import, save/load, stats,
system prune, search): skiff next to the real docker CLI against one skiffd, output for output."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.client.compare import SKIFF, Pair, normalize


@pytest.fixture(scope="module")
def bb(pair: Pair) -> str:
    assert pair.docker("pull", "-q", pair.images.busybox).returncode == 0
    return pair.images.busybox


def _running(pair: Pair, name: str, bb: str) -> None:
    r = pair.docker("run", "-d", "--name", name, bb, "sleep", "300")
    assert r.returncode == 0, r


def test_pause_unpause_like_docker(pair: Pair, bb: str) -> None:
    _running(pair, "pz1", bb)
    d, s = pair.docker("pause", "pz1"), pair.skiff("unpause", "pz1")
    assert (d.returncode, d.stdout, s.returncode, s.stdout) == (0, "pz1\n", 0, "pz1\n")
    assert pair.skiff("pause", "pz1").stdout == "pz1\n"
    assert pair.docker("inspect", "-f", "{{.State.Status}}", "pz1").stdout == "paused\n"
    pair.assert_same("pause", "pz1", "nosuch")  # already paused + missing: both errors, exit 1
    pair.assert_same("unpause", "nosuch", "pz1")
    pair.assert_same("unpause", "pz1")
    pair.assert_same("pause")
    pair.assert_same("container", "pause", "--help")


def test_top_and_diff_like_docker(pair: Pair, bb: str) -> None:
    _running(pair, "top1", bb)
    pair.assert_same("top", "top1")
    pair.assert_same("top", "top1", "-o", "pid,args")
    pair.assert_same("container", "top", "nosuch")
    pair.assert_same("top")
    assert pair.docker("exec", "top1", "sh", "-c", "mkdir /newdir; echo x > /newdir/f; rm /bin/vi").returncode == 0
    d, s = pair.assert_same("diff", "top1")
    assert "A /newdir/f" in s.stdout and "D /bin/vi" in s.stdout
    pair.assert_same("container", "diff", "nosuch")
    pair.assert_same("diff", "")
    pair.assert_same("diff", "a", "b")


def test_update_like_docker(pair: Pair, bb: str) -> None:
    _running(pair, "up1", bb)
    d, s = pair.assert_same("update", "-m", "64m", "--memory-swap", "128m", "--cpus", "0.5", "--pids-limit", "40",
                            "--restart", "on-failure:2", "up1")
    assert s.stdout == "up1\n"
    hc = pair.docker("inspect", "-f", "{{json .HostConfig}}", "up1").json()
    assert (hc["Memory"], hc["NanoCpus"], hc["PidsLimit"], hc["RestartPolicy"]) == \
        (64 << 20, 500_000_000, 40, {"Name": "on-failure", "MaximumRetryCount": 2})
    s = pair.skiff("update", "--cpu-shares", "512", "up1")
    assert (s.returncode, s.stdout) == (0, "up1\n")
    assert pair.docker("inspect", "-f", "{{.HostConfig.CpuShares}} {{.HostConfig.Memory}}", "up1").stdout == \
        f"512 {64 << 20}\n"  # fields not given are left alone
    for args in (["update", "up1"], ["update", "-m", "lots", "up1"], ["update", "--cpus", "x", "up1"],
                 ["update", "--cpus", "0.0000000001", "up1"], ["update", "--blkio-weight", "70000", "up1"],
                 ["update", "--restart", ":1", "up1"], ["update", "--restart", "always:x", "up1"],
                 ["update", "-m", "32m", "nosuch", "up1"],
                 ["update"]):
        pair.assert_same(*args)


def test_commit_like_docker(pair: Pair, bb: str) -> None:
    _running(pair, "cm1", bb)
    pair.docker("exec", "cm1", "sh", "-c", "echo committed > /c.txt")
    s = pair.skiff("commit", "-a", "me", "-m", "msg", "-c", "ENV X=1", "-c", "CMD [\"cat\", \"/c.txt\"]", "cm1",
                   "committed/img:v1")
    assert s.returncode == 0 and s.stdout.startswith("sha256:") and len(s.stdout.strip()) == 71, s
    info = pair.docker("image", "inspect", "committed/img:v1").json()[0]
    assert (info["Author"], info["Comment"]) == ("me", "msg")
    assert "X=1" in info["Config"]["Env"] and info["Config"]["Cmd"] == ["cat", "/c.txt"]
    assert pair.docker("run", "--rm", "committed/img:v1").stdout == "committed\n"
    s = pair.skiff("commit", "cm1")  # untagged
    assert s.returncode == 0 and s.stdout.startswith("sha256:")
    s = pair.skiff("commit", "--pause=false", "cm1", "committed/img")
    assert pair.docker("image", "inspect", "-f", "{{.Id}}", "committed/img:latest").stdout.strip() == s.stdout.strip()
    for args in (["commit", "nosuch"], ["commit", "cm1", "Bad/Name"], ["commit", "cm1", "a b"],
                 ["commit", "cm1", "x@sha256:" + "a" * 64], ["commit"], ["commit", "a", "b", "c"]):
        pair.assert_same(*args)


def test_export_import_like_docker(pair: Pair, bb: str, tmp_path: Path) -> None:
    pair.docker("create", "--name", "ex1", bb, "true")
    dfile, sfile = tmp_path / "d.tar", tmp_path / "s.tar"
    d, s = pair.docker("export", "-o", str(dfile), "ex1"), pair.skiff("export", "-o", str(sfile), "ex1")
    assert (d.returncode, d.stdout, s.returncode, s.stdout) == (0, "", 0, "")
    names = lambda p: sorted(tarfile.open(p).getnames())  # noqa: E731
    assert names(sfile) == names(dfile) and "bin/busybox" in names(sfile)
    raw = subprocess.run([SKIFF, "export", "ex1"], env=pair.env, capture_output=True, timeout=60)
    assert raw.returncode == 0 and sorted(tarfile.open(fileobj=io.BytesIO(raw.stdout)).getnames()) == names(dfile)
    for args in (["export", "nosuch"], ["export", "-o", str(tmp_path / "no/dir/x.tar"), "ex1"], ["export"]):
        pair.assert_same(*args)
    # import: from a file, from stdin, with a reference and changes
    s = pair.skiff("import", "-c", "CMD [\"/bin/busybox\", \"echo\", \"imported\"]", "-m", "imp", str(sfile),
                   "imported/s:1")
    assert s.returncode == 0 and s.stdout.startswith("sha256:"), s
    assert pair.docker("run", "--rm", "imported/s:1").stdout == "imported\n"
    r = subprocess.run([SKIFF, "import", "-", "imported/stdin"], env=pair.env, input=sfile.read_bytes(),
                       capture_output=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith(b"sha256:"), r
    assert pair.docker("image", "inspect", "-f", "{{.Comment}}", "imported/s:1").stdout == "imp\n"
    for args in (["import", str(tmp_path / "missing.tar")], ["import", str(sfile), "Bad:Ref!"], ["import"]):
        pair.assert_same(*args)


def test_save_load_like_docker(pair: Pair, bb: str, tmp_path: Path) -> None:
    pair.docker("tag", bb, "saved/one:1")
    dfile, sfile = tmp_path / "d.tar", tmp_path / "s.tar"
    d = pair.docker("save", "-o", str(dfile), "saved/one:1")
    s = pair.skiff("save", "-o", str(sfile), "saved/one:1")
    assert (d.returncode, s.returncode, s.stdout) == (0, 0, "")
    assert sfile.read_bytes() == dfile.read_bytes()  # the engine's archive, byte for byte
    raw = subprocess.run([SKIFF, "save", "saved/one:1"], env=pair.env, capture_output=True, timeout=60)
    assert raw.returncode == 0 and raw.stdout == dfile.read_bytes()
    for args in (["save", "nosuch:1"], ["save", "-o", str(tmp_path / "no/dir/x.tar"), "saved/one:1"], ["save"]):
        pair.assert_same(*args)
    pair.docker("rmi", "saved/one:1")
    d, s = pair.assert_same("load", "-i", str(sfile))
    assert s.stdout == "Loaded image: saved/one:1\n"
    r = subprocess.run([SKIFF, "load", "-q"], env=pair.env, input=dfile.read_bytes(), capture_output=True, timeout=60)
    assert (r.returncode, r.stdout) == (0, b"Loaded image: saved/one:1\n")
    for args in (["load", "-i", str(tmp_path / "missing.tar")], ["load", "extra"]):
        pair.assert_same(*args)
    pair.assert_same("load", input="not a tar archive at all\n")


def test_help_lists_every_command() -> None:
    from skiffbox.cli.skiffclient.commands import _GROUPS, _TOP, _load, main_help

    text = main_help()
    for name in ("build", "builder", "context", "login", "logout", "search", "stats", "top", "save", "load", "pause", "unpause", "diff",
                 "commit", "export", "import", "update", "attach", "events", "history"):
        assert f"\n  {name} " in text, name
    for head, entry in _TOP.items():
        assert _load(entry, head).run is not None
    for group, subs in _GROUPS.items():
        for sub, entry in subs.items():
            assert _load(entry, f"{group} {sub}").run is not None


def test_stats_no_stream_like_docker(pair: Pair, bb: str) -> None:
    _running(pair, "st1", bb)
    _running(pair, "st2", bb)
    pair.docker("create", "--name", "st3", bb, "true")
    # CPU and memory move between the two runs: compare the shape, and the fields that stay put
    for args in (["stats", "--no-stream"], ["stats", "--no-stream", "st1", "st2"], ["stats", "--no-stream", "-a"],
                 ["container", "stats", "--no-stream", "--no-trunc", "st1"]):
        d, s = pair.both(*args)
        assert d.returncode == s.returncode == 0, (d, s)
        dl, sl = d.stdout.splitlines(), s.stdout.splitlines()
        assert normalize(dl[0]) == normalize(sl[0]) and len(dl) == len(sl), (d, s)  # widths follow the numbers
        col = lambda lines, i: [ln.split()[i] for ln in lines[1:]]  # noqa: E731
        assert sorted(col(sl, 0)) == sorted(col(dl, 0)) and sorted(col(sl, 1)) == sorted(col(dl, 1))
        assert all(ln.split()[-1].isdigit() for ln in sl[1:])  # PIDS
    tmpl = "{{.Name}} {{.Container}} {{.PIDs}} {{.MemUsage}}"
    d, s = pair.both("stats", "--no-stream", "--format", tmpl, "st1")
    assert s.stdout.split()[:3] == d.stdout.split()[:3] == ["st1", "st1", "1"] and " / " in s.stdout
    s = pair.skiff("stats", "--no-stream", "--format", "json", "st2")
    row = json.loads(s.stdout)
    assert sorted(row) == ["BlockIO", "CPUPerc", "Container", "ID", "MemPerc", "MemUsage", "Name", "NetIO", "PIDs"]
    assert (row["Name"], row["Container"]) == ("st2", "st2")
    d, s = pair.both("stats", "--no-stream", "--format", "table {{.Name}}\t{{.PIDs}}", "st1")
    assert d.stdout == s.stdout
    pair.assert_same("stats", "--no-stream", "nosuch")
    pair.assert_same("stats", "--no-stream", "st1", "nosuch")
    pair.assert_same("stats", "--no-stream", "--format", "{{.Nope}}", "st1")
    pair.assert_same("stats", "--bogus")


def test_stats_live_redraws_in_place(pair: Pair, bb: str) -> None:
    """The live table is redrawn every half second with docker's escape sequences (home, erase line, erase
    below), on a terminal as through a pipe, until interrupted."""
    import os
    import pty
    import re
    import select
    import signal
    import time

    _running(pair, "live1", bb)

    def shape(data: bytes) -> list[str]:
        """Escapes and line ends kept, table text reduced to "T": comparable across clients and ticks."""
        out = []
        for t in re.split(rb"(\x1b\[[HKJ]|\n)", data.replace(b"\r\n", b"\n")):
            if t:
                out.append(t.decode() if t.startswith(b"\x1b") or t == b"\n" else "T")
        return out

    runs = {prog: subprocess.run(["timeout", "-s", "KILL", "2.5", prog, "stats", "live1"], env=pair.env,
                                 capture_output=True, timeout=30).stdout for prog in ("docker", SKIFF)}
    d, s = (shape(runs[p]) for p in ("docker", SKIFF))
    n = min(len(d), len(s), 30)  # two frames and more
    assert d[:n] == s[:n] and s.count("\x1b[J") >= 2, (runs["docker"][:400], runs[SKIFF][:400])
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(SKIFF, [SKIFF, "stats", "live1"], pair.env)
    data = b""
    deadline = time.monotonic() + 20
    try:
        while data.count(b"\x1b[J") < 2 and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.5)[0]:
                try:
                    data += os.read(fd, 65536)
                except OSError:
                    break
    finally:
        os.kill(pid, signal.SIGINT)
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert data.count(b"\x1b[J") >= 2, data
    frame = data.split(b"\x1b[H")[2].decode()
    assert frame.startswith("CONTAINER ID   NAME      CPU %") and "live1" in frame and " \x1b[K" in frame
    assert os.waitstatus_to_exitcode(status) == 130


def test_system_prune_like_docker(fresh_pair: Pair) -> None:
    p = fresh_pair
    assert p.docker("pull", "-q", p.images.busybox).returncode == 0
    p.assert_same("system", "prune", input="n\n")
    p.assert_same("system", "prune", "-a", "--volumes", "--filter", "label=x=y", "--filter", "label=a", input="n\n")
    p.assert_same("system", "prune", "--volumes", "--filter", "until=1h", "-f")
    p.assert_same("system", "prune", "-f")  # nothing to prune
    for who in ("docker", "skiff"):
        p.docker("run", "-v", "/anon", "--name", f"dead-{who}", p.images.busybox, "true")
        p.docker("network", "create", f"net-{who}")
        r = p.run(who, "system", "prune", "-f", "--volumes")
        assert r.returncode == 0, r
        lines = r.stdout.splitlines()
        assert lines[0] == "Deleted Containers:" and len(lines[1]) == 64 and lines[2] == "", r
        assert lines[3:6] == ["Deleted Networks:", f"net-{who}", ""] and lines[6] == "Deleted Volumes:", r
        assert lines[-1].startswith("Total reclaimed space: ")
    r = p.skiff("system", "prune", "-af")
    assert "Deleted Images:" in r.stdout and "untagged: " + p.images.busybox in r.stdout, r
    assert p.docker("images", "-q").stdout == ""
