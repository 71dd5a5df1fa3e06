"""`docker cp` (archive HEAD/GET/PUT) and `docker export`.

Paths are resolved inside the container's root with `secure_join`, so symlinks in the container never
lead to host files. Bind mounts (volumes, /etc/hosts, …) are read and written at their host source, as
the container sees them. The stat header's `mode` uses Go's `os.FileMode` bits, which the CLI decodes.
Extraction refuses entries that would climb out of the destination and never follows a symlink it
did not just resolve safely.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import tarfile
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guest.api.filters import rfc3339
from guest.containers.rootfs import secure_join
from guest.containers.store import Container
from guest.errors import Conflict, EngineError, Forbidden, InvalidParameter, NotFound

if TYPE_CHECKING:
    from guest.containers.service import ContainerService

# Go os.FileMode bits
_MODE_DIR = 1 << 31
_MODE_SYMLINK = 1 << 27
_MODE_DEVICE = 1 << 26
_MODE_PIPE = 1 << 25
_MODE_SOCKET = 1 << 24
_MODE_SETUID = 1 << 23
_MODE_SETGID = 1 << 22
_MODE_CHARDEV = 1 << 21
_MODE_STICKY = 1 << 20

CHUNK = 256 * 1024


def go_mode(st_mode: int) -> int:
    m = st_mode & 0o777
    if stat.S_ISDIR(st_mode):
        m |= _MODE_DIR
    elif stat.S_ISLNK(st_mode):
        m |= _MODE_SYMLINK
    elif stat.S_ISFIFO(st_mode):
        m |= _MODE_PIPE
    elif stat.S_ISSOCK(st_mode):
        m |= _MODE_SOCKET
    elif stat.S_ISCHR(st_mode):
        m |= _MODE_DEVICE | _MODE_CHARDEV
    elif stat.S_ISBLK(st_mode):
        m |= _MODE_DEVICE
    if st_mode & stat.S_ISUID:
        m |= _MODE_SETUID
    if st_mode & stat.S_ISGID:
        m |= _MODE_SETGID
    if st_mode & stat.S_ISVTX:
        m |= _MODE_STICKY
    return m


class _Mounts:
    """The container's bind mounts (dest → host source), longest destination first."""

    def __init__(self, c: Container) -> None:
        self.binds: list[tuple[str, str]] = []
        try:
            spec = json.loads((c.bundle / "config.json").read_text()) if c.running else None
        except (OSError, ValueError):
            spec = None
        mounts = (spec or {}).get("mounts") or []
        if not mounts:
            mounts = [{"destination": d, "type": "bind", "source": str(c.dir / n)}
                      for d, n in (("/etc/hosts", "hosts"), ("/etc/hostname", "hostname"), ("/etc/resolv.conf", "resolv.conf"))]
        for m in mounts:
            if m.get("type") == "bind" and m.get("source", "").startswith("/") and m["destination"] != "/sbin/docker-init":
                self.binds.append((os.path.normpath(m["destination"]), m["source"]))
        self.binds.sort(key=lambda b: len(b[0]), reverse=True)


def resolve(root: Path, mounts: _Mounts, path: str, follow_last: bool) -> tuple[Path, str]:
    """Host path for a container path, plus the container path it resolved to."""
    p = "/" + path.lstrip("/")
    for dest, src in mounts.binds:
        if p == dest or p.startswith(dest.rstrip("/") + "/"):
            rest = p[len(dest):]
            if not rest.strip("/") and not os.path.isdir(src):
                return Path(src), dest
            return secure_join(Path(src), rest, follow_last), p
    host = secure_join(root, p, follow_last)
    return host, "/" + os.path.relpath(host, root) if host != root else "/"


def _stat_dict(host: Path, name: str, root: Path) -> dict[str, Any]:
    st = os.lstat(host)
    link = ""
    if stat.S_ISLNK(st.st_mode):
        try:
            target = secure_join(root, "/" + os.path.relpath(host, root), follow_last=True)
            link = "/" + os.path.relpath(target, root)
        except (OSError, ValueError):
            link = os.readlink(host)
    return {"name": name, "size": st.st_size, "mode": go_mode(st.st_mode), "mtime": rfc3339(st.st_mtime),
            "linkTarget": link}


def _not_found(c: Container, path: str) -> NotFound:
    return NotFound(f"Could not find the file {path} in container {c.name}")


