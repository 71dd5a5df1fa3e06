"""SSH to machines with paramiko: run commands, stream output, SFTP copies, an interactive shell.

Host keys are not checked (docker-machine runs ssh with StrictHostKeyChecking=no and
UserKnownHostsFile=/dev/null): machines are re-created often on the same address, and the channel
carries only what the user's own key authorises.

API:
    client = connect(endpoint, timeout=10)                  # one attempt; SSHError with a hint
    client = wait_for_ssh(endpoint, timeout=180, progress)  # retries until sshd answers (boots)
    r = client.run("cmd", sudo=True, check=True, input=b"")  # -> Result(rc, stdout, stderr)
    rc = client.stream("cmd", on_line, sudo=True)            # line-by-line output (provisioning logs)
    rc = client.passthrough("cmd")                           # our stdin/stdout/stderr <-> remote, exit code
    rc = client.interactive()                                # login shell on a raw local terminal
    client.put_bytes(data, "/remote/path", mode=0o644); client.put_file(local, remote)
    client.get_file(remote, local); client.put_tree(dir, remote); client.get_tree(remote, dir)
    client.close()   (also a context manager)
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import select
import shlex
import socket
import stat
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import paramiko

from skiffbox.machine.drivers.base import SSHEndpoint


class SSHError(Exception):
    """SSH failed; the message says what to do next."""


class CommandError(SSHError):
    def __init__(self, cmd: str, rc: int, stdout: str, stderr: str) -> None:
        tail = (stderr or stdout).strip().splitlines()[-15:]
        super().__init__(f"command failed with exit code {rc}: {cmd}\n" + "\n".join(tail))
        self.cmd, self.rc, self.stdout, self.stderr = cmd, rc, stdout, stderr


@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str


def _load_key(path: Path) -> paramiko.PKey:
    try:
        return paramiko.PKey.from_path(str(path))
    except FileNotFoundError:
        raise SSHError(f"SSH key {path} is missing; re-create the machine or restore the key") from None
    except (paramiko.SSHException, ValueError) as e:
        raise SSHError(f"cannot read SSH key {path}: {e} (it must be an unencrypted private key)") from None


def connect(ep: SSHEndpoint, timeout: float = 10.0) -> "SSHClient":
    c = paramiko.SSHClient()
    c.set_missing_host_key_policy(paramiko.MissingHostKeyPolicy())  # accept, do not record
    try:
        c.connect(
            ep.host, port=ep.port, username=ep.user, pkey=_load_key(ep.key_path), timeout=timeout,
            banner_timeout=timeout, auth_timeout=timeout, allow_agent=False, look_for_keys=False,
        )
    except paramiko.AuthenticationException as e:
        c.close()
        raise SSHError(
            f"SSH login as {ep.user!r} to {ep.host}:{ep.port} with key {ep.key_path} was refused ({e}); "
            f"check that the key's .pub is in ~{ep.user}/.ssh/authorized_keys on that host"
        ) from None
    except (OSError, paramiko.SSHException, EOFError) as e:
        c.close()
        raise SSHError(f"cannot reach SSH at {ep.host}:{ep.port}: {e or type(e).__name__}") from None
    t = c.get_transport()
    if t is not None:
        t.set_keepalive(30)
    return SSHClient(c, ep)


def wait_for_ssh(ep: SSHEndpoint, timeout: float = 180.0,
                 progress: Callable[[str], None] | None = None) -> "SSHClient":
    """Retry until sshd accepts our key (a booting VM refuses, then resets, then answers)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    told = False
    while True:
        try:
            client = connect(ep, timeout=min(10.0, max(1.0, deadline - time.monotonic())))
            client.run("true", check=True)
            return client
        except SSHError as e:
            last = e
        if time.monotonic() >= deadline:
            raise SSHError(
                f"Too many retries waiting for SSH to be available at {ep.host}:{ep.port} "
                f"({int(timeout)} s). Last error: {last}"
            )
        if progress and not told:
            progress(f"Waiting for SSH on {ep.host}:{ep.port}...")
            told = True
        time.sleep(1.0)


def _sudo(cmd: str, user: str) -> str:
    if user == "root":
        return cmd
    return f"sudo -n sh -c {shlex.quote(cmd)}"


