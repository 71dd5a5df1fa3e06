"""docker exec through the real CLI and docker-py: streams, exit codes, stdin, env/user/workdir, detached,
inspect, and the errors clients rely on."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from tests.engine.containers_fixtures import remove_all
from tests.engine.harness import Skiffd, TestImages, wait_for


@pytest.fixture(scope="module")
def box(skiffd: Skiffd, images: TestImages) -> Iterator[str]:
    skiffd.docker("pull", "-q", images.busybox)
    skiffd.docker("run", "-d", "--name", "box", "-e", "BASE=1", "-w", "/tmp", images.busybox, "sleep", "1000")
    yield "box"
    remove_all(skiffd)


def test_exec_streams_and_exit_code(skiffd: Skiffd, box: str) -> None:
    r = skiffd.docker("exec", box, "sh", "-c", "echo out; echo err >&2; exit 5", check=False)
    assert (r.returncode, r.stdout, r.stderr) == (5, "out\n", "err\n")
    r = skiffd.docker("exec", box, "/nonexistent", check=False)
    assert r.returncode in (126, 127) and "nonexistent" in r.stderr + r.stdout


def test_exec_env_user_workdir(skiffd: Skiffd, box: str) -> None:
    r = skiffd.docker("exec", "-e", "X=2", "-u", "www", "-w", "/var", box, "sh", "-c", "echo $BASE$X; id -u; pwd")
    assert r.stdout.split() == ["12", "33", "/var"]
    r = skiffd.docker("exec", box, "pwd")
    assert r.stdout.strip() == "/tmp"  # the container's working dir by default


def test_exec_stdin(skiffd: Skiffd, box: str) -> None:
    r = skiffd.docker("exec", "-i", box, "sh", "-c", "tr a-z A-Z; echo end", input="hello\nworld\n")
    assert r.stdout == "HELLO\nWORLD\nend\n"
    big = "x" * 200_000 + "\n"
    r = skiffd.docker("exec", "-i", box, "wc", "-c", input=big)
    assert r.stdout.strip() == str(len(big))


def test_exec_detached_and_inspect(skiffd: Skiffd, box: str) -> None:
    skiffd.docker("exec", "-d", box, "sh", "-c", "sleep 0.3; touch /tmp/detached-done")
    wait_for(lambda: skiffd.docker("exec", box, "test", "-e", "/tmp/detached-done", check=False).returncode == 0,
             what="detached exec")
    c = skiffd.client()
    ctr = c.containers.get(box)
    eid = c.api.exec_create(ctr.id, ["sh", "-c", "exit 3"])["Id"]
    j = c.api.exec_inspect(eid)
    assert j["Running"] is False and j["ExitCode"] is None and j["ContainerID"] == ctr.id
    c.api.exec_start(eid)
    j = c.api.exec_inspect(eid)
    assert j["ExitCode"] == 3 and j["ProcessConfig"]["entrypoint"] == "sh"
    assert eid in json.loads(skiffd.docker("inspect", box).stdout)[0]["ExecIDs"]
    with pytest.raises(Exception) as ei:
        c.api.exec_start(eid)
    assert "409" in str(ei.value) or "already" in str(ei.value)


def test_docker_py_exec_run(skiffd: Skiffd, box: str) -> None:
    c = skiffd.client()
    res = c.containers.get(box).exec_run(["sh", "-c", "echo a; echo b >&2; exit 2"], demux=True)
    assert res.exit_code == 2 and res.output == (b"a\n", b"b\n")
    res = c.containers.get(box).exec_run("echo tty", tty=True)
    assert res.output == b"tty\r\n"


def test_tty_exec_started_without_tty_is_framed(skiffd: Skiffd, box: str) -> None:
    """The process gets its terminal from the create request (so CRLF line ends), the stream its framing from
    the start request: docker-py's exec_start(tty=False) of a TTY exec reads frames, all on stdout (moby)."""
    c = skiffd.client()
    ctr = c.containers.get(box)
    eid = c.api.exec_create(ctr.id, ["sh", "-c", "echo out; echo err >&2"], tty=True)["Id"]
    assert c.api.exec_start(eid, demux=True) == (b"out\r\nerr\r\n", None)
    assert c.api.exec_inspect(eid)["ProcessConfig"]["tty"] is True


def test_exec_errors(skiffd: Skiffd, images: TestImages, box: str) -> None:
    skiffd.docker("create", "--name", "stopped", images.busybox, "true")
    r = skiffd.docker("exec", "stopped", "true", check=False)
    assert r.returncode != 0 and "is not running" in r.stderr
    r = skiffd.docker("exec", "nosuchctr", "true", check=False)
    assert "No such container" in r.stderr
    skiffd.docker("pause", box)
    try:
        r = skiffd.docker("exec", box, "true", check=False)
        assert "paused" in r.stderr
    finally:
        skiffd.docker("unpause", box)
    skiffd.docker("rm", "stopped")
    t = time.monotonic()
    assert skiffd.docker("exec", box, "true").returncode == 0
    assert time.monotonic() - t < 5


def test_exec_detach_keys_from_client_config(skiffd: Skiffd, box: str) -> None:
    """docker-py sends its config file's detachKeys as `detachKeys` (Go's JSON is case-insensitive): ctrl-p
    detaches and the stream ends, the process goes on."""
    c = skiffd.client()
    c.api._general_configs["detachKeys"] = "ctrl-p"
    eid = c.api.exec_create(box, "cat", stdin=True, tty=True, stdout=True)["Id"]
    assert c.api.exec_inspect(eid)["DetachKeys"] == "ctrl-p"
    sock = c.api.exec_start(eid, tty=True, socket=True)
    raw = sock._sock
    raw.settimeout(10)
    raw.sendall(b"\x10")
    assert raw.recv(128) == b""
    assert c.api.exec_inspect(eid)["Running"] is True
    raw.close()
