"""`docker diff`: the container's overlay upper dir read against the image layers below it.

Kind 0 = changed (exists below), 1 = added, 2 = deleted (an overlay whiteout: a 0:0 character device).
Everything under an added directory is added too; the init layer's mount points never appear (they are
below the upper dir, not in it).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from guest.containers.store import Container

CHANGED, ADDED, DELETED = 0, 1, 2


def _exists_below(lowers: list[Path], rel: str) -> bool:
    for low in lowers:  # topmost first
        p = os.path.join(low, rel)
        try:
            st = os.lstat(p)
        except OSError:
            continue
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            return False  # whited out by a higher layer
        return True
    return False


def changes(c: Container) -> list[dict[str, Any]]:
    lowers = [c.init_layer] + [Path(p) for p in reversed(c.skiff.get("LowerDirs") or [])]
    out: list[dict[str, Any]] = []

    def walk(rel: str, parent_added: bool) -> None:
        base = os.path.join(c.upper, rel) if rel else str(c.upper)
        try:
            names = sorted(os.listdir(base))
        except OSError:
            return
        for name in names:
            r = f"{rel}/{name}" if rel else name
            try:
                st = os.lstat(os.path.join(base, name))
            except OSError:
                continue
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                if _exists_below(lowers, r):
                    out.append({"Path": "/" + r, "Kind": DELETED})
                continue
            added = parent_added or not _exists_below(lowers, r)
            out.append({"Path": "/" + r, "Kind": ADDED if added else CHANGED})
            if stat.S_ISDIR(st.st_mode):
                walk(r, added)

    walk("", False)
    out.sort(key=lambda e: e["Path"])
    return out
