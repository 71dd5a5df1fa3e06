"""The build context: the request body of `POST /build`, extracted into a private directory.

The body is a tar (plain, gzip, bzip2 or xz; the CLI's `--compress` sends gzip) streamed in chunks;
it is extracted while it arrives, by a worker thread reading from a bounded queue, so a large context
is never held in memory. A body that is not an archive is the Dockerfile itself (`docker build - <
Dockerfile`), as in Docker.

Extraction is the one shared with image layers (guest/images/tarsafety.py: no absolute paths, no `..`,
nothing written through a symlink, hard links only inside, bombs bounded), with the rules of a context:
symlinks are kept whatever they point at (COPY copies them as links, never follows them), device nodes
and FIFOs are skipped, modes and mtimes are kept (COPY keeps them), owners are not (COPY makes files
root-owned unless --chown). ADD's local archives are extracted the same way, keeping owners.

`.dockerignore` is applied on the server too: the docker CLI and docker-py filter before sending with
the same rules, so this changes nothing for them, but a client that sends a raw directory tar still
gets Docker's documented behaviour. The Dockerfile and .dockerignore leave the context when they match.
"""

from __future__ import annotations

import asyncio
import bz2
import lzma
import os
import queue
import shutil
import tarfile
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from skiffbox.guest.build.dockerfile import DockerfileError
from skiffbox.guest.build.dockerignore import Matcher, go_clean, read_patterns
from skiffbox.guest.containers.rootfs import secure_join
from skiffbox.guest.errors import InvalidParameter
from skiffbox.guest.images import tarsafety
from skiffbox.guest.images.tarsafety import Limits, SafeExtractor, TarRules

_MAX_DOCKERFILE = 16 << 20
_COMPRESSED = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")


class ContextError(InvalidParameter):
    pass


