"""Helpers for the container tests: a pulled busybox, cleanup of containers before the daemon stops,
a real pseudo-terminal driving the docker CLI, and checks that nothing leaked (cgroups, conmon)."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import time

from tests.engine.harness import Skiffd


def remove_all(daemon: Skiffd) -> None:
    ids = daemon.docker("ps", "-aq", check=False).stdout.split()
    if ids:
        daemon.docker("rm", "-f", *ids, check=False, timeout=120)


def conmon_pids(cid: str) -> list[int]:
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if cmd.startswith(b"/usr/bin/conmon\0") or b"conmon\0" in cmd[:64]:
            if cid.encode() in cmd:
                pids.append(int(d))
    return pids


class PtySession:
    """The docker CLI on a real pseudo-terminal, as a user at a shell would run it."""

    def __init__(self, daemon: Skiffd, args: list[str], rows: int = 30, cols: int = 100) -> None:
        import fcntl
        import struct
        import termios

        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.proc = subprocess.Popen(["docker", *args], stdin=slave, stdout=slave, stderr=slave, env=daemon.env(),
                                     start_new_session=True, preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
        os.close(slave)
        self.buf = b""

    def read_until(self, needle: bytes, timeout: float = 20.0) -> bytes:
        deadline = time.monotonic() + timeout
        while needle not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"did not see {needle!r}; got {self.buf[-2000:]!r}")
            r, _, _ = select.select([self.master], [], [], left)
            if r:
                try:
                    data = os.read(self.master, 65536)
                except OSError:
                    data = b""
                if not data:
                    if needle not in self.buf:
                        raise EOFError(f"pty closed before {needle!r}; got {self.buf[-2000:]!r}")
                    break
                self.buf += data
        return self.buf

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def wait(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            r, _, _ = select.select([self.master], [], [], 0.1)
            if r:
                try:
                    self.buf += os.read(self.master, 65536)
                except OSError:
                    pass
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)
            raise TimeoutError(f"docker did not exit; output {self.buf[-2000:]!r}")
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        try:
            os.close(self.master)
        except OSError:
            pass
