"""A build context as a tar stream: `.dockerignore` applied on the client, files read in chunks as the
upload proceeds (a context of any size needs no more memory than one chunk).

The pattern rules are moby's (patternmatcher + ignorefile), in the engine's matcher
(guest/build/dockerignore.py; the host install carries skiffbox.guest too): the client uses it to decide what is
worth uploading, and the engine filters the context it receives again with the same rules.

As the docker CLI does: the Dockerfile and .dockerignore are always sent (they are re-included if a pattern
excludes them), entries are owned by 0:0, and a directory excluded with no `!` pattern that could
re-include something below it is not walked at all.
"""

from __future__ import annotations

import os
import stat
import tarfile

from skiffbox.guest.build.dockerignore import Matcher, go_clean

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

CHUNK = 256 * 1024


class ContextError(Exception):
    pass


def _tarinfo(full: str, name: str, st: os.stat_result) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.mode = stat.S_IMODE(st.st_mode)
    ti.mtime = int(st.st_mtime)
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    if stat.S_ISDIR(st.st_mode):
        ti.type = tarfile.DIRTYPE
        ti.name = name + "/"
    elif stat.S_ISLNK(st.st_mode):
        ti.type = tarfile.SYMTYPE
        ti.linkname = os.readlink(full)
    elif stat.S_ISREG(st.st_mode):
        ti.type = tarfile.REGTYPE
        ti.size = st.st_size
    else:
        raise ValueError("special file")
    return ti


def _file_entry(ti: tarfile.TarInfo, full: str) -> Iterator[bytes]:
    yield ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    if ti.type != tarfile.REGTYPE:
        return
    left = ti.size
    with open(full, "rb") as f:
        while left > 0:
            data = f.read(min(CHUNK, left))
            if not data:  # the file shrank while we read it: pad, as the header promised
                data = b"\0" * min(CHUNK, left)
            data = data[:left]
            left -= len(data)
            yield data
    pad = (-ti.size) % tarfile.BLOCKSIZE
    if pad:
        yield b"\0" * pad


def tar_context(root: str, ignore: Matcher, keep: list[str], extra: list[tuple[str, bytes]] | None = None,
                on_bytes: Callable[[int], None] | None = None) -> Iterator[bytes]:
    """The context directory `root` as tar chunks. `keep`: paths sent even when excluded (the Dockerfile,
    .dockerignore). `extra`: (name, content) entries appended (a Dockerfile from outside the context)."""
    keep_set = {go_clean(k) for k in keep}

    def emit(chunks: Iterator[bytes]) -> Iterator[bytes]:
        for c in chunks:
            if on_bytes:
                on_bytes(len(c))
            yield c

    def walk(rel: str) -> Iterator[bytes]:
        full = os.path.join(root, rel) if rel else root
        try:
            names = sorted(os.listdir(full))
        except OSError as e:
            raise ContextError(f"error checking context: can't stat '{full}': {e.strerror}") from None
        for name in names:
            r = f"{rel}/{name}" if rel else name
            p = os.path.join(root, r)
            try:
                st = os.lstat(p)
            except OSError:
                continue
            is_dir = stat.S_ISDIR(st.st_mode)
            if ignore.matches(r) and r not in keep_set:
                if is_dir and (ignore.may_reinclude_below(r) or any(k.startswith(r + "/") for k in keep_set)):
                    yield from walk(r)
                continue
            try:
                ti = _tarinfo(p, r, st)
            except ValueError:
                continue  # sockets, fifos, devices: docker skips them too
            except OSError as e:
                raise ContextError(f"error checking context: can't stat '{p}': {e.strerror}") from None
            if ti.type == tarfile.REGTYPE and not os.access(p, os.R_OK):
                raise ContextError(f"error checking context: no permission to read from '{p}'")
            yield from emit(_file_entry(ti, p))
            if is_dir:
                yield from walk(r)

    yield from walk("")
    import time

    for name, data in extra or []:
        ti = tarfile.TarInfo(name)
        ti.size, ti.mode, ti.mtime = len(data), 0o600, int(time.time())
        yield from emit(iter([ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"), data,
                              b"\0" * ((-len(data)) % tarfile.BLOCKSIZE)]))
    yield from emit(iter([b"\0" * (2 * tarfile.BLOCKSIZE)]))
