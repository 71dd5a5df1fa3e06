"""Attached streams for `run`, `start -a`, `attach` and `exec`: the hijacked connection wired to the terminal.

Like the docker CLI (cli/command/container/hijack.go): output is copied raw with a TTY, or split from
8-byte frames onto stdout/stderr without; stdin is copied to the connection and its EOF becomes a
half-close; with `-t` on a terminal, stdin goes raw (termios), SIGWINCH resizes the container's TTY,
and the detach keys (ctrl-p,ctrl-q by default) leave the container running. Without a TTY, signals
are forwarded to the container (sig-proxy).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable

from skiffbox.client.streams import demux
from skiffbox.client.transport import Hijacked

TYPE_CHECKING = False  # no runtime `typing` import: it costs startup time and annotations are strings
if TYPE_CHECKING:
    from types import FrameType
    from typing import Any

DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"


class DetachKeysError(ValueError):
    pass


def parse_detach_keys(spec: str) -> bytes:
    """docker's term.ToBytes: "ctrl-p,ctrl-q" -> b"\\x10\\x11"; single characters stand for themselves."""
    out = bytearray()
    for key in spec.split(","):
        k = key.strip()
        if len(k) > 1 and k.lower().startswith("ctrl-") and len(k) == 6:
            c = k[5].lower()
            if "a" <= c <= "z":
                out.append(ord(c) - ord("a") + 1)
                continue
            if c in "@[\\]^_":
                out.append({"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}[c])
                continue
            raise DetachKeysError(f"Unknown character: '{k}'")
        if len(k) != 1:
            raise DetachKeysError(f"Unknown character: '{k}'")
        out.append(ord(k))
    return bytes(out)


def terminal_size(fd: int) -> tuple[int, int] | None:
    """(rows, columns) of a terminal, or None."""
    try:
        if not os.isatty(fd):
            return None
        sz = os.get_terminal_size(fd)
        return sz.lines, sz.columns
    except OSError:
        return None


class RawTerminal:
    """Put a terminal in raw mode for the duration (and always restore it)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.saved: list[Any] | None = None

    def __enter__(self) -> "RawTerminal":
        import termios
        import tty

        if os.isatty(self.fd):
            self.saved = termios.tcgetattr(self.fd)
            tty.setraw(self.fd, termios.TCSANOW)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.saved is not None:
            import termios

            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)


class _EscapeProxy:
    """Find the detach sequence in what the user types; hold back a partial match until it resolves."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self.held = b""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        if not self.keys:
            return data, False
        out = bytearray()
        for b in data:
            cand = self.held + bytes([b])
            if self.keys.startswith(cand):
                if cand == self.keys:
                    return bytes(out), True
                self.held = cand
            else:
                out += cand
                self.held = b""
        return bytes(out), False


class Session:
    """One attached stream; `run()` returns "eof" when the output ended or "detached"."""

    def __init__(self, conn: Hijacked, tty: bool, stdin: bool, detach_keys: bytes = b"",
                 out_fd: int = 1, err_fd: int = 2, in_fd: int = 0) -> None:
        self.conn = conn
        self.tty = tty
        self.stdin = stdin
        self.detach_keys = detach_keys if tty else b""
        self.out_fd, self.err_fd, self.in_fd = out_fd, err_fd, in_fd
        self.detached = threading.Event()

    def _pump_stdin(self) -> None:
        proxy = _EscapeProxy(self.detach_keys)
        try:
            while True:
                data = os.read(self.in_fd, 32 * 1024)
                if not data:
                    break
                data, detach = proxy.feed(data)
                if data:
                    self.conn.send(data)
                if detach:
                    self.detached.set()
                    try:
                        import socket

                        self.conn.sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
        except OSError:
            return
        self.conn.close_write()

    def run(self) -> str:
        if self.stdin:
            threading.Thread(target=self._pump_stdin, name="stdin", daemon=True).start()
        try:
            if self.tty:
                while True:
                    data = self.conn.read1()
                    if not data:
                        break
                    write_all(self.out_fd, data)
            else:
                for stream, data in demux(self.conn.read1):
                    write_all(self.err_fd if stream == 2 else self.out_fd, data)
        except OSError:
            pass
        finally:
            self.conn.close()
        return "detached" if self.detached.is_set() else "eof"


def stream(conn: Hijacked, *, tty: bool, stdin: bool, detach_keys: bytes) -> str:
    """Run a `Session` on an attach or exec connection ("eof" or "detached"); the local terminal goes raw
    for its duration only when a TTY is asked for, stdin is attached and stdin is a terminal."""
    sess = Session(conn, tty=tty, stdin=stdin, detach_keys=detach_keys)
    if tty and stdin and stdin_is_tty():
        if not raw_mode_available():
            sys.stderr.write(LINE_MODE_NOTICE)
            sys.stderr.flush()
            return sess.run()
        with RawTerminal(0):
            return sess.run()
    return sess.run()


LINE_MODE_NOTICE = ("skiff: this console has no raw mode (no termios here, as on Windows): input goes to the "
                    "container a line at a time, after Enter\n")


def raw_mode_available() -> bool:
    """termios and tty import (POSIX); Windows consoles have neither."""
    try:
        import termios  # noqa: F401
        import tty  # noqa: F401
    except ImportError:
        return False
    return True


class ResizeMonitor:
    """Keep the remote TTY the size of ours: once now, then on every SIGWINCH (docker's MonitorTtySize)."""

    def __init__(self, resize: Callable[[int, int], None], fd: int = 1) -> None:
        self.resize = resize
        self.fd = fd
        self._old: Callable[[int, FrameType | None], object] | int | None = None

    def _do(self) -> None:
        size = terminal_size(self.fd)
        if size:
            try:
                self.resize(*size)
            except Exception:  # resizing is best effort: the process may have exited meanwhile
                pass

    def start(self) -> "ResizeMonitor":
        self._do()
        if hasattr(signal, "SIGWINCH") and threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGWINCH,
                                      lambda *_: threading.Thread(target=self._do, daemon=True).start())
        return self

    def stop(self) -> None:
        if self._old is not None:
            signal.signal(signal.SIGWINCH, self._old)
            self._old = None


class SignalProxy:
    """Forward the signals a user sends to `skiff run` (non-TTY) to the container, as docker's sig-proxy does."""

    SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")

    def __init__(self, kill: Callable[[str], None]) -> None:
        self.kill = kill
        self._old: dict[int, object] = {}

    def start(self) -> "SignalProxy":
        if threading.current_thread() is not threading.main_thread():
            return self
        for name in self.SIGNALS:
            sig = getattr(signal, name, None)
            if sig is not None:
                self._old[sig] = signal.signal(sig, self._forward)
        return self

    def _forward(self, signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        threading.Thread(target=self._send, args=(name,), daemon=True).start()

    def _send(self, name: str) -> None:
        try:
            self.kill(name)
        except Exception:
            pass

    def stop(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)  # type: ignore[arg-type]
        self._old.clear()


def stdin_is_tty() -> bool:
    try:
        return os.isatty(sys.stdin.fileno())
    except (OSError, ValueError, AttributeError):
        return False


def write_all(fd: int, data: bytes) -> None:
    while data:
        n = os.write(fd, data)
        data = data[n:]
