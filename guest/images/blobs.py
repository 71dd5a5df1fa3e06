"""The content-addressed blob store: configs and (compressed) layer blobs, named by their sha256.

A blob is written to a temp file while its digest is computed, checked against the expected digest, and
only then renamed into place, so a crash or a bad download never leaves a wrong or partial blob visible.
`SingleFlight` lets concurrent pulls share one download of the same blob or layer.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import shutil
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, Generic, TypeVar

from skiffbox.guest.errors import InvalidParameter
from skiffbox.guest.util.atomicfile import durable_rename

_DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")


class DigestMismatch(InvalidParameter):
    pass


def check_digest(digest: str) -> str:
    """Digests come from manifests and clients: validate before they ever become a path."""
    if not isinstance(digest, str) or not _DIGEST_RE.match(digest):
        raise InvalidParameter(f"invalid digest {digest!r}: only sha256 digests are supported")
    return digest


def sha256_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class BlobWriter:
    """A temp file that hashes what is written; `commit()` verifies and renames it into the store."""

    def __init__(self, store: "BlobStore") -> None:
        self.store = store
        self.tmp = store.tmp / f"{secrets.token_hex(8)}"
        self._f: BinaryIO | None = open(self.tmp, "wb")
        self._h = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | memoryview) -> None:
        assert self._f is not None
        self._f.write(data)
        self._h.update(data)
        self.size += len(data)

    @property
    def digest(self) -> str:
        return "sha256:" + self._h.hexdigest()

    def finish(self) -> None:
        """Close the temp file (in the worker thread); `commit` then only renames."""
        if self._f is not None:
            self._f.close()
            self._f = None

    def commit(self, expected: str | None = None) -> str:
        self.finish()
        got = self.digest
        if expected is not None and got != expected:
            self.abort()
            raise DigestMismatch(f"filesystem layer verification failed for digest {expected}")
        durable_rename(self.tmp, self.store.path(got))
        return got

    def abort(self) -> None:
        self.finish()
        try:
            self.tmp.unlink()
        except FileNotFoundError:
            pass

    def __enter__(self) -> "BlobWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.tmp.exists():
            self.abort()


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.dir = root / "sha256"
        self.tmp = root / "tmp"
        for d in (self.dir, self.tmp):
            d.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        return self.dir / check_digest(digest)[7:]

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def size(self, digest: str) -> int:
        return self.path(digest).stat().st_size

    def writer(self) -> BlobWriter:
        return BlobWriter(self)

    def put(self, data: bytes, expected: str | None = None) -> str:
        digest = sha256_bytes(data)
        if expected is not None and digest != expected:
            raise DigestMismatch(f"digest mismatch: expected {expected}, got {digest}")
        if not self.has(digest):
            with self.writer() as w:
                w.write(data)
                w.commit(digest)
        return digest

    def read(self, digest: str) -> bytes:
        """Small blobs (configs): read and verified on every read, so a corrupted file is never trusted."""
        data = self.path(digest).read_bytes()
        if sha256_bytes(data) != digest:
            raise DigestMismatch(f"blob {digest} is corrupted on disk")
        return data

    def open(self, digest: str) -> BinaryIO:
        return open(self.path(digest), "rb")

    def delete(self, digest: str) -> None:
        try:
            self.path(digest).unlink()
        except FileNotFoundError:
            pass

    def digests(self) -> Iterator[str]:
        for p in self.dir.iterdir():
            if len(p.name) == 64:
                yield "sha256:" + p.name

    def cleanup_tmp(self) -> None:
        """At start: whatever was being written when the daemon died is garbage."""
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True, exist_ok=True)


T = TypeVar("T")


class SingleFlight(Generic[T]):
    """One running task per key; later callers await the same task (two pulls of one layer download it once).

    The task is shielded: a caller that goes away (client disconnected) does not cancel the work the
    other callers still wait for.
    """

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[T]] = {}

    def running(self, key: str) -> bool:
        return key in self._tasks

    def get(self, key: str) -> "asyncio.Task[T] | None":
        return self._tasks.get(key)

    async def run(self, key: str, factory: Callable[[], Awaitable[T]]) -> T:
        task = self._tasks.get(key)
        if task is None:
            task = asyncio.ensure_future(factory())
            self._tasks[key] = task

            def forget(t: asyncio.Task[T], k: str = key) -> None:
                if self._tasks.get(k) is t:
                    self._tasks.pop(k, None)

            task.add_done_callback(forget)
        return await asyncio.shield(task)

    def keys(self) -> set[str]:
        return set(self._tasks)
