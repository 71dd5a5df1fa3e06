"""`docker create`: the request merged with the image config and checked, then the record and its dirs
(overlay upper/work, the init layer, the log file), and the volumes prepared."""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING, Any

from skiffbox.guest.containers import etcfiles, netsettings, security, spec
from skiffbox.guest.containers.merge import merge_image_config, normalize_host_config, split_create_body
from skiffbox.guest.containers.store import Container, now_rfc3339
from skiffbox.guest.errors import InvalidParameter
from skiffbox.guest.images import platforms

if TYPE_CHECKING:
    from skiffbox.guest.containers.service import ContainerService

_SWAP_LIMIT_V1 = "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"


async def create(svc: ContainerService, body: dict[str, Any], name: str | None = None,
                 platform: str | None = None) -> tuple[Container, list[str]]:
    config, hc, networking = split_create_body(body)
    requested = dict(config)  # the network-mode checks look at the request's own ports, not the image's EXPOSE
    ref = config.get("Image") or ""
    if not ref:
        raise InvalidParameter("config cannot be empty in order to create a container")
    img = await svc.images.resolve(ref)
    icfg = img.config or {}
    platforms.check_runnable(platforms.normalize(str(icfg.get("os") or ""), str(icfg.get("architecture") or ""),
                                                 str(icfg.get("variant") or "")))
    warnings: list[str] = []
    config = merge_image_config(config, (img.config or {}).get("config") or {})
    config["Image"] = ref
    hc = normalize_host_config(hc, svc.runtime.resolve)
    spec.command_line(config)  # "no command specified" now, not at start
    security.capabilities(hc.get("CapAdd"), hc.get("CapDrop"), bool(hc.get("Privileged")))
    spec.resources(hc, svc.cgroup_v2)  # limits (memory, cpusets, device rules) refused now, not at start
    if hc.get("Memory") and not os.path.exists(_SWAP_LIMIT_V1) and not svc.cgroup_v2:
        warnings.append("Your kernel does not support swap limit capabilities or the cgroup is not mounted. "
                        "Memory limited without swap.")
    warnings += svc.networks.validate(hc, (networking.get("EndpointsConfig") or None), requested) or []
    cid = svc.store.new_id()
    cname = svc.store.reserve_name(name, cid)
    c: Container | None = None
    try:
        rec = _record(cid, cname, config, hc, networking, img.id, [str(p) for p in img.layer_dirs()], platform)
        data_dir = svc.store.root / cid
        c = Container(rec, data_dir, svc.store.run_root / cid)
        for d in (c.upper, c.work):
            d.mkdir(parents=True, exist_ok=True)
        os.chmod(data_dir, 0o710)
        etcfiles.make_init_layer(c.init_layer, bool(hc.get("Init")))
        c.log_path.touch(mode=0o600)
        svc.store.save(c)
        svc.store.add(c)
        vols = svc.volumes
        await vols.prepare(c)
        c.rec["Mounts"] = vols.mountpoints(c)
        svc.store.save(c)
    except BaseException:
        if c is not None:
            svc.store.drop(c)
        svc.store.release_name(cname)
        shutil.rmtree(svc.store.root / cid, ignore_errors=True)
        raise
    svc.event(c, "create")
    return c, warnings


def _record(cid: str, cname: str, config: dict[str, Any], hc: dict[str, Any], networking: dict[str, Any],
            image_id: str, lower_dirs: list[str], platform: str | None) -> dict[str, Any]:
    """The new container's record (`container.json`), in Docker's inspect shape plus our `Skiff` part."""
    if not config.get("Hostname"):
        net = hc.get("NetworkMode") or ""
        config["Hostname"] = etcfiles.host_hostname() if net == "host" else cid[:12]
    args = spec.command_line(config)
    net_mode = hc["NetworkMode"]
    endpoints = dict((networking.get("EndpointsConfig") or {}))
    if "default" in endpoints:
        endpoints[net_mode if net_mode not in ("default",) else "bridge"] = endpoints.pop("default")
    if not endpoints and net_mode not in ("none", "host") and not net_mode.startswith("container:"):
        endpoints[net_mode] = {}
    rec: dict[str, Any] = {
        "Id": cid,
        "Created": now_rfc3339(),
        "Path": args[0],
        "Args": args[1:],
        "State": {"Status": "created", "Running": False, "Paused": False, "Restarting": False,
                  "OOMKilled": False, "Dead": False, "Pid": 0, "ExitCode": 0, "Error": "",
                  "StartedAt": "0001-01-01T00:00:00Z", "FinishedAt": "0001-01-01T00:00:00Z"},
        "Image": image_id,
        "Name": "/" + cname,
        "RestartCount": 0,
        "Config": config,
        "HostConfig": hc,
        "NetworkSettings": netsettings.empty(endpoints),
        "Mounts": [],
        "Skiff": {"LowerDirs": lower_dirs, "Platform": platform or ""},
    }
    if config.get("Healthcheck") and (config["Healthcheck"].get("Test") or [""])[0] not in ("NONE",):
        rec["State"]["Health"] = {"Status": "starting", "FailingStreak": 0, "Log": []}
    return rec
