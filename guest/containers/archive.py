"""`docker cp` (archive HEAD/GET/PUT) and `docker export`.

The container may be running while files are copied, and it owns every name in its root: it can swap a
directory for a symlink at any moment (CVE-2018-15664). So nothing here follows a host path string below
the container's root. `Scope` walks a container path one component at a time by descriptor, from a
descriptor of the root, with O_NOFOLLOW; a symlink it meets is read from the very descriptor it opened
and followed inside the container's root (moby's `FollowSymlinkInScope`: `..` and absolute targets stop
at the root). Reading a tree (GET, export) is the one descriptor walk (guest/images/treewalk.py, which
layer tars use too), continuing at a mount's source through `Scope.open_child`; writing (PUT) is the one safe
extractor (guest/images/tarsafety.py) rooted at the resolved descriptor.

Bind mounts (volumes, /etc/hosts, …) are not visible in the rootfs from the host: a component whose
container path is a mount destination continues at the mount's host source, as the container sees it.
The stat header's `mode` uses Go's `os.FileMode` bits, which the CLI decodes.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import posixpath
import stat
import tarfile
import threading
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skiffbox.guest.containers.store import Container
from skiffbox.guest.errors import Conflict, EngineError, Forbidden, InvalidParameter, NotFound
from skiffbox.guest.images import tarsafety
from skiffbox.guest.images.tarsafety import SafeExtractor, TarRules
from skiffbox.guest.images.treewalk import O_DIR, O_PATH, TreeWriter
from skiffbox.guest.util.timefmt import rfc3339

if TYPE_CHECKING:
    from skiffbox.guest.containers.service import ContainerService

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


_MAX_LINKS = 40  # as the kernel's ELOOP limit


@dataclass(frozen=True)
class Bind:
    dest: str  # normalized container path
    source: str  # host path (chosen by the daemon or the user, never by the container)
    ro: bool


class Mounts:
    """The container's bind mounts, by destination."""

    def __init__(self, binds: Iterable[Bind] = ()) -> None:
        self.binds: dict[str, Bind] = {b.dest: b for b in binds}

    @classmethod
    def of(cls, c: Container) -> "Mounts":
        """A running container's from its OCI spec; a stopped one's /etc files, volumes and binds (its record's
        Mounts: what it wrote into a volume is there, as dockerd mounts them for cp of a stopped container)."""
        try:
            spec = json.loads((c.bundle / "config.json").read_text()) if c.running else None
        except (OSError, ValueError):
            spec = None
        mounts = (spec or {}).get("mounts") or []
        if not mounts:
            mounts = [{"destination": d, "type": "bind", "source": str(c.dir / n)}
                      for d, n in (("/etc/hosts", "hosts"), ("/etc/hostname", "hostname"), ("/etc/resolv.conf", "resolv.conf"))]
            mounts += [{"destination": m["Destination"], "type": "bind", "source": m["Source"],
                        "options": [] if m.get("RW", True) else ["ro"]}
                       for m in c.rec.get("Mounts") or []
                       if m.get("Type") in ("bind", "volume") and m.get("Destination") and m.get("Source")]
        return cls(Bind(posixpath.normpath("/" + m["destination"].lstrip("/")), m["source"], "ro" in (m.get("options") or []))
                   for m in mounts
                   if m.get("type") == "bind" and m.get("source", "").startswith("/") and m["destination"] != "/sbin/docker-init")

    def at(self, cpath: str) -> Bind | None:
        return self.binds.get(cpath) if self.binds else None


