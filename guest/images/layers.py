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

from skiffbox.guest.errors import InvalidParameter
from skiffbox.guest.images import tarsafety
from skiffbox.guest.images.streams import ForwardReader, Readable
from skiffbox.guest.images.tarsafety import Limits, SafeExtractor, TarRules
from skiffbox.guest.images.treewalk import O_DIR, TreeWriter

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


class _LayerWriter(TreeWriter):
    """The shared descriptor walk, plus overlayfs whiteouts turned back into Docker's `.wh.` entries."""

    def special(self, fd: int, st: os.stat_result, arcname: str) -> bool:
        if not (stat.S_ISCHR(st.st_mode) and st.st_rdev == 0):
            return False
        head, _, tail = arcname.rpartition("/")
        ti = tarfile.TarInfo((head + "/" if head else "") + WH_PREFIX + tail)
        ti.mode, ti.uid, ti.gid, ti.mtime = 0o600, st.st_uid, st.st_gid, int(st.st_mtime)
        self.tf.addfile(ti)
        return True

    def in_dir(self, dfd: int, st: os.stat_result, arcname: str) -> None:
        try:
            opaque = os.getxattr(dfd, OPAQUE_XATTR)
        except OSError:
            return
        if opaque == b"y":
            wo = tarfile.TarInfo(f"{arcname}/{WH_OPAQUE}")
            wo.mode, wo.uid, wo.gid, wo.mtime = st.st_mode & 0o777, st.st_uid, st.st_gid, int(st.st_mtime)
            self.tf.addfile(wo)


def write_tar(src: Path, out: BinaryIO, *, convert_whiteouts: bool = True,
              exclude: Callable[[str], bool] | None = None, prefix: str = "") -> None:
    """Write `src` as a layer tar to `out` (sorted, numeric owners, Docker's whiteout encoding).

    With `convert_whiteouts`, 0:0 char devices become `.wh.<name>` and directories carrying
    `trusted.overlay.opaque=y` get a `.wh..wh..opq` entry. `exclude(relpath)` skips paths (and below);
    `prefix` is a directory the entries are put in. `src` may belong to a running container: the walk
    is by descriptor (guest/images/treewalk.py), never following what the container swaps in.
    """
    tf = tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT)
    try:
        try:
            root = os.open(src, O_DIR & ~os.O_NOFOLLOW)  # the daemon's own path, above the container's reach
        except FileNotFoundError:
            return
        try:
            cls = _LayerWriter if convert_whiteouts else TreeWriter
            cls(tf, exclude=exclude).children(root, "", prefix.rstrip("/"))
        finally:
            os.close(root)
    finally:
        tf.close()


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
