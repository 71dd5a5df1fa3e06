"""A container's network namespace when a network service wires it (netavark needs the netns before the
container starts): a bind-mounted netns file per container, like Podman's `/run/netns/netns-…`.

Without a network service the runtime creates the namespace itself (loopback only) and no file exists.
Made in-process, on a throwaway thread: network namespaces are per thread, so the thread unshares,
brings loopback up, bind-mounts its namespace onto the file and ends — no `unshare`/`ip` processes on
the `docker run` path.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct
import threading
from pathlib import Path

from guest.containers import rootfs

CLONE_NEWNET = 0x40000000
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_libc = ctypes.CDLL(None, use_errno=True)


def path_for(run_root: Path, cid: str) -> Path:
    return run_root / "netns" / f"skiff-{cid[:12]}"


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), _SIOCGIFFLAGS, req))[1]
        if not flags & _IFF_UP:
            fcntl.ioctl(s.fileno(), _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))


def create_sync(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    err: list[BaseException] = []

    def target() -> None:
        try:
            if _libc.unshare(CLONE_NEWNET) != 0:
                e = ctypes.get_errno()
                raise OSError(e, f"unshare(CLONE_NEWNET): {os.strerror(e)}")
            _loopback_up()
            rootfs.mount(f"/proc/self/task/{threading.get_native_id()}/ns/net", str(path), None, rootfs.MS_BIND)
        except BaseException as e:  # reported to the caller
            err.append(e)

    t = threading.Thread(target=target, name="netns-create")
    t.start()
    t.join()
    if err:
        remove_sync(path)
        raise err[0]


def remove_sync(path: Path) -> None:
    try:
        rootfs.umount(str(path), detach=True)
    except OSError:
        pass
    try:
        path.unlink()
    except OSError:
        pass


async def create(run_root: Path, cid: str) -> Path:
    p = path_for(run_root, cid)
    create_sync(p)  # a thread start and join: well under a millisecond
    return p


async def remove(path: str | Path) -> None:
    remove_sync(Path(path))
