"""`cp`: copy between a container and the local filesystem (docker's cli/command/container/cp.go).

Rules kept from docker's archive.CopyTo / CopyInfoDestinationPath: a source ending in `/.` copies a
directory's contents; an existing destination directory receives the source under its own name; a
missing destination is created with the destination's name (its parent must exist); a directory never
overwrites a file. `-` reads or writes a tar stream. Local extraction never chowns (docker's NoLchown).
"""

from __future__ import annotations

import os
import tarfile
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from skiffbox.client.api import APIError
from skiffbox.cli.skiffclient.commands import Cli, CliError
from skiffbox.cli.skiffclient.flags import Command, Flag
from skiffbox.cli.skiffclient.formatting import human_size

if TYPE_CHECKING:
    from _typeshed import StrOrBytesPath

_GO_DIR = 1 << 31
_GO_SYMLINK = 1 << 27


def split_cp_arg(arg: str) -> tuple[str, str]:
    """"name:path" -> (name, path); a local path (absolute, ./relative, or without ':') -> ("", path)."""
    if os.path.isabs(arg) or arg.startswith("."):
        return "", arg
    name, sep, path = arg.partition(":")
    if not sep:
        return "", arg
    return name, path


class _NoChownTar(tarfile.TarFile):
    def chown(self, tarinfo: tarfile.TarInfo, targetpath: StrOrBytesPath, numeric_owner: bool) -> None:
        return None


class _Reader:
    """A file-like view of the response body for tarfile's stream mode."""

    def __init__(self, read1: Callable[[], bytes]) -> None:
        self._read1 = read1
        self._buf = b""

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buf) < n:
            data = self._read1()
            if not data:
                break
            self._buf += data
        if n < 0:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:n], self._buf[n:]
        return out


def copy_from(cli: Cli, container: str, src: str, dst: str, o: dict[str, Any]) -> None:
    resp = cli.api.archive_get(container, src)
    if dst == "-":
        import sys

        out = sys.stdout.buffer
        for chunk in resp.iter_chunks():
            out.write(chunk)
        out.flush()
        return
    import base64
    import json

    stat = json.loads(base64.b64decode(resp.headers.get("x-docker-container-path-stat", "") or "e30="))
    src_is_dir = bool(int(stat.get("mode", 0)) & _GO_DIR)
    src_base = os.path.basename(src.rstrip("/")) or stat.get("name", "")
    contents_only = src_is_dir and (src.endswith("/.") or src == ".")
    if os.path.isdir(dst):
        dest_dir, rename = dst, None
        if contents_only:
            rename = ""
    elif os.path.exists(dst):
        if src_is_dir:
            resp.close()
            raise CliError("cannot copy directory")
        dest_dir, rename = os.path.dirname(os.path.abspath(dst)), os.path.basename(dst)
    else:
        if dst.endswith(os.sep) or dst.endswith("/."):
            resp.close()
            raise CliError("no such directory")
        parent = os.path.dirname(os.path.abspath(dst))
        if not os.path.isdir(parent):
            resp.close()
            raise CliError(f"lstat {parent}: no such file or directory")
        dest_dir, rename = parent, os.path.basename(dst.rstrip("/"))
    reader = _Reader(resp.read1)
    # typeshed wants a seekable file object; the stream mode "r|*" only reads
    with _NoChownTar.open(fileobj=reader, mode="r|*") as tf:  # type: ignore[call-overload]
        copied = 0
        for member in tf:
            name = member.name
            if rename is not None and src_base:
                head, sep, tail = name.partition("/")
                if head == src_base:
                    name = (rename + sep + tail) if rename else tail
                if not name:
                    continue
            member.name = name
            tf.extract(member, dest_dir, set_attrs=True, filter="tar")
        copied = tf.offset + 1024  # what Go's tar reader consumes: the members and the end-of-archive blocks
    _report(cli, o, copied, dst)


def _report(cli: Cli, o: dict[str, Any], size: int, dest: str) -> None:
    """docker prints the copied size only on a terminal (and not with -q)."""
    if o["quiet"]:
        return
    try:
        if not cli.err.isatty():
            return
    except (AttributeError, ValueError):
        return
    cli.err.write(f"Successfully copied {human_size(size, 3)} to {dest}\n")


