"""Container commands: skiff and the real docker CLI against one skiffd, compared output for output."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.client.compare import SKIFF, Pair, normalize


@pytest.fixture(scope="module")
def bb(pair: Pair) -> str:
    assert pair.docker("pull", "-q", pair.images.busybox).returncode == 0
    return pair.images.busybox


def test_run_exit_codes_and_streams(pair: Pair, bb: str) -> None:
    for cmd in (["echo", "hi"], ["sh", "-c", "echo out; echo err >&2; exit 3"], ["false"],
                ["sh", "-c", "sh -c 'kill -9 $$'; exit $?"], ["sh", "-c", "printf 'no newline'"]):
        d, s = pair.assert_same("run", "--rm", bb, *cmd)
    assert s.returncode == 0 and s.stdout == "no newline"
    d, s = pair.assert_same("run", "--rm", bb, "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (s.returncode, s.stdout, s.stderr) == (3, "out\n", "err\n")
    d, s = pair.assert_same("run", "--rm", bb, "sh", "-c", "sh -c 'kill -9 $$'; exit $?")
    assert s.returncode == 137


def test_run_options_reach_the_container(pair: Pair, bb: str) -> None:
    script = "id -u; id -g; pwd; echo $A $B; hostname; cat /sys/fs/cgroup/memory/memory.limit_in_bytes " \
             "2>/dev/null || cat /sys/fs/cgroup/memory.max"
    args = ["run", "--rm", "-e", "A=1", "-e", "B", "-w", "/tmp", "-u", "33:33", "-h", "box", "-m", "64m", bb,
            "sh", "-c", script]
    d, s = pair.assert_same(*args, env={"B": "from-env"})
    assert s.stdout.splitlines() == ["33", "33", "/tmp", "1 from-env", "box", str(64 * 1024 * 1024)]
    # stdin with -i, EOF ends the container's cat
    d, s = pair.assert_same("run", "--rm", "-i", bb, "sh", "-c", "cat; echo done", input="line1\nline2\n")
    assert s.stdout == "line1\nline2\ndone\n"
    # without -i stdin is not attached
    d, s = pair.assert_same("run", "--rm", bb, "sh", "-c", "cat; echo done", input="ignored\n")
    assert s.stdout == "done\n"


def test_run_bind_mount_and_limits_in_inspect(pair: Pair, bb: str, tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("from host\n")
    d, s = pair.assert_same("run", "--rm", "-v", f"{tmp_path}:/data:ro", bb, "cat", "/data/f.txt")
    assert s.stdout == "from host\n"
    d = pair.docker("create", "--name", "lim-d", "--cpus", "1.5", "-m", "32m", "--pids-limit", "50", "-p",
                    "8080:80", "-p", "127.0.0.1::53/udp", "-l", "a=b", "--restart", "on-failure:3", "--init",
                    "--cap-add", "NET_ADMIN", "--read-only", "--tmpfs", "/run:size=1m", bb, "true")
    s = pair.skiff("create", "--name", "lim-s", "--cpus", "1.5", "-m", "32m", "--pids-limit", "50", "-p",
                   "8080:80", "-p", "127.0.0.1::53/udp", "-l", "a=b", "--restart", "on-failure:3", "--init",
                   "--cap-add", "NET_ADMIN", "--read-only", "--tmpfs", "/run:size=1m", bb, "true")
    assert d.returncode == s.returncode == 0, (d, s)
    assert len(s.stdout.strip()) == 64
    di, si = pair.docker("inspect", "lim-d").json()[0], pair.docker("inspect", "lim-s").json()[0]
    for key in ("NanoCpus", "Memory", "PidsLimit", "PortBindings", "RestartPolicy", "Init", "CapAdd", "ReadonlyRootfs",
                "Tmpfs", "NetworkMode", "AutoRemove", "LogConfig"):
        assert di["HostConfig"][key] == si["HostConfig"][key], key
    for key in ("Labels", "Cmd", "Image", "ExposedPorts", "AttachStdout", "AttachStderr", "OpenStdin", "Tty"):
        assert di["Config"][key] == si["Config"][key], key
    pair.docker("rm", "lim-d", "lim-s")


def test_run_detached_and_ps_like_docker(pair: Pair, bb: str) -> None:
    p = pair
    d = p.docker("run", "-d", "--name", "web-d", "-p", "8081:80", "-l", "app=web", bb, "sleep", "300")
    s = p.skiff("run", "-d", "--name", "web-s", "-p", "8082:80", "-l", "app=web", bb, "sleep", "300")
    assert d.returncode == s.returncode == 0
    assert len(s.stdout.strip()) == 64 and s.stderr == ""
    p.docker("create", "--name", "created-1", bb, "true")
    p.docker("run", "--name", "exited-1", bb, "sh", "-c", "exit 2")
    for args in (["ps"], ["ps", "-a"], ["ps", "-q"], ["ps", "-aq", "--no-trunc"], ["ps", "-s"], ["ps", "-n", "2"],
                 ["ps", "-l"], ["ps", "--format", "{{json .}}"], ["ps", "-a", "--format", "{{.Names}}\t{{.Status}}"],
                 ["ps", "--format", "table {{.ID}}\t{{.Label \"app\"}}\t{{.Ports}}"],
                 ["ps", "-a", "--filter", "status=exited"], ["ps", "-a", "-f", "name=web-"], ["ps", "-f", "label=app"],
                 ["ps", "-a", "--format", "table {{.Names}}\t{{.State}}\t{{.Command}}\t{{.Networks}}"],
                 ["container", "ls", "--format", "raw"], ["ps", "--format", "{{.Nope}}"]):
        p.assert_same(*args, stderr=args[-1] != "{{.Nope}}")  # Go's template errors name Go types
    d, s = p.both("ps", "--format", "{{.Nope}}")
    assert s.returncode == d.returncode and "can't evaluate field Nope" in s.stderr


def test_logs_like_docker(pair: Pair, bb: str) -> None:
    p = pair
    p.docker("run", "--name", "logger", bb, "sh", "-c", "for i in 1 2 3 4 5; do echo out$i; echo err$i >&2; done")
    for args in (["logs", "logger"], ["logs", "--tail", "2", "logger"], ["logs", "-t", "logger"],
                 ["logs", "-n", "1", "-t", "logger"], ["logs", "nosuch"]):
        d, s = p.assert_same(*args, times=False)
    d, s = p.both("logs", "logger")
    assert s.stdout == "".join(f"out{i}\n" for i in range(1, 6)) and s.stderr == "".join(f"err{i}\n" for i in range(1, 6))
    # TTY containers log raw (no frames), stderr folded into stdout
    p.docker("run", "-t", "--name", "ttylogger", bb, "sh", "-c", "echo tty-out; echo tty-err >&2")
    p.assert_same("logs", "ttylogger", times=False)


def test_logs_follow_streams_until_exit(pair: Pair, bb: str) -> None:
    p = pair
    p.docker("run", "-d", "--name", "follow", bb, "sh", "-c", "echo first; sleep 2; echo second; sleep 1")
    proc = subprocess.Popen([SKIFF, "logs", "-f", "follow"], env=p.env, stdout=subprocess.PIPE, text=True)
    first = proc.stdout.readline()
    assert first == "first\n"  # arrives while the container is still running
    assert proc.poll() is None
    rest, _ = proc.communicate(timeout=30)
    assert rest == "second\n" and proc.returncode == 0


def test_exec_like_docker(pair: Pair, bb: str) -> None:
    p = pair
    p.docker("run", "-d", "--name", "ex", bb, "sleep", "300")
    for args in (["exec", "ex", "echo", "hi"], ["exec", "ex", "sh", "-c", "echo o; echo e >&2; exit 5"],
                 ["exec", "-e", "X=1", "-w", "/etc", "-u", "33", "ex", "sh", "-c", "echo $X $(pwd) $(id -u)"],
                 ["exec", "ex", "nosuchcmd"], ["exec", "nosuch", "true"], ["exec", "ex"]):
        p.assert_same(*args)
    d, s = p.assert_same("exec", "-i", "ex", "sh", "-c", "tr a-z A-Z", input="hello\n")
    assert s.stdout == "HELLO\n"
    s = p.skiff("exec", "-d", "ex", "touch", "/tmp/detached")
    assert s.returncode == 0 and s.stdout == ""
    for _ in range(50):
        if p.docker("exec", "ex", "test", "-f", "/tmp/detached").returncode == 0:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("exec -d did not run")


def test_lifecycle_like_docker(pair: Pair, bb: str) -> None:
    p = pair
    for n in ("lc-d", "lc-s"):
        p.docker("create", "--name", n, bb, "sleep", "300")
    for verb in (["start"], ["restart", "-t", "1"], ["kill", "-s", "TERM"], ["start"], ["stop", "-t", "1"], ["rm"]):
        d, s = p.docker(*verb, "lc-d"), p.skiff(*verb, "lc-s")
        assert (d.returncode, d.stdout.replace("lc-d", "X"), d.stderr) == (s.returncode, s.stdout.replace("lc-s", "X"),
                                                                            s.stderr), (d, s)
    for args in (["start", "nosuch"], ["stop", "nosuch"], ["kill", "nosuch"], ["rm", "nosuch"], ["rm", "-f", "nosuch"],
                 ["restart", "nosuch"], ["wait", "nosuch"], ["rm"], ["start"]):
        p.assert_same(*args)
    # rm of a running container without -f: 409 with the engine's message, exit 1
    p.docker("run", "-d", "--name", "busy", bb, "sleep", "300")
    p.assert_same("rm", "busy")
    p.docker("run", "--name", "waiter", bb, "sh", "-c", "exit 7")
    p.assert_same("wait", "waiter")
    d, s = p.both("wait", "waiter")
    assert s.stdout == "7\n"


def test_run_rm_and_start_attach(pair: Pair, bb: str) -> None:
    p = pair
    s = p.skiff("run", "--rm", "--name", "gone", bb, "echo", "bye")
    assert s.returncode == 0 and s.stdout == "bye\n"
    assert p.docker("ps", "-aq", "-f", "name=^gone$").stdout == ""  # removed before skiff returned
    p.docker("create", "--name", "sa-d", bb, "sh", "-c", "echo started; exit 4")
    p.docker("create", "--name", "sa-s", bb, "sh", "-c", "echo started; exit 4")
    d, s = p.docker("start", "-a", "sa-d"), p.skiff("start", "-a", "sa-s")
    assert (d.returncode, d.stdout) == (s.returncode, s.stdout) == (4, "started\n")


def _by_layer(text: str) -> tuple[list[str], dict[str, list[str]]]:
    """Progress output split into the lines without a layer ID (in order) and each layer's lines (in order)."""
    import re

    other: list[str] = []
    layers: dict[str, list[str]] = {}
    for line in text.splitlines():
        m = re.match(r"^([0-9a-f]{12}): (.*)$", line)
        if m:
            layers.setdefault(m.group(1), []).append(m.group(2))
        else:
            other.append(line)
    return other, layers


