"""Writing a directory tree to a tar by descriptor: the one writer for trees a container owns.

Layer tars from a container's upper dir (commit, build steps: guest/images/layers.py) and `docker cp`
downloads and `docker export` (guest/containers/archive.py) read trees a running container can change
under the walk: it may swap a file or a directory for a symlink to a host path at any moment. So no path
string below the root is ever followed: every entry is opened with O_PATH|O_NOFOLLOW relative to its
parent directory's descriptor, its type checked on that descriptor (fstat), a directory is opened from it
with O_DIRECTORY|O_NOFOLLOW, and a regular file is read through a reopening of that very inode (never a
name opened again, which could now be a symlink or a device node).

The format: names in sorted order, depth first; numeric owners, whole-second times; a regular file with
several links is written once, later names as hard links to it; the safe xattrs (`user.*`,
`security.capability`, what guest/images/tarsafety.py applies on the way in) as PAX records; sockets left
out. Subclasses write entries of their own (layers: overlay whiteouts) through `special` and `in_dir`.

`entries` is the same walk for readers that write no tar (`docker diff`: guest/containers/changes.py).
"""

from __future__ import annotations

import os
import posixpath
import stat
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from skiffbox.guest.images.tarsafety import SAFE_XATTR_PREFIXES, SAFE_XATTRS

__all__ = ["O_DIR", "O_PATH", "Entry", "TreeWriter", "entries", "xattrs"]

O_PATH = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _proc(fd: int) -> str:
    """The inode an (O_PATH) descriptor holds, by name: the kernel resolves it to that inode itself
    (a symlink's own, never its target), and f*xattr calls refuse O_PATH descriptors."""
    return f"/proc/self/fd/{fd}"


def xattrs(fd: int) -> dict[str, str]:
    """The safe xattrs of what `fd` (O_PATH or open) holds, as PAX records."""
    out = {}
    try:
        for name in os.listxattr(_proc(fd)):
            if name.startswith(SAFE_XATTR_PREFIXES) or name in SAFE_XATTRS:
                out["SCHILY.xattr." + name] = os.getxattr(_proc(fd), name).decode("utf-8", "surrogateescape")
    except OSError:
        pass
    return out


class _Exactly:
    """A file's first `size` bytes, zero-padded if it shrank while being read (the header is written)."""

    def __init__(self, f: Any, size: int) -> None:
        self.f, self.left = f, size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        b = self.f.read(n) if n else b""
        if len(b) < n:
            b += bytes(n - len(b))
        self.left -= n
        return b


def _open_child(dir_fd: int, path: str, name: str) -> int:
    return os.open(name, O_PATH, dir_fd=dir_fd)