def _whole_seconds(ti: tarfile.TarInfo) -> tarfile.TarInfo:
    # Whole-second mtimes fit the ustar header; fractional ones would cost a PAX header per file.
    ti.mtime = int(ti.mtime)
    return ti


def _tar_chunks(path: str, arcname: str, contents_only: bool, follow: bool, counter: list[int]) -> Iterator[bytes]:
    r, w = os.pipe()

    def produce() -> None:
        try:
            with os.fdopen(w, "wb") as wf, tarfile.open(fileobj=wf, mode="w|", format=tarfile.PAX_FORMAT,
                                                         dereference=follow) as tf:
                if contents_only:
                    for entry in sorted(os.listdir(path)):
                        tf.add(os.path.join(path, entry), arcname=entry, filter=_whole_seconds)
                else:
                    tf.add(path, arcname=arcname, filter=_whole_seconds)
                counter[1] = tf.offset + 1024  # Go's writer stops there; Python pads to a 10 KiB record
        except (OSError, BrokenPipeError):
            pass

    t = threading.Thread(target=produce, daemon=True)
    t.start()
    with os.fdopen(r, "rb") as rf:
        while True:
            data = rf.read(64 * 1024)
            if not data:
                break
            counter[0] += len(data)
            yield data
    t.join()


def copy_to(cli: Cli, src: str, container: str, dst: str, o: dict[str, Any]) -> None:
    if src == "-":
        import sys

        def stdin_chunks() -> Iterator[bytes]:
            while True:
                # typeshed types stdin.buffer as BinaryIO, which lacks read1; it is a BufferedReader
                data = sys.stdin.buffer.read1(64 * 1024)  # type: ignore[union-attr]
                if not data:
                    return
                yield data

        cli.api.archive_put(container, dst, stdin_chunks(), copy_uid_gid=o["archive"])
        return
    if not os.path.lexists(src):
        raise CliError(f"lstat {os.path.abspath(src)}: no such file or directory")
    src_is_dir = os.path.isdir(src) and (o["follow_link"] or not os.path.islink(src))
    contents_only = src_is_dir and (src.endswith("/.") or src == ".")
    try:
        st = cli.api.archive_stat(container, dst)
        exists = True
    except APIError as e:
        if not e.not_found:
            raise
        st, exists = {}, False
    dst_is_dir = exists and bool(int(st.get("mode", 0)) & _GO_DIR)
    base = os.path.basename(os.path.normpath(src))
    if exists and dst_is_dir:
        put_dir, arc = dst, base
    elif exists:
        if src_is_dir:
            raise CliError("cannot copy directory")
        put_dir, arc = os.path.dirname(dst.rstrip("/")) or "/", os.path.basename(dst)
    else:
        if dst.endswith("/"):
            raise CliError(f"Error response from daemon: Could not find the file {dst} in container {container}")
        put_dir, arc = os.path.dirname(dst.rstrip("/")) or "/", os.path.basename(dst.rstrip("/"))
        contents_only = False
    counter = [0, 0]
    if contents_only and not exists:
        contents_only = False
    cli.api.archive_put(container, put_dir, _tar_chunks(src, arc, contents_only, o["follow_link"], counter),
                        copy_uid_gid=o["archive"])
    _report(cli, o, counter[1] or counter[0], f"{container}:{dst}")


def run_cp(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    src_c, src = split_cp_arg(args[0])
    dst_c, dst = split_cp_arg(args[1])
    if src_c and dst_c:
        raise CliError("copying between containers is not supported")
    if not src_c and not dst_c:
        raise CliError("must specify at least one container source")
    if src_c:
        if not src:
            raise CliError("source can not be empty")
        copy_from(cli, src_c, src, dst, o)
    else:
        if not dst:
            raise CliError("destination can not be empty")
        copy_to(cli, src, dst_c, dst, o)
    return 0


COMMANDS = {
    "cp": Command("cp", "[OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n\tskiff cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH",
                  "Copy files/folders between a container and the local filesystem", run_cp, [
                      Flag("archive", "a", help="Archive mode (copy all uid/gid information)"),
                      Flag("follow-link", "L", help="Always follow symbol link in SRC_PATH"),
                      Flag("quiet", "q", help="Suppress progress output during copy")], exact_args=2,
                  aliases=("container cp", "cp")),
}
