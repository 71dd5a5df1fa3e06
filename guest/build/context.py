"""The build context: the request body of `POST /build`, extracted into a private directory.

The body is a tar (plain, gzip, bzip2 or xz; the CLI's `--compress` sends gzip) streamed in chunks;
it is extracted while it arrives, by a worker thread reading from a bounded queue, so a large context
is never held in memory. A body that is not an archive is the Dockerfile itself (`docker build - <
Dockerfile`), as in Docker.

Extraction follows the same safety rules as image layers: no absolute paths, no `..`, nothing written
through a symlink (every directory is opened with O_NOFOLLOW from the root, never by path), hard links
only to files already extracted, no device nodes. Modes and mtimes are kept (COPY keeps them); owners
are not (COPY makes files root-owned unless --chown).

`.dockerignore` is applied on the server too: the docker CLI and docker-py filter before sending with
the same rules, so this changes nothing for them, but a client that sends a raw directory tar still
gets Docker's documented behaviour. The Dockerfile and .dockerignore leave the context when they match.
"""

from __future__ import annotations

import asyncio
import bz2
import errno
import lzma
import os
import queue
import shutil
import stat
import tarfile
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from guest.build.dockerfile import DockerfileError
from guest.build.dockerignore import Matcher, go_clean, read_patterns
from guest.containers.rootfs import secure_join
from guest.errors import InvalidParameter

_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 256 * 1024
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

    def __init__(self, decompressor: Any = None) -> None:
        self.q: queue.Queue[bytes | None] = queue.Queue(maxsize=32)
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
                try:
                    self.buf += self.dec.decompress(item)
                except (zlib.error, OSError, lzma.LZMAError, EOFError) as e:
                    raise ContextError(f"the build context is not a valid archive: {e}") from None
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


def _looks_like_tar(head: bytes) -> bool:
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


def _split(name: str) -> list[str]:
    if "\x00" in name:
        raise ContextError(f"invalid path {name!r} in build context")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ContextError(f"invalid path {name!r} in build context: '..' is not allowed")
    return parts


