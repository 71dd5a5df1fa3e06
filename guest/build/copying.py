"""COPY and ADD on the filesystem: finding sources, checksumming them for the cache, copying them into
an image's root with Docker's classic-builder rules.

Sources are paths in a root (the build context, or another stage's/image's filesystem for --from),
resolved with symlinks followed inside that root only. Destination rules (moby `builder/dockerfile/copy.go`):
a directory source copies its contents; a file goes to `dest/<name>` when dest ends in `/` or is an
existing directory, else to `dest` itself; several sources need a dest ending in `/`; relative dests are
under WORKDIR; missing parents are created 0755, owned by the --chown identity when one is given.
Copied entries are owned by root (or --chown), except COPY --from without --chown, which keeps owners.
ADD extracts local tar archives (plain, gzip, bzip2, xz) into the destination, keeping their owners.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from skiffbox.guest.build.context import extract_archive, looks_like_archive
from skiffbox.guest.build.dockerignore import go_clean, go_match, has_wildcards
from skiffbox.guest.containers.rootfs import secure_join
from skiffbox.guest.errors import InvalidParameter


class CopyError(InvalidParameter):
    pass


@dataclass
class Source:
    path: Path  # resolved on disk (symlinks followed inside the root)
    name: str  # the name Docker gives it at the destination (the source's own base name)
    rel: str  # path inside its root
    remote: bool = False  # downloaded by ADD: never auto-extracted


def _rel_in_root(src: str) -> str:
    return go_clean("/" + src).lstrip("/")


def resolve_sources(root: Path, patterns: list[str], *, in_context: bool) -> list[Source]:
    out: list[Source] = []
    for raw in patterns:
        if raw.startswith("../") or raw == ".." or go_clean(raw).startswith("../"):
            raise CopyError(f"Forbidden path outside the build context: {raw} ()")
        rel = _rel_in_root(raw)
        if has_wildcards(rel):
            out.extend(_glob(root, rel))
            continue
        out.append(_one(root, rel, raw, in_context))
    if not out:
        raise CopyError("no source files were specified")
    return out


def _one(root: Path, rel: str, raw: str, in_context: bool) -> Source:
    path = secure_join(root, rel) if rel else root
    if not os.path.lexists(path) or (os.path.islink(path) and not os.path.exists(path)):
        shown = rel or "."
        if in_context:
            raise CopyError(f"file not found in build context or excluded by .dockerignore: stat {shown}: file does not exist")
        raise CopyError(f"stat {shown}: file does not exist")
    return Source(path, rel.rpartition("/")[2] or ".", rel)


def _glob(root: Path, pattern: str) -> list[Source]:
    out: list[Source] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        for n in sorted(dirnames + filenames):
            rel = rel_dir + n
            if go_match(pattern, rel):
                out.append(_one(root, rel, rel, True))
    return out


# ---------------------------------------------------------------------------------------------
# Checksums (the cache key of a COPY/ADD step)
# ---------------------------------------------------------------------------------------------


def _file_digest(path: Path, h: "hashlib._Hash") -> None:
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)


def _entry(h: "hashlib._Hash", rel: str, path: Path, keep_owner: bool) -> None:
    st = os.lstat(path)
    owner = f"{st.st_uid}:{st.st_gid}" if keep_owner else ""
    if stat.S_ISLNK(st.st_mode):
        h.update(f"L {rel} {os.readlink(path)} {owner}\0".encode("utf-8", "surrogateescape"))
    elif stat.S_ISDIR(st.st_mode):
        h.update(f"D {rel} {st.st_mode & 0o7777:o} {owner}\0".encode("utf-8", "surrogateescape"))
    elif stat.S_ISREG(st.st_mode):
        h.update(f"F {rel} {st.st_mode & 0o7777:o} {st.st_size} {owner}\0".encode("utf-8", "surrogateescape"))
        _file_digest(path, h)


def source_checksum(sources: list[Source], keep_owner: bool = False) -> str:
    """Docker-style `file:<sha>` / `dir:<sha>` / `multi:<sha>` over names, modes and content (not mtimes,
    so touching a file keeps the cache, as in Docker)."""
    parts: list[str] = []
    for s in sources:
        h = hashlib.sha256()
        if s.path.is_dir():
            kind = "dir"
            for dirpath, dirnames, filenames in os.walk(s.path):
                dirnames.sort()
                rel_dir = os.path.relpath(dirpath, s.path)
                for n in sorted(dirnames + filenames):
                    _entry(h, os.path.join(rel_dir, n), Path(dirpath, n), keep_owner)
        else:
            kind = "file"
            st = s.path.stat()
            h.update(f"{st.st_mode & 0o7777:o}\0".encode())
            _file_digest(s.path, h)
        parts.append(f"{kind}:{h.hexdigest()}")
    if len(parts) == 1:
        return parts[0]
    return "multi:" + hashlib.sha256(",".join(parts).encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Copying
# ---------------------------------------------------------------------------------------------


def normalize_dest(workdir: str, dest: str) -> str:
    ends = dest.endswith("/")
    if not dest.startswith("/"):
        dest = go_clean(os.path.join("/", workdir or "/", dest))
        if ends and not dest.endswith("/"):
            dest += "/"
    return dest


def _mkdir_all(rootfs: Path, path: Path, owner: tuple[int, int] | None) -> None:
    """Create missing directories of `path` (already resolved inside rootfs): 0755, new ones owned by `owner`."""
    missing: list[Path] = []
    p = path
    while not os.path.lexists(p) and p != rootfs:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        os.mkdir(d, 0o755)
        if owner is not None:
            os.lchown(d, *owner)


def _copy_meta(src_st: os.stat_result, dst: Path, owner: tuple[int, int] | None, chmod: int | None, is_link: bool) -> None:
    uid, gid = owner if owner is not None else (src_st.st_uid, src_st.st_gid)
    os.lchown(dst, uid, gid)
    if not is_link:
        os.chmod(dst, chmod if chmod is not None else stat.S_IMODE(src_st.st_mode))
    os.utime(dst, ns=(src_st.st_atime_ns, src_st.st_mtime_ns), follow_symlinks=False)


def _remove(p: Path) -> None:
    if os.path.isdir(p) and not os.path.islink(p):
        shutil.rmtree(p)
    elif os.path.lexists(p):
        os.unlink(p)


def _copy_file(src: Path, dst: Path, owner: tuple[int, int] | None, chmod: int | None) -> None:
    st = os.lstat(src)
    if os.path.lexists(dst):
        _remove(dst)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), dst)
        _copy_meta(st, dst, owner, None, True)
        return
    if not stat.S_ISREG(st.st_mode):
        return  # devices, FIFOs and sockets are not copied
    shutil.copyfile(src, dst, follow_symlinks=False)
    _copy_meta(st, dst, owner, chmod, False)


def _copy_tree(src: Path, dst: Path, owner: tuple[int, int] | None, chmod: int | None) -> None:
    """Copy the contents of directory `src` into directory `dst` (which exists)."""
    for name in sorted(os.listdir(src)):
        s = src / name
        d = dst / name
        st = os.lstat(s)
        if stat.S_ISDIR(st.st_mode):
            if os.path.lexists(d) and not (os.path.isdir(d) and not os.path.islink(d)):
                _remove(d)
            if not os.path.lexists(d):
                os.mkdir(d, 0o700)
            _copy_tree(s, d, owner, chmod)
            _copy_meta(st, d, owner, chmod, False)
        else:
            _copy_file(s, d, owner, chmod)


def is_archive(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return looks_like_archive(f.read(512))
    except OSError:
        return False


def copy_into(rootfs: Path, dest: str, sources: list[Source], *, owner: tuple[int, int] | None,
              chmod: int | None = None, decompress: bool = False, what: str = "COPY") -> None:
    """Copy `sources` to `dest` (absolute, already normalized against WORKDIR) inside `rootfs`."""
    ends_slash = dest.endswith("/")
    if len(sources) > 1 and not ends_slash:
        raise CopyError(f"When using {what} with more than one source file, the destination must be a directory and end with a /")
    dest_path = secure_join(rootfs, dest)
    for s in sources:
        if s.path.is_dir():
            existed = os.path.isdir(dest_path)
            _mkdir_all(rootfs, dest_path.parent, None)
            if os.path.lexists(dest_path) and not existed:
                _remove(dest_path)
            if not existed:
                os.mkdir(dest_path, 0o755)
            _copy_tree(s.path, dest_path, owner, chmod)
            if not existed:
                _copy_meta(os.stat(s.path), dest_path, owner, chmod, False)
            continue
        if decompress and not s.remote and is_archive(s.path):
            _mkdir_all(rootfs, dest_path, None)
            extract_archive(s.path, dest_path)
            continue
        target = dest_path
        if ends_slash or os.path.isdir(dest_path):
            target = dest_path / s.name
        _mkdir_all(rootfs, target.parent, owner)
        if os.path.isdir(target) and not os.path.islink(target):
            raise CopyError(f"cannot copy to {dest}: it is a directory")
        _copy_file(s.path, target, owner, chmod)


# ---------------------------------------------------------------------------------------------
# Users and groups (--chown)
# ---------------------------------------------------------------------------------------------


def _lookup(rootfs: Path, file: str, name: str) -> int | None:
    try:
        p = secure_join(rootfs, file)
        with open(p, encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.rstrip("\n").split(":")
                if len(fields) >= 3 and fields[0] == name:
                    return int(fields[2])
    except (OSError, ValueError):
        return None
    return None


def parse_chown(rootfs: Path, spec: str) -> tuple[int, int]:
    """`user[:group]`, names looked up in the image's /etc/passwd and /etc/group (group defaults to the
    same string as the user, as in moby's parseChownFlag)."""
    parts = spec.split(":")
    if len(parts) > 2:
        raise CopyError(f"invalid chown string format: {spec}")
    user = parts[0]
    group = parts[1] if len(parts) == 2 else parts[0]
    ids = []
    for value, file, kind in ((user, "/etc/passwd", "user"), (group, "/etc/group", "group")):
        if value.isdigit():
            ids.append(int(value))
            continue
        found = _lookup(rootfs, file, value)
        if found is None:
            word = "uid for user" if kind == "user" else "gid for group"
            raise CopyError(f"can't find {word} {value}: no such {kind}: {value}")
        ids.append(found)
    return ids[0], ids[1]


def parse_chmod(spec: str) -> int:
    try:
        mode = int(spec, 8)
    except ValueError:
        raise CopyError(f"invalid chmod parameter: {spec}") from None
    if mode < 0 or mode > 0o7777:
        raise CopyError(f"invalid chmod parameter: {spec}")
    return mode
