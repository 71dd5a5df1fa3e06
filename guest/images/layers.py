"""Layer tars ⇄ overlayfs directories, safely.

`unpack()` extracts one layer tar into an empty directory used as an overlay lower dir:
* whiteouts are converted for overlayfs: `.wh.<name>` → char device 0:0, `.wh..wh..opq` → xattr
  `trusted.overlay.opaque=y` on the directory; other `.wh..wh.*` (AUFS metadata) are dropped;
* hostile input is refused with a clear `LayerError` by the extraction shared with build contexts
  (guest/images/tarsafety.py): `..`, absolute paths, writes through symlinks, hard links out of the
  layer, symlinks climbing above its root, device nodes, unknown entry types, and bombs;
* ownership, modes (setuid included), mtimes and the safe xattrs (`user.*`, `security.capability`) are
  kept; `trusted.*` xattrs from a tar are never applied (they steer overlayfs).

`write_tar()` does the reverse for commit/diff/export: an overlay upper dir becomes a layer tar with 0:0
char devices and opaque directories turned back into `.wh.` entries.
"""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from guest.errors import InvalidParameter
from guest.images import tarsafety
from guest.images.streams import ForwardReader, Readable
from guest.images.tarsafety import SAFE_XATTR_PREFIXES, SAFE_XATTRS, Limits, SafeExtractor, TarRules

__all__ = ["LayerError", "Limits", "UnpackResult", "dir_size", "ratio_check", "unpack", "write_tar"]

WH_PREFIX = ".wh."
WH_OPAQUE = ".wh..wh..opq"
WH_META = ".wh..wh."
OPAQUE_XATTR = "trusted.overlay.opaque"


class LayerError(InvalidParameter):
    """A layer that cannot be unpacked safely (400: the content is bad, not the daemon)."""


@dataclass
class UnpackResult:
    size: int  # Docker's layer size: regular files (each inode once) and symlinks
    entries: int


def _rules(limits: Limits) -> TarRules:
    return TarRules("layer", LayerError, limits, root_entry=True)


def ratio_check(limits: Limits, compressed: Callable[[], int]) -> Callable[[int], None]:
    """A check for HashingReader over the decompressed stream: refuses gzip/zstd bombs early."""
    return tarsafety.ratio_check(_rules(limits), compressed)


class _Unpacker(SafeExtractor):
    """The shared safe extraction, plus overlayfs whiteouts."""

    def special(self, parts: tuple[str, ...], m: tarfile.TarInfo) -> bool:
        base = parts[-1]
        if not base.startswith(WH_PREFIX):
            return False
        parent = self.dirfd(parts[:-1])
        if base == WH_OPAQUE:
            os.setxattr(parent, OPAQUE_XATTR, b"y")
            return True
        if base.startswith(WH_META):
            return True  # AUFS bookkeeping (.wh..wh.plnk, .wh..wh.aufs): not part of the image
        name = base[len(WH_PREFIX):]
        if name in ("", ".", ".."):
            raise LayerError(f"invalid whiteout {m.name!r} in layer")
        target = parts[:-1] + (name,)
        assert self.made is not None  # a layer always unpacks into a new, empty directory
        if target in self.made:
            return True  # a whiteout hides lower layers only, never this layer's own entry
        self.made.add(target)
        os.mknod(name, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=parent)
        os.chown(name, m.uid, m.gid, dir_fd=parent, follow_symlinks=False)
        return True


def unpack(src: Readable, dest: Path, limits: Limits | None = None) -> UnpackResult:
    """Extract an (uncompressed) layer tar stream into the empty directory `dest`.

    The caller hashes the stream (diff ID) and drains what tarfile leaves after the end marker.
    """
    u = _Unpacker(dest, _rules(limits or Limits()))
    tarsafety.extract(u, ForwardReader(src), "r:", "the layer", errorlevel=2)
    return UnpackResult(u.size, u.entries)


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
            if name.startswith(SAFE_XATTR_PREFIXES) or name in SAFE_XATTRS:
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