@dataclass
class Loc:
    """Where a container path leads: `fd` an O_PATH descriptor of it (None: it does not exist),
    `cpath` the container path it resolved to, `bind` the mount it lies in (None: the rootfs)."""

    fd: int | None
    cpath: str
    bind: Bind | None

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class Scope:
    """A container's filesystem as the container sees it, walked by descriptor from its root."""

    def __init__(self, root: Path, mounts: Mounts) -> None:
        self.mounts = mounts
        self.root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    def close(self) -> None:
        os.close(self.root_fd)

    def open_bind(self, b: Bind) -> int:
        return os.open(b.source, os.O_PATH | os.O_CLOEXEC)

    def open_child(self, dir_fd: int, cpath: str, name: str) -> int:
        """An O_PATH descriptor of `name` in the directory `dir_fd` (container path `cpath`)."""
        b = self.mounts.at(posixpath.join(cpath, name))
        return self.open_bind(b) if b is not None else os.open(name, O_PATH, dir_fd=dir_fd)

    def resolve(self, path: str, follow_last: bool) -> Loc:
        """Resolve `path` inside the container: symlinks on the way (and the last one if `follow_last`)
        are followed in the container's root. A missing component gives `fd` None."""
        todo = [p for p in reversed(path.split("/")) if p not in ("", ".")]
        stack: list[tuple[str, int, Bind | None]] = []  # the components resolved so far, below the root
        links = 0
        try:
            while todo:
                part = todo.pop()
                if part == "..":
                    if stack:
                        os.close(stack.pop()[1])
                    continue
                cpath = "/" + "/".join([s[0] for s in stack] + [part])
                b = self.mounts.at(cpath)
                try:
                    fd = self.open_bind(b) if b is not None else \
                        os.open(part, O_PATH, dir_fd=stack[-1][1] if stack else self.root_fd)
                except (FileNotFoundError, NotADirectoryError):
                    rest = "/".join([part] + todo[::-1])
                    return Loc(None, posixpath.normpath(posixpath.join(posixpath.dirname(cpath), rest)), None)
                if b is None and (todo or follow_last) and stat.S_ISLNK(os.fstat(fd).st_mode):
                    try:
                        target = os.readlink("", dir_fd=fd)  # the link we opened, whatever the name is now
                    finally:
                        os.close(fd)
                    links += 1
                    if links > _MAX_LINKS:
                        raise InvalidParameter(f"too many levels of symbolic links: {path}")
                    if target.startswith("/"):
                        while stack:
                            os.close(stack.pop()[1])
                    todo.extend(p for p in reversed(target.split("/")) if p not in ("", "."))
                    continue
                stack.append((part, fd, b))
            if not stack:
                return Loc(os.dup(self.root_fd), "/", None)
            bind = next((s[2] for s in reversed(stack) if s[2] is not None), None)  # the innermost mount
            cpath = "/" + "/".join(s[0] for s in stack)
            return Loc(stack.pop()[1], cpath, bind)
        finally:
            for _, fd, _ in stack:
                os.close(fd)


def _not_found(c: Container, path: str) -> NotFound:
    return NotFound(f"Could not find the file {path} in container {c.name}")


def _stat_dict(scope: Scope, loc: Loc, name: str) -> dict[str, Any]:
    assert loc.fd is not None
    st = os.fstat(loc.fd)
    link = ""
    if stat.S_ISLNK(st.st_mode):
        target = scope.resolve(loc.cpath, follow_last=True)  # Docker reports where it leads, in the container
        target.close()
        link = target.cpath
    return {"name": name, "size": st.st_size, "mode": go_mode(st.st_mode), "mtime": rfc3339(st.st_mtime),
            "linkTarget": link}


def _stat_name(path: str) -> str:
    return os.path.basename(path.rstrip("/")) or "/"


async def stat_path(svc: "ContainerService", c: Container, path: str) -> dict[str, Any]:
    root = await svc.acquire_rootfs(c)
    try:
        scope = Scope(root, Mounts.of(c))
        try:
            loc = scope.resolve(path, follow_last=False)
            try:
                if loc.fd is None:
                    raise _not_found(c, path)
                return _stat_dict(scope, loc, _stat_name(path))
            finally:
                loc.close()
        finally:
            scope.close()
    finally:
        await svc.release_rootfs(c)


async def get_archive(svc: "ContainerService", c: Container, path: str) -> tuple[dict[str, Any], AsyncIterator[bytes]]:
    root = await svc.acquire_rootfs(c)
    scope: Scope | None = None
    loc: Loc | None = None
    try:
        scope = Scope(root, Mounts.of(c))
        loc = scope.resolve(path, follow_last=path.endswith("/") or path.endswith("/."))
        if loc.fd is None:
            raise _not_found(c, path)
        if path.endswith("/") and not stat.S_ISDIR(os.fstat(loc.fd).st_mode):
            raise InvalidParameter(f"not a directory: {path}")
        st = _stat_dict(scope, loc, _stat_name(path))
        base = "." if path.endswith("/.") else (os.path.basename(path.rstrip("/")) or ".")
    except BaseException:
        if loc is not None:
            loc.close()
        if scope is not None:
            scope.close()
        await svc.release_rootfs(c)
        raise
    fd, cpath, sc = loc.fd, loc.cpath, scope

    def produce(w: Any) -> None:
        with tarfile.open(fileobj=w, mode="w|", format=tarfile.PAX_FORMAT) as tf:
            TreeWriter(tf, open_child=sc.open_child).add(fd, cpath, base)

    async def chunks() -> AsyncIterator[bytes]:
        try:
            async for b in _threaded_writer(produce):
                yield b
        finally:  # the writer thread has ended: its descriptors can go
            loc.close()
            sc.close()
            await svc.release_rootfs(c)

    return st, chunks()


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
    """The container's root filesystem, without its mounts (as Docker exports it), by descriptor too."""
    root = await svc.acquire_rootfs(c)
    svc.event(c, "export")
    scope = Scope(root, Mounts())

    def produce(w: Any) -> None:
        dfd = os.open(".", O_DIR, dir_fd=scope.root_fd)
        try:
            with tarfile.open(fileobj=w, mode="w|", format=tarfile.PAX_FORMAT) as tf:
                TreeWriter(tf, open_child=scope.open_child).children(dfd, "/", "")
        finally:
            os.close(dfd)

    try:
        async for b in _threaded_writer(produce):
            yield b
    finally:
        scope.close()
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