class _Extractor:
    def __init__(self, dest: Path, keep_owner: bool = False, src: object = None) -> None:
        self.keep_owner = keep_owner
        self.src = src
        self.root = os.open(dest, _O_DIR)
        self.fds: dict[tuple[str, ...], int] = {(): self.root}
        self.dir_times: dict[tuple[str, ...], int] = {}

    def close(self) -> None:
        for fd in set(self.fds.values()):
            os.close(fd)
        self.fds.clear()

    def dirfd(self, parts: tuple[str, ...], create: bool = True) -> int:
        fd = self.fds.get(parts)
        if fd is not None:
            return fd
        parent = self.dirfd(parts[:-1], create)
        try:
            fd = os.open(parts[-1], _O_DIR, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise
            os.mkdir(parts[-1], 0o755, dir_fd=parent)
            fd = os.open(parts[-1], _O_DIR, dir_fd=parent)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise ContextError(f"invalid path {'/'.join(parts)!r} in build context: it goes through a symlink or a file") from None
            raise
        if len(self.fds) > 1024:
            for k in [k for k in self.fds if k]:
                os.close(self.fds.pop(k))
        self.fds[parts] = fd
        return fd

    def _clear(self, parent: int, name: str, parts: tuple[str, ...], keep_dir: bool) -> bool:
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return True
            for k in [k for k in self.fds if k[: len(parts)] == parts and k]:
                os.close(self.fds.pop(k))
            shutil.rmtree(name, dir_fd=parent)
        else:
            os.unlink(name, dir_fd=parent)
        return False

    def add(self, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        parts = tuple(_split(m.name))
        mtime = int(m.mtime * 1e9) if m.mtime > 0 else 0
        if not parts:
            return
        parent = self.dirfd(parts[:-1])
        base = parts[-1]
        if m.isdir():
            if not self._clear(parent, base, parts, keep_dir=True):
                os.mkdir(base, 0o700, dir_fd=parent)
            fd = self.dirfd(parts)
            if self.keep_owner:
                os.fchown(fd, m.uid, m.gid)
            os.fchmod(fd, m.mode & 0o7777)
            self.dir_times[parts] = mtime
        elif m.isreg():
            self._clear(parent, base, parts, keep_dir=False)
            fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=parent)
            try:
                src = tf.extractfile(m)
                if src is not None:
                    while True:
                        b = src.read(_CHUNK)
                        if not b:
                            break
                        mv = memoryview(b)
                        while mv:
                            mv = mv[os.write(fd, mv):]
                real = getattr(self.src, "real_size", None)
                if real is not None and m.offset_data + m.size > real:
                    raise ContextError(f"the build context is truncated: {m.name!r} is incomplete")
                if self.keep_owner:
                    os.fchown(fd, m.uid, m.gid)
                os.fchmod(fd, m.mode & 0o7777)
                os.utime(fd, ns=(mtime, mtime))
            finally:
                os.close(fd)
        elif m.issym():
            if not m.linkname or "\x00" in m.linkname:
                raise ContextError(f"invalid symlink {m.name!r} in build context")
            self._clear(parent, base, parts, keep_dir=False)
            os.symlink(m.linkname, base, dir_fd=parent)
            if self.keep_owner:
                os.chown(base, m.uid, m.gid, dir_fd=parent, follow_symlinks=False)
            os.utime(base, ns=(mtime, mtime), dir_fd=parent, follow_symlinks=False)
        elif m.islnk():
            target = tuple(_split(m.linkname))
            if not target:
                raise ContextError(f"invalid hard link {m.name!r} in build context")
            try:
                tparent = self.dirfd(target[:-1], create=False)
                st = os.stat(target[-1], dir_fd=tparent, follow_symlinks=False)
            except FileNotFoundError:
                raise ContextError(f"invalid hard link {m.name!r} in build context: {m.linkname!r} is not in it") from None
            if not stat.S_ISREG(st.st_mode):
                raise ContextError(f"invalid hard link {m.name!r} in build context: target is not a file")
            if target != parts:
                self._clear(parent, base, parts, keep_dir=False)
                os.link(target[-1], base, src_dir_fd=tparent, dst_dir_fd=parent, follow_symlinks=False)
        # Devices, FIFOs and other special files have no place in an image built from a context: skipped.

    def finish(self) -> None:
        for parts in sorted(self.dir_times, key=len, reverse=True):
            try:
                fd = self.dirfd(parts, create=False)
            except (OSError, ContextError):
                continue
            t = self.dir_times[parts]
            os.utime(fd, ns=(t, t))


def _untar(src: object, dest: Path, keep_owner: bool, what: str, mode: str = "r|*") -> None:
    ex = _Extractor(dest, keep_owner, src)
    try:
        try:
            tf = tarfile.open(fileobj=src, mode=mode)  # type: ignore[call-overload]
        except tarfile.ReadError as e:
            if "empty" in str(e):
                return
            raise ContextError(f"{what} is not a valid archive: {e}") from None
        with tf:
            while True:
                try:
                    m = tf.next()
                except tarfile.TarError as e:
                    raise ContextError(f"{what} is not a valid archive: {e}") from None
                if m is None:
                    break
                ex.add(tf, m)
        ex.finish()
    except OSError as e:
        raise ContextError(f"cannot extract {what}: {e}") from None
    finally:
        ex.close()


def _extract(feed: _Feed, dest: Path) -> None:
    try:
        _untar(feed, dest, False, "the build context", mode="r|")  # the feed decompresses
    finally:
        feed.drain()


def extract_archive(path: Path, dest: Path) -> None:
    """ADD's local archive extraction into the existing directory `dest` (owners kept, same safety rules)."""
    with open(path, "rb") as f:
        _untar(f, dest, True, os.path.basename(path))


class BuildContext:
    """An extracted context plus the Dockerfile read from it."""

    def __init__(self, root: Path, dockerfile: bytes, dockerfile_name: str, ignore: Matcher) -> None:
        self.root = root
        self.dockerfile = dockerfile
        self.dockerfile_name = dockerfile_name
        self.ignore = ignore

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


async def receive(body: AsyncIterator[bytes], dest: Path, dockerfile_name: str = "Dockerfile") -> BuildContext:
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
    if not _looks_like_tar(head):
        text = head
        if not done:
            async for chunk in it:
                text += chunk
                if len(text) > _MAX_DOCKERFILE:
                    raise ContextError("the Dockerfile sent as the build context is too large")
        return BuildContext(dest, text, "Dockerfile", Matcher([]))

    feed = _Feed(_decompressor(head))
    loop = asyncio.get_running_loop()
    worker = loop.run_in_executor(None, _extract, feed, dest)
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
    has_exceptions = any(p.exclusion for p in ignore.patterns)
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
        for dirpath, dirnames, filenames in os.walk(root, topdown=False):
            rel = os.path.relpath(dirpath, root)
            if rel != "." and ignore.matches(rel) and not os.listdir(dirpath):
                os.rmdir(dirpath)