def test_run_pulls_missing_image_like_docker(fresh_pair: Pair) -> None:
    p = fresh_pair
    ref = p.images.multilayer
    s = p.skiff("run", "--rm", ref, "cat", "/etc/skiff-layer2")
    assert p.docker("rmi", ref).returncode == 0
    d = p.docker("run", "--rm", ref, "cat", "/etc/skiff-layer2")
    assert (s.returncode, s.stdout) == (d.returncode, d.stdout) == (0, "second layer\n")
    # Layers download side by side, so how their progress lines interleave depends on timing, for docker as
    # for skiff: compare each layer's own sequence and the other lines in order, not the interleaving.
    assert _by_layer(normalize(s.stderr)) == _by_layer(normalize(d.stderr))
    assert s.stderr.startswith(f"Unable to find image '{ref}' locally\n")
    # --pull=never on a missing image, and a missing repository: 125 with docker's text
    assert p.docker("rmi", ref).returncode == 0
    p.assert_same("run", "--rm", "--pull", "never", ref, "true")
    p.assert_same("run", "--rm", f"{p.images.registry}/test/nosuch:1", "true")


def test_run_errors_like_docker(pair: Pair, bb: str) -> None:
    p = pair
    d, s = p.assert_same("run", "--rm", bb, "nosuchcmd")
    assert s.returncode == 127
    p.assert_same("run", "--rm", bb, "/nosuch/binary")  # the status follows the engine's wording, as in docker
    p.assert_same("run", bb, "/etc")  # a directory (126 if the engine says "permission denied", as dockerd does)
    p.assert_same("run", "--foo", bb)
    p.assert_same("run")
    p.assert_same("run", "-a", "bogus", bb, "true")
    p.docker("create", "--name", "taken", bb, "true")
    p.assert_same("run", "--name", "taken", bb, "true")


