"""The engine's one way to replace a file: durable and atomic.

Write a temp file in the same folder, fsync it, rename it over the target, fsync the folder: after a crash or a
power loss a reader finds the old content or the new, never half of one, and the new survives once this returns.
A failure (a full disk, an unserialisable object) leaves the old file as it was and removes the temp file. Temp
names start with TMP_PREFIX, so a store can sweep what a killed daemon left behind (and dnsmasq, like most
readers of a watched folder, ignores them: dotfiles).

`durable=False` skips both fsyncs, for runtime state under the exec root (/run): it only has to survive a daemon
crash, which the rename alone guarantees, since a power loss wipes /run anyway.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import tempfile
from pathlib import Path
from typing import Any

TMP_PREFIX = ".tmp-"


def atomic_write(path: Path, data: bytes | str, mode: int = 0o644, durable: bool = True) -> None:
    path = Path(path)
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fchmod(f.fileno(), mode)
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(path.parent)


def atomic_write_json(path: Path, obj: Any, mode: int = 0o644, durable: bool = True) -> None:
    """`obj` as JSON; serialised before anything is written, so a bad object never touches the disk."""
    atomic_write(path, json.dumps(obj), mode, durable)


def durable_rename(src: Path, dest: Path) -> None:
    """Move a finished temp file or directory (a streamed blob, an unpacked layer: too big for atomic_write) over
    `dest`: its content made durable first (the file fsynced; a directory tree by a syncfs of its filesystem,
    one call rather than an fsync per file), then the rename, then the folder holding `dest`."""
    src, dest = Path(src), Path(dest)
    fd = os.open(src, os.O_RDONLY | (os.O_DIRECTORY if src.is_dir() else 0))
    try:
        if src.is_dir():
            _syncfs(fd)
        else:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(src, dest)
    fsync_dir(dest.parent)


def _syncfs(fd: int) -> None:
    if _libc.syncfs(fd) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"syncfs: {os.strerror(e)}")


_libc = ctypes.CDLL(None, use_errno=True)


def fsync_dir(path: Path) -> None:
    """Make a rename (or a new entry) in `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