def _decompressor(head: bytes) -> Any:
    if head.startswith(b"\x1f\x8b"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if head.startswith(b"BZh"):
        return bz2.BZ2Decompressor()
    if head.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMADecompressor()
    return None


class _Feed:
    """A blocking file object over the body's chunks (put into a queue from the event loop), decompressed.

    A tar that stops right after its last member's data is completed with zeros: the docker CLI sends
    that when `-f` names a Dockerfile outside the context (no padding, no end-of-archive blocks), and
    Docker accepts it. `real_size` tells where the real bytes ended, so a member whose data was cut
    short is still refused.
    """

    def __init__(self, decompressor: Any = None, limits: Limits | None = None) -> None:
        self.q: queue.Queue[bytes | None] = queue.Queue(maxsize=32)
        self.compressed = 0
        self.out = 0  # decompressed bytes so far
        self.ratio = tarsafety.ratio_check(_context_rules(limits or Limits()), lambda: self.compressed)
        self.buf = bytearray()
        self.pos = 0  # bytes handed out so far
        self.eof = False
        self.aborted = False
        self.dec = decompressor
        self.real_size: int | None = None

    def read(self, n: int = -1) -> bytes:
        while not self.eof and (n < 0 or len(self.buf) < n):
            item = self.q.get()
            if item is None:
                self.eof = True
                if self.dec is not None and hasattr(self.dec, "flush"):
                    self.buf += self.dec.flush()
                self.real_size = self.pos + len(self.buf)
                self.buf += bytes(-self.real_size % 512 + 1024)
            elif self.dec is not None:
                self.compressed += len(item)
                try:
                    out = self.dec.decompress(item)
                except (zlib.error, OSError, lzma.LZMAError, EOFError) as e:
                    raise ContextError(f"the build context is not a valid archive: {e}") from None
                self.out += len(out)
                self.ratio(self.out)
                self.buf += out
            else:
                self.buf += item
        if n < 0 or n >= len(self.buf):
            out = bytes(self.buf)
            self.buf.clear()
        else:
            out = bytes(self.buf[:n])
            del self.buf[:n]
        self.pos += len(out)
        return out

    def drain(self) -> None:
        """Consume what is left, so the producer never blocks on a full queue."""
        self.aborted = True
        while not self.eof:
            if self.q.get() is None:
                self.eof = True


def looks_like_archive(head: bytes) -> bool:
    """Whether the first 512 bytes of something are a tar (by its header checksum) or compressed."""
    if head.startswith(_COMPRESSED):
        return True
    if len(head) < 512:
        return False
    if head[257:262] == b"ustar":
        return True
    try:
        want = int(head[148:156].split(b"\0", 1)[0].strip() or b"-1", 8)
    except ValueError:
        return False
    got = sum(head[:148]) + 8 * 32 + sum(head[156:512])
    return want == got


def _context_rules(limits: Limits, where: str = "build context", owners: bool = False) -> TarRules:
    return TarRules(where, ContextError, limits, outside_symlinks=True, devices="skip", fifos=False, owners=owners)


class _Extractor(SafeExtractor):
    """The shared safe extraction; a context whose body ended inside a member's data is refused."""

    def __init__(self, dest: Path, rules: TarRules, feed: _Feed) -> None:
        super().__init__(dest, rules)
        self.feed = feed

    def data_written(self, m: tarfile.TarInfo) -> None:
        real = self.feed.real_size
        if real is not None and m.offset_data + m.size > real:
            raise ContextError(f"the build context is truncated: {m.name!r} is incomplete")


def _extract(feed: _Feed, dest: Path, limits: Limits) -> None:
    try:
        tarsafety.extract(_Extractor(dest, _context_rules(limits), feed), feed, "r|", "the build context")
    finally:
        feed.drain()


def extract_archive(path: Path, dest: Path) -> None:
    """ADD's local archive extraction into the existing directory `dest` (owners kept)."""
    name = os.path.basename(path)
    rules = _context_rules(Limits(), f"archive {name!r}", owners=True)
    with open(path, "rb") as f:
        tarsafety.extract(SafeExtractor(dest, rules, fresh=False), f, "r|*", name)


class BuildContext:
    """An extracted context plus the Dockerfile read from it."""

    def __init__(self, root: Path, dockerfile: bytes, dockerfile_name: str, ignore: Matcher) -> None:
        self.root = root
        self.dockerfile = dockerfile
        self.dockerfile_name = dockerfile_name
        self.ignore = ignore

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


async def receive(body: AsyncIterator[bytes], dest: Path, dockerfile_name: str = "Dockerfile",
                  limits: Limits | None = None) -> BuildContext:
    """Extract the request body into the (new, empty) directory `dest` and read the Dockerfile."""
    dest.mkdir(parents=True, exist_ok=False)
    os.chmod(dest, 0o700)
    head = b""
    it = body.__aiter__()
    done = False
    while len(head) < 512:
        try:
            head += await it.__anext__()
        except StopAsyncIteration:
            done = True
            break
    if not looks_like_archive(head):
        text = head
        if not done:
            async for chunk in it:
                text += chunk
                if len(text) > _MAX_DOCKERFILE:
                    raise ContextError("the Dockerfile sent as the build context is too large")
        return BuildContext(dest, text, "Dockerfile", Matcher([]))

    limits = limits or Limits()
    feed = _Feed(_decompressor(head), limits)
    loop = asyncio.get_running_loop()
    worker = loop.run_in_executor(None, _extract, feed, dest, limits)
    try:
        await loop.run_in_executor(None, feed.q.put, head)
        if not done:
            async for chunk in it:
                if feed.aborted:
                    continue
                if not feed.q.full():
                    feed.q.put_nowait(chunk)
                else:
                    await loop.run_in_executor(None, feed.q.put, chunk)
    finally:
        await loop.run_in_executor(None, feed.q.put, None)
        await worker
    return await loop.run_in_executor(None, _finish, dest, dockerfile_name)


def _read_in(root: Path, rel: str, limit: int) -> bytes | None:
    """Read a context file by relative path, refusing symlinks that leave the context."""
    try:
        p = secure_join(root, rel)
        with open(p, "rb") as f:
            data = f.read(limit + 1)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    if len(data) > limit:
        raise ContextError(f"{rel} is too large")
    return data


def _finish(dest: Path, dockerfile_name: str) -> BuildContext:
    name = go_clean(dockerfile_name or "Dockerfile")
    if name.startswith("../") or name == "..":
        raise ContextError(f"Cannot locate specified Dockerfile: {dockerfile_name}")
    name = name.lstrip("/")
    text = _read_in(dest, name, _MAX_DOCKERFILE)
    if text is None and name == "Dockerfile":
        name = "dockerfile"
        text = _read_in(dest, name, _MAX_DOCKERFILE)
    if text is None:
        raise ContextError(f"Cannot locate specified Dockerfile: {dockerfile_name or 'Dockerfile'}")
    ignore_text = _read_in(dest, ".dockerignore", 1 << 20)
    try:
        ignore = Matcher(read_patterns(ignore_text)) if ignore_text else Matcher([])
    except DockerfileError as e:
        raise ContextError(str(e)) from None
    if ignore:
        _apply_ignore(dest, ignore)
    return BuildContext(dest, text, name, ignore)


def _apply_ignore(root: Path, ignore: Matcher) -> None:
    """Remove excluded paths. A directory that matches is still walked when exceptions (`!`) exist,
    since a file below it may be re-included."""
    has_exceptions = ignore.has_exceptions
    for dirpath, dirnames, filenames in os.walk(root, topdown=True):
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        for n in list(dirnames):
            rel = rel_dir + n
            full = os.path.join(dirpath, n)
            if os.path.islink(full):  # a symlink to a directory is an entry, never walked into
                dirnames.remove(n)
                if ignore.matches(rel):
                    os.unlink(full)
                continue
            if ignore.matches(rel):
                if not has_exceptions:
                    shutil.rmtree(full, ignore_errors=True)
                    dirnames.remove(n)
                # with exceptions: walk in; empty excluded dirs are pruned below
        for n in filenames:
            rel = rel_dir + n
            if ignore.matches(rel):
                os.unlink(os.path.join(dirpath, n))
    if has_exceptions:
        for dirpath, _dirs, _files in os.walk(root, topdown=False):
            rel = os.path.relpath(dirpath, root)
            if rel != "." and ignore.matches(rel) and not os.listdir(dirpath):
                os.rmdir(dirpath)
