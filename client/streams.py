"""Decoding the engine's streamed bodies: the 8-byte-framed stdout/stderr of attach/exec/logs without a TTY,
and the JSON-object streams of pull, push, build, load and events."""

from __future__ import annotations

TYPE_CHECKING = False  # no runtime `typing` import: it costs startup time and annotations are strings
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

    from skiffbox.client.transport import Response

STDIN, STDOUT, STDERR, SYSTEMERR = 0, 1, 2, 3


def demux(read1: Callable[[], bytes], initial: bytes = b"") -> Iterator[tuple[int, bytes]]:
    """Split docker's 8-byte-framed stream: [stream, 0, 0, 0, size(uint32 BE)] + payload.

    `read1()` returns the next bytes available (b"" at EOF). Payloads are yielded as they arrive, possibly
    in several pieces, so a slow `logs -f` line shows at once."""
    buf = initial
    while True:
        while len(buf) < 8:
            data = read1()
            if not data:
                return
            buf += data
        stream, size = buf[0], int.from_bytes(buf[4:8], "big")
        buf = buf[8:]
        while size > 0:
            if not buf:
                buf = read1()
                if not buf:
                    return
            piece, buf = buf[:size], buf[size:]
            size -= len(piece)
            yield stream, piece


def iter_json_stream(resp: Response) -> Iterator[dict[str, Any]]:
    """Objects of a JSON-lines progress stream (pull, push, build, events); tolerates concatenated objects."""
    import json

    dec = json.JSONDecoder()
    buf = ""
    for chunk in resp.iter_chunks():
        buf += chunk.decode(errors="replace")
        while True:
            s = buf.lstrip()
            if not s:
                buf = ""
                break
            try:
                obj, end = dec.raw_decode(s)
            except ValueError:
                buf = s
                break
            buf = s[end:]
            yield obj
