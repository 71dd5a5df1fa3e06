"""A container's network sandbox: its netns file, what the network service sets up in it, and the /etc files
(hostname, hosts, resolv.conf) that go with it. Undone by `teardown` after the container stopped."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skiffbox.guest.containers import etcfiles, netsettings
from skiffbox.guest.containers.store import Container
from skiffbox.guest.errors import Conflict
from skiffbox.guest.network import netns

if TYPE_CHECKING:
    from skiffbox.guest.containers.service import ContainerService

log = logging.getLogger("skiffd.containers")


async def setup(svc: ContainerService, c: Container) -> tuple[str | None, dict[str, Any] | None]:
    """(netns path for the runtime, the network service's answer) for the container's NetworkMode.
    `container:<other>` answers `{"from": other}`: the other's netns and /etc files are shared."""
    mode = c.host_config.get("NetworkMode") or "bridge"
    nets = svc.networks
    if mode.startswith("container:"):
        other = svc.get(mode.split(":", 1)[1])
        if not other.running:
            raise Conflict(f"cannot join network of a non running container: {other.id}")
        # Its names too, as dockerd does at start (a hostname of its own is refused at create).
        c.config["Hostname"] = other.config.get("Hostname") or other.id[:12]
        c.config["Domainname"] = other.config.get("Domainname") or ""
        return other.netns_path or f"/proc/{other.state['Pid']}/ns/net", {"from": other}
    if mode == "host":
        result = await nets.setup(c, None) or {}
        netsettings.apply_result(c, result)
        return None, result
    # `none` too gets its netns file and the network service's answer (its hosts entries, --add-host with
    # host-gateway resolved, and its NetworkSettings), as Docker gives `none` a sandbox.
    path = netns_path(svc, c)
    netns.create(path, loopback_up=True)  # a thread start and join: well under a millisecond
    c.skiff["Netns"] = str(path)
    svc.store.save(c)
    try:
        # Returns once addresses, ports and names are decided; netavark plumbs on while the rest of the start
        # (etc files, spec, conmon + `runtime create`) goes on: `ready()` before `runtime start` waits for it.
        result = await nets.setup(c, str(path), background=True) or {}
    except BaseException:
        netns.remove(path)
        c.skiff.pop("Netns", None)
        raise
    netsettings.apply_result(c, result)
    ns = c.rec["NetworkSettings"]
    ns["SandboxKey"] = str(path)
    ns["SandboxID"] = c.id[:12]
    return str(path), result


async def ready(svc: ContainerService, c: Container) -> None:
    """Wait for the network service's plumbing begun by `setup` (netavark runs alongside the rest of the start)."""
    await svc.networks.ready(c)


def netns_path(svc: ContainerService, c: Container) -> Path:
    """The container's netns file (like Podman's `/run/netns/netns-…`): netavark needs the netns before the
    container starts, so it is made here and the runtime joins it."""
    return Path(svc.run_root) / "netns" / f"skiff-{c.id[:12]}"


def write_etc(c: Container, net: dict[str, Any] | None) -> None:
    """hostname, hosts, resolv.conf. The hosts entries (--add-host, links, the container's own address) are
    the network service's: they are listed once, from there."""
    cfg, hc = c.config, c.host_config
    mode = hc.get("NetworkMode") or "bridge"
    etcfiles.write_hostname(c.dir / "hostname", cfg.get("Hostname") or c.id[:12])
    if net and "from" in net:
        other: Container = net["from"]
        for n in ("hosts", "resolv.conf"):
            try:
                shutil.copyfile(other.dir / n, c.dir / n)
            except OSError:
                pass
        return
    entries = list((net or {}).get("hosts") or [])
    hosts = None
    if mode == "host" and not entries:
        # Docker's rule: the host's own file, unless --add-host asks for entries (then a fresh one).
        try:
            hosts = Path("/etc/hosts").read_text()
        except OSError:
            pass
    etcfiles.write_hosts(c.dir / "hosts", hosts if hosts is not None else etcfiles.hosts_text(entries))
    provided = (net or {}).get("resolv_conf")
    etcfiles.write_hosts(c.dir / "resolv.conf", etcfiles.resolv_text(hc, mode, provided))


def refresh_resolv_conf(svc: ContainerService, c: Container) -> None:
    """After `network connect`: a running container whose resolver changed (one of its own now, see
    guest/network/resolver.py) gets the new file, written in place (the bind-mounted inode is what it reads)."""
    provided = svc.networks.resolv_conf(c.id)
    if provided is None or not c.running:
        return
    text = etcfiles.resolv_text(c.host_config, c.host_config.get("NetworkMode") or "bridge", provided)
    path = c.dir / "resolv.conf"
    try:
        with open(path, "r+") as f:
            if f.read() == text:
                return
            f.seek(0)
            f.truncate()
            f.write(text)
    except OSError as e:
        log.warning("resolv.conf of %s: %s", c.id[:12], e)


async def teardown(svc: ContainerService, c: Container) -> None:
    """The network service's teardown and the netns file (not for `container:` mode: that netns is the other's)."""
    path = c.skiff.get("Netns")
    mode = c.host_config.get("NetworkMode") or ""
    if path and not mode.startswith("container:"):
        try:
            await svc.networks.teardown(c, path)
        except Exception:
            log.exception("network teardown of %s failed", c.id[:12])
        netns.remove(Path(path))
        c.skiff.pop("Netns", None)


def clean_stale(svc: ContainerService) -> None:
    """netns files no container record claims (left by a daemon killed mid-start or mid-teardown)."""
    d = Path(svc.run_root) / "netns"
    if not d.is_dir():
        return
    used = {c.skiff.get("Netns") for c in svc.store.all()}
    for p in d.iterdir():
        if str(p) not in used:
            netns.remove(p)
