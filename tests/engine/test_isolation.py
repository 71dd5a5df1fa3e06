"""What a default container must not be able to do, checked from inside real containers."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.engine.containers_fixtures import remove_all
from tests.engine.harness import Skiffd, TestImages


@pytest.fixture(scope="module")
def bb(skiffd: Skiffd, images: TestImages) -> Iterator[str]:
    skiffd.docker("pull", "-q", images.busybox)
    yield images.busybox
    remove_all(skiffd)


def run(d: Skiffd, bb: str, script: str, *opts: str) -> tuple[int, str]:
    r = d.docker("run", "--rm", *opts, bb, "sh", "-c", script, check=False)
    return r.returncode, r.stdout + r.stderr


def test_cannot_see_host_processes(skiffd: Skiffd, bb: str) -> None:
    rc, out = run(skiffd, bb, "ls /proc | grep -E '^[0-9]+$' | wc -l; cat /proc/1/cmdline | tr '\\0' ' '")
    n, cmd = out.splitlines()[0], out.splitlines()[1]
    assert rc == 0 and int(n) <= 4, out  # sh, ls, grep, wc of this pipeline
    assert cmd.startswith("sh -c")
    assert skiffd.proc is not None
    rc, out = run(skiffd, bb, f"kill -0 {skiffd.proc.pid} && echo reachable || echo unreachable")
    assert "unreachable" in out


def test_cannot_mount_or_unshare(skiffd: Skiffd, bb: str) -> None:
    rc, out = run(skiffd, bb, "mount -t tmpfs none /mnt")
    assert rc != 0 and ("denied" in out or "not permitted" in out), out
    rc, out = run(skiffd, bb, "unshare -m true")
    assert rc != 0, out
    rc, out = run(skiffd, bb, "umount /etc/hosts")
    assert rc != 0, out


def test_cannot_load_modules(skiffd: Skiffd, bb: str) -> None:
    rc, out = run(skiffd, bb, "echo junk > /tmp/m.ko; insmod /tmp/m.ko")
    assert rc != 0, out
    status = run(skiffd, bb, "grep -E '^(CapEff|CapBnd|Seccomp):' /proc/self/status")[1]
    fields = dict(line.split(":\t") for line in status.strip().splitlines())
    for f in ("CapEff", "CapBnd"):
        caps = int(fields[f], 16)
        assert not caps & (1 << 16) and not caps & (1 << 21)  # no CAP_SYS_MODULE, no CAP_SYS_ADMIN
    assert fields["Seccomp"].strip() == "2"  # the default seccomp filter is active


def test_proc_and_sys_are_protected(skiffd: Skiffd, bb: str) -> None:
    rc, out = run(skiffd, bb, "echo b > /proc/sysrq-trigger")
    assert rc != 0, out
    if os.path.exists("/proc/sysrq-trigger"):  # this test machine's kernel has no magic SysRq at all
        assert "Read-only file system" in out, out
    rc, out = run(skiffd, bb, "echo 1 > /proc/sys/kernel/panic")
    assert rc != 0, out
    rc, out = run(skiffd, bb, "touch /sys/kernel/x")
    assert rc != 0 and "Read-only file system" in out, out
    # Masked: readable on the host, empty in the container.
    rc, out = run(skiffd, bb, "cat /proc/keys | wc -c; cat /proc/timer_list | wc -c; cat /proc/interrupts | wc -c; ls /sys/firmware | wc -l")
    assert out.split() == ["0", "0", "0", "0"], out
    rc, out = run(skiffd, bb, "ls /dev | sort | tr '\\n' ' '")
    devs = set(out.split())
    assert {"null", "zero", "random", "urandom", "tty", "pts", "shm"} <= devs
    assert not any(d.startswith(("sd", "vd", "nvme", "mem", "kmsg")) for d in devs), devs


def test_sees_only_its_own_filesystem(skiffd: Skiffd, bb: str) -> None:
    rc, out = run(skiffd, bb, "ls /")
    assert set(out.split()) <= {"bin", "dev", "etc", "home", "proc", "root", "sys", "tmp", "usr", "var"}
    marker = skiffd.data_root / "host-only-marker"
    marker.write_text("secret")
    try:
        rc, out = run(skiffd, bb, f"cat {marker}; ls {skiffd.data_root}")
        assert rc != 0 and "secret" not in out
        rc, out = run(skiffd, bb, "cat /etc/os-release")
        assert rc != 0  # the host's (Debian) file is not there
    finally:
        marker.unlink()
    # A symlink planted in the container never leads `docker cp` to host files.
    skiffd.docker("run", "--name", "planter", bb, "ln", "-s", "/", "/tmp/hostroot")
    out_dir = skiffd.workdir / "cp-out"
    skiffd.docker("cp", "planter:/tmp/hostroot/etc/passwd", str(out_dir))
    assert "www:x:33" in out_dir.read_text()  # busybox's passwd, not the host's
    assert os.path.exists("/etc/passwd") and out_dir.read_text() != open("/etc/passwd").read()
    skiffd.docker("rm", "planter")


def test_network_is_private(skiffd: Skiffd, bb: str) -> None:
    rc, out = run(skiffd, bb, "cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '", "--network", "none")
    assert out.split() == ["lo"], out
    rc, out = run(skiffd, bb, "ping -c1 -W1 127.0.0.1", "--network", "none")
    assert rc == 0, out  # CAP_NET_RAW is in Docker's default set, loopback is up
