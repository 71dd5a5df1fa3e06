"""Pull/push progress, shown the way the docker CLI shows it (moby pkg/jsonmessage).

On a terminal each layer id gets its own line, redrawn in place with ANSI cursor moves
("a1b2c3d4e5f6: Downloading [=====>      ]  1.2MB/3.4MB 2s"); off a terminal only the status lines
are printed ("a1b2c3d4e5f6: Pull complete"), so logs and scripts get the same text as docker's.
Plain ANSI rather than rich: it is what docker emits, and it costs nothing to import.
"""

from __future__ import annotations

import os
import time

from skiffbox.cli.skiffclient.formatting import human_size
from skiffbox.guest.util.humanize import go_duration  # one implementation with the engine's

TYPE_CHECKING = False  # no runtime `typing` import: it costs startup time and annotations are strings
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any, TextIO


class StreamError(Exception):
    """An `errorDetail` in the stream: the operation failed after it started."""


def _width(fd: int) -> int:
    if fd < 0:
        return 200
    try:
        return os.get_terminal_size(fd).columns
    except OSError:
        return 200


def progress_string(p: dict[str, Any], width: int) -> str:
    """JSONProgress.String(): bar, counts and time left."""
    cur, total = int(p.get("current") or 0), int(p.get("total") or 0)
    units = p.get("units") or ""
    if cur <= 0 and total <= 0:
        return ""
    if total <= 0:
        return f"{human_size(cur, 4):>8}" if not units else f"{cur} {units}"
    pct = min(int(cur / total * 100) // 2, 50)
    bar = ""
    if width > 110:
        bar = "[" + "=" * pct + ">" + " " * max(50 - pct, 0) + "] "
    if p.get("hidecounts"):
        numbers = ""
    elif not units:
        numbers = f"{human_size(cur, 4):>8}/{human_size(total, 4)}"
        if cur > total:
            numbers = f"{human_size(cur, 4):>8}"
    else:
        numbers = f"{cur}/{total} {units}" if cur <= total else f"{cur} {units}"
    left = ""
    start = int(p.get("start") or 0)
    if cur > 0 and start > 0 and pct < 50 and width > 50:
        per = (time.time() - start) / cur
        left = " " + go_duration(max(0, int((total - cur) * per)) * 1_000_000_000)
    return bar + numbers + left


def display_stream(messages: Iterable[dict[str, Any]], out: TextIO, is_tty: bool | None = None,
                   on_aux: Callable[[dict[str, Any]], None] | None = None) -> None:
    """DisplayJSONMessagesStream: raise StreamError on the first errorDetail/error."""
    if is_tty is None:
        try:
            is_tty = out.isatty()
        except (AttributeError, ValueError):
            is_tty = False
    try:
        fd = out.fileno() if is_tty else -1
    except (OSError, ValueError, AttributeError):  # a terminal stand-in without a descriptor (tests)
        fd = -1
    ids: dict[str, int] = {}
    for jm in messages:
        if jm.get("aux") is not None:
            if on_aux:
                on_aux(jm["aux"])
            continue
        diff = 0
        ident = jm.get("id") or ""
        progress = jm.get("progressDetail")
        if ident and (progress is not None or jm.get("progress")):
            line = ids.get(ident)
            if line is None:
                line = len(ids)
                ids[ident] = line
                if is_tty:
                    out.write("\n")
            diff = len(ids) - line
            if is_tty and diff:
                out.write(f"\x1b[{diff}A")
        else:
            ids = {}
        err = jm.get("errorDetail")
        if err is not None or jm.get("error"):
            out.flush()
            msg = (err or {}).get("message") or jm.get("error") or ""
            if (err or {}).get("code") == 401:
                msg = "authentication is required"
            raise StreamError(msg)
        _display(jm, out, is_tty, fd)
        if ident and is_tty and diff:
            out.write(f"\x1b[{diff}B")
        out.flush()


def _display(jm: dict[str, Any], out: TextIO, is_tty: bool, fd: int) -> None:
    progress = jm.get("progressDetail")
    endl = ""
    if is_tty and not jm.get("stream") and progress is not None:
        out.write("\x1b[2K\r")
        endl = "\r"
    elif progress is not None and progress_string(progress, 200):
        return  # progress bars are for terminals only
    if jm.get("timeNano"):
        out.write(_rfc3339_fixed(jm["timeNano"] / 1e9) + " ")
    elif jm.get("time"):
        out.write(_rfc3339_fixed(jm["time"]) + " ")
    if jm.get("id"):
        out.write(f"{jm['id']}: ")
    if jm.get("from"):
        out.write(f"(from {jm['from']}) ")
    status = jm.get("status") or ""
    if progress is not None and is_tty:
        out.write(f"{status} {progress_string(progress, _width(fd))}{endl}")
    elif jm.get("progress"):
        out.write(f"{status} {jm['progress']}{endl}")
    elif jm.get("stream"):
        out.write(f"{jm['stream']}{endl}")
    else:
        out.write(f"{status}{endl}\n")


def _rfc3339_fixed(ts: float) -> str:
    lt = time.localtime(ts)
    frac = f"{ts % 1:.9f}"[2:]
    z = time.strftime("%z", lt)
    zone = "Z" if z == "+0000" else f"{z[:3]}:{z[3:]}"
    return time.strftime("%Y-%m-%dT%H:%M:%S", lt) + f".{frac}{zone}"
