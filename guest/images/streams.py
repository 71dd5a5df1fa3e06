"""Byte-stream helpers for layers: hashing while reading, and decompression detected by magic bytes."""

from __future__ import annotations

import hashlib
import queue
import shutil
import subprocess
import threading
import zlib
from collections.abc import Callable
from typing import BinaryIO, Protocol

from skiffbox.guest.errors import InvalidParameter

CHUNK = 256 * 1024


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class HashingReader:
    """Passes bytes through while hashing and counting them; `check` runs on every chunk (bomb limits)."""

    def __init__(self, src: Readable, tee: Callable[[bytes], None] | None = None,
                 check: Callable[[int], None] | None = None) -> None:
        self.src = src
        self.h = hashlib.sha256()
        self.count = 0
        self._tee = tee
        self._check = check

    def read(self, n: int = -1) -> bytes:
        data = self.src.read(n if n and n > 0 else CHUNK)
        if data:
            self.h.update(data)
            self.count += len(data)
            if self._tee is not None:
                self._tee(data)
            if self._check is not None:
                self._check(self.count)
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass

    @property
    def digest(self) -> str:
        return "sha256:" + self.h.hexdigest()


class _Peek:
    def __init__(self, src: Readable, head: bytes) -> None:
        self.src = src
        self.head = head

    def read(self, n: int = -1) -> bytes:
        if self.head:
            out, self.head = self.head, b""
            return out
        return self.src.read(n)


class GzipReader:
    """Streaming gzip decoder (multi-member, like Go's gzip.Reader) on top of zlib."""

    def __init__(self, src: Readable) -> None:
        self.src = src
        self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._eof = False
        self._buf = b""

    def read(self, n: int = -1) -> bytes:
        n = n if n and n > 0 else CHUNK
        while not self._buf and not self._eof:
            if self._d.unconsumed_tail:
                self._buf = self._d.decompress(self._d.unconsumed_tail, max(n, CHUNK))
                continue
            raw = self.src.read(CHUNK)
            if not raw:
                if not self._d.eof:
                    raise InvalidParameter("unexpected EOF in gzip-compressed layer")
                self._eof = True
                break
            if self._d.eof:
                rest = self._d.unused_data + raw
                if rest.strip(b"\0") == b"":  # zero padding after the last member
                    continue
                self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                raw = rest
            try:
                self._buf = self._d.decompress(raw, max(n, CHUNK))
            except zlib.error as e:
                raise InvalidParameter(f"invalid gzip data in layer: {e}") from None
        out, self._buf = self._buf[:n], self._buf[n:]
        return out


