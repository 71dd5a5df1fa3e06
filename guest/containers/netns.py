"""A container's network namespace when a network service wires it (netavark needs the netns before the
container starts): a bind-mounted netns file per container, like Podman's `/run/netns/netns-…`.

Without a network service the runtime creates the namespace itself (loopback only) and no file exists.
The mechanics (unshare + bind mount, loopback up) are the network package's `guest.network.netns`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path


def path_for(run_root: Path, cid: str) -> Path:
    return run_root / "netns" / f"skiff-{cid[:12]}"


async def create(run_root: Path, cid: str) -> Path:
    from guest.network import netns as nsutil

    p = path_for(run_root, cid)
    await asyncio.to_thread(nsutil.create, p)
    await asyncio.to_thread(nsutil.set_loopback_up, str(p))
    return p


async def remove(path: str | Path) -> None:
    from guest.network import netns as nsutil

    await asyncio.to_thread(nsutil.remove, Path(path))
