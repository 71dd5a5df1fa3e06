"""Small network-namespace helpers: persistent netns files (the engine's bridge anchors, scratch namespaces for
cleaning up after a container whose netns is already gone) and bringing loopback up in a namespace.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
NSFS_MAGIC = 0x6E736673
MS_BIND = 0x1000
MNT_DETACH = 0x2
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def is_netns(path: str | Path) -> bool:
    """True if `path` is a bind-mounted network namespace (an nsfs inode), not just a leftover empty file."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        buf = ctypes.create_string_buffer(120)
        if _libc.fstatfs(fd, buf) != 0:
            return False
        f_type: int = struct.unpack_from("l", buf.raw)[0]
        return f_type == NSFS_MAGIC
    finally:
        os.close(fd)


def _bind_current_netns(path: Path) -> None:
    """(On a helper thread that has unshared its netns) keep that netns alive by bind-mounting it at `path`."""
    if _libc.mount(b"/proc/thread-self/ns/net", str(path).encode(), None, MS_BIND, None) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"mount --bind netns {path}: {os.strerror(e)}")


def create(path: Path, loopback_up: bool = False) -> None:
    """A new, empty network namespace kept alive by a bind mount at `path` (like `ip netns add`), made with
    unshare(2) + mount(2) on a throwaway thread: no process to spawn (namespaces are per thread)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    err: list[BaseException] = []

    def target() -> None:
        try:
            if _libc.unshare(CLONE_NEWNET) != 0:
                e = ctypes.get_errno()
                raise OSError(e, f"unshare(CLONE_NEWNET): {os.strerror(e)}")
            _bind_current_netns(path)
            if loopback_up:
                _lo_up()
        except BaseException as e:  # reported to the caller
            err.append(e)

    t = threading.Thread(target=target, name="netns-create")
    t.start()
    t.join()
    if err:
        remove(path)
        raise err[0]


def remove(path: Path) -> None:
    """Unmount and delete a netns file; the kernel frees the namespace (and its veths) once unused."""
    if is_netns(path):
        if _libc.umount2(str(path).encode(), MNT_DETACH) != 0 and is_netns(path):
            subprocess.run(["umount", "-l", str(path)], capture_output=True)
    try:
        path.unlink()
    except (FileNotFoundError, IsADirectoryError):
        pass
    except OSError:
        pass


def run_in(path: str, fn: Callable[..., T], *args: Any) -> T:
    """Blocking: `fn(*args)` on a throwaway thread that has joined the netns `path`; its result."""
    out: list[T] = []
    _in_netns(path, lambda: out.append(fn(*args)))
    return out[0]


def _in_netns(path: str, fn: Callable[[], Any]) -> None:
    """Run `fn` on a throwaway thread that has joined the netns (setns only affects the calling thread)."""
    err: list[BaseException] = []

    def target() -> None:
        try:
            fd = os.open(path, os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    e = ctypes.get_errno()
                    raise OSError(e, f"setns({path}): {os.strerror(e)}")
            finally:
                os.close(fd)
            fn()
        except BaseException as e:  # reported to the caller
            err.append(e)

    t = threading.Thread(target=target, name="netns-helper")
    t.start()
    t.join()
    if err:
        raise err[0]


def _lo_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), _SIOCGIFFLAGS, req))[1]
        if not flags & _IFF_UP:
            fcntl.ioctl(s.fileno(), _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))


def set_loopback_up(path: str) -> None:
    """`ip link set lo up` inside the netns, without spawning a process (used for `--network none`)."""
    _in_netns(path, _lo_up)


def _ipv6_off() -> None:
    try:
        with open("/proc/sys/net/ipv6/conf/all/disable_ipv6", "w") as f:  # this thread's netns: the container's
            f.write("1")
    except FileNotFoundError:  # a kernel without IPv6
        pass


def disable_ipv6(path: str) -> None:
    """IPv6 off in the netns (every interface, loopback's ::1 too), as dockerd leaves a container none of whose
    networks has IPv6 (not when the container sets net.ipv6 sysctls of its own: the runtime applies those)."""
    _in_netns(path, _ipv6_off)
