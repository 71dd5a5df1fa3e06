"""A small synchronous QMP (QEMU Machine Protocol) client over a Unix socket.

QMP is line-delimited JSON: a greeting, `qmp_capabilities` to leave negotiation mode, then
`{"execute": …}` commands answered by `{"return": …}` or `{"error": …}`, with asynchronous
`{"event": …}` messages interleaved (kept in `events`). One connection per use: QEMU serves one
QMP client at a time on a socket, so never hold it longer than a command.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any


class QMPError(Exception):
    """QMP failed: no socket, no answer, or QEMU returned an error (class and desc kept)."""

    def __init__(self, message: str, error_class: str = "") -> None:
        super().__init__(message)
        self.error_class = error_class


class QMPClient:
    def __init__(self, path: Path | str, timeout: float = 5.0) -> None:
        self.path = str(path)
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self._buf = b""
        self.events: list[dict[str, Any]] = []
        self.greeting: dict[str, Any] = {}

    def __enter__(self) -> QMPClient:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError as e:
            sock.close()
            raise QMPError(f"cannot connect to QMP socket {self.path}: {e}") from e
        self.sock = sock
        self.greeting = self._read()
        if "QMP" not in self.greeting:
            raise QMPError(f"unexpected QMP greeting: {self.greeting}")
        self.execute("qmp_capabilities")

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _read(self) -> dict[str, Any]:
        assert self.sock is not None
        while b"\n" not in self._buf:
            try:
                chunk = self.sock.recv(65536)
            except OSError as e:  # timeout included
                raise QMPError(f"QMP read failed: {e}") from e
            if not chunk:
                raise QMPError("QMP connection closed by QEMU")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        msg: dict[str, Any] = json.loads(line)
        return msg

    def execute(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        if self.sock is None:
            raise QMPError("QMP not connected")
        msg: dict[str, Any] = {"execute": command}
        if arguments:
            msg["arguments"] = arguments
        try:
            self.sock.sendall(json.dumps(msg).encode() + b"\n")
        except OSError as e:
            raise QMPError(f"QMP write failed: {e}") from e
        while True:
            reply = self._read()
            if "event" in reply:
                self.events.append(reply)
                continue
            if "error" in reply:
                err = reply["error"]
                raise QMPError(f"{command}: {err.get('desc', err)}", err.get("class", ""))
            return reply.get("return")

    def hmp(self, command_line: str) -> str:
        """Run a human-monitor command (e.g. `hostfwd_add`, which has no QMP form in QEMU 7/8).

        HMP reports failures as text, not as a QMP error; a non-empty answer is an error message.
        """
        out = self.execute("human-monitor-command", {"command-line": command_line}) or ""
        return out.strip()


def qmp_call(path: Path | str, command: str, arguments: dict[str, Any] | None = None,
             timeout: float = 5.0) -> Any:
    with QMPClient(path, timeout) as q:
        return q.execute(command, arguments)
