"""Runs netavark (Podman's network tool): bridges, veths, NAT, isolation and port forwards. (Its aardvark-dns is
left off: names come from dnsmasq.py; the --aardvark-binary flag is still passed so netavark never looks elsewhere.)

netavark works in its own current network namespace as the "host" (skiffd's netns: the VM's, or a test's) and moves
the container end of a veth into the given netns file. Input is the NetworkOptions JSON on stdin; on success it prints
a StatusBlock, on failure `{"error": "…"}` with a non-zero exit (a panic gives exit 101 and no JSON).
See /work/shared/reference/conmon_netavark.md §2.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from skiffbox.guest.errors import SystemError_

log = logging.getLogger("skiffd.network")

NETAVARK_PATHS = ("/usr/lib/podman/netavark", "/usr/libexec/podman/netavark", "/usr/local/libexec/podman/netavark")
AARDVARK_PATHS = ("/usr/lib/podman/aardvark-dns", "/usr/libexec/podman/aardvark-dns", "/usr/local/libexec/podman/aardvark-dns")


def _find(paths: tuple[str, ...], name: str) -> str | None:
    for p in paths:
        if os.access(p, os.X_OK):
            return p
    return shutil.which(name)


class NetavarkError(SystemError_):
    pass


class Netavark:
    def __init__(self, config_dir: Path, binary: str | None = None, aardvark: str | None = None) -> None:
        self.config_dir = config_dir
        self.binary = binary or _find(NETAVARK_PATHS, "netavark")
        self.aardvark = aardvark or _find(AARDVARK_PATHS, "aardvark-dns")
        # netavark runs iptables ~20 times per setup, each found through PATH: put the system dirs first, so no
        # exec is wasted on a long PATH (a test runner's, a user's) before /usr/sbin.
        self._env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "NETAVARK_FW": "iptables"}
        # One netavark at a time: concurrent setup/teardown on one bridge races (the last teardown deletes the
        # bridge another setup is attaching to), and iptables takes its own lock anyway.
        self._lock = asyncio.Lock()

    @property
    def available(self) -> bool:
        return self.binary is not None

    async def _run(self, verb: str, netns: str, options: dict[str, Any]) -> tuple[int, str, str]:
        if self.binary is None:
            raise NetavarkError("netavark is not installed (Debian package 'netavark')")
        # netavark does not create its --config dir and fails half-way (after moving the veth) without it.
        (self.config_dir / "aardvark-dns").mkdir(parents=True, exist_ok=True)
        args = [self.binary, "--config", str(self.config_dir), "--rootless=false"]
        if self.aardvark:
            args.append(f"--aardvark-binary={self.aardvark}")
        args += [verb, netns]
        async with self._lock:
            t0 = time.monotonic()
            proc = await asyncio.create_subprocess_exec(
                *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                env=self._env)
            out, err = await proc.communicate(json.dumps(options).encode())
            log.debug("netavark %s %s: rc=%s in %.1f ms", verb, options.get("container_name", ""), proc.returncode,
                      (time.monotonic() - t0) * 1000)
        rc = proc.returncode if proc.returncode is not None else -1
        return rc, out.decode(errors="replace"), err.decode(errors="replace")

    @staticmethod
    def _error_text(rc: int, out: str, err: str) -> str:
        try:
            msg = str(json.loads(out)["error"])
        except (ValueError, KeyError, TypeError):
            tail = (err.strip().splitlines() or [""])[-1]
            msg = f"exit {rc}: {tail or out.strip()}"
        return msg

    async def setup(self, netns: str, options: dict[str, Any]) -> dict[str, Any]:
        rc, out, err = await self._run("setup", netns, options)
        if rc != 0:
            log.debug("netavark setup failed for %s", json.dumps(options))
            raise NetavarkError(f"netavark setup: {self._error_text(rc, out, err)}")
        try:
            result: dict[str, Any] = json.loads(out)
            return result
        except ValueError:
            raise NetavarkError(f"netavark setup printed no status: {out[:200]!r}") from None

    async def teardown(self, netns: str, options: dict[str, Any]) -> None:
        """Idempotent: an endpoint whose veth or netns is already gone counts as torn down."""
        rc, out, err = await self._run("teardown", netns, options)
        if rc == 0:
            return
        msg = self._error_text(rc, out, err)
        if "No such device" in msg or "invalid namespace path" in msg:
            log.debug("netavark teardown of %s: already gone (%s)", options.get("container_id", "")[:12], msg)
            return
        raise NetavarkError(f"netavark teardown: {msg}")
