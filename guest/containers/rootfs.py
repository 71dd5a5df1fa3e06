"""A container's filesystem: an overlay of the image's layer dirs plus an upper/work dir of its own.

Mounting goes through libc directly (no `mount` subprocess on the `docker run` path). Paths inside a
container are resolved with `secure_join`, which follows symlinks as if the container root were `/`, so a
container cannot point the engine at host files (docker cp, /etc/passwd lookups).
"""

from __future__ import annotations

import ctypes
import errno
import os
import subprocess
from pathlib import Path

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2

# overlayfs takes its options from one page; longer lower-dir lists are mounted with relative paths.
_MAX_OPTS = 4000


def mount(source: str, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    rc = _libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None, flags,
                     data.encode() if data else None)
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"mount {source} on {target} ({fstype}): {os.strerror(e)}")


def umount(target: str, detach: bool = False) -> None:
    rc = _libc.umount2(target.encode(), MNT_DETACH if detach else 0)
    if rc != 0:
        e = ctypes.get_errno()
        if e in (errno.EINVAL, errno.ENOENT):  # not mounted (any more)
            return
        if e == errno.EBUSY and not detach:
            umount(target, detach=True)
            return
        raise OSError(e, f"umount {target}: {os.strerror(e)}")


def is_mountpoint(path: Path) -> bool:
    p = str(path)
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                if line.split(" ", 5)[4] == p:
                    return True
    except OSError:
        pass
    return False


def mount_overlay(layer_dirs: list[Path], upper: Path, work: Path, target: Path, empty_lower: Path) -> None:
    """Mount `layer_dirs` (lowest first) under `upper` at `target`."""
    lowers = [str(p) for p in reversed(layer_dirs)] or [str(empty_lower)]
    if len(lowers) == 1 and not layer_dirs:
        empty_lower.mkdir(parents=True, exist_ok=True)
    target.mkdir(parents=True, exist_ok=True)
    opts = f"lowerdir={':'.join(lowers)},upperdir={upper},workdir={work}"
    if len(opts) <= _MAX_OPTS:
        mount("overlay", str(target), "overlay", 0, opts)
        return
    # Long chains: relative paths from their common parent, mounted by a child with that cwd
    # (chdir in the daemon itself would move every thread).
    common = os.path.commonpath(lowers + [str(upper), str(work)])

    def rel(p: str) -> str:
        return os.path.relpath(p, common)

    opts = f"lowerdir={':'.join(rel(p) for p in lowers)},upperdir={rel(str(upper))},workdir={rel(str(work))}"
    if len(opts) > _MAX_OPTS:
        raise OSError(errno.E2BIG, f"too many image layers to mount ({len(lowers)})")
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(target)], cwd=common, check=True,
                   capture_output=True)


def secure_join(root: Path, path: str, follow_last: bool = True) -> Path:
    """Resolve `path` inside `root` like the kernel would inside a chroot: `..` and absolute symlinks stay in root."""
    root = Path(root)
    parts = [p for p in path.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        cand = root.joinpath(*resolved, part)
        if (parts or follow_last) and cand.is_symlink():
            links += 1
            if links > 40:
                raise OSError(errno.ELOOP, f"too many levels of symbolic links: {path}")
            target = os.readlink(cand)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        resolved.append(part)
    return root.joinpath(*resolved)


def read_file_in(root: Path, path: str, limit: int = 4 * 1024 * 1024) -> str | None:
    try:
        p = secure_join(root, path)
        with open(p, "rb") as f:
            return f.read(limit).decode("utf-8", "replace")
    except OSError:
        return None
