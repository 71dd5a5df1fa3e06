"""Layer tars ⇄ overlayfs directories, safely.

`unpack()` extracts one layer tar into an empty directory used as an overlay lower dir:
* whiteouts are converted for overlayfs: `.wh.<name>` → char device 0:0, `.wh..wh..opq` → xattr
  `trusted.overlay.opaque=y` on the directory; other `.wh..wh.*` (AUFS metadata) are dropped;
* hostile input is refused with a clear `LayerError`: `..` components, absolute paths, NUL bytes, paths
  through symlinks (every directory is opened with O_NOFOLLOW from the layer root, never by path), hard
  links to anything outside the layer, symlinks whose relative target climbs above the root, device nodes,
  unknown entry types, and bombs (entry count, total size, compression ratio, path length and depth);
* ownership, modes (setuid included), mtimes and the safe xattrs (`user.*`, `security.capability`) are
  kept; `trusted.*` xattrs from a tar are never applied (they steer overlayfs).

`write_tar()` does the reverse for commit/diff/export: an overlay upper dir becomes a layer tar with 0:0
char devices and opaque directories turned back into `.wh.` entries.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from guest.errors import InvalidParameter
from guest.images.streams import CHUNK, ForwardReader, Readable

WH_PREFIX = ".wh."
WH_OPAQUE = ".wh..wh..opq"
WH_META = ".wh..wh."
OPAQUE_XATTR = "trusted.overlay.opaque"
_SAFE_XATTR_PREFIXES = ("user.",)
_SAFE_XATTRS = ("security.capability",)

_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once at import: creating with the final mode saves a chmod per file


class LayerError(InvalidParameter):
    """A layer that cannot be unpacked safely (400: the content is bad, not the daemon)."""


@dataclass
class Limits:
    max_entries: int = 2_000_000
    max_size: int = 128 << 30  # bytes of file data in one layer
    max_ratio: int = 2000  # uncompressed / compressed, checked once past ratio_floor
    ratio_floor: int = 256 << 20
    max_path: int = 4096
    max_depth: int = 256

    @classmethod
    def from_env(cls) -> "Limits":
        """`SKIFF_LAYER_LIMITS=max_size=1048576,max_entries=100` (tests and cautious operators)."""
        lim = cls()
        for item in os.environ.get("SKIFF_LAYER_LIMITS", "").split(","):
            k, _, v = item.partition("=")
            if k.strip() and hasattr(lim, k.strip()):
                setattr(lim, k.strip(), int(v))
        return lim


@dataclass
class UnpackResult:
    size: int  # Docker's layer size: regular files (each inode once) and symlinks
    entries: int


def ratio_check(limits: Limits, compressed: Callable[[], int]) -> Callable[[int], None]:
    """A check for HashingReader over the decompressed stream: refuses gzip/zstd bombs early."""

    def check(n: int) -> None:
        if n > limits.max_size + (64 << 20):
            raise LayerError(f"layer is larger than the limit of {limits.max_size} bytes")
        if n > limits.ratio_floor and n > compressed() * limits.max_ratio:
            raise LayerError(f"layer decompresses more than {limits.max_ratio} times its size: refusing a compression bomb")

    return check


def _split(name: str, what: str = "path") -> list[str]:
    if "\x00" in name:
        raise LayerError(f"invalid {what} {name!r} in layer: NUL byte")
    if name.startswith("/"):
        raise LayerError(f"invalid {what} {name!r} in layer: absolute paths are not allowed")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise LayerError(f"invalid {what} {name!r} in layer: '..' is not allowed")
    return parts


class _Unpacker:
    def __init__(self, dest: Path, limits: Limits) -> None:
        self.limits = limits
        self.root = os.open(dest, _O_DIR)
        self.fds: dict[tuple[str, ...], int] = {(): self.root}
        self.dir_times: dict[tuple[str, ...], int] = {}
        self.entries = 0
        self.size = 0
        # Paths this layer has created: the directory starts empty, so anything else does not exist
        # yet and needs no stat before it is created (file creation dominates unpack time).
        self.made: set[tuple[str, ...]] = set()

    def close(self) -> None:
        for fd in set(self.fds.values()):
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds.clear()

    def _forget_below(self, parts: tuple[str, ...]) -> None:
        """An entry replaced something: drop cached descriptors at or below it."""
        for k in [k for k in self.fds if k[: len(parts)] == parts and k]:
            os.close(self.fds.pop(k))

    def dirfd(self, parts: tuple[str, ...], create: bool = True) -> int:
        fd = self.fds.get(parts)
        if fd is not None:
            return fd
        parent = self.dirfd(parts[:-1], create)
        name = parts[-1]
        try:
            fd = os.open(name, _O_DIR, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise LayerError(f"{'/'.join(parts)}: no such directory in layer") from None
            os.mkdir(name, 0o755, dir_fd=parent)
            self.made.add(parts)
            fd = os.open(name, _O_DIR, dir_fd=parent)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise LayerError(f"invalid path {'/'.join(parts)!r} in layer: it goes through a symlink or a file") from None
            raise
        if len(self.fds) > 4096:  # bound open descriptors on very wide trees
            self._forget_below(())
            self.fds[()] = self.root
        self.fds[parts] = fd
        return fd

    def _remove_existing(self, parent: int, name: str, parts: tuple[str, ...], keep_dir: bool) -> bool:
        """Later entries replace earlier ones (as in tar); returns True if a directory was kept."""
        if parts not in self.made:
            self.made.add(parts)
            return False
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return True
            self._forget_below(parts)
            shutil.rmtree(name, dir_fd=parent)
        else:
            os.unlink(name, dir_fd=parent)
        return False

    def add(self, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        self.entries += 1
        if self.entries > self.limits.max_entries:
            raise LayerError(f"layer has more than {self.limits.max_entries} entries")
        if len(m.name) > self.limits.max_path:
            raise LayerError(f"path too long in layer ({len(m.name)} bytes)")
        parts = tuple(_split(m.name))
        if len(parts) > self.limits.max_depth:
            raise LayerError(f"path too deep in layer: {m.name!r}")
        if not parts:
            if m.isdir():
                self._meta_dir(self.root, (), m)
                return
            raise LayerError(f"invalid entry {m.name!r} in layer")
        base = parts[-1]
        if base.startswith(WH_PREFIX):
            self._whiteout(parts, m)
            return
        parent = self.dirfd(parts[:-1])
        if m.isdir():
            kept = self._remove_existing(parent, base, parts, keep_dir=True)
            if not kept:
                os.mkdir(base, 0o700, dir_fd=parent)
            fd = self.dirfd(parts)
            self._meta_dir(fd, parts, m, fresh=not kept)
            return
        if m.isreg():
            self._remove_existing(parent, base, parts, keep_dir=False)
            self.size += m.size
            if self.size > self.limits.max_size:
                raise LayerError(f"layer is larger than the limit of {self.limits.max_size} bytes")
            mode = m.mode & 0o7777
            simple = (m.uid == 0 and m.gid == 0 and not (mode & (0o7000 | _UMASK))
                      and not any(k.startswith("SCHILY.xattr.") for k in m.pax_headers))
            fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         mode if simple else 0o600, dir_fd=parent)
            try:
                src = tf.extractfile(m)
                if src is not None and m.size:
                    while True:
                        b = src.read(CHUNK)
                        if not b:
                            break
                        _write_all(fd, b)
                if simple:  # created root-owned with its final mode: only the time is left
                    os.utime(fd, ns=(_ns(m.mtime), _ns(m.mtime)))
                else:
                    self._meta_fd(fd, m)
            finally:
                os.close(fd)
            return
        if m.issym():
            self._check_symlink(parts, m.linkname)
            self._remove_existing(parent, base, parts, keep_dir=False)
            self.size += len(os.fsencode(m.linkname))  # Docker's layer size counts symlinks too
            os.symlink(m.linkname, base, dir_fd=parent)
            if m.uid or m.gid:  # we run as root: new entries are already 0:0
                os.chown(base, m.uid, m.gid, dir_fd=parent, follow_symlinks=False)
            os.utime(base, ns=(_ns(m.mtime), _ns(m.mtime)), dir_fd=parent, follow_symlinks=False)
            return
        if m.islnk():
            target = tuple(_split(m.linkname, "hard link target"))
            if not target:
                raise LayerError(f"invalid hard link {m.name!r} in layer: it points at the root")
            tparent = self.dirfd(target[:-1], create=False)
            try:
                st = os.stat(target[-1], dir_fd=tparent, follow_symlinks=False)
            except FileNotFoundError:
                raise LayerError(f"invalid hard link {m.name!r} in layer: target {m.linkname!r} is not in the layer") from None
            if stat.S_ISDIR(st.st_mode):
                raise LayerError(f"invalid hard link {m.name!r} in layer: target is a directory")
            if target == parts:
                return
            self._remove_existing(parent, base, parts, keep_dir=False)
            os.link(target[-1], base, src_dir_fd=tparent, dst_dir_fd=parent, follow_symlinks=False)
            return
        if m.isfifo():
            self._remove_existing(parent, base, parts, keep_dir=False)
            os.mkfifo(base, 0o600, dir_fd=parent)
            fd = os.open(base, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
            try:
                self._meta_fd(fd, m)
            finally:
                os.close(fd)
            return
        if m.ischr() or m.isblk():
            raise LayerError(f"device file {m.name!r} is not allowed in an image layer")
        raise LayerError(f"unsupported entry type {m.type!r} for {m.name!r} in layer")

    def _check_symlink(self, parts: tuple[str, ...], target: str) -> None:
        if "\x00" in target or not target:
            raise LayerError(f"invalid symlink {'/'.join(parts)!r} in layer")
        if target.startswith("/"):
            return  # resolved inside the container's root at run time
        depth = len(parts) - 1
        for c in target.split("/"):
            if c in ("", "."):
                continue
            depth += -1 if c == ".." else 1
            if depth < 0:
                raise LayerError(f"invalid symlink {'/'.join(parts)!r} -> {target!r} in layer: it points outside the image")

    def _whiteout(self, parts: tuple[str, ...], m: tarfile.TarInfo) -> None:
        base = parts[-1]
        parent = self.dirfd(parts[:-1])
        if base == WH_OPAQUE:
            os.setxattr(parent, OPAQUE_XATTR, b"y")
            return
        if base.startswith(WH_META):
            return  # AUFS bookkeeping (.wh..wh.plnk, .wh..wh.aufs): not part of the image
        name = base[len(WH_PREFIX):]
        if name in ("", ".", ".."):
            raise LayerError(f"invalid whiteout {m.name!r} in layer")
        target = parts[:-1] + (name,)
        if target in self.made:
            return  # a whiteout hides lower layers only, never this layer's own entry
        self.made.add(target)
        os.mknod(name, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=parent)
        os.chown(name, m.uid, m.gid, dir_fd=parent, follow_symlinks=False)

    def _xattrs(self, fd: int, m: tarfile.TarInfo) -> None:
        for k, v in m.pax_headers.items():
            if not k.startswith("SCHILY.xattr."):
                continue
            name = k[len("SCHILY.xattr."):]
            if name.startswith(_SAFE_XATTR_PREFIXES) or name in _SAFE_XATTRS:
                try:
                    os.setxattr(fd, name, v.encode("utf-8", "surrogateescape"))
                except OSError as e:
                    if e.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP):
                        raise

    def _meta_fd(self, fd: int, m: tarfile.TarInfo) -> None:
        os.fchown(fd, m.uid, m.gid)
        os.fchmod(fd, m.mode & 0o7777)
        self._xattrs(fd, m)
        os.utime(fd, ns=(_ns(m.mtime), _ns(m.mtime)))

    def _meta_dir(self, fd: int, parts: tuple[str, ...], m: tarfile.TarInfo, fresh: bool = False) -> None:
        if m.uid or m.gid or not fresh:  # a directory we just made as root is already 0:0
            os.fchown(fd, m.uid, m.gid)
        os.fchmod(fd, m.mode & 0o7777)
        self._xattrs(fd, m)
        self.dir_times[parts] = _ns(m.mtime)  # set last: adding children changes a directory's mtime

    def finish(self) -> None:
        for parts in sorted(self.dir_times, key=len, reverse=True):
            try:
                fd = self.dirfd(parts, create=False)
            except LayerError:
                continue
            t = self.dir_times[parts]
            os.utime(fd, ns=(t, t))


def _write_all(fd: int, b: bytes) -> None:
    mv = memoryview(b)
    while mv:
        n = os.write(fd, mv)
        mv = mv[n:]


def _ns(mtime: float) -> int:
    return int(mtime * 1_000_000_000) if mtime > 0 else 0


def unpack(src: Readable, dest: Path, limits: Limits | None = None) -> UnpackResult:
    """Extract an (uncompressed) layer tar stream into the empty directory `dest`.

    The caller hashes the stream (diff ID) and drains what tarfile leaves after the end marker.
    """
    limits = limits or Limits()
    u = _Unpacker(dest, limits)
    try:
        try:
            tf = tarfile.open(fileobj=ForwardReader(src), mode="r:", errorlevel=2)  # type: ignore[call-overload]
        except tarfile.ReadError as e:
            if "empty file" in str(e):
                return UnpackResult(0, 0)
            raise LayerError(f"invalid layer tar: {e}") from None
        try:
            while True:
                try:
                    m = tf.next()
                except tarfile.TarError as e:
                    raise LayerError(f"invalid layer tar: {e}") from None
                if m is None:
                    break
                u.add(tf, m)
        finally:
            tf.close()
        u.finish()
        return UnpackResult(u.size, u.entries)
    except OSError as e:
        raise LayerError(f"cannot unpack layer: {e}") from None
    finally:
        u.close()


# ---------------------------------------------------------------------------------------------
# The reverse: a directory (overlay upper or a layer) as a layer tar
# ---------------------------------------------------------------------------------------------


def write_tar(src: Path, out: BinaryIO, *, convert_whiteouts: bool = True,
              exclude: Callable[[str], bool] | None = None, prefix: str = "") -> None:
    """Write `src` as a layer tar to `out` (sorted, numeric owners, Docker's whiteout encoding).

    With `convert_whiteouts`, 0:0 char devices become `.wh.<name>` and directories carrying
    `trusted.overlay.opaque=y` get a `.wh..wh..opq` entry. `exclude(relpath)` skips paths (and below).
    """
    tf = tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT)
    links: dict[tuple[int, int], str] = {}
    try:
        _walk(tf, src, "", convert_whiteouts, exclude, links, prefix)
    finally:
        tf.close()


def _walk(tf: tarfile.TarFile, root: Path, rel: str, wh: bool, exclude: Callable[[str], bool] | None,
          links: dict[tuple[int, int], str], prefix: str) -> None:
    base = os.path.join(root, rel) if rel else str(root)
    try:
        names = sorted(os.listdir(base))
    except FileNotFoundError:
        return
    for name in names:
        relp = f"{rel}/{name}" if rel else name
        if exclude is not None and exclude(relp):
            continue
        path = os.path.join(base, name)
        st = os.lstat(path)
        arc = prefix + relp
        if wh and stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            head, _, tail = arc.rpartition("/")
            ti = tarfile.TarInfo((head + "/" if head else "") + WH_PREFIX + tail)
            ti.mode, ti.uid, ti.gid, ti.mtime = 0o600, st.st_uid, st.st_gid, int(st.st_mtime)
            tf.addfile(ti)
            continue
        ti = _tarinfo(path, arc, st)
        if ti is None:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
            key = (st.st_dev, st.st_ino)
            if key in links:
                ti.type, ti.linkname, ti.size = tarfile.LNKTYPE, links[key], 0
                tf.addfile(ti)
                continue
            links[key] = arc
        if stat.S_ISREG(st.st_mode):
            with open(path, "rb") as f:
                tf.addfile(ti, f)
        else:
            tf.addfile(ti)
        if stat.S_ISDIR(st.st_mode):
            if wh and _getxattr(path, OPAQUE_XATTR) == b"y":
                wo = tarfile.TarInfo(f"{arc}/{WH_OPAQUE}")
                wo.mode, wo.uid, wo.gid, wo.mtime = st.st_mode & 0o777, st.st_uid, st.st_gid, int(st.st_mtime)
                tf.addfile(wo)
            _walk(tf, root, relp, wh, exclude, links, prefix)


def _getxattr(path: str, name: str) -> bytes | None:
    try:
        return os.getxattr(path, name, follow_symlinks=False)
    except OSError:
        return None


def _tarinfo(path: str, arc: str, st: os.stat_result) -> tarfile.TarInfo | None:
    ti = tarfile.TarInfo(arc)
    ti.mode = st.st_mode & 0o7777
    ti.uid, ti.gid = st.st_uid, st.st_gid
    ti.mtime = int(st.st_mtime)
    m = st.st_mode
    if stat.S_ISREG(m):
        ti.type, ti.size = tarfile.REGTYPE, st.st_size
    elif stat.S_ISDIR(m):
        ti.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(m):
        ti.type, ti.linkname = tarfile.SYMTYPE, os.readlink(path)
    elif stat.S_ISFIFO(m):
        ti.type = tarfile.FIFOTYPE
    elif stat.S_ISCHR(m) or stat.S_ISBLK(m):
        ti.type = tarfile.CHRTYPE if stat.S_ISCHR(m) else tarfile.BLKTYPE
        ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    else:
        return None  # sockets are not archived (as in Docker)
    xattrs = {}
    try:
        for name in os.listxattr(path, follow_symlinks=False):
            if name.startswith(_SAFE_XATTR_PREFIXES) or name in _SAFE_XATTRS:
                xattrs["SCHILY.xattr." + name] = os.getxattr(path, name, follow_symlinks=False).decode("utf-8", "surrogateescape")
    except OSError:
        pass
    if xattrs:
        ti.pax_headers = xattrs
    return ti


def dir_size(path: Path) -> int:
    """What Docker reports as a layer's size: the sizes of everything but directories, each inode once."""
    seen: set[int] = set()
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for n in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            try:
                st = os.lstat(os.path.join(dirpath, n))
            except OSError:
                continue
            if st.st_size and not stat.S_ISDIR(st.st_mode) and st.st_ino not in seen:
                seen.add(st.st_ino)
                total += st.st_size
    return total