def test_inspect_like_docker(pair: Pair, bb: str) -> None:
    p = pair
    p.docker("run", "--name", "insp", "-l", "x=<&>", bb, "true")
    for args in (["inspect", "insp"], ["container", "inspect", "insp"], ["inspect", "insp", bb],
                 ["inspect", "-f", "{{.State.Status}} {{.State.ExitCode}} {{json .Config.Labels}}", "insp"],
                 ["inspect", "--format", "json", "insp"], ["inspect", "nosuch"], ["inspect", "insp", "nosuch"],
                 ["container", "inspect", "nosuch"], ["inspect", "--type", "container", bb],
                 ["inspect", "-s", "-f", "{{.SizeRw}}", "insp"]):
        p.assert_same(*args, times=False)


def test_port_and_rename_like_docker(pair: Pair, bb: str) -> None:
    p = pair
    p.docker("run", "-d", "--name", "ported", "-p", "18080:80", "-p", "127.0.0.1:18053:53/udp", bb, "sleep", "300")
    for args in (["port", "ported"], ["port", "ported", "80"], ["port", "ported", "53/udp"], ["port", "ported", "81"]):
        p.assert_same(*args)
    p.docker("create", "--name", "ren-a", bb, "true")
    s = p.skiff("rename", "ren-a", "ren-b")
    assert s.returncode == 0 and p.docker("inspect", "-f", "{{.Name}}", "ren-b").stdout == "/ren-b\n"
    p.assert_same("rename", "nosuch", "x")