class TreeWriter:
    """Writes what an O_PATH descriptor names, and everything below it, to `tf`.

    `path` is the entry's path in the caller's terms (a container path, or one relative to a layer's
    root), passed to `open_child(dir_fd, dir_path, name) -> O_PATH fd` (archive.py continues at a bind
    mount's source there) and to `exclude(path)` (True: skip it and everything below)."""

    def __init__(self, tf: tarfile.TarFile, *, open_child: Callable[[int, str, str], int] = _open_child,
                 exclude: Callable[[str], bool] | None = None) -> None:
        self.tf, self.open_child, self.exclude = tf, open_child, exclude
        self.links: dict[tuple[int, int], str] = {}

    # -- hooks ------------------------------------------------------------------------------------

    def special(self, fd: int, st: os.stat_result, arcname: str) -> bool:
        """Write the entry some other way (True), or as itself (False)."""
        return False

    def in_dir(self, dfd: int, st: os.stat_result, arcname: str) -> None:
        """Called after a directory's entry, before its children."""

    # -- the walk ---------------------------------------------------------------------------------

    def add(self, fd: int, path: str, arcname: str) -> None:
        """What the O_PATH descriptor `fd` holds and, for a directory, everything below it."""
        dfd = self._entry(fd, path, arcname)
        if dfd is not None:
            self._walk(dfd, path, arcname)

    def children(self, dfd: int, path: str, arcname: str) -> None:
        """Everything in the open directory `dfd` (not itself), named below `arcname`."""
        self._walk(os.open(".", O_DIR, dir_fd=dfd), path, arcname)

    def _walk(self, top: int, path: str, arcname: str) -> None:
        """The children of the directory `top` (closed here), depth first, without recursion (the
        container chooses how deep its tree is)."""
        stack: list[tuple[int, str, str, Iterator[str]]] = []  # the open directories being listed
        try:
            stack.append((top, path, arcname, iter(sorted(os.listdir(top)))))
        except BaseException:
            os.close(top)
            raise
        try:
            while stack:
                dfd, dpath, darc, names = stack[-1]
                name = next(names, None)
                if name is None:
                    os.close(stack.pop()[0])
                    continue
                cpath = posixpath.join(dpath, name)
                if self.exclude is not None and self.exclude(cpath):
                    continue
                try:
                    child = self.open_child(dfd, dpath, name)
                except FileNotFoundError:
                    continue  # removed meanwhile
                carc = f"{darc}/{name}" if darc else name
                try:
                    sub = self._entry(child, cpath, carc)
                finally:
                    os.close(child)
                if sub is not None:
                    try:
                        stack.append((sub, cpath, carc, iter(sorted(os.listdir(sub)))))
                    except BaseException:
                        os.close(sub)
                        raise
        finally:
            for dfd, *_ in stack:
                os.close(dfd)

    def _entry(self, fd: int, path: str, arcname: str) -> int | None:
        """Write the entry for `fd` (O_PATH); for a directory, return it opened (the caller closes it)."""
        st = os.fstat(fd)
        if self.special(fd, st, arcname):
            return None
        m = st.st_mode
        ti = tarfile.TarInfo(arcname)
        ti.mode, ti.uid, ti.gid, ti.mtime = m & 0o7777, st.st_uid, st.st_gid, int(st.st_mtime)
        if stat.S_ISDIR(m):
            ti.type = tarfile.DIRTYPE
            dfd = os.open(".", O_DIR, dir_fd=fd)  # this very directory, whatever its name is now
            try:
                ti.pax_headers = xattrs(dfd)
                self.tf.addfile(ti)
                self.in_dir(dfd, st, arcname)
            except BaseException:
                os.close(dfd)
                raise
            return dfd
        if stat.S_ISREG(m):
            ti.pax_headers = xattrs(fd)
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1:
                if key in self.links:
                    ti.type, ti.linkname = tarfile.LNKTYPE, self.links[key]
                    self.tf.addfile(ti)
                    return None
                self.links[key] = arcname
            ti.type, ti.size = tarfile.REGTYPE, st.st_size
            # Reopen the inode checked above: opening the name again could open a symlink or a device.
            rfd = os.open(_proc(fd), os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY)
            with os.fdopen(rfd, "rb") as f:
                self.tf.addfile(ti, _Exactly(f, st.st_size))
            return None
        if stat.S_ISLNK(m):
            ti.type, ti.linkname = tarfile.SYMTYPE, os.readlink("", dir_fd=fd)
        elif stat.S_ISFIFO(m):
            ti.type = tarfile.FIFOTYPE
        elif stat.S_ISCHR(m) or stat.S_ISBLK(m):
            ti.type = tarfile.CHRTYPE if stat.S_ISCHR(m) else tarfile.BLKTYPE
            ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        else:
            return None  # sockets are not archived (as in Docker)
        ti.pax_headers = xattrs(fd)
        self.tf.addfile(ti)
        return None


@dataclass(frozen=True)
class Entry:
    """One entry of `entries`: `fd` (O_PATH, never followed) and `st` (its fstat) are valid only until
    the walk goes on."""

    path: str
    fd: int
    st: os.stat_result


def entries(top: int, path: str = "", *, open_child: Callable[[int, str, str], int] = _open_child,
            exclude: Callable[[str], bool] | None = None) -> Iterator[Entry]:
    """Everything below the open directory `top` (left open), by descriptor as TreeWriter walks: names
    sorted, depth first, a directory before its children, which are listed from that very inode.
    `path`, `open_child` and `exclude` as for TreeWriter."""
    stack: list[tuple[int, str, Iterator[str]]] = []  # the open directories being listed

    def push(dfd: int, dpath: str) -> None:
        try:
            stack.append((dfd, dpath, iter(sorted(os.listdir(dfd)))))
        except BaseException:
            os.close(dfd)
            raise

    try:
        push(os.open(".", O_DIR, dir_fd=top), path)
        while stack:
            dfd, dpath, names = stack[-1]
            name = next(names, None)
            if name is None:
                os.close(stack.pop()[0])
                continue
            cpath = posixpath.join(dpath, name)
            if exclude is not None and exclude(cpath):
                continue
            try:
                fd = open_child(dfd, dpath, name)
            except FileNotFoundError:
                continue  # removed meanwhile
            sub: int | None = None
            try:
                st = os.fstat(fd)
                yield Entry(cpath, fd, st)
                if stat.S_ISDIR(st.st_mode):
                    try:
                        sub = os.open(".", O_DIR, dir_fd=fd)
                    except FileNotFoundError:
                        pass  # removed meanwhile: nothing below it any more
            finally:
                os.close(fd)
            if sub is not None:
                push(sub, cpath)
    finally:
        for dfd, *_ in stack:
            os.close(dfd)