class SSHClient:
    def __init__(self, client: paramiko.SSHClient, ep: SSHEndpoint) -> None:
        self._c = client
        self.endpoint = ep
        self._sftp: paramiko.SFTPClient | None = None

    def __enter__(self) -> "SSHClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._sftp is not None:
            self._sftp.close()
            self._sftp = None
        self._c.close()

    @property
    def active(self) -> bool:
        """Whether the connection is still up (sshd, the VM or the network may have dropped it)."""
        t = self._c.get_transport()
        return t is not None and t.is_active()

    def _transport(self) -> paramiko.Transport:
        t = self._c.get_transport()
        if t is None or not t.is_active():
            raise SSHError(f"SSH connection to {self.endpoint.host} is closed")
        return t

    def open_tcp(self, target: tuple[str, int], origin: tuple[str, int], timeout: float = 15.0) -> paramiko.Channel:
        """A `direct-tcpip` channel: sshd connects to `target` from inside the machine, as `ssh -L` does;
        `origin` is the host-side peer it is made for."""
        return self._transport().open_channel("direct-tcpip", target, origin, timeout=timeout)

    # ---- commands --------------------------------------------------------------------------
    def _open(self, cmd: str, pty: bool = False, term: str = "xterm",
              size: tuple[int, int] = (80, 24)) -> paramiko.Channel:
        ch = self._transport().open_session(timeout=30)
        if pty:
            ch.get_pty(term=term, width=size[0], height=size[1])
        ch.exec_command(cmd)
        return ch

    def run(self, cmd: str, *, sudo: bool = False, check: bool = True, input: bytes | None = None,
            timeout: float | None = None) -> Result:
        full = _sudo(cmd, self.endpoint.user) if sudo else cmd
        ch = self._open(full)
        if timeout:
            ch.settimeout(timeout)
        if input is not None:
            ch.sendall(input)
        ch.shutdown_write()
        out, err = bytearray(), bytearray()
        try:
            while True:
                r, _, _ = select.select([ch], [], [], timeout)
                if not r:
                    raise SSHError(f"command timed out after {timeout} s: {cmd}")
                progressed = False
                while ch.recv_ready():
                    out += ch.recv(65536)
                    progressed = True
                while ch.recv_stderr_ready():
                    err += ch.recv_stderr(65536)
                    progressed = True
                if ch.exit_status_ready() and not ch.recv_ready() and not ch.recv_stderr_ready():
                    break
                if not progressed and ch.closed:
                    break
            rc = ch.recv_exit_status()
        except socket.timeout:
            raise SSHError(f"command timed out after {timeout} s: {cmd}") from None
        finally:
            ch.close()
        res = Result(rc, out.decode(errors="replace"), err.decode(errors="replace"))
        if check and rc != 0:
            raise CommandError(cmd, rc, res.stdout, res.stderr)
        return res

    def stream(self, cmd: str, on_line: Callable[[str], None], *, sudo: bool = False) -> int:
        """Run and call on_line for each output line (stdout and stderr merged), return the exit code."""
        full = _sudo(cmd, self.endpoint.user) if sudo else cmd
        ch = self._open(full)
        ch.set_combine_stderr(True)
        ch.shutdown_write()
        buf = b""
        with ch:
            while True:
                data = ch.recv(65536)
                if not data:
                    break
                buf += data
                *lines, buf = buf.split(b"\n")
                for ln in lines:
                    on_line(ln.decode(errors="replace").rstrip("\r"))
            if buf:
                on_line(buf.decode(errors="replace"))
            return ch.recv_exit_status()

    def passthrough(self, cmd: str) -> int:
        """Non-interactive command: copy our stdin (if not a terminal) to it, its output to ours."""
        ch = self._open(cmd)
        stdin_is_tty = sys.stdin is not None and sys.stdin.isatty()

        def feed() -> None:
            try:
                fd = sys.stdin.fileno()
                while True:
                    data = os.read(fd, 65536)
                    if not data:
                        break
                    ch.sendall(data)
            except (OSError, ValueError, AttributeError):
                pass
            finally:
                try:
                    ch.shutdown_write()
                except Exception:
                    pass

        if not stdin_is_tty and sys.stdin is not None:
            threading.Thread(target=feed, daemon=True).start()
        else:
            ch.shutdown_write()
        out, err = sys.stdout.buffer, sys.stderr.buffer
        with ch:
            while True:
                r, _, _ = select.select([ch], [], [])
                got = False
                while ch.recv_ready():
                    out.write(ch.recv(65536))
                    got = True
                while ch.recv_stderr_ready():
                    err.write(ch.recv_stderr(65536))
                    got = True
                out.flush()
                err.flush()
                if ch.exit_status_ready() and not ch.recv_ready() and not ch.recv_stderr_ready():
                    break
                if not got and ch.closed:
                    break
            return ch.recv_exit_status()

    def interactive(self, command: str | None = None) -> int:
        """A shell (or command) on a PTY, our terminal in raw mode; returns the remote exit code."""
        try:
            import termios
            import tty
        except ImportError:  # Windows: no raw mode via termios; forward typed lines instead
            return self._interactive_lines(command)

        size = os.get_terminal_size() if sys.stdout.isatty() else os.terminal_size((80, 24))
        t = self._transport()
        ch = t.open_session()
        ch.get_pty(term=os.environ.get("TERM", "xterm"), width=size.columns, height=size.lines)
        if command:
            ch.exec_command(command)
        else:
            ch.invoke_shell()
        fd = sys.stdin.fileno()
        old = termios.tcgetattr(fd)
        last_size = size
        try:
            tty.setraw(fd)
            ch.settimeout(0.0)
            while True:
                r, _, _ = select.select([ch, fd], [], [], 0.5)
                if ch in r:
                    try:
                        data = ch.recv(65536)
                    except socket.timeout:
                        data = None
                    if data == b"":
                        break
                    if data:
                        os.write(sys.stdout.fileno(), data)
                if fd in r:
                    data = os.read(fd, 4096)
                    if not data:
                        break
                    ch.sendall(data)
                if sys.stdout.isatty():
                    cur = os.get_terminal_size()
                    if cur != last_size:  # follow window resizes
                        ch.resize_pty(width=cur.columns, height=cur.lines)
                        last_size = cur
                if ch.exit_status_ready() and not ch.recv_ready():
                    break
        finally:
            termios.tcsetattr(fd, termios.TCSADRAIN, old)
        rc = ch.recv_exit_status()
        ch.close()
        return rc

    def _interactive_lines(self, command: str | None) -> int:
        """Line-mode fallback where termios is missing: our console edits lines, the PTY echoes."""
        t = self._transport()
        ch = t.open_session()
        size = os.get_terminal_size() if sys.stdout.isatty() else os.terminal_size((80, 24))
        ch.get_pty(term="xterm", width=size.columns, height=size.lines)
        if command:
            ch.exec_command(command)
        else:
            ch.invoke_shell()

        def feed() -> None:
            try:
                for line in sys.stdin:
                    ch.sendall(line.replace("\r\n", "\n").encode())
            except (OSError, EOFError):
                pass

        threading.Thread(target=feed, daemon=True).start()
        while True:
            data = ch.recv(65536)
            if not data:
                break
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
        rc = ch.recv_exit_status()
        ch.close()
        return rc

    # ---- files -----------------------------------------------------------------------------
    def sftp(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            self._sftp = self._c.open_sftp()
        return self._sftp

    def mkdir_p(self, remote: str) -> None:
        s = self.sftp()
        parts = []
        p = remote
        while p not in ("", "/", "."):
            parts.append(p)
            p = posixpath.dirname(p)
        for d in reversed(parts):
            try:
                s.stat(d)
            except FileNotFoundError:
                s.mkdir(d)

    def put_bytes(self, data: bytes, remote: str, mode: int = 0o644) -> None:
        s = self.sftp()
        with s.open(remote, "wb") as f:
            f.set_pipelined(True)
            f.write(data)
        s.chmod(remote, mode)

    def put_file(self, local: Path | str, remote: str, mode: int | None = None) -> None:
        s = self.sftp()
        s.put(str(local), remote)
        s.chmod(remote, mode if mode is not None else stat.S_IMODE(os.stat(local).st_mode))

    def get_file(self, remote: str, local: Path | str) -> None:
        s = self.sftp()
        s.get(remote, str(local))
        with contextlib.suppress(OSError):
            os.chmod(local, stat.S_IMODE(s.stat(remote).st_mode or 0o644))

    def is_dir(self, remote: str) -> bool:
        try:
            return stat.S_ISDIR(self.sftp().stat(remote).st_mode or 0)
        except FileNotFoundError:
            return False

    def exists(self, remote: str) -> bool:
        try:
            self.sftp().stat(remote)
            return True
        except FileNotFoundError:
            return False

    def put_tree(self, local: Path | str, remote: str) -> None:
        local = Path(local)
        self.mkdir_p(remote)
        for entry in sorted(local.iterdir()):
            r = posixpath.join(remote, entry.name)
            if entry.is_dir() and not entry.is_symlink():
                self.put_tree(entry, r)
            elif entry.is_file():
                self.put_file(entry, r)

    def get_tree(self, remote: str, local: Path | str) -> None:
        local = Path(local)
        local.mkdir(parents=True, exist_ok=True)
        for attr in self.sftp().listdir_attr(remote):
            r = posixpath.join(remote, attr.filename)
            if stat.S_ISDIR(attr.st_mode or 0):
                self.get_tree(r, local / attr.filename)
            elif stat.S_ISREG(attr.st_mode or 0):
                self.get_file(r, local / attr.filename)
