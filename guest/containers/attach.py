"""Docker's attach stream over a hijacked connection, relayed to and from conmon's attach socket.

Without a TTY every chunk is framed with Docker's 8-byte header `[stream, 0, 0, 0, size(be32)]`
(1 = stdout, 2 = stderr); with a TTY the bytes go raw. conmon's packets carry a 1-byte stream id
(2 = stdout, 3 = stderr) and take raw stdin of at most 32 KiB per packet (conmon_netavark.md §1.4).
The client's half-close means "no more stdin": it closes the container's stdin when the container was
created with StdinOnce, and output keeps flowing until the process ends.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Protocol

from skiffbox.guest.errors import InvalidParameter

STDIN, STDOUT, STDERR, SYSERR = 0, 1, 2, 3
_CONMON_STREAM = {2: STDOUT, 3: STDERR}
_MAX_STDIN_PACKET = 32768
DEFAULT_DETACH = b"\x10\x11"  # ctrl-p ctrl-q


class RawIO(Protocol):
    async def read(self, n: int = 65536) -> bytes: ...

    async def write(self, data: bytes) -> None: ...

    def close_write(self) -> None: ...


def frame(stream: int, data: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(data)) + data


def parse_detach_keys(spec: str | None) -> bytes:
    """Docker's `--detach-keys` syntax: comma-separated `ctrl-<x>` or single characters."""
    if spec is None or spec == "":
        return DEFAULT_DETACH
    out = bytearray()
    for key in spec.split(","):
        k = key.strip()
        if len(k) == 1:
            out.append(ord(k))
        elif k.lower().startswith("ctrl-") and len(k) == 6:
            c = k[5].lower()
            if "a" <= c <= "z":
                out.append(ord(c) - ord("a") + 1)
            elif c in "@[\\]^_":
                out.append({"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}[c])
            else:
                raise InvalidParameter(f"Unknown character: '{k}'")
        else:
            raise InvalidParameter(f"Unknown character: '{k}'")
    return bytes(out)


class _DetachScanner:
    """Finds the detach sequence in stdin; bytes that only looked like its start are passed on."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self.held = b""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        out = bytearray()
        for b in data:
            cand = self.held + bytes([b])
            if self.keys.startswith(cand):
                if cand == self.keys:
                    return bytes(out), True
                self.held = cand
            else:
                out += self.held
                self.held = b""
                if self.keys.startswith(bytes([b])):
                    self.held = bytes([b])
                else:
                    out.append(b)
        return bytes(out), False


async def relay(raw: RawIO, sock: socket.socket, *, tty: bool, stdout: bool = True, stderr: bool = True,
                stdin: bool = False, close_stdin_on_eof: bool = True, detach_keys: bytes | None = None,
                prefix: list[bytes] | None = None, framed: bool | None = None) -> str:
    """Pump conmon → client and client → conmon until the process's output ends. Output is framed
    (stdcopy headers) unless the process has a TTY, or as `framed` says.

    Returns "exited" (output ended), "detached" (detach keys) or "closed" (client went away)."""
    loop = asyncio.get_running_loop()
    result = "exited"
    out_done = asyncio.Event()
    framed = not tty if framed is None else framed

    async def pump_out() -> None:
        nonlocal result
        try:
            for chunk in prefix or []:
                await raw.write(chunk)
            while True:
                pkt = await loop.sock_recv(sock, 8193)
                if not pkt:
                    break
                stream = _CONMON_STREAM.get(pkt[0], STDOUT)
                data = pkt[1:]
                if not data or (stream == STDOUT and not stdout) or (stream == STDERR and not stderr):
                    continue
                await raw.write(frame(stream, data) if framed else data)
        except (ConnectionError, OSError):
            result = "closed"
        finally:
            out_done.set()

    async def pump_in() -> None:
        nonlocal result
        scanner = _DetachScanner(detach_keys) if (detach_keys and tty) else None
        while True:
            data = await raw.read(65536)
            if not data:
                if stdin and close_stdin_on_eof:
                    try:
                        sock.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                return
            if not stdin:
                continue
            if scanner is not None:
                data, detached = scanner.feed(data)
                if detached:
                    if data:
                        await _send(loop, sock, data)
                    result = "detached"
                    out_done.set()
                    return
            if data:
                try:
                    await _send(loop, sock, data)
                except OSError:
                    return

    out_task = asyncio.create_task(pump_out())
    in_task = asyncio.create_task(pump_in())
    try:
        await out_done.wait()
    finally:
        for t in (out_task, in_task):
            if not t.done():
                t.cancel()
        for t in (out_task, in_task):
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        sock.close()
    return result


async def _send(loop: asyncio.AbstractEventLoop, sock: socket.socket, data: bytes) -> None:
    for i in range(0, len(data), _MAX_STDIN_PACKET):
        await loop.sock_sendall(sock, data[i:i + _MAX_STDIN_PACKET])
