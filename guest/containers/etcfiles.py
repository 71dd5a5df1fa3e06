"""/etc/hostname, /etc/hosts, /etc/resolv.conf for a container, and its init layer.

The init layer is Docker's `<id>-init`: a read-only layer between the image and the container's own
upper dir holding the mount points the runtime needs (so they never show up in `diff` or `commit`).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from skiffbox.guest.util.atomicfile import atomic_write
from skiffbox.guest.util.resolvconf import is_loopback, parse_resolv

HOSTS_HEADER = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "ff00::0\tip6-mcastprefix\n"
    "ff02::1\tip6-allnodes\n"
    "ff02::2\tip6-allrouters\n"
)

_INIT_DIRS = ("dev", "dev/pts", "dev/shm", "proc", "sys", "etc")
_INIT_FILES = ("etc/hosts", "etc/hostname", "etc/resolv.conf", "dev/console", ".dockerenv")


def make_init_layer(path: Path, with_init_binary: bool) -> None:
    for d in _INIT_DIRS:
        (path / d).mkdir(parents=True, exist_ok=True)
        os.chmod(path / d, 0o755)
    for f in _INIT_FILES:
        (path / f).touch()
    if with_init_binary:
        (path / "sbin").mkdir(exist_ok=True)
        (path / "sbin" / "docker-init").touch()
    try:
        os.symlink("/proc/mounts", path / "etc" / "mtab")
    except FileExistsError:
        pass


def write_hostname(path: Path, hostname: str) -> None:
    atomic_write(path, hostname + "\n")


def hosts_text(entries: list[tuple[str, list[str]]]) -> str:
    """Docker's localhost lines, then `entries` ((ip, [names]) in order, as the network service gives them)."""
    return HOSTS_HEADER + "".join(f"{ip}\t{' '.join(names)}\n" for ip, names in entries)


def write_hosts(path: Path, text: str) -> None:
    atomic_write(path, text)


def resolv_text(host_config: dict[str, Any], network_mode: str, provided: str | None = None) -> str:
    """The network service's file if it gave one; otherwise the host's, minus loopback servers (Docker's rule)."""
    if provided is not None:
        base = provided
    else:
        try:
            base = Path("/etc/resolv.conf").read_text()
        except OSError:
            base = ""
    ns, search, opts = parse_resolv(base)
    if provided is None and network_mode != "host":
        ns = [n for n in ns if not is_loopback(n)] or ["8.8.8.8", "8.8.4.4"]
    if provided is None:  # a network service's file already reflects --dns/--dns-search/--dns-option
        if host_config.get("Dns"):
            ns = list(host_config["Dns"])
        if host_config.get("DnsSearch"):
            search = list(host_config["DnsSearch"])
        if host_config.get("DnsOptions"):
            opts = list(host_config["DnsOptions"])
    out = [f"nameserver {n}\n" for n in ns]
    if search:
        out.append("search " + " ".join(search) + "\n")
    if opts:
        out.append("options " + " ".join(opts) + "\n")
    return "".join(out)


def host_hostname() -> str:
    return socket.gethostname()
