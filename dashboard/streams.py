"""Websockets bridged to the engine's streams: events, followed logs, stats, and an exec TTY.

The engine client is blocking, so each stream's reader runs in a worker thread (its own limiter: streams live
as long as the page shows them and must not starve the short calls) and hands what it reads to the event
loop; when the browser goes away the engine connection is shut down, which ends the blocked read."""

from __future__ import annotations

import json
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
from starlette.websockets import WebSocket

from skiffbox.client.api import APIClient
from skiffbox.client.streams import demux, iter_json_stream
from skiffbox.client.transport import Hijacked, Response

STREAMS = anyio.CapacityLimiter(256)


class Gone(Exception):
    """The browser closed the websocket."""


async def pump(ws: WebSocket, produce: Callable[[Callable[[Any], None]], None], abort: Callable[[], None],
               on_message: Callable[[MutableMapping[str, Any]], Awaitable[None]] | None = None) -> None:
    """Run produce(send) in a thread; send(bytes | str | JSON-able) forwards to the websocket. Returns when the
    stream ends (then the websocket is closed) or the browser leaves (then abort() ends the producer).
    Messages from the browser go to on_message; one that fails ends the session (not the server)."""

    def send(msg: Any) -> None:
        try:
            if isinstance(msg, bytes):
                anyio.from_thread.run(ws.send_bytes, msg)
            else:
                anyio.from_thread.run(ws.send_text, msg if isinstance(msg, str) else json.dumps(msg))
        except Exception:
            raise Gone() from None

    def run() -> None:
        try:
            produce(send)
        except Gone:
            pass

    async with anyio.create_task_group() as tg:
        async def watch() -> None:
            try:
                while (m := await ws.receive())["type"] != "websocket.disconnect":
                    if on_message is not None:
                        await on_message(m)
            except Exception:
                pass  # a resize racing the process's exit, malformed input, a closed connection
            finally:
                abort()

        tg.start_soon(watch)
        try:
            await anyio.to_thread.run_sync(run, limiter=STREAMS)
        finally:
            abort()
            tg.cancel_scope.cancel()
    try:
        await ws.close()
    except Exception:
        pass


def json_stream(resp: Response) -> Callable[[Callable[[Any], None]], None]:
    def produce(send: Callable[[Any], None]) -> None:
        try:
            for obj in iter_json_stream(resp):
                send(obj)
        except OSError:
            pass  # aborted
        finally:
            resp.close()
    return produce


def log_stream(resp: Response, tty: bool) -> Callable[[Callable[[Any], None]], None]:
    """Log text as it arrives; without a TTY the engine frames stdout/stderr, and stderr is marked."""
    def produce(send: Callable[[Any], None]) -> None:
        try:
            if tty:
                for chunk in resp.iter_chunks():
                    send({"s": 1, "t": chunk.decode(errors="replace")})
            else:
                for stream, data in demux(resp.read1):
                    send({"s": stream, "t": data.decode(errors="replace")})
        except OSError:
            pass
        finally:
            resp.close()
    return produce


async def terminal(ws: WebSocket, api: APIClient, cid: str, cols: int, rows: int) -> None:
    """An interactive shell in the container: exec with a TTY, bytes both ways, resize messages as JSON text."""
    def start() -> tuple[str, Hijacked]:
        cmd = ["/bin/sh", "-c", "if command -v bash >/dev/null 2>&1; then exec bash; else exec sh; fi"]
        ex = api.exec_create(cid, {"AttachStdin": True, "AttachStdout": True, "AttachStderr": True, "Tty": True,
                                   "Cmd": cmd, "Env": ["TERM=xterm-256color"]})
        return ex["Id"], api.exec_attach(ex["Id"], True, [rows, cols])

    eid, conn = await anyio.to_thread.run_sync(start)

    def produce(send: Callable[[Any], None]) -> None:
        try:
            while data := conn.read1():
                send(data)
        except OSError:
            pass

    def abort() -> None:
        try:
            conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    async def on_message(m: MutableMapping[str, Any]) -> None:
        if m.get("bytes"):
            await anyio.to_thread.run_sync(conn.send, m["bytes"])
        elif m.get("text"):
            msg = json.loads(m["text"])
            if "resize" in msg:
                c, r = (int(x) for x in msg["resize"])
                await anyio.to_thread.run_sync(api.exec_resize, eid, r, c)

    try:
        await pump(ws, produce, abort, on_message)
    finally:
        conn.close()
