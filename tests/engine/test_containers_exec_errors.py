"""`docker exec` of a command that cannot run: exit status 126 whether it is missing or not executable (dockerd:
every failed exec start is 126, unlike `run`'s 127 for a missing command; docker-py's suite checks it) and
runc's words as for `docker run` (runtime.py maps the runtime's message, one place), on runc and crun; and
`docker start -a` of one reports the failed start only."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.engine.harness import Skiffd, TestImages
from tests.engine.test_containers_runtimes import rt_skiffd  # noqa: F401  (the fixture: a daemon per runtime)

CASES = [
    ("/tmp", 126, 'exec: "/tmp": permission denied'),  # a directory
    ("/etc/passwd", 126, 'exec: "/etc/passwd": permission denied'),  # a file without the x bit
    ("/nonexistent", 126, 'exec: "/nonexistent": stat /nonexistent: no such file or directory'),
    ("nonexistent", 126, 'exec: "nonexistent": executable file not found in $PATH'),
]


@pytest.fixture(scope="module")
def target(rt_skiffd: Skiffd, images: TestImages) -> Iterator[Skiffd]:  # noqa: F811
    rt_skiffd.docker("run", "-d", "--name", "target", images.busybox, "sleep", "1000")
    try:
        yield rt_skiffd
    finally:
        rt_skiffd.docker("rm", "-f", "target", check=False)


@pytest.mark.parametrize("cmd, code, error", CASES)
def test_exec_of_a_command_that_cannot_run(target: Skiffd, cmd: str, code: int, error: str) -> None:
    d = target
    for flags in ([], ["-t"], ["-i"]):
        r = d.docker("exec", *flags, "target", cmd, check=False)
        assert r.returncode == code, (flags, r.stdout, r.stderr)
        assert error in r.stdout + r.stderr, (flags, r.stdout, r.stderr)
        assert "level=error" not in r.stderr
    # docker-py sees the same exit status in the exec's inspect.
    api = d.client().api
    eid = api.exec_create("target", [cmd])["Id"]
    out = api.exec_start(eid)
    assert error.encode() in out
    assert api.exec_inspect(eid)["ExitCode"] == code
    # The container is unharmed and a good exec still works.
    assert d.docker("exec", "target", "echo", "ok").stdout == "ok\n"
    assert json.loads(d.docker("inspect", "target").stdout)[0]["State"]["Running"]


def test_start_attached_of_a_command_that_cannot_run(target: Skiffd, images: TestImages) -> None:
    """The failed start is the only error: the wait the CLI set up before it is not answered with one (dockerd
    leaves it pending: the container did not exit, it never ran), so no "Error waiting for container" line."""
    d = target
    d.docker("create", "--name", "bad", images.busybox, "/tmp")
    try:
        for _ in range(10):  # the CLI logs that line only if the wait's answer wins a race
            r = d.docker("start", "-a", "bad", check=False)
            assert r.returncode == 1 and 'exec: "/tmp": permission denied' in r.stderr, r.stderr
            assert "Error waiting for container" not in r.stderr and "level=error" not in r.stderr, r.stderr
        # A wait for the next exit is still pending (the container never ran); `not-running` answers at once.
        assert d.docker("wait", "bad").stdout.strip() == "126"
    finally:
        d.docker("rm", "-f", "bad")
