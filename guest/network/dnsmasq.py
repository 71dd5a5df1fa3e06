"""Name resolution on user networks: one dnsmasq per network, listening on the bridge gateway (what the dnsname CNI
plugin runs), fed one hosts file per container.

Why not aardvark-dns: version 1.4 (Debian 12's) tears its sockets down and rebuilds them on every SIGHUP, and
netavark sends one on every container setup/teardown. Queries in that window are dropped or, worse, refused
(ICMP port unreachable), which makes glibc give up at once: lookups failed under load in our tests (upstream
aardvark-dns #389, fixed in 1.11). dnsmasq keeps its sockets and picks up hosts files through inotify
(`--hostsdir`), so names appear and disappear within milliseconds without any reload; it forwards other names to
the host's resolvers. netavark still does all the plumbing (bridges, veths, NAT, ports), with its DNS turned off.

Each dnsmasq is a daemon of its own (it outlives a skiffd restart, as the containers do); its state sits in
`<exec-root>/network/dns/<network id[:12]>/`: `pid`, `hosts.d/<container id>`, `log`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import time
from pathlib import Path

from skiffbox.guest.errors import SystemError_
from skiffbox.guest.util.atomicfile import atomic_write

log = logging.getLogger("skiffd.network")

DNSMASQ_PATHS = ("/usr/sbin/dnsmasq", "/usr/bin/dnsmasq", "/sbin/dnsmasq")


def find_dnsmasq() -> str | None:
    for p in DNSMASQ_PATHS:
        if os.access(p, os.X_OK):
            return p
    return shutil.which("dnsmasq")


class NameServers:
    def __init__(self, run_dir: Path, binary: str | None = None) -> None:
        self.dir = run_dir / "dns"
        self.binary = binary or find_dnsmasq()

    @property
    def available(self) -> bool:
        return self.binary is not None

    def _net_dir(self, net_id: str) -> Path:
        return self.dir / net_id[:12]

    def _pid(self, net_id: str) -> int | None:
        """The running dnsmasq of this network (checked against its command line: pids get reused)."""
        d = self._net_dir(net_id)
        try:
            pid = int((d / "pid").read_text().strip())
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if str(d / "pid").encode() not in f.read():
                    return None
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return None
            return pid
        except (OSError, ValueError):
            return None

    def running(self, net_id: str) -> bool:
        return self._pid(net_id) is not None

    async def ensure(self, net_id: str, listen: list[str]) -> None:
        """Start the network's dnsmasq unless it runs (the bridge with the gateway addresses must exist)."""
        if self._pid(net_id) is not None:
            return
        if self.binary is None:
            raise SystemError_("dnsmasq is not installed (Debian package 'dnsmasq-base'): no name resolution on user networks")
        d = self._net_dir(net_id)
        (d / "hosts.d").mkdir(parents=True, exist_ok=True)
        args = [self.binary, "--conf-file=/dev/null", f"--pid-file={d / 'pid'}", f"--listen-address={','.join(listen)}",
                "--bind-dynamic", "--port=53", "--no-hosts", f"--hostsdir={d / 'hosts.d'}",
                # a name that appears a moment later must not stay unknown from a cached negative answer
                "--no-negcache", "--local-ttl=1",
                # bare names are container names: never ask the Internet about them
                "--domain-needed", "--resolv-file=/etc/resolv.conf", "--user=root", "--group=root",
                f"--log-facility={d / 'log'}"]
        if os.environ.get("SKIFF_DNSMASQ_LOG_QUERIES"):  # every query and answer in `log`, to diagnose lookups
            args.append("--log-queries=extra")
        proc = await asyncio.create_subprocess_exec(*args, stdin=asyncio.subprocess.DEVNULL,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()  # it daemonizes: this returns once it listens
        if proc.returncode != 0:
            raise SystemError_(f"dnsmasq for network {net_id[:12]} failed: {(err or out).decode(errors='replace').strip()}")
        log.debug("dnsmasq for %s listening on %s", net_id[:12], listen)

    def set_names(self, net_id: str, owner: str, entries: list[tuple[str, list[str]]],
                  only_if_changed: bool = False) -> bool:
        """Publish `owner`'s addresses and names (written to a dotfile in the watched dir, which dnsmasq ignores, then
        renamed over the file, so dnsmasq never reads half a file; its IN_MOVED_TO makes dnsmasq flush the file's old
        records and read it again). Runtime state: not fsynced.
        Returns whether the file was written."""
        d = self._net_dir(net_id)
        (d / "hosts.d").mkdir(parents=True, exist_ok=True)
        text = "".join(f"{ip} {' '.join(names)}\n" for ip, names in entries if names)
        dest = d / "hosts.d" / owner
        if only_if_changed:
            try:
                if dest.read_text() == text:
                    return False
            except OSError:
                pass
        atomic_write(dest, text, durable=False)
        return True

    def reload(self, net_id: str) -> None:
        """SIGHUP: dnsmasq drops every hosts record and reads the whole hosts dir again (the remedy for a file
        event it missed)."""
        pid = self._pid(net_id)
        if pid is not None:
            try:
                os.kill(pid, signal.SIGHUP)
            except ProcessLookupError:
                pass

    def drop_names(self, net_id: str, owner: str) -> None:
        try:
            os.unlink(self._net_dir(net_id) / "hosts.d" / owner)
        except FileNotFoundError:
            pass

    def has_names(self, net_id: str) -> bool:
        try:
            return any(self._net_dir(net_id).joinpath("hosts.d").iterdir())
        except FileNotFoundError:
            return False

    async def stop(self, net_id: str) -> None:
        pid = self._pid(net_id)
        if pid is not None:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + 3
            while self._pid(net_id) is not None and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        shutil.rmtree(self._net_dir(net_id), ignore_errors=True)