async def stat_path(svc: "ContainerService", c: Container, path: str) -> dict[str, Any]:
    root = await svc.acquire_rootfs(c)
    try:
        host, _ = resolve(root, _Mounts(c), path, follow_last=False)
        if not os.path.lexists(host):
            raise _not_found(c, path)
        return _stat_dict(host, os.path.basename(path.rstrip("/")) or "/", root)
    finally:
        await svc.release_rootfs(c)


async def get_archive(svc: "ContainerService", c: Container, path: str) -> tuple[dict[str, Any], AsyncIterator[bytes]]:
    root = await svc.acquire_rootfs(c)
    try:
        mounts = _Mounts(c)
        follow = path.endswith("/") or path.endswith("/.")
        host, _ = resolve(root, mounts, path, follow_last=follow)
        if not os.path.lexists(host):
            raise _not_found(c, path)
        if path.endswith("/") and not host.is_dir():
            raise InvalidParameter(f"not a directory: {path}")
        st = _stat_dict(host, os.path.basename(path.rstrip("/")) or "/", root)
        base = "." if path.endswith("/.") else (os.path.basename(path.rstrip("/")) or ".")
    except BaseException:
        await svc.release_rootfs(c)
        raise

    def produce(w: Any) -> None:
        with tarfile.open(fileobj=w, mode="w|", format=tarfile.PAX_FORMAT) as tf:
            tf.add(str(host), arcname=base, recursive=True, filter=_numeric)

    async def chunks() -> AsyncIterator[bytes]:
        try:
            async for b in _threaded_writer(produce):
                yield b
        finally:
            await svc.release_rootfs(c)

    return st, chunks()


def _numeric(ti: tarfile.TarInfo) -> tarfile.TarInfo | None:
    if ti.type not in (tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.FIFOTYPE,
                       tarfile.CHRTYPE, tarfile.BLKTYPE):
        return None
    ti.uname = ti.gname = ""
    return ti


class _PipeWriter:
    """A file-like sink for tarfile running in a thread, feeding an asyncio queue with back-pressure."""

    def __init__(self, loop: asyncio.AbstractEventLoop, q: "asyncio.Queue[bytes | None]") -> None:
        self.loop, self.q = loop, q
        self.buf = bytearray()
        self.cancelled = threading.Event()

    def write(self, b: bytes) -> int:
        if self.cancelled.is_set():
            raise BrokenPipeError("client went away")
        self.buf += b
        if len(self.buf) >= CHUNK:
            self.flush()
        return len(b)

    def flush(self) -> None:
        if self.buf:
            data, self.buf = bytes(self.buf), bytearray()
            asyncio.run_coroutine_threadsafe(self.q.put(data), self.loop).result()

    def close(self) -> None:
        self.flush()


async def _threaded_writer(produce: Any) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    q: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=8)
    w = _PipeWriter(loop, q)
    err: list[BaseException] = []

    def run() -> None:
        try:
            produce(w)
            w.flush()
        except BaseException as e:
            err.append(e)
        finally:
            asyncio.run_coroutine_threadsafe(q.put(None), loop).result()

    t = loop.run_in_executor(None, run)
    try:
        while True:
            b = await q.get()
            if b is None:
                break
            yield b
    finally:
        w.cancelled.set()
        while not t.done():
            try:
                q.get_nowait()
            except asyncio.QueueEmpty:
                await asyncio.sleep(0.01)
        await t


async def export_stream(svc: "ContainerService", c: Container) -> AsyncIterator[bytes]:
    from guest.images.layers import write_tar

    root = await svc.acquire_rootfs(c)
    svc.event(c, "export")
    try:
        async for b in _threaded_writer(lambda w: write_tar(root, w, convert_whiteouts=False)):
            yield b
    finally:
        await svc.release_rootfs(c)


# ---------------------------------------------------------------------------------------------
# PUT: extract a tar into the container
# ---------------------------------------------------------------------------------------------