class ZstdReader:
    """zstd via the `zstd` program (Python 3.11 has no zstd module); fed from a thread."""

    def __init__(self, src: Readable) -> None:
        exe = shutil.which("zstd")
        if exe is None:
            raise InvalidParameter("zstd-compressed layers need the zstd program on the host")
        self.proc = subprocess.Popen([exe, "-dc"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.error: BaseException | None = None
        self._t = threading.Thread(target=self._feed, args=(src,), daemon=True)
        self._t.start()

    def _feed(self, src: Readable) -> None:
        assert self.proc.stdin is not None
        try:
            while True:
                b = src.read(CHUNK)
                if not b:
                    break
                self.proc.stdin.write(b)
        except BaseException as e:  # reported by read()
            self.error = e
        finally:
            try:
                self.proc.stdin.close()
            except OSError:
                pass

    def read(self, n: int = -1) -> bytes:
        assert self.proc.stdout is not None
        data: bytes = self.proc.stdout.read1(n if n and n > 0 else CHUNK)  # type: ignore[attr-defined]
        if not data:
            self._t.join()
            rc = self.proc.wait()
            if self.error is not None:
                raise self.error
            if rc != 0:
                raise InvalidParameter("invalid zstd data in layer")
        return data


GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def decompressed(src: Readable) -> Readable:
    """Detect the compression from the first bytes (as Docker does, whatever the media type says)."""
    head = b""
    while len(head) < 4:
        b = src.read(4 - len(head))
        if not b:
            break
        head += b
    peek = _Peek(src, head)
    if head.startswith(GZIP_MAGIC):
        return GzipReader(peek)
    if head.startswith(ZSTD_MAGIC):
        return ZstdReader(peek)
    if head[:3] == b"BZh" or head.startswith(b"\xfd7zXZ"):
        raise InvalidParameter("unsupported layer compression (bzip2/xz)")
    return peek


def copy_stream(src: Readable, dst: BinaryIO, limit: int | None = None) -> int:
    n = 0
    while True:
        b = src.read(CHUNK)
        if not b:
            return n
        dst.write(b)
        n += len(b)
        if limit is not None and n > limit:
            raise InvalidParameter("stream larger than allowed")


class FullReader:
    """`read(n)` returns exactly n bytes unless the stream ends (tarfile's copy needs full reads)."""

    def __init__(self, src: Readable) -> None:
        self.src = src

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            parts: list[bytes] = []
            while True:
                b = self.src.read(CHUNK)
                if not b:
                    return b"".join(parts)
                parts.append(b)
        buf = bytearray()
        while len(buf) < n:
            b = self.src.read(n - len(buf))
            if not b:
                break
            buf += b
        return bytes(buf)


class ForwardReader:
    """A stream that `tarfile` may open in seekable mode ("r:") as long as it only seeks forward.

    tarfile's stream mode ("r|") copies its read buffer on every header it parses; this reader hands out
    slices of big chunks instead, which makes unpacking layers with many small files much cheaper."""

    def __init__(self, src: Readable) -> None:
        self.src = src
        self.buf = b""
        self.pos = 0
        self.off = 0

    def tell(self) -> int:
        return self.off

    def seekable(self) -> bool:
        return True

    def seek(self, target: int, whence: int = 0) -> int:
        if whence == 1:
            target += self.off
        elif whence != 0:
            raise OSError("cannot seek from the end of a stream")
        if target < self.off:
            raise OSError("cannot seek backwards in a stream")
        left = target - self.off
        while left:
            b = self.read(min(left, CHUNK))
            if not b:
                break
            left -= len(b)
        return self.off

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = 1 << 62
        parts: list[bytes] = []
        while n > 0:
            if self.pos >= len(self.buf):
                self.buf = self.src.read(max(CHUNK, min(n, 4 * CHUNK)))
                self.pos = 0
                if not self.buf:
                    break
            take = min(n, len(self.buf) - self.pos)
            if self.pos == 0 and take == len(self.buf):
                parts.append(self.buf)
            else:
                parts.append(self.buf[self.pos:self.pos + take])
            self.pos += take
            self.off += take
            n -= take
        return parts[0] if len(parts) == 1 else b"".join(parts)


class Prefetcher:
    """Reads `src` in a thread of its own, a few chunks ahead of the consumer.

    Pulls run as a two-stage pipeline: download, digests and decompression here; tar parsing and file
    creation in the caller's thread. The stages overlap, and a busy machine gives the work two threads'
    worth of CPU time instead of one."""

    def __init__(self, src: Readable, depth: int = 16) -> None:
        self.src = src
        self.q: "queue.Queue[bytes | BaseException]" = queue.Queue(depth)
        self._stop = False
        self._buf = b""
        self._eof = False
        self._t = threading.Thread(target=self._run, name="layer-prefetch", daemon=True)
        self._t.start()

    def _put(self, item: "bytes | BaseException") -> None:
        while not self._stop:
            try:
                self.q.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def _run(self) -> None:
        try:
            while not self._stop:
                b = self.src.read(CHUNK)
                self._put(b)
                if not b:
                    return
        except BaseException as e:  # handed to the consumer
            self._put(e)

    def read(self, n: int = -1) -> bytes:
        while not self._buf and not self._eof:
            item = self.q.get()
            if isinstance(item, BaseException):
                self._eof = True
                raise item
            if not item:
                self._eof = True
            self._buf = item
        if n is None or n < 0 or n >= len(self._buf):
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def drain(self) -> None:
        while self.read(CHUNK):
            pass

    def close(self) -> None:
        self._stop = True
        while True:
            try:
                self.q.get_nowait()
            except queue.Empty:
                break
        self._t.join(10)
