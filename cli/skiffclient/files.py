"""Writing a file so that it appears under its name only once complete (temporary file + rename), as the
Go CLI writes config.json, contexts and `save`/`export` archives: an interrupted write leaves the old file."""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable


def write_atomically(path: str, chunks: Iterable[bytes], mode: int = 0o644, prefix: str = ".skiff-tmp-") -> None:
    """`path` (a symlink's target, so a linked dotfile stays linked) gets `chunks`; `mode` less the umask."""
    import tempfile

    real = os.path.realpath(path)
    fd, tmp = tempfile.mkstemp(prefix=prefix, dir=os.path.dirname(real) or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            for c in chunks:
                f.write(c)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, mode & ~umask)
        os.replace(tmp, real)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
