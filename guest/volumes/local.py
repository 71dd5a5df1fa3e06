"""Docker's `local` volume driver: a directory `<data-root>/volumes/<name>/_data`, optionally with a filesystem mounted
on it from the `type`, `device` and `o` options (`mount -t TYPE -o O DEVICE _data`), like `docker volume create
--opt type=tmpfs --opt device=tmpfs --opt o=size=64m` or `--opt type=none --opt o=bind --opt device=/srv/x`.

Such a volume is mounted when the first container using it starts and unmounted when the last one stops, as Docker
does; plain volumes are just directories.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from skiffbox.guest.errors import InvalidParameter, SystemError_

VALID_OPTS = {"type", "device", "o", "size"}
_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


def validate_name(name: str) -> None:
    if len(name) < 2:
        raise InvalidParameter('volume name is too short, names should be at least two alphanumeric characters')
    if not _NAME_RE.match(name):
        raise InvalidParameter(f'"{name}" includes invalid characters for a local volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" '
                               "are allowed. If you intended to pass a host directory, use absolute path")


def validate_opts(opts: dict[str, str]) -> None:
    for k in opts:
        if k not in VALID_OPTS:
            raise InvalidParameter(f'invalid option key: "{k}"')
    if "size" in opts:
        raise InvalidParameter("quota size requested but no quota support")
    if bool(opts.get("type")) != bool(opts.get("device")):
        raise InvalidParameter('missing required option: "type" and "device" go together')


def needs_mount(opts: dict[str, str]) -> bool:
    return bool(opts.get("type") or opts.get("device"))


def is_mounted(path: Path) -> bool:
    p = os.path.realpath(path)
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                if line.split()[4].encode().decode("unicode_escape") == p:
                    return True
    except OSError:
        pass
    return False


def mount(opts: dict[str, str], target: Path) -> None:
    dev = opts.get("device", "")
    typ = opts.get("type", "")
    o = opts.get("o", "")
    args = ["mount"]
    if typ and typ != "none":
        args += ["-t", typ]
    if o:
        args += ["-o", o]
    if typ == "none" and "bind" in o.split(",") and not os.path.exists(dev):
        raise SystemError_(f"error while mounting volume '{target.parent}': failed to mount local volume: "
                           f"mount {dev}:{target}, flags: bind: no such file or directory")
    r = subprocess.run(args + [dev, str(target)], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemError_(f"error while mounting volume '{target.parent}': failed to mount local volume: "
                           f"{r.stderr.strip() or r.stdout.strip()}")


def unmount(target: Path) -> None:
    for flags in ([], ["-l"]):
        if not is_mounted(target):
            return
        subprocess.run(["umount", *flags, str(target)], capture_output=True)


def copy_up(src: Path, dst: Path) -> bool:
    """Docker's copy-up: when a new empty volume is mounted over image content, the content (ownership, modes,
    links, xattrs) is copied into it first. Returns True if something was copied."""
    if not src.is_dir() or src.is_symlink():
        return False
    if any(dst.iterdir()):
        return False
    r = subprocess.run(["cp", "-a", "--", f"{src}/.", f"{dst}/"], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemError_(f"copying image content into the volume at {dst}: {r.stderr.strip()}")
    st = src.stat()
    os.chown(dst, st.st_uid, st.st_gid)
    os.chmod(dst, st.st_mode & 0o7777)
    return True


def dir_size(path: Path) -> int:
    """Bytes of regular files below `path`, hard links counted once (what `docker system df -v` shows)."""
    total = 0
    seen: set[tuple[int, int]] = set()
    try:
        dev = os.stat(path).st_dev
    except OSError:
        return 0
    stack = [str(path)]
    while stack:
        d = stack.pop()
        try:
            it = os.scandir(d)
        except OSError:
            continue
        with it:
            for e in it:
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                if e.is_dir(follow_symlinks=False):
                    if st.st_dev == dev:  # stay on this filesystem, as du -x
                        stack.append(e.path)
                elif e.is_file(follow_symlinks=False):
                    if st.st_nlink > 1:
                        key = (st.st_dev, st.st_ino)
                        if key in seen:
                            continue
                        seen.add(key)
                    total += st.st_size
    return total


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
