"""The engine on each OCI runtime, chosen with `--runtime`. On this hybrid-cgroup host crun refuses `create`
unless conmon runs in a private mount namespace with the cgroup2 controllers file masked
(probe_runtime.md §1) — the engine does that."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from skiffbox.guest import hostinfo
from tests.engine.containers_fixtures import PtySession, conmon_pids
from tests.engine.harness import NetNS, Skiffd, TestImages, rmtree, tempdir

@pytest.fixture(scope="module", params=["runc", "crun"])
def rt_skiffd(request: pytest.FixtureRequest, netns: NetNS, images: TestImages) -> Iterator[Skiffd]:
    if shutil.which(request.param) is None:
        pytest.skip(f"{request.param} is not installed")
    d = tempdir(f"skiffd-{request.param}-")
    daemon = Skiffd(netns, d, ["--runtime", request.param])
    daemon.runtime = request.param  # type: ignore[attr-defined]
    try:
        daemon.docker("pull", "-q", images.busybox)
        yield daemon
    finally:
        left = daemon.close()
        rmtree(d)
        assert not left, f"skiffd's containers left these behind: {left}"


def test_info_reports_the_runtime(rt_skiffd: Skiffd) -> None:
    """An explicit `--runtime` is the default's name, as dockerd's `default-runtime`; `runc` (dockerd's stock name)
    also selects it, and each name shows the binary that runs it."""
    name = rt_skiffd.runtime  # type: ignore[attr-defined]
    info = json.loads(rt_skiffd.docker("info", "--format", "{{json .}}").stdout)
    assert info["DefaultRuntime"] == name
    path = shutil.which(name)
    assert info["Runtimes"] == {"runc": {"path": path}, name: {"path": path}}


def test_runtime_names_as_dockerd(skiffd: Skiffd, images: TestImages) -> None:
    """Without `--runtime` the default is named `runc`, as dockerd's (docker-py's test_create_with_runtime reads it
    back), whichever binary runs it: Info.Runtimes tells which. The binary's own name selects it too; a name the
    engine does not serve is refused at create with dockerd's words."""
    d, bb = skiffd, images.busybox
    info = json.loads(d.docker("info", "--format", "{{json .}}").stdout)
    binary = d.client().version()["Components"]
    assert info["DefaultRuntime"] == "runc"
    served = info["Runtimes"]["runc"]["path"]
    assert served in {shutil.which("crun"), shutil.which("runc")}
    assert set(info["Runtimes"]) == {"runc", Path(served).name}  # the binary's own name, the same path
    assert all(v == {"path": served} for v in info["Runtimes"].values())
    assert {c["Name"] for c in binary} >= {"Engine", Path(served).name}
    try:
        d.docker("create", "--name", "rt-default", bb, "true")
        d.docker("create", "--name", "rt-own", "--runtime", Path(served).name, bb, "true")
        for name, want in (("rt-default", "runc"), ("rt-own", Path(served).name)):
            assert d.docker("inspect", "-f", "{{.HostConfig.Runtime}}", name).stdout.strip() == want
        assert d.docker("run", "--rm", "--runtime", "runc", bb, "echo", "ok").stdout == "ok\n"
        r = d.docker("create", "--runtime", "nvidia", bb, "true", check=False)
        assert r.returncode != 0 and "Unknown runtime specified nvidia" in r.stderr
        with pytest.raises(docker.errors.APIError) as e:
            d.client().api.create_container(bb, "true", host_config={"Runtime": "nvidia"})
        assert e.value.status_code == 400
    finally:
        d.docker("rm", "-f", "rt-default", "rt-own", check=False)


@pytest.mark.parametrize("cmd, code, error", [
    ("/tmp", 126, 'exec: "/tmp": permission denied'),  # a directory
    ("/", 126, 'exec: "/": permission denied'),
    ("/etc/passwd", 126, 'exec: "/etc/passwd": permission denied'),  # a file without the x bit
    ("/nonexistent", 127, 'exec: "/nonexistent": stat /nonexistent: no such file or directory'),
    ("nonexistent", 127, 'exec: "nonexistent": executable file not found in $PATH'),
])
def test_command_that_cannot_run(rt_skiffd: Skiffd, images: TestImages, cmd: str, code: int, error: str) -> None:
    """Docker's exit statuses (126 cannot be invoked, 127 not found; the CLI picks them from the message, as with
    dockerd + runc, whose wording both runtimes give) and its 400 for the start request."""
    d = rt_skiffd
    r = d.docker("run", "--rm", images.busybox, cmd, check=False)
    assert r.returncode == code, r.stderr
    assert error in r.stderr
    d.docker("create", "--name", "bad", images.busybox, cmd)
    try:
        r = d.docker("start", "bad", check=False)
        assert r.returncode == 1 and error in r.stderr
        state = json.loads(d.docker("inspect", "-f", "{{json .State}}", "bad").stdout)
        assert (state["Status"], state["ExitCode"]) == ("created", code) and error in state["Error"]
        with pytest.raises(docker.errors.APIError) as e:
            d.client().api.start("bad")
        assert e.value.status_code == 400 and error in str(e.value.explanation)
    finally:
        d.docker("rm", "-f", "bad")


def test_run_exec_stop_oom(rt_skiffd: Skiffd, images: TestImages) -> None:
    d, bb = rt_skiffd, images.busybox
    assert d.docker("run", "--rm", bb, "echo", "hello").stdout == "hello\n"
    r = d.docker("run", "--rm", bb, "sh", "-c", "exit 5", check=False)
    assert r.returncode == 5
    cid = d.docker("run", "-d", "--name", "c1", "--pids-limit", "7", bb, "sleep", "1000").stdout.strip()
    assert d.docker("exec", "c1", "sh", "-c", "echo $((40+2))").stdout == "42\n"
    assert d.docker("top", "c1").stdout.count("sleep 1000") == 1
    d.docker("stop", "-t", "0", "c1")
    d.docker("rm", "c1")
    assert not conmon_pids(cid) and not rt_skiffd.cgroup_leftovers(cid)
    r = d.docker("run", "--rm", "-m", "32m", bb, "dd", "if=/dev/zero", "of=/dev/null", "bs=100M", "count=1", check=False)
    assert r.returncode == 137
    if hostinfo.cgroup_hybrid_controllers():
        # The workaround stays private to conmon's mount namespace: the host still sees the controllers.
        assert open("/sys/fs/cgroup/unified/cgroup.controllers").read().strip()


def test_tty(rt_skiffd: Skiffd, images: TestImages) -> None:
    s = PtySession(rt_skiffd, ["run", "--rm", "-it", images.busybox, "sh"], rows=21, cols=77)
    try:
        s.read_until(b"# ")
        s.send(b"stty size\r")
        s.read_until(b"21 77")
        s.send(b"exit 3\r")
        assert s.wait() == 3
    finally:
        s.close()