class CpExtractor(SafeExtractor):
    """The safe extractor, rooted at a directory resolved in a container. A member's path that meets a
    symlink the container has (merged-/usr images: `lib -> usr/lib`) follows it inside the container's
    root, as Docker's chrooted extraction does; one that meets a mount continues at its source."""

    def __init__(self, scope: Scope, dest: Loc, rules: TarRules, chown_root: bool) -> None:
        assert dest.fd is not None
        super().__init__(dest.fd, rules, fresh=False)
        self.scope, self.chown_root = scope, chown_root
        # container paths of the directories reached through a symlink (and the destination)
        self.cpaths: dict[tuple[str, ...], str] = {(): dest.cpath}

    def cpath(self, parts: tuple[str, ...]) -> str:
        for i in range(len(parts), -1, -1):
            base = self.cpaths.get(parts[:i])
            if base is not None:
                return posixpath.join(base, *parts[i:])
        raise AssertionError("the root has a container path")

    def open_dir(self, parent: int, parts: tuple[str, ...]) -> int:
        self.cpaths.pop(parts, None)
        cpath = posixpath.join(self.cpath(parts[:-1]), parts[-1])
        b = self.scope.mounts.at(cpath)
        if b is None:
            try:
                return super().open_dir(parent, parts)
            except OSError as e:  # ENOTDIR too: O_DIRECTORY may report a symlink so
                if e.errno not in (errno.ELOOP, errno.ENOTDIR) or \
                        not stat.S_ISLNK(os.stat(parts[-1], dir_fd=parent, follow_symlinks=False).st_mode):
                    raise
            loc = self.scope.resolve(cpath, follow_last=True)
        else:
            loc = Loc(self.scope.open_bind(b), cpath, b)
        try:
            if loc.fd is None:
                raise OSError(errno.ELOOP, "a symlink that leads nowhere")
            fd = os.open(".", O_DIR, dir_fd=loc.fd)  # ENOTDIR unless a directory
        finally:
            loc.close()
        self.cpaths[parts] = loc.cpath
        return fd

    def overwrite_refused(self, msg: str) -> Exception:
        return Conflict(msg)

    def add(self, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        # Docker's cp joins every name (and hard link target) to the destination, absolute ones too.
        m.name = m.name.lstrip("/")
        if m.islnk():
            m.linkname = m.linkname.lstrip("/")
        if self.chown_root:
            m.uid = m.gid = 0
        super().add(tf, m)


def cp_rules(no_overwrite_dir_non_dir: bool) -> TarRules:
    """Docker's copy rules: names stay below the destination, and so do relative symlink targets."""
    return TarRules(where="the archive", error=InvalidParameter, devices="skip", fifos=True, owners=True,
                    no_overwrite_dir_non_dir=no_overwrite_dir_non_dir, root_name="destination directory")


def _extract_into(scope: Scope, c: Container, path: str, src: _ByteQueueReader, *,
                  no_overwrite_dir_non_dir: bool, chown_root: bool) -> None:
    """Runs in a worker thread, which owns the descriptors (closed here, never under it)."""
    try:
        loc = scope.resolve(path, follow_last=True)
        try:
            if loc.fd is None:
                raise _not_found(c, path)
            if not stat.S_ISDIR(os.fstat(loc.fd).st_mode):
                raise InvalidParameter("extraction point is not a directory")
            if loc.bind is None and c.host_config.get("ReadonlyRootfs"):
                raise Forbidden("container rootfs is marked read-only")
            if loc.bind is not None and loc.bind.ro:
                raise Forbidden("mounted volume is marked read-only")
            ex = CpExtractor(scope, loc, cp_rules(no_overwrite_dir_non_dir), chown_root)
        finally:
            loc.close()
        tarsafety.extract(ex, src, "r|*", "the archive")
    finally:
        scope.close()


async def put_archive(svc: "ContainerService", c: Container, path: str, body: AsyncIterator[bytes], *,
                      no_overwrite_dir_non_dir: bool, copy_uid_gid: bool) -> None:
    root = await svc.acquire_rootfs(c)
    try:
        scope = Scope(root, Mounts.of(c))
        reader = _ByteQueueReader()
        loop = asyncio.get_running_loop()
        job = loop.run_in_executor(None, lambda: _extract_into(
            scope, c, path, reader, no_overwrite_dir_non_dir=no_overwrite_dir_non_dir, chown_root=not copy_uid_gid))
        try:
            async for chunk in body:
                if job.done():
                    break
                reader.push(chunk)
                while reader.pending() > 4 * CHUNK and not job.done():
                    await asyncio.sleep(0.005)
        finally:
            reader.push(None)
            # Never release the rootfs under the thread, even if this request was cancelled.
            await asyncio.wait([job])
        try:
            job.result()
        except EngineError:
            raise
        except tarfile.TarError as e:
            raise InvalidParameter(f"invalid tar archive: {e}") from None
        except OSError as e:
            raise InvalidParameter(f"extracting archive: {e}") from None
    finally:
        await svc.release_rootfs(c)
