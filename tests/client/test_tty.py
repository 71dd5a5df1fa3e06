"""Terminal behaviour in a real pseudo-terminal: `run -it`/`exec -it` (raw mode, window size and SIGWINCH
resizes, detach keys), and pull progress bars. Each scenario is played against docker and skiff; the bytes
the terminal receives must be the same."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import termios
import time

import pytest

from tests.client.compare import SKIFF, Pair


class Term:
    """A program on the slave side of a pty; we are the terminal."""

    def __init__(self, argv: list[str], env: dict[str, str], rows: int = 30, cols: int = 100) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # child
            os.execvpe(argv[0], argv, env)
        self.resize(rows, cols, signal_child=False)
        self.out = b""

    def resize(self, rows: int, cols: int, signal_child: bool = True) -> None:
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        if signal_child:
            os.kill(self.pid, signal.SIGWINCH)

    def read_until(self, needle: bytes, timeout: float = 20) -> bytes:
        end = time.monotonic() + timeout
        while needle not in self.out and time.monotonic() < end:
            r, _, _ = select.select([self.fd], [], [], 0.1)
            if r:
                try:
                    data = os.read(self.fd, 4096)
                except OSError:
                    break
                if not data:
                    break
                self.out += data
        assert needle in self.out, f"{needle!r} not seen; got {self.out!r}"
        return self.out

    def write(self, data: bytes) -> None:
        os.write(self.fd, data)

    def wait(self, timeout: float = 30) -> int:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                r, _, _ = select.select([self.fd], [], [], 0.1)
                if r:
                    data = os.read(self.fd, 4096)
                    self.out += data
            except OSError:
                pass
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
        os.kill(self.pid, signal.SIGKILL)
        raise AssertionError(f"still running; output so far {self.out!r}")


def _argv(prog: str, *args: str) -> list[str]:
    return ["docker" if prog == "docker" else SKIFF, *args]


@pytest.fixture(scope="module")
def bb(pair: Pair) -> str:
    assert pair.docker("pull", "-q", pair.images.busybox).returncode == 0
    return pair.images.busybox


def _interactive_session(pair: Pair, argv: list[str]) -> tuple[bytes, int]:
    t = Term(argv, pair.env)
    t.read_until(b"/ # ")
    t.write(b"stty size\r")
    t.read_until(b"30 100\r\n")
    t.resize(44, 132)  # SIGWINCH -> POST …/resize
    time.sleep(1)
    t.write(b"stty size; tty; exit 7\r")
    code = t.wait()
    return t.out, code


# The shell's line editor races with our typing (it queries the cursor position), so the exact bytes
# vary run to run for docker too; both clients must show the same things: the initial size, the size
# after SIGWINCH, a TTY device, CR/LF translation from the remote TTY, and the exit status.
def test_run_it_raw_terminal_resize_and_exit_code(pair: Pair, bb: str) -> None:
    for prog in ("docker", "skiff"):
        out, code = _interactive_session(pair, _argv(prog, "run", "-it", "--rm", bb, "sh"))
        assert code == 7, (prog, out)
        assert b"30 100\r\n" in out and b"44 132\r\n/dev/pts/0\r\n" in out, (prog, out)


def test_exec_it_like_docker(pair: Pair, bb: str) -> None:
    pair.docker("run", "-d", "--name", "tty-exec", bb, "sleep", "300")
    for prog in ("docker", "skiff"):
        out, code = _interactive_session(pair, _argv(prog, "exec", "-it", "tty-exec", "sh"))
        assert code == 7 and b"30 100\r\n" in out and b"44 132\r\n/dev/pts/" in out, (prog, out)


def test_detach_keys_leave_the_container_running(pair: Pair, bb: str) -> None:
    for prog, name, keys in (("docker", "det-d", []), ("skiff", "det-s", []),
                             ("skiff", "det-s2", ["--detach-keys", "ctrl-a,x"])):
        t = Term(_argv(prog, "run", "-it", *keys, "--name", name, bb, "sh"), pair.env)
        t.read_until(b"/ # ")
        t.write(b"echo before\r")
        t.read_until(b"before\r\n")
        t.write(b"\x01x" if keys else b"\x10\x11")
        assert t.wait() == 0
        state = pair.docker("inspect", "-f", "{{.State.Status}}", name).stdout.strip()
        assert state == "running", (prog, state)
    # a half-typed sequence is passed on: ctrl-p then "x" reaches the shell
    t = Term(_argv("skiff", "attach", "det-s"), pair.env)
    t.write(b"\r")
    t.read_until(b"/ # ")
    t.write(b"echo again\r")
    t.read_until(b"again\r\n")
    t.write(b"exit 3\r")
    assert t.wait() == 3


def test_run_it_refuses_without_a_terminal(pair: Pair, bb: str) -> None:
    d, s = pair.both("run", "-it", "--rm", bb, "true", input="")
    assert (s.returncode, s.stderr.replace("skiff", "docker")) == (d.returncode, d.stderr)


def test_pull_progress_bars_on_a_terminal(fresh_pair: Pair) -> None:
    """On a terminal each layer has a line that is redrawn in place (cursor up, clear, redraw)."""
    ref = fresh_pair.images.multilayer
    t = Term(_argv("skiff", "pull", ref), fresh_pair.env)
    assert t.wait() == 0
    out = t.out.decode()
    assert "\x1b[2K\r" in out and "\x1b[1A" in out  # redraws, not appended lines
    assert "Pull complete" in out and out.rstrip().endswith(ref)
    fresh_pair.docker("rmi", ref)
    t = Term(_argv("docker", "pull", ref), fresh_pair.env)
    assert t.wait() == 0
    import re

    def summary(text: str) -> list[str]:  # what remains on screen at the end, in order
        return re.findall(r"(?:Digest: sha256:[0-9a-f]{64}|Status: [^\r\n]*|" + re.escape(ref) + r")(?=\r?\n)", text)

    assert summary(out) == summary(t.out.decode()) and len(summary(out)) == 3
