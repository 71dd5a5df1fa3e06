"""Extracting an untrusted tar into a directory without ever writing outside it.

The one implementation behind image layers (guest/images/layers.py: pull, load, import) and build
contexts and ADD archives (guest/build/context.py). Every caller gets the same rules:

* member names: no NUL byte, no absolute path, no `..` component; length and depth are bounded;
* nothing is written through a symlink or a file: every directory is opened with O_NOFOLLOW from the
  root, by descriptor, never by path;
* hard links only to an entry already in the tree (the target path obeys the name rules and may not
  cross a symlink either), never to a directory;
* symlink targets: not empty, no NUL byte; a relative target may not climb above the root unless the
  caller keeps such links (`TarRules.outside_symlinks`, build contexts only, see below);
* device nodes are refused or skipped, never created; unknown entry types are refused;
* bombs: entry count, total file size (and, on the decompressed stream, the compression ratio).

What differs per caller is what the tree is for (`TarRules`), never how safe it is:
* build contexts and ADD archives keep symlinks that point outside them, as Docker does in practice
  (moby extracts them in a chroot, BuildKit sends them as they are): COPY copies a link as a link and
  resolves sources inside the context only, so nothing follows them (tests/engine/test_build_context.py
  keeps them); a layer refuses a relative one that climbs above its root;
* build contexts and ADD archives skip device nodes and FIFOs (COPY would not copy them anyway, and a
  context directory may hold one), where a layer refuses devices and keeps FIFOs;
* layers and ADD archives apply owners and the safe xattrs, contexts do not (COPY makes files
  root-owned); only layers apply a `./` entry's metadata to the root (it is the container's `/`).
* `docker cp` uploads (guest/containers/archive.py) extract into a directory of a live container: the
  root is given as a descriptor resolved inside the container, the tree is not fresh, a directory and a
  non-directory may be kept from replacing each other (`no_overwrite_dir_non_dir`), and a symlink the
  container already has on a member's path is followed inside the container's root by an
  `open_dir` override (never by the kernel on the host).
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from skiffbox.guest.errors import InvalidParameter
from skiffbox.guest.images.streams import CHUNK

SAFE_XATTR_PREFIXES = ("user.",)
SAFE_XATTRS = ("security.capability",)

_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_CACHED_DIRS = 4096  # bound open descriptors on very wide trees
_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once at import: creating with the final mode saves a chmod per file


@dataclass
class Limits:
    max_entries: int = 2_000_000
    max_size: int = 128 << 30  # bytes of file data in one tree
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


@dataclass(frozen=True)
class TarRules:
    """What the extracted tree is for. `where` names it in messages ("in layer: …")."""

    where: str
    error: type[InvalidParameter]
    limits: Limits = field(default_factory=Limits)
    outside_symlinks: bool = False  # keep relative symlinks that climb above the root (build contexts)
    devices: Literal["refuse", "skip"] = "refuse"
    fifos: bool = True  # create FIFOs, or skip them
    owners: bool = True  # apply the tar's owners and safe xattrs
    root_entry: bool = False  # apply a `./` directory entry's metadata to the root itself
    no_overwrite_dir_non_dir: bool = False  # refuse to replace a directory by a non-directory, and back
    root_name: str = "image"  # what the root is, in "it points outside the …"

    def fail(self, msg: str) -> InvalidParameter:
        return self.error(msg)


def path_problem(name: str) -> str | None:
    """Why a member name (or hard link target) cannot be placed under the root, or None."""
    if "\x00" in name:
        return "NUL byte"
    if name.startswith("/"):
        return "absolute paths are not allowed"
    if ".." in name.split("/"):
        return "'..' is not allowed"
    return None


def split_path(name: str) -> tuple[str, ...]:
    return tuple(p for p in name.split("/") if p not in ("", "."))


def ratio_check(rules: TarRules, compressed: Callable[[], int]) -> Callable[[int], None]:
    """A check for the decompressed byte count of a stream: refuses gzip/bzip2/zstd bombs early."""
    limits = rules.limits

    def check(n: int) -> None:
        if n > limits.max_size + (64 << 20):
            raise rules.fail(f"{rules.where} is larger than the limit of {limits.max_size} bytes")
        if n > limits.ratio_floor and n > compressed() * limits.max_ratio:
            raise rules.fail(f"{rules.where} decompresses more than {limits.max_ratio} times its size: refusing a compression bomb")

    return check


def open_stream(fileobj: Any, mode: str, bad: Callable[[str], Exception], **kw: Any) -> tarfile.TarFile | None:
    """`tarfile.open` on a stream, a malformed archive raised as `bad(reason)`; None for an empty one."""
    try:
        return tarfile.open(fileobj=fileobj, mode=mode, **kw)  # type: ignore[call-overload, no-any-return]
    except tarfile.TarError as e:
        if "empty file" in str(e):
            return None
        raise bad(str(e)) from None


def members(tf: tarfile.TarFile, bad: Callable[[str], Exception]) -> Iterator[tarfile.TarInfo]:
    """The members of an open tar, in order; a malformed header is raised as `bad(reason)`."""
    while True:
        try:
            m = tf.next()
        except tarfile.TarError as e:
            raise bad(str(e)) from None
        if m is None:
            return
        yield m


def ns(mtime: float) -> int:
    return int(mtime * 1_000_000_000) if mtime > 0 else 0


def write_all(fd: int, b: bytes) -> None:
    mv = memoryview(b)
    while mv:
        mv = mv[os.write(fd, mv):]


class SafeExtractor:
    """Writes tar members under `dest` by descriptor. `fresh`: `dest` starts empty, so a path this
    extraction has not created does not exist and needs no stat (file creation dominates unpack time).
    `dest` may be a descriptor of the directory (an O_PATH one will do): the extractor opens its own."""

    def __init__(self, dest: Path | int, rules: TarRules, fresh: bool = True) -> None:
        self.rules = rules
        self.limits = rules.limits
        self.root = os.open(".", _O_DIR, dir_fd=dest) if isinstance(dest, int) else os.open(dest, _O_DIR)
        self.fds: dict[tuple[str, ...], int] = {(): self.root}
        self.dir_times: dict[tuple[str, ...], int] = {}
        self.entries = 0
        self.size = 0  # Docker's layer size: regular file data and symlink targets
        self.made: set[tuple[str, ...]] | None = set() if fresh else None

    # -- the tree, by descriptor -----------------------------------------------------------------

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
        """The directory at `parts`, created if missing (unless not `create`: FileNotFoundError)."""
        fd = self.fds.get(parts)
        if fd is not None:
            return fd
        parent = self.dirfd(parts[:-1], create)
        name = parts[-1]
        try:
            fd = self.open_dir(parent, parts)
        except FileNotFoundError:
            if not create:
                raise
            os.mkdir(name, 0o755, dir_fd=parent)
            if self.made is not None:
                self.made.add(parts)
            fd = self.open_dir(parent, parts)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise self.rules.fail(f"invalid path {'/'.join(parts)!r} in {self.rules.where}: "
                                      "it goes through a symlink or a file") from None
            raise
        if len(self.fds) > _MAX_CACHED_DIRS:
            self._forget_below(())
            self.fds[()] = self.root
        self.fds[parts] = fd
        return fd

    def open_dir(self, parent: int, parts: tuple[str, ...]) -> int:
        """Open the directory `parts[-1]` in `parent`; a symlink or a file there raises ELOOP/ENOTDIR."""
        return os.open(parts[-1], _O_DIR, dir_fd=parent)

    def remove_existing(self, parent: int, name: str, parts: tuple[str, ...], keep_dir: bool) -> bool:
        """Later entries replace earlier ones (as in tar); returns True if a directory was kept."""
        if self.made is not None and parts not in self.made:
            self.made.add(parts)
            return False
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if self.rules.no_overwrite_dir_non_dir and stat.S_ISDIR(st.st_mode) != keep_dir:
            was, new = ("non-directory", "directory") if keep_dir else ("directory", "non-directory")
            raise self.overwrite_refused(f"cannot overwrite {was} {'/'.join(parts)!r} with {new}")
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return True
            self._forget_below(parts)
            shutil.rmtree(name, dir_fd=parent)
        else:
            os.unlink(name, dir_fd=parent)
        return False

    # -- members ------------------------------------------------------------------------------------

    def check_name(self, m: tarfile.TarInfo) -> tuple[str, ...]:
        """The safety rules every member passes before anything is written for it."""
        where = self.rules.where
        self.entries += 1
        if self.entries > self.limits.max_entries:
            raise self.rules.fail(f"{where} has more than {self.limits.max_entries} entries")
        if len(m.name) > self.limits.max_path:
            raise self.rules.fail(f"path too long in {where} ({len(m.name)} bytes)")
        problem = path_problem(m.name)
        if problem:
            raise self.rules.fail(f"invalid path {m.name!r} in {where}: {problem}")
        parts = split_path(m.name)
        if len(parts) > self.limits.max_depth:
            raise self.rules.fail(f"path too deep in {where}: {m.name!r}")
        return parts

    def overwrite_refused(self, msg: str) -> Exception:
        """The error for `no_overwrite_dir_non_dir` (a caller may answer it as a conflict)."""
        return self.rules.fail(msg)

    def special(self, parts: tuple[str, ...], m: tarfile.TarInfo) -> bool:
        """A member the caller handles itself (layers: whiteouts); True when it was."""
        return False

    def data_written(self, m: tarfile.TarInfo) -> None:
        """Called after a regular file's data was copied (build contexts check for truncation)."""

    def add(self, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        parts = self.check_name(m)
        if not parts:
            if not m.isdir():
                raise self.rules.fail(f"invalid entry {m.name!r} in {self.rules.where}")
            if self.rules.root_entry:
                self._meta_dir(self.root, (), m, fresh=False)
            return
        if self.special(parts, m):
            return
        base = parts[-1]
        parent = self.dirfd(parts[:-1])
        if m.isdir():
            kept = self.remove_existing(parent, base, parts, keep_dir=True)
            if not kept:
                os.mkdir(base, 0o700, dir_fd=parent)
            self._meta_dir(self.dirfd(parts), parts, m, fresh=not kept)
        elif m.isreg():
            self._file(tf, m, parent, base, parts)
        elif m.issym():
            self._symlink(m, parent, base, parts)
        elif m.islnk():
            self._hardlink(m, parent, base, parts)
        elif m.ischr() or m.isblk():
            if self.rules.devices == "refuse":
                raise self.rules.fail(f"device file {m.name!r} is not allowed in {self.rules.where}")
        elif m.isfifo():
            if self.rules.fifos:
                self._fifo(m, parent, base, parts)
        else:
            raise self.rules.fail(f"unsupported entry type {m.type!r} for {m.name!r} in {self.rules.where}")

    def _file(self, tf: tarfile.TarFile, m: tarfile.TarInfo, parent: int, base: str, parts: tuple[str, ...]) -> None:
        self.remove_existing(parent, base, parts, keep_dir=False)
        self.size += m.size
        if self.size > self.limits.max_size:
            raise self.rules.fail(f"{self.rules.where} is larger than the limit of {self.limits.max_size} bytes")
        mode = m.mode & 0o7777
        owners = self.rules.owners
        simple = (not (mode & (0o7000 | _UMASK)) and (not owners or (m.uid == 0 and m.gid == 0 and
                  not any(k.startswith("SCHILY.xattr.") for k in m.pax_headers))))
        fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     mode if simple else 0o600, dir_fd=parent)
        try:
            src = tf.extractfile(m)
            if src is not None and m.size:
                while True:
                    b = src.read(CHUNK)
                    if not b:
                        break
                    write_all(fd, b)
            self.data_written(m)
            if simple:  # created root-owned with its final mode: only the time is left
                os.utime(fd, ns=(ns(m.mtime), ns(m.mtime)))
            else:
                self._meta_fd(fd, m)
        finally:
            os.close(fd)

    def _symlink(self, m: tarfile.TarInfo, parent: int, base: str, parts: tuple[str, ...]) -> None:
        self.check_symlink(parts, m.linkname)
        self.remove_existing(parent, base, parts, keep_dir=False)
        self.size += len(os.fsencode(m.linkname))
        os.symlink(m.linkname, base, dir_fd=parent)
        if self.rules.owners and (m.uid or m.gid):  # we run as root: new entries are already 0:0
            os.chown(base, m.uid, m.gid, dir_fd=parent, follow_symlinks=False)
        os.utime(base, ns=(ns(m.mtime), ns(m.mtime)), dir_fd=parent, follow_symlinks=False)

    def check_symlink(self, parts: tuple[str, ...], target: str) -> None:
        where = self.rules.where
        if "\x00" in target or not target:
            raise self.rules.fail(f"invalid symlink {'/'.join(parts)!r} in {where}")
        if target.startswith("/") or self.rules.outside_symlinks:
            return  # absolute: resolved inside the container's root at run time
        depth = len(parts) - 1
        for c in target.split("/"):
            if c in ("", "."):
                continue
            depth += -1 if c == ".." else 1
            if depth < 0:
                raise self.rules.fail(f"invalid symlink {'/'.join(parts)!r} -> {target!r} in {where}: "
                                      f"it points outside the {self.rules.root_name}")

    def _hardlink(self, m: tarfile.TarInfo, parent: int, base: str, parts: tuple[str, ...]) -> None:
        where = self.rules.where
        head = f"invalid hard link {m.name!r} in {where}: target {m.linkname!r}"
        problem = path_problem(m.linkname)
        if problem:
            raise self.rules.fail(f"{head} is not in it: {problem}")
        target = split_path(m.linkname)
        if not target:
            raise self.rules.fail(f"{head} is the root")
        try:
            tparent = self.dirfd(target[:-1], create=False)
            st = os.stat(target[-1], dir_fd=tparent, follow_symlinks=False)
        except FileNotFoundError:
            raise self.rules.fail(f"{head} is not in the {where}") from None
        if stat.S_ISDIR(st.st_mode):
            raise self.rules.fail(f"{head} is a directory")
        if target == parts:
            return
        self.remove_existing(parent, base, parts, keep_dir=False)
        os.link(target[-1], base, src_dir_fd=tparent, dst_dir_fd=parent, follow_symlinks=False)

    def _fifo(self, m: tarfile.TarInfo, parent: int, base: str, parts: tuple[str, ...]) -> None:
        self.remove_existing(parent, base, parts, keep_dir=False)
        os.mkfifo(base, 0o600, dir_fd=parent)
        fd = os.open(base, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        try:
            self._meta_fd(fd, m)
        finally:
            os.close(fd)

    # -- metadata -----------------------------------------------------------------------------------

    def _xattrs(self, fd: int, m: tarfile.TarInfo) -> None:
        """Only `user.*` and `security.capability`: `trusted.*` from a tar would steer overlayfs."""
        for k, v in m.pax_headers.items():
            if not k.startswith("SCHILY.xattr."):
                continue
            name = k[len("SCHILY.xattr."):]
            if name.startswith(SAFE_XATTR_PREFIXES) or name in SAFE_XATTRS:
                try:
                    os.setxattr(fd, name, v.encode("utf-8", "surrogateescape"))
                except OSError as e:
                    if e.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP):
                        raise

    def _meta_fd(self, fd: int, m: tarfile.TarInfo) -> None:
        if self.rules.owners:
            os.fchown(fd, m.uid, m.gid)
        os.fchmod(fd, m.mode & 0o7777)
        if self.rules.owners:
            self._xattrs(fd, m)
        os.utime(fd, ns=(ns(m.mtime), ns(m.mtime)))

    def _meta_dir(self, fd: int, parts: tuple[str, ...], m: tarfile.TarInfo, fresh: bool) -> None:
        if self.rules.owners:
            if m.uid or m.gid or not fresh:  # a directory we just made as root is already 0:0
                os.fchown(fd, m.uid, m.gid)
        os.fchmod(fd, m.mode & 0o7777)
        if self.rules.owners:
            self._xattrs(fd, m)
        self.dir_times[parts] = ns(m.mtime)  # set last: adding children changes a directory's mtime

    def finish(self) -> None:
        for parts in sorted(self.dir_times, key=len, reverse=True):
            try:
                fd = self.dirfd(parts, create=False)
            except (OSError, InvalidParameter):
                continue
            t = self.dir_times[parts]
            os.utime(fd, ns=(t, t))


def extract(ex: SafeExtractor, fileobj: Any, mode: str, what: str, **kw: Any) -> None:
    """Extract every member of the tar stream `fileobj` with `ex`, then set directory times.

    `what` names the input in messages ("the build context is not a valid archive: …"). Closes `ex`."""
    rules = ex.rules

    def bad(reason: str) -> Exception:
        return rules.fail(f"{what} is not a valid archive: {reason}")

    try:
        tf = open_stream(fileobj, mode, bad, **kw)
        if tf is None:
            return
        with tf:
            for m in members(tf, bad):
                ex.add(tf, m)
        ex.finish()
    except OSError as e:
        raise rules.fail(f"cannot extract {what}: {e}") from None
    finally:
        ex.close()
