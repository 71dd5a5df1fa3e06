"""Containers through the real docker CLI: run/ps/logs/stop/kill/rm/inspect/top/stats/pause/rename/wait,
limits (OOM, pids), -it on a real pseudo-terminal, restart policies, healthchecks, events."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.engine.containers_fixtures import PtySession, conmon_pids, remove_all
from tests.engine.harness import Skiffd, TestImages, wait_for


@pytest.fixture(scope="module")
def bb(skiffd: Skiffd, images: TestImages) -> Iterator[str]:
    skiffd.docker("pull", "-q", images.busybox)
    yield images.busybox
    remove_all(skiffd)


@pytest.fixture(autouse=True)
def _cleanup(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "skiffd" in request.fixturenames:
        remove_all(request.getfixturevalue("skiffd"))


def inspect(d: Skiffd, ref: str) -> dict:
    return json.loads(d.docker("inspect", ref).stdout)[0]


# ---------------------------------------------------------------------------------------------


def test_run_echo_exit_codes_and_streams(skiffd: Skiffd, bb: str) -> None:
    r = skiffd.docker("run", "--rm", bb, "echo", "hello")
    assert r.stdout == "hello\n"
    r = skiffd.docker("run", "--rm", bb, "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert r.returncode == 3
    assert r.stdout == "out\n" and r.stderr == "err\n"
    # A missing executable is the CLI's 127, as with dockerd.
    r = skiffd.docker("run", "--rm", bb, "/nonexistent", check=False)
    assert r.returncode == 127, r.stderr
    assert "nonexistent" in r.stderr


def test_run_env_workdir_user_hostname(skiffd: Skiffd, bb: str) -> None:
    r = skiffd.docker("run", "--rm", "-e", "FOO=bar baz", "-w", "/tmp", "-u", "nobody", "--hostname", "box1", bb,
                      "sh", "-c", 'echo "$FOO"; pwd; id; hostname; echo $HOME')
    assert r.stdout.splitlines() == ["bar baz", "/tmp", "uid=65534(nobody) gid=65534(nogroup)", "box1", "/home"]
    r = skiffd.docker("run", "--rm", "-u", "33:0", "--group-add", "65534", bb, "id")
    assert r.stdout.strip() == "uid=33(www) gid=0(root) groups=65534(nogroup)"
    # PATH comes from the image; HOSTNAME defaults to the short id.
    r = skiffd.docker("run", "--rm", bb, "sh", "-c", "echo $PATH; cat /etc/hostname; grep -c localhost /etc/hosts")
    path, hostname, n = r.stdout.split()
    assert path.startswith("/usr/local/sbin") and len(hostname) == 12 and int(n) >= 1


def test_run_rm_removes_container(skiffd: Skiffd, bb: str) -> None:
    events = subprocess.Popen(["docker", "events", "--filter", "container=gone", "--format", "{{.ID}} {{.Action}}"],
                              env=skiffd.env(), stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.3)
        r = skiffd.docker("run", "--rm", "--name", "gone", bb, "true")
        assert r.returncode == 0
        assert "gone" not in skiffd.docker("ps", "-a", "--format", "{{.Names}}").stdout
        assert events.stdout is not None
        lines = []
        while not lines or not lines[-1].endswith("destroy"):
            lines.append(events.stdout.readline().strip())
        cid = lines[0].split()[0]
    finally:
        events.kill()
        events.wait()
    # The cgroup of the container is gone (the shared /skiff parent may hold other engines' containers).
    assert not skiffd.cgroup_leftovers(cid) and not conmon_pids(cid)


def test_detached_ps_logs_stop_rm(skiffd: Skiffd, bb: str) -> None:
    cid = skiffd.docker("run", "-d", "--name", "web", "-l", "app=web", bb, "sh", "-c",
                        "trap 'echo got-term; exit 0' TERM; echo started; while true; do sleep 0.1; done").stdout.strip()
    assert len(cid) == 64
    wait_for(lambda: "started" in skiffd.docker("logs", "web").stdout, what="log line")
    ps = skiffd.docker("ps", "--format", "{{.ID}} {{.Names}} {{.Status}} {{.Labels}}").stdout
    assert f"{cid[:12]} web Up" in ps and "app=web" in ps
    assert skiffd.docker("ps", "-q", "--filter", "label=app=web").stdout.split() == [cid[:12]]
    assert skiffd.docker("ps", "-q", "--filter", "name=nomatch").stdout.strip() == ""
    assert skiffd.docker("ps", "-q", "--filter", "status=running", "--filter", f"id={cid[:8]}").stdout.split() == [cid[:12]]
    assert skiffd.cgroup_leftovers(cid)  # under the daemon's --cgroup-parent (so the checks below can fail)
    t = time.monotonic()
    assert skiffd.docker("stop", "web").stdout.strip() == "web"
    assert time.monotonic() - t < 5  # the trap ran; no 10 s timeout
    st = inspect(skiffd, "web")["State"]
    assert st["Status"] == "exited" and st["ExitCode"] == 0 and not st["Running"]
    assert "got-term" in skiffd.docker("logs", "web").stdout
    assert skiffd.docker("ps", "-q").stdout.strip() == ""
    assert cid[:12] in skiffd.docker("ps", "-aq", "--filter", "exited=0").stdout
    # stop on a stopped container is a no-op for the CLI (304)
    skiffd.docker("stop", "web")
    skiffd.docker("rm", "web")
    assert skiffd.docker("ps", "-aq").stdout.strip() == ""
    assert not skiffd.cgroup_leftovers(cid) and not conmon_pids(cid)


def test_stop_timeout_kills_and_kill_signal(skiffd: Skiffd, bb: str) -> None:
    skiffd.docker("run", "-d", "--name", "sleeper", bb, "sleep", "1000")
    t = time.monotonic()
    skiffd.docker("stop", "-t", "1", "sleeper")
    assert 0.9 < time.monotonic() - t < 6
    assert inspect(skiffd, "sleeper")["State"]["ExitCode"] == 137
    skiffd.docker("start", "sleeper")
    assert inspect(skiffd, "sleeper")["State"]["Running"]
    skiffd.docker("kill", "sleeper")
    wait_for(lambda: not inspect(skiffd, "sleeper")["State"]["Running"], what="killed")
    assert inspect(skiffd, "sleeper")["State"]["ExitCode"] == 137
    r = skiffd.docker("kill", "sleeper", check=False)
    assert r.returncode != 0 and "is not running" in r.stderr
    # A signal with a handler: the container decides.
    skiffd.docker("run", "-d", "--name", "hup", bb, "sh", "-c", "trap 'echo hup; exit 7' HUP; while true; do sleep 0.1; done")
    time.sleep(0.3)
    skiffd.docker("kill", "-s", "HUP", "hup")
    assert skiffd.docker("wait", "hup").stdout.strip() == "7"
    assert "hup" in skiffd.docker("logs", "hup").stdout


def test_rm_force_running_and_name_conflict(skiffd: Skiffd, bb: str) -> None:
    cid = skiffd.docker("run", "-d", "--name", "busy", bb, "sleep", "1000").stdout.strip()
    r = skiffd.docker("rm", "busy", check=False)
    assert r.returncode != 0 and "running" in r.stderr
    r = skiffd.docker("run", "-d", "--name", "busy", bb, "true", check=False)
    assert r.returncode == 125 and "is already in use" in r.stderr
    skiffd.docker("rm", "-f", "busy")
    assert not conmon_pids(cid) and not skiffd.cgroup_leftovers(cid)
    r = skiffd.docker("rm", "busy", check=False)
    assert "No such container" in r.stderr


def test_inspect_shape(skiffd: Skiffd, bb: str) -> None:
    skiffd.docker("create", "--name", "shape", "-e", "A=1", "-l", "k=v", "--restart", "on-failure:3", bb, "echo", "x")
    j = inspect(skiffd, "shape")
    assert j["Name"] == "/shape" and len(j["Id"]) == 64 and j["Image"].startswith("sha256:")
    assert j["Path"] == "echo" and j["Args"] == ["x"]
    assert j["State"]["Status"] == "created" and j["State"]["Pid"] == 0
    assert "A=1" in j["Config"]["Env"] and any(e.startswith("PATH=") for e in j["Config"]["Env"])
    assert j["Config"]["Labels"] == {"k": "v"} and j["Config"]["Image"] == bb
    hc = j["HostConfig"]
    assert hc["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert hc["LogConfig"]["Type"] == "json-file" and hc["NetworkMode"] == "bridge"
    assert j["Driver"] == "overlay2" and j["GraphDriver"]["Name"] == "overlay2"
    assert j["Created"].endswith("Z")
    skiffd.docker("start", "-a", "shape")
    j = inspect(skiffd, "shape")
    assert j["State"]["Status"] == "exited" and j["State"]["StartedAt"] < j["State"]["FinishedAt"]
    # Fall-through order of `docker inspect`: a missing name is "No such object".
    r = skiffd.docker("inspect", "nothing-here", check=False)
    assert r.returncode == 1 and "No such object: nothing-here" in r.stderr


def test_top_stats_pause_rename_wait(skiffd: Skiffd, bb: str) -> None:
    skiffd.docker("run", "-d", "--name", "w1", bb, "sh", "-c", "sleep 1000 & wait")
    top = skiffd.docker("top", "w1").stdout
    assert "sleep 1000" in top and "PID" in top.splitlines()[0]
    line = skiffd.docker("stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}} {{.PIDs}}", "w1").stdout.strip()
    name, rest = line.split(" ", 1)
    assert name == "w1" and rest.endswith(" 2") and "/" in rest
    dpy = skiffd.client()
    s = dpy.containers.get("w1").stats(stream=False)
    assert s["precpu_stats"]["cpu_usage"]["total_usage"] > 0 and s["memory_stats"]["usage"] > 0
    skiffd.docker("pause", "w1")
    assert inspect(skiffd, "w1")["State"]["Status"] == "paused"
    assert "(Paused)" in skiffd.docker("ps", "--format", "{{.Status}}").stdout
    skiffd.docker("unpause", "w1")
    assert inspect(skiffd, "w1")["State"]["Status"] == "running"
    skiffd.docker("rename", "w1", "w2")
    assert inspect(skiffd, "w2")["Name"] == "/w2"
    waiter = subprocess.Popen(["docker", "wait", "w2"], env=skiffd.env(), stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    assert waiter.poll() is None
    skiffd.docker("kill", "w2")
    assert waiter.communicate(timeout=20)[0].strip() == "137"


def test_logs_follow_tail_timestamps(skiffd: Skiffd, bb: str) -> None:
    skiffd.docker("run", "-d", "--name", "talker", bb, "sh", "-c",
                  "for i in 1 2 3; do echo line$i; done; echo err1 >&2; sleep 1; echo late; sleep 1000")
    wait_for(lambda: "err1" in skiffd.docker("logs", "talker").stderr, what="first lines")
    r = skiffd.docker("logs", "--tail", "2", "talker")
    assert r.stdout == "line3\n" and r.stderr == "err1\n"
    r = skiffd.docker("logs", "-t", "talker")
    first = r.stdout.splitlines()[0]
    ts, text = first.split(" ", 1)
    assert text == "line1" and ts.endswith("Z") and "T" in ts
    f = subprocess.Popen(["docker", "logs", "-f", "--tail", "0", "talker"], env=skiffd.env(), stdout=subprocess.PIPE,
                         text=True)
    try:
        assert f.stdout is not None
        assert f.stdout.readline() == "late\n"
        skiffd.docker("kill", "talker")
        assert f.wait(20) == 0  # follow ends when the container does
    finally:
        if f.poll() is None:
            f.kill()
    # since/until as the CLI sends them (Unix seconds with nanoseconds), around the "late" line.
    late_ts = skiffd.docker("logs", "-t", "talker").stdout.splitlines()[3].split()[0]
    from skiffbox.guest.util.timefmt import parse_time
    t_late = parse_time(late_ts)
    assert t_late is not None
    r = skiffd.docker("logs", "--since", "1h", "--until", f"{t_late - 0.001:.9f}", "talker")
    assert r.stdout == "line1\nline2\nline3\n"
    r = skiffd.docker("logs", "--since", f"{t_late - 0.001:.9f}", "talker")
    assert r.stdout == "late\n"


def test_memory_oom_and_pids_limit(skiffd: Skiffd, bb: str) -> None:
    r = skiffd.docker("run", "--name", "oom", "--memory", "32m", bb, "dd", "if=/dev/zero", "of=/dev/null", "bs=100M",
                      "count=1", check=False)
    assert r.returncode == 137
    j = inspect(skiffd, "oom")
    assert j["State"]["OOMKilled"] is True and j["HostConfig"]["Memory"] == 32 * 1024 * 1024
    r = skiffd.docker("run", "--rm", "--pids-limit", "5", bb, "sh", "-c",
                      "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max; "
                      "for i in 1 2 3 4 5 6 7 8; do sleep 5 & done 2>&1; wait", check=False)
    assert r.stdout.splitlines()[0] == "5"
    assert "can't fork" in r.stdout + r.stderr or "Resource temporarily unavailable" in r.stdout + r.stderr
    r = skiffd.docker("run", "--rm", "--cpus", "0.5", "--cpu-shares", "512", bb, "sh", "-c",
                      "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.shares 2>/dev/null || cat /sys/fs/cgroup/cpu.max")
    assert r.stdout.split()[:2] in (["50000", "512"], ["50000", "100000"])


def test_run_it_on_a_pty(skiffd: Skiffd, bb: str) -> None:
    s = PtySession(skiffd, ["run", "-it", "--name", "tty1", bb, "sh"], rows=33, cols=101)
    try:
        s.read_until(b"# ")
        s.send(b"echo $((6*7)); stty size; tty\r")
        out = s.read_until(b"/dev/pts/0")
        assert b"42" in out and b"33 101" in out
        s.send(b"exit 4\r")
        assert s.wait() == 4
    finally:
        s.close()
    assert inspect(skiffd, "tty1")["Config"]["Tty"] is True


def test_exec_it_on_a_pty(skiffd: Skiffd, bb: str) -> None:
    skiffd.docker("run", "-d", "--name", "host1", bb, "sleep", "1000")
    s = PtySession(skiffd, ["exec", "-it", "host1", "sh"], rows=25, cols=90)
    try:
        s.read_until(b"# ")
        s.send(b"stty size; echo pid1=$(cat /proc/1/comm)\r")
        out = s.read_until(b"pid1=sleep")
        assert b"25 90" in out
        s.send(b"exit 9\r")
        assert s.wait() == 9
    finally:
        s.close()


def test_run_i_stdin(skiffd: Skiffd, bb: str) -> None:
    r = skiffd.docker("run", "-i", "--rm", bb, "sh", "-c", "wc -l; echo done", input="a\nb\nc\n")
    assert r.stdout.split() == ["3", "done"]


def test_restart_policy_on_failure(skiffd: Skiffd, bb: str) -> None:
    skiffd.docker("run", "-d", "--name", "flaky", "--restart", "on-failure:2", bb, "sh", "-c", "echo run; exit 1")
    wait_for(lambda: inspect(skiffd, "flaky")["RestartCount"] == 2 and inspect(skiffd, "flaky")["State"]["Status"] == "exited",
             timeout=30, what="two restarts")
    assert skiffd.docker("logs", "flaky").stdout.count("run") == 3
    skiffd.docker("run", "-d", "--name", "always", "--restart", "always", bb, "sh", "-c", "sleep 0.2; exit 0")
    wait_for(lambda: inspect(skiffd, "always")["RestartCount"] >= 1, timeout=30, what="restart")
    skiffd.docker("stop", "always")
    time.sleep(0.5)
    assert inspect(skiffd, "always")["State"]["Status"] == "exited"


def test_healthcheck(skiffd: Skiffd, bb: str) -> None:
    skiffd.docker("run", "-d", "--name", "doc", "--health-cmd", "test -e /tmp/ok", "--health-interval", "300ms",
                  "--health-retries", "2", bb, "sleep", "1000")
    assert inspect(skiffd, "doc")["State"]["Health"]["Status"] == "starting"
    wait_for(lambda: inspect(skiffd, "doc")["State"]["Health"]["Status"] == "unhealthy", timeout=20, what="unhealthy")
    skiffd.docker("exec", "doc", "touch", "/tmp/ok")
    wait_for(lambda: inspect(skiffd, "doc")["State"]["Health"]["Status"] == "healthy", timeout=20, what="healthy")
    h = inspect(skiffd, "doc")["State"]["Health"]
    assert h["FailingStreak"] == 0 and h["Log"][-1]["ExitCode"] == 0
    assert "(healthy)" in skiffd.docker("ps", "--format", "{{.Status}}").stdout


def test_events_for_a_run(skiffd: Skiffd, bb: str) -> None:
    since = str(int(time.time()) - 1)
    skiffd.docker("run", "--rm", "--name", "ev", "-l", "team=a", bb, "true")
    out = skiffd.docker("events", "--since", since, "--until", str(int(time.time()) + 1), "--filter", "container=ev",
                        "--format", "{{.Action}} {{.Actor.Attributes.team}} {{.Actor.Attributes.exitCode}}").stdout
    actions = [l.split()[0] for l in out.splitlines()]
    assert actions[:1] == ["create"] and "start" in actions and "die" in actions and actions[-1] == "destroy"
    assert "die a 0" in out


def test_init_readonly_caps_privileged(skiffd: Skiffd, bb: str) -> None:
    r = skiffd.docker("run", "--rm", "--init", bb, "cat", "/proc/1/cmdline")
    assert r.stdout.startswith("/sbin/docker-init")
    r = skiffd.docker("run", "--rm", "--read-only", bb, "touch", "/x", check=False)
    assert r.returncode != 0 and "Read-only file system" in r.stderr
    r = skiffd.docker("run", "--rm", "--read-only", "--tmpfs", "/scratch", bb, "sh", "-c", "touch /scratch/x && echo ok")
    assert r.stdout.strip() == "ok"
    caps = lambda *a: int(skiffd.docker("run", "--rm", *a, bb, "sh", "-c", "grep CapEff /proc/self/status").stdout.split()[1], 16)  # noqa: E731
    default = caps()
    assert default == 0xA80425FB  # Docker's 14 default capabilities
    assert caps("--cap-drop", "CHOWN") == default & ~1
    assert caps("--cap-add", "NET_ADMIN") == default | (1 << 12)
    assert caps("--privileged") & (1 << 21)  # CAP_SYS_ADMIN
    r = skiffd.docker("run", "--rm", "--privileged", bb, "sh", "-c", "mount -t tmpfs none /tmp && echo mounted")
    assert r.stdout.strip() == "mounted"


def test_binds_and_sysctls_ulimits(skiffd: Skiffd, bb: str, tmp_path) -> None:
    (tmp_path / "in.txt").write_text("from host\n")
    r = skiffd.docker("run", "--rm", "-v", f"{tmp_path}:/data", bb, "sh", "-c", "cat /data/in.txt; echo out > /data/out.txt")
    assert r.stdout == "from host\n" and (tmp_path / "out.txt").read_text() == "out\n"
    r = skiffd.docker("run", "--rm", "-v", f"{tmp_path}:/data:ro", bb, "touch", "/data/x", check=False)
    assert r.returncode != 0
    r = skiffd.docker("run", "--rm", "--sysctl", "net.ipv4.ip_forward=1", "--ulimit", "nofile=512:1024",
                      "--shm-size", "16m", bb, "sh", "-c", "cat /proc/sys/net/ipv4/ip_forward; ulimit -n; df -k /dev/shm | tail -1")
    lines = r.stdout.splitlines()
    assert lines[0] == "1" and lines[1] == "512" and lines[2].split()[1] == "16384"
    r = skiffd.docker("run", "--rm", "--device", "/dev/null:/dev/mynull", "--security-opt", "no-new-privileges",
                      bb, "sh", "-c", "echo x > /dev/mynull && ls -l /dev/mynull; grep NoNewPrivs /proc/self/status")
    assert r.stdout.startswith("crw") and r.stdout.split()[4] == "1," and r.stdout.split()[-1] == "1"


def test_attach_and_detach_keys_on_a_pty(skiffd: Skiffd, bb: str) -> None:
    skiffd.docker("run", "-dit", "--name", "att", bb, "sh")
    s = PtySession(skiffd, ["attach", "att"])
    try:
        s.send(b"echo attached-$((1+1))\r")
        s.read_until(b"attached-2")
        s.send(b"\x10\x11")  # ctrl-p ctrl-q: leave it running
        s.wait()  # the CLI reports the detach as its error "read escape sequence" (exit 1), as with dockerd
        assert b"read escape sequence" in s.buf, s.buf
    finally:
        s.close()
    assert inspect(skiffd, "att")["State"]["Running"]
    # start -a on a stopped container replays nothing and streams the new run
    skiffd.docker("create", "--name", "sa", bb, "sh", "-c", "echo from-start-a; exit 6")
    r = skiffd.docker("start", "-a", "sa", check=False)
    assert r.returncode == 6 and r.stdout == "from-start-a\n"
    r = skiffd.docker("start", "-a", "sa", check=False)
    assert r.returncode == 6 and r.stdout == "from-start-a\n"


def test_update_and_port(skiffd: Skiffd, bb: str) -> None:
    skiffd.docker("run", "-d", "--name", "upd", "-m", "64m", bb, "sleep", "1000")
    skiffd.docker("update", "--memory", "96m", "--memory-swap", "192m", "--pids-limit", "50", "--restart", "on-failure:2", "upd")
    j = inspect(skiffd, "upd")
    assert j["HostConfig"]["Memory"] == 96 * 1024 * 1024 and j["HostConfig"]["PidsLimit"] == 50
    assert j["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
    r = skiffd.docker("exec", "upd", "sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max "
                      "2>/dev/null || cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max")
    assert r.stdout.split() == [str(96 * 1024 * 1024), "50"]
    assert skiffd.docker("port", "upd").stdout.strip() == ""


def test_ps_filters_size_limit(skiffd: Skiffd, bb: str, tmp_path) -> None:
    a = skiffd.docker("run", "-d", "--name", "pa", "-l", "tier=a", bb, "sh", "-c", "echo 12345 > /f; sleep 1000").stdout.strip()[:12]
    b = skiffd.docker("run", "--name", "pb", "-l", "tier=b", "--network", "none", bb, "sh", "-c", "exit 2", check=False)
    b_id = skiffd.docker("ps", "-aq", "--filter", "name=^pb$").stdout.strip()
    c = skiffd.docker("create", "--name", "pc", "-v", f"{tmp_path}:/data", bb, "true").stdout.strip()[:12]
    q = lambda *f: skiffd.docker("ps", "-aq", *f).stdout.split()  # noqa: E731
    assert b.returncode == 2
    assert q("--filter", "status=created") == [c]
    assert q("--filter", "exited=2") == [b_id]
    assert q("--filter", "label=tier") == [b_id, a]
    assert q("--filter", "before=pc") == [b_id, a] and q("--filter", "since=pa") == [c, b_id]
    assert q("--filter", f"ancestor={bb}") == [c, b_id, a]
    assert q("--filter", "network=none") == [b_id]
    assert q("--filter", "volume=/data") == [c]
    assert skiffd.docker("ps", "-q", "-n", "1").stdout.split() == [c]  # -n implies -a, newest first
    assert skiffd.docker("ps", "-q").stdout.split() == [a]
    r = skiffd.docker("ps", "--filter", "bogus=1", check=False)
    assert r.returncode != 0 and "invalid filter" in r.stderr
    sizes = skiffd.docker("ps", "-s", "--filter", "name=pa", "--format", "{{.Size}}").stdout
    assert sizes.startswith("6B")  # the 6-byte /f, plus the image's size in "(virtual …)"
    # stats streaming: the second document's precpu_stats is the first one's cpu_stats
    it = skiffd.client().api.stats("pa", stream=True, decode=True)
    first, second = next(it), next(it)
    assert second["precpu_stats"]["cpu_usage"]["total_usage"] == first["cpu_stats"]["cpu_usage"]["total_usage"]
    assert second["preread"] == first["read"]


def test_shared_namespaces(skiffd: Skiffd, bb: str) -> None:
    skiffd.docker("run", "-d", "--name", "ns1", bb, "sleep", "1000")
    own = skiffd.docker("exec", "ns1", "sh", "-c", "readlink /proc/self/ns/net; readlink /proc/self/ns/pid").stdout.split()
    r = skiffd.docker("run", "--rm", "--network", "container:ns1", "--pid", "container:ns1", bb, "sh", "-c",
                      "readlink /proc/self/ns/net; readlink /proc/self/ns/pid; ps | grep -c '[s]leep 1000'")
    lines = r.stdout.split()
    assert lines[:2] == own and lines[2] == "1"
    assert skiffd.proc is not None
    r = skiffd.docker("run", "--rm", "--pid", "host", "--uts", "host", bb, "sh", "-c",
                      f"test -d /proc/{skiffd.proc.pid} && echo sees-host; hostname")
    assert r.stdout.split() == ["sees-host", os.uname().nodename]


def test_network_failure_at_start_is_undone(skiffd: Skiffd, bb: str) -> None:
    """netavark runs alongside the rest of the start; when it fails (here the kernel refuses a multicast MAC for
    the veth) the start fails with its error and everything is undone: no netns file, no veth, no rootfs mount."""
    def links() -> list[str]:
        return [line.split(":")[1].strip() for line in skiffd.ns.run(["ip", "-o", "link"]).stdout.splitlines()]

    def endpoints() -> dict:
        return json.loads(skiffd.docker("network", "inspect", "bridge").stdout)[0]["Containers"]

    skiffd.docker("run", "--rm", bb, "true")  # the bridge (and the network service's anchor on it) exist now
    wait_for(lambda: endpoints() == {}, what="the last container's endpoint gone")  # its teardown is async
    before = links()
    r = skiffd.docker("run", "--name", "badmac", "--mac-address", "01:02:03:04:05:06", bb, "true", check=False)
    assert r.returncode == 125 and "netavark setup" in r.stderr and "Cannot assign requested address" in r.stderr
    c = inspect(skiffd, "badmac")
    assert (c["State"]["Status"], c["State"]["ExitCode"]) == ("created", 128) and "netavark" in c["State"]["Error"]
    assert c["NetworkSettings"]["SandboxKey"] == "" and c["NetworkSettings"]["Networks"]["bridge"]["IPAddress"] == ""
    netns_dir = skiffd.exec_root / "netns"
    assert not netns_dir.exists() or not list(netns_dir.iterdir())
    # nothing new: the previous container's veth may still be going (its teardown is async), so compare as sets
    assert set(links()) <= set(before) and endpoints() == {}
    assert not [m for m in open("/proc/mounts") if f"{c['Id']}/rootfs" in m]
    assert skiffd.docker("run", "--rm", bb, "echo", "ok").stdout == "ok\n"