def test_cp_like_docker(pair: Pair, bb: str, tmp_path: Path) -> None:
    p = pair
    p.docker("run", "-d", "--name", "cpx", bb, "sh", "-c", "mkdir -p /d/sub && echo a > /d/a && echo b > /d/sub/b && "
             "ln -s a /d/link && sleep 300")
    time.sleep(0.5)
    out_d, out_s = tmp_path / "d", tmp_path / "s"
    out_d.mkdir()
    out_s.mkdir()
    for src, dst in (("cpx:/d", "copy"), ("cpx:/d/.", "contents"), ("cpx:/d/a", "file-a"), ("cpx:/etc/passwd", ".")):
        d = subprocess.run(["docker", "cp", src, dst], cwd=out_d, env=p.env, capture_output=True, text=True)
        s = subprocess.run([SKIFF, "cp", src, dst], cwd=out_s, env=p.env, capture_output=True, text=True)
        assert (d.returncode, d.stdout, d.stderr) == (s.returncode, s.stdout, s.stderr), (src, d, s)
    assert subprocess.run(["diff", "-r", "--no-dereference", str(out_d), str(out_s)]).returncode == 0
    assert (out_s / "copy" / "sub" / "b").read_text() == "b\n" and os.readlink(out_s / "copy" / "link") == "a"
    assert (out_s / "contents" / "a").read_text() == "a\n" and (out_s / "file-a").read_text() == "a\n"
    # into the container: a file into a directory, a file to a new name, a directory
    (tmp_path / "up.txt").write_text("up\n")
    (tmp_path / "updir").mkdir()
    (tmp_path / "updir" / "x").write_text("x\n")
    for src, dst in ((tmp_path / "up.txt", "cpx:/tmp/"), (tmp_path / "up.txt", "cpx:/tmp/renamed.txt"),
                     (tmp_path / "updir", "cpx:/tmp/dir2")):
        s = p.skiff("cp", str(src), dst)
        assert (s.returncode, s.stdout, s.stderr) == (0, "", ""), s
    r = p.docker("exec", "cpx", "sh", "-c", "cat /tmp/up.txt /tmp/renamed.txt /tmp/dir2/x")
    assert r.stdout == "up\nup\nx\n"
    for args in (["cp", "cpx:/nosuch", str(tmp_path)], ["cp", str(tmp_path / "nosuch"), "cpx:/tmp"],
                 ["cp", "a", "b"], ["cp", "nosuchc:/x", str(tmp_path)]):
        p.assert_same(*args)
    # tar streams
    d = subprocess.run(["docker", "cp", "cpx:/d/a", "-"], env=p.env, capture_output=True)
    s = subprocess.run([SKIFF, "cp", "cpx:/d/a", "-"], env=p.env, capture_output=True)
    assert s.returncode == 0 and d.stdout == s.stdout


def test_signals_are_forwarded_to_the_container(pair: Pair, bb: str) -> None:
    """sig-proxy: SIGINT/SIGTERM to `skiff run` (no TTY) reach the container, whose status skiff returns."""
    import signal

    script = "trap 'echo got-$1; exit 5' TERM; trap 'echo got-int; exit 6' INT; echo ready; while :; do sleep 0.1; done"
    for sig, want in ((signal.SIGINT, (6, "got-int")), (signal.SIGTERM, (5, "got-"))):
        proc = subprocess.Popen([SKIFF, "run", "--rm", bb, "sh", "-c", script], env=pair.env, stdout=subprocess.PIPE,
                                text=True)
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == want[0] and out.startswith(want[1]), (sig, proc.returncode, out)


def test_run_on_a_user_network_with_alias(pair: Pair, bb: str) -> None:
    p = pair
    p.docker("network", "create", "runnet")
    p.skiff("run", "-d", "--name", "srv", "--network", "runnet", "--network-alias", "db", bb, "sleep", "300")
    d, s = p.assert_same("run", "--rm", "--network", "runnet", bb, "sh", "-c", "nslookup db >/dev/null && echo found")
    assert s.stdout == "found\n"
    nets = json.loads(p.docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", "srv").stdout)
    assert list(nets) == ["runnet"] and "db" in (nets["runnet"]["Aliases"] or [])


def test_events_stream(pair: Pair, bb: str) -> None:
    since = str(int(time.time()) - 1)
    p = pair
    p.docker("run", "--rm", "--name", "evt", bb, "true")
    until = str(int(time.time()) + 1)
    d, s = p.assert_same("events", "--since", since, "--until", until, "--filter", "container=evt", times=False)
    assert " container start " in s.stdout and " container destroy " in s.stdout, s
    p.assert_same("events", "--since", since, "--until", until, "-f", "container=evt", "--format", "{{json .}}")
