"""Container logs: conmon's k8s-file format read back as Docker's `logs` stream.

A record is `<RFC3339Nano with offset> <stdout|stderr> <F|P> <text>\\n`; `F` ends a line, `P` is a chunk with
no newline yet (conmon_netavark.md §1.7). Docker's `logs` gives each record's text (plus the newline for
`F`), optionally prefixed with the UTC timestamp, filtered by stream, since/until and tail.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

STDOUT, STDERR = 1, 2


@dataclass
class Entry:
    stream: int
    ts: float
    ts_text: str  # Docker's form: UTC, nanoseconds, "Z"
    data: bytes


def parse_ts(raw: str) -> tuple[float, str]:
    """`2026-11-28T04:05:05.348192984+00:00` → (epoch seconds, `2026-11-28T04:05:05.348192984Z`)."""
    main, frac, tz = raw, "", "+00:00"
    for sep in ("+", "-"):
        i = raw.rfind(sep)
        if i > 10:
            main, tz = raw[:i], raw[i:]
            break
    if raw.endswith("Z"):
        main, tz = raw[:-1], "+00:00"
    if "." in main:
        main, frac = main.split(".", 1)
    dt = datetime.fromisoformat(main + tz)
    ns = int((frac + "000000000")[:9]) if frac else 0
    secs = int(dt.timestamp())
    utc = datetime.utcfromtimestamp(secs).strftime("%Y-%m-%dT%H:%M:%S")
    return secs + ns / 1e9, f"{utc}.{ns:09d}Z"


def parse_line(line: bytes) -> Entry | None:
    try:
        ts, stream, tag, text = line.split(b" ", 3)
    except ValueError:
        # An empty full line is `<ts> stdout F ` + "" (the trailing space may be gone): tolerate both.
        parts = line.split(b" ")
        if len(parts) != 3:
            return None
        ts, stream, tag = parts
        text = b""
    try:
        t, t_text = parse_ts(ts.decode())
    except ValueError:
        return None
    data = text + b"\n" if tag == b"F" else text
    return Entry(STDERR if stream == b"stderr" else STDOUT, t, t_text, data)


def _tail_offset(path: Path, n: int) -> int:
    """Offset of the start of the last `n` complete log lines (F records end a line)."""
    if n <= 0:
        try:
            return os.path.getsize(path)
        except OSError:
            return 0
    try:
        f = open(path, "rb")
    except OSError:
        return 0
    with f:
        f.seek(0, os.SEEK_END)
        pos = f.tell()
        buf = b""
        block = 64 * 1024
        # Walk backwards collecting record boundaries until we have passed n full lines.
        while pos > 0:
            step = min(block, pos)
            pos -= step
            f.seek(pos)
            buf = f.read(step) + buf
            lines = buf.split(b"\n")
            # the first element may be incomplete unless pos == 0
            complete = lines[1:] if pos > 0 else lines
            ends = 0
            offset = len(buf)
            for rec in reversed(complete):
                if not rec:
                    offset -= 1
                    continue
                parts = rec.split(b" ", 3)
                if len(parts) >= 3 and parts[2] == b"F":
                    ends += 1
                    if ends > n:
                        return pos + offset
                offset -= len(rec) + 1
            if pos == 0:
                return 0
        return 0


def read_entries(path: Path, offset: int = 0) -> tuple[list[Entry], int]:
    """Complete records from `offset`; returns them and the offset after the last complete one."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError:
        return [], offset
    end = data.rfind(b"\n")
    if end < 0:
        return [], offset
    out = []
    for line in data[:end].split(b"\n"):
        e = parse_line(line)
        if e is not None:
            out.append(e)
    return out, offset + end + 1


async def stream(path: Path, *, tail: int | None, since: float | None, until: float | None, follow: bool,
                 done: Callable[[], bool], wake: Callable[[], "asyncio.Future[None] | None"] | None = None,
                 poll: float = 0.1) -> AsyncIterator[Entry]:
    """Entries from the log; with `follow`, keep going until `done()` is true and the file is drained."""
    offset = _tail_offset(path, tail) if tail is not None else 0
    fut: "asyncio.Future[None] | None" = None
    while True:
        entries, offset = await asyncio.to_thread(read_entries, path, offset) if _big(path, offset) else read_entries(path, offset)
        for e in entries:
            if since is not None and e.ts < since:
                continue
            if until is not None and e.ts > until:
                return
            yield e
        if not follow:
            return
        if done():
            # One last read: conmon may have written the final lines just before exiting.
            entries, offset = read_entries(path, offset)
            for e in entries:
                if (since is None or e.ts >= since) and (until is None or e.ts <= until):
                    yield e
            return
        if until is not None and time.time() > until:
            return
        # One wake-up future per stream (the container's exit), reused across polls.
        if fut is None and wake is not None:
            fut = wake()
        try:
            if fut is not None and not fut.done():
                await asyncio.wait_for(asyncio.shield(fut), poll)
            else:
                await asyncio.sleep(poll)
        except asyncio.TimeoutError:
            pass


def _big(path: Path, offset: int) -> bool:
    try:
        return os.path.getsize(path) - offset > 4 * 1024 * 1024
    except OSError:
        return False


def iter_file(path: Path) -> Iterator[Entry]:
    entries, _ = read_entries(path, 0)
    yield from entries
