"""Writing a file so that it appears under its name only once complete (temporary file + rename), as the
Go CLI writes config.json, contexts and `save`/`export` archives: an interrupted write leaves the old file.
The writing itself is the host side's one durable helper, machine/store.atomic_file."""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable


def write_atomically(path: str, chunks: Iterable[bytes], mode: int = 0o644, prefix: str = ".skiff-tmp-") -> None:
    """`path` (a symlink's target, so a linked dotfile stays linked) gets `chunks`; `mode` less the umask."""
    from pathlib import Path

    from skiffbox.machine.store import atomic_file  # only when a file is written: not on `ps`'s path

    umask = os.umask(0)
    os.umask(umask)
    with atomic_file(Path(os.path.realpath(path)), mode & ~umask, prefix=prefix) as f:
        for c in chunks:
            f.write(c)
