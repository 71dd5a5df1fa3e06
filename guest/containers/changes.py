"""`docker diff`: the container's overlay upper dir read against the image layers below it.

Kind 0 = changed (exists below), 1 = added, 2 = deleted (an overlay whiteout: a 0:0 character device).
Everything under an added directory is added too; the init layer's mount points never appear (they are
below the upper dir, not in it). A running container owns every name in the upper dir and may swap a
directory for a symlink to a host directory mid-walk, so the upper dir is walked by descriptor
(guest/images/treewalk.py), never by path; the lower dirs are the daemon's, read-only to the container.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from skiffbox.guest.containers.store import Container
from skiffbox.guest.images.treewalk import O_DIR, entries

CHANGED, ADDED, DELETED = 0, 1, 2


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _exists_below(lowers: list[Path], rel: str) -> bool:
    for low in lowers:  # topmost first
        try:
            st = os.lstat(os.path.join(low, rel))
        except OSError:
            continue
        return not _is_whiteout(st)  # a whiteout: deleted by a higher layer
    return False


def changes(c: Container) -> list[dict[str, Any]]:
    lowers = [c.init_layer] + [Path(p) for p in reversed(c.skiff.get("LowerDirs") or [])]
    out: list[dict[str, Any]] = []
    added_dirs: set[str] = set()
    try:
        root = os.open(c.upper, O_DIR & ~os.O_NOFOLLOW)  # the daemon's own path, above the container's reach
    except OSError:
        return out
    try:
        for e in entries(root):
            if _is_whiteout(e.st):
                if _exists_below(lowers, e.path):
                    out.append({"Path": "/" + e.path, "Kind": DELETED})
                continue
            added = e.path.rpartition("/")[0] in added_dirs or not _exists_below(lowers, e.path)
            out.append({"Path": "/" + e.path, "Kind": ADDED if added else CHANGED})
            if added and stat.S_ISDIR(e.st.st_mode):
                added_dirs.add(e.path)
    finally:
        os.close(root)
    out.sort(key=lambda e: e["Path"])
    return out