class _ByteQueueReader:
    """A blocking, file-like reader over chunks pushed from the event loop (tarfile streams from it)."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.cv = threading.Condition()
        self.eof = False
        self.buf = b""

    def push(self, b: bytes | None) -> None:
        with self.cv:
            if b is None:
                self.eof = True
            else:
                self.chunks.append(b)
            self.cv.notify()

    def pending(self) -> int:
        with self.cv:
            return sum(len(c) for c in self.chunks)

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self.buf) < n:
            with self.cv:
                while not self.chunks and not self.eof:
                    self.cv.wait()
                if not self.chunks:
                    break
                self.buf += b"".join(self.chunks)
                self.chunks.clear()
        if n < 0:
            out, self.buf = self.buf, b""
        else:
            out, self.buf = self.buf[:n], self.buf[n:]
        return out


def _safe_parts(name: str) -> list[str]:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise InvalidParameter(f"invalid path in archive: {name!r}")
    if any("\0" in p for p in parts):
        raise InvalidParameter("invalid path in archive")
    return parts


def extract(src: Any, dest: Path, *, chown_root: bool, no_overwrite_dir_non_dir: bool) -> None:
    """Extract a tar stream under `dest` (a directory inside a container root or a bind source)."""
    with tarfile.open(fileobj=src, mode="r|*") as tf:
        for m in tf:
            parts = _safe_parts(m.name)
            if not parts:
                continue
            parent = secure_join(dest, "/".join(parts[:-1]), follow_last=True) if parts[:-1] else dest
            if not str(parent).startswith(str(dest)):
                raise InvalidParameter(f"invalid path in archive: {m.name!r}")
            parent.mkdir(parents=True, exist_ok=True)
            target = parent / parts[-1]
            exists = os.path.lexists(target)
            if exists:
                is_dir = target.is_dir() and not target.is_symlink()
                if no_overwrite_dir_non_dir and is_dir != m.isdir():
                    what = "directory" if is_dir else "non-directory"
                    raise Conflict(f"cannot overwrite {what} \"{'/'.join(parts)}\" with "
                                   f"{'directory' if m.isdir() else 'non-directory'}")
                if not (is_dir and m.isdir()):
                    if is_dir:
                        shutil.rmtree(target)
                    else:
                        target.unlink()
            uid, gid = (0, 0) if chown_root else (m.uid, m.gid)
            if m.isdir():
                target.mkdir(exist_ok=True)
                os.chmod(target, m.mode & 0o7777)
            elif m.isreg():
                f = tf.extractfile(m)
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
                with os.fdopen(fd, "wb") as out:
                    assert f is not None
                    shutil.copyfileobj(f, out, CHUNK)
                os.chmod(target, m.mode & 0o7777)
            elif m.issym():
                os.symlink(m.linkname, target)
            elif m.islnk():
                lparts = _safe_parts(m.linkname)
                src_path = secure_join(dest, "/".join(lparts), follow_last=False)
                if not str(src_path).startswith(str(dest)) or not os.path.lexists(src_path):
                    raise InvalidParameter(f"invalid hard link in archive: {m.linkname!r}")
                os.link(src_path, target, follow_symlinks=False)
            elif m.isfifo():
                os.mkfifo(target, m.mode & 0o777)
            else:
                continue  # devices are not copied into containers
            try:
                os.chown(target, uid, gid, follow_symlinks=False)
            except OSError:
                pass
            if not m.issym():
                try:
                    os.utime(target, (m.mtime, m.mtime), follow_symlinks=False)
                except OSError:
                    pass


async def put_archive(svc: "ContainerService", c: Container, path: str, body: AsyncIterator[bytes], *,
                      no_overwrite_dir_non_dir: bool, copy_uid_gid: bool) -> None:
    root = await svc.acquire_rootfs(c)
    try:
        mounts = _Mounts(c)
        host, cpath = resolve(root, mounts, path, follow_last=True)
        if not os.path.lexists(host):
            raise _not_found(c, path)
        if not host.is_dir():
            raise InvalidParameter("extraction point is not a directory")
        if c.host_config.get("ReadonlyRootfs") and str(host).startswith(str(root)):
            raise Forbidden("container rootfs is marked read-only")
        reader = _ByteQueueReader()
        loop = asyncio.get_running_loop()
        job = loop.run_in_executor(None, lambda: extract(reader, host, chown_root=not copy_uid_gid,
                                                         no_overwrite_dir_non_dir=no_overwrite_dir_non_dir))
        try:
            async for chunk in body:
                if job.done():
                    break
                reader.push(chunk)
                while reader.pending() > 4 * CHUNK and not job.done():
                    await asyncio.sleep(0.005)
        finally:
            reader.push(None)
        try:
            await job
        except EngineError:
            raise
        except tarfile.TarError as e:
            raise InvalidParameter(f"invalid tar archive: {e}") from None
        except OSError as e:
            raise InvalidParameter(f"extracting archive: {e}") from None
    finally:
        await svc.release_rootfs(c)
