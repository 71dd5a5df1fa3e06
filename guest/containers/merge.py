"""Container configuration as Docker builds it at create time: the request merged over the image's config,
HostConfig normalised (so inspect shows what Docker shows), and `commit --change` instructions applied."""

from __future__ import annotations

import copy
import json
import os
import shlex
from collections.abc import Callable
from typing import Any

from skiffbox.guest import hostinfo
from skiffbox.guest.containers.spec import DEFAULT_SHM, merge_env, parse_signal
from skiffbox.guest.errors import InvalidParameter

CONFIG_KEYS = ("Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr", "ExposedPorts", "Tty",
               "OpenStdin", "StdinOnce", "Env", "Cmd", "Healthcheck", "ArgsEscaped", "Image", "Volumes", "WorkingDir",
               "Entrypoint", "NetworkDisabled", "MacAddress", "OnBuild", "Labels", "StopSignal", "StopTimeout", "Shell")


def split_create_body(body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    config = {k: copy.deepcopy(body[k]) for k in CONFIG_KEYS if k in body}
    host_config = copy.deepcopy(body.get("HostConfig") or {})
    networking = copy.deepcopy(body.get("NetworkingConfig") or {})
    mac = config.get("MacAddress")
    mode = host_config.get("NetworkMode") or "bridge"
    if mac and isinstance(mac, str) and mode not in ("host", "none") and not mode.startswith("container:"):
        # Before API 1.44 the MAC address was the container's (Config.MacAddress); moby moves it to the endpoint
        # of the container's network, where the network code looks for it.
        net = "bridge" if mode == "default" else mode
        eps = networking.setdefault("EndpointsConfig", {}) or {}
        networking["EndpointsConfig"] = eps
        ep = eps.setdefault(net, {}) or {}
        eps[net] = ep
        ep.setdefault("MacAddress", mac)
    return config, host_config, networking


def merge_image_config(cfg: dict[str, Any], img: dict[str, Any]) -> dict[str, Any]:
    """Docker's `merge(userConf, imageConf)` (daemon/commit.go): the user's settings win."""
    img = img or {}
    out = dict(cfg)
    if not out.get("User"):
        out["User"] = img.get("User") or ""
    ports = dict(img.get("ExposedPorts") or {})
    ports.update(out.get("ExposedPorts") or {})
    out["ExposedPorts"] = ports or None
    # A bare NAME (docker-py's environment={'NAME': None}) stays in Config.Env as dockerd keeps it, hiding the
    # image's NAME; the process never gets it (spec.merge_env skips bare names).
    bare = [e for e in out.get("Env") or [] if "=" not in e]
    out["Env"] = [e for e in merge_env(img.get("Env"), out.get("Env")) if e.partition("=")[0] not in bare] + bare
    labels = dict(img.get("Labels") or {})
    labels.update(out.get("Labels") or {})
    out["Labels"] = labels
    ep = out.get("Entrypoint")
    if not ep:
        if not out.get("Cmd"):
            out["Cmd"] = img.get("Cmd")
        if ep is None:
            out["Entrypoint"] = img.get("Entrypoint")
    if ep == [""] or ep == "":
        out["Entrypoint"] = None
    hc = out.get("Healthcheck")
    ihc = img.get("Healthcheck")
    if hc is None:
        out["Healthcheck"] = ihc
    elif ihc:
        merged = dict(ihc)
        for k, v in hc.items():
            if v not in (None, 0, [], ""):
                merged[k] = v
        out["Healthcheck"] = merged
    if not out.get("WorkingDir"):
        out["WorkingDir"] = img.get("WorkingDir") or ""
    vols = dict(img.get("Volumes") or {})
    vols.update(out.get("Volumes") or {})
    out["Volumes"] = vols or None
    if not out.get("StopSignal"):
        if img.get("StopSignal"):
            out["StopSignal"] = img["StopSignal"]
        else:
            out.pop("StopSignal", None)
    if out.get("OnBuild") is None:
        out["OnBuild"] = img.get("OnBuild")
    if not out.get("Shell") and img.get("Shell"):
        out["Shell"] = img["Shell"]
    for k in ("AttachStdin", "AttachStdout", "AttachStderr", "Tty", "OpenStdin", "StdinOnce"):
        out[k] = bool(out.get(k))
    for k, v in (("Domainname", ""), ("Cmd", None), ("Entrypoint", None), ("OnBuild", None)):
        out.setdefault(k, v)  # inspect shows these keys even when empty
    if out.get("WorkingDir") and not out["WorkingDir"].startswith("/"):
        raise InvalidParameter(f"the working directory '{out['WorkingDir']}' is invalid, it needs to be an absolute path")
    if out.get("StopSignal"):
        parse_signal(out["StopSignal"])
    return out


# dockerd's built-in log drivers; any other name is refused at create, as dockerd does (we keep every driver's
# output in our own log file, so `docker logs` works for all of them).
LOG_DRIVERS = frozenset({"json-file", "local", "journald", "none", "syslog", "gelf", "fluentd", "awslogs", "splunk",
                         "etwlogs", "gcplogs", "logentries"})


def normalize_host_config(hc: dict[str, Any], resolve_runtime: Callable[[str | None], str]) -> dict[str, Any]:
    hc = dict(hc)
    mode = hc.get("NetworkMode") or "default"
    hc["NetworkMode"] = "bridge" if mode == "default" else mode
    lc = hc.get("LogConfig") or {}
    if (lc.get("Type") or "json-file") not in LOG_DRIVERS:
        raise InvalidParameter(f"logger: no log driver named '{lc['Type']}' is registered")
    # docker-py's containers.run() only streams output for json-file/journald; k8s-file is what is underneath.
    hc["LogConfig"] = {"Type": lc.get("Type") or "json-file", "Config": lc.get("Config") or {}}
    rp = hc.get("RestartPolicy") or {}
    name = rp.get("Name") or "no"
    if name not in ("no", "always", "unless-stopped", "on-failure"):
        raise InvalidParameter(f"invalid restart policy '{name}'")
    retries = int(rp.get("MaximumRetryCount") or 0)
    if retries and name != "on-failure":
        raise InvalidParameter("invalid restart policy: maximum retry count can only be used with 'on-failure'")
    if retries < 0:
        raise InvalidParameter("invalid restart policy: maximum retry count cannot be negative")
    hc["RestartPolicy"] = {"Name": name, "MaximumRetryCount": retries}
    if hc.get("AutoRemove") and name != "no":
        raise InvalidParameter("can't create 'AutoRemove' container with restart policy")
    hc.setdefault("ShmSize", DEFAULT_SHM)
    if not hc.get("ShmSize"):
        hc["ShmSize"] = DEFAULT_SHM
    hc.setdefault("Binds", None)
    hc.setdefault("PortBindings", {})
    hc.setdefault("Privileged", False)
    hc.setdefault("ReadonlyRootfs", False)
    hc.setdefault("AutoRemove", False)
    hc.setdefault("CapAdd", None)
    hc.setdefault("CapDrop", None)
    hc["CgroupnsMode"] = hc.get("CgroupnsMode") or ("private" if hostinfo.cgroup_version() == "2" else "host")
    hc.setdefault("IpcMode", "private")
    hc["IpcMode"] = hc.get("IpcMode") or "private"
    hc["Runtime"] = resolve_runtime(hc.get("Runtime"))
    hc.setdefault("Isolation", "")
    for k in ("Memory", "MemoryReservation", "MemorySwap", "NanoCpus", "CpuShares", "CpuPeriod", "CpuQuota",
              "KernelMemory", "BlkioWeight"):
        hc[k] = int(hc.get(k) or 0)
    if hc.get("PidsLimit") in (0,):
        hc["PidsLimit"] = None
    hc.setdefault("CpusetCpus", "")
    hc.setdefault("CpusetMems", "")
    hc.setdefault("OomKillDisable", False)
    hc.setdefault("Devices", [])
    hc.setdefault("Ulimits", [])
    hc.setdefault("Dns", [])
    hc.setdefault("DnsOptions", [])
    hc.setdefault("DnsSearch", [])
    hc.setdefault("ExtraHosts", None)
    hc.setdefault("GroupAdd", None)
    hc.setdefault("SecurityOpt", None)
    hc.setdefault("VolumesFrom", None)
    hc.setdefault("Links", None)
    hc.setdefault("ConsoleSize", [0, 0])
    if hc.get("MaskedPaths") is None:
        from skiffbox.guest.containers.security import MASKED_PATHS, READONLY_PATHS

        if not hc.get("Privileged"):
            hc["MaskedPaths"] = list(MASKED_PATHS)
            hc["ReadonlyPaths"] = list(READONLY_PATHS)
    if hc.get("Privileged"):
        hc["MaskedPaths"] = None
        hc["ReadonlyPaths"] = None
    if hc.get("Init") and not _init_available():
        raise InvalidParameter("--init: no init binary (catatonit or tini) is installed")
    return hc


def _init_available() -> bool:
    from skiffbox.guest.containers.spec import init_binary

    return init_binary() is not None


# ---------------------------------------------------------------------------------------------
# commit --change
# ---------------------------------------------------------------------------------------------


def _json_or_shell(arg: str) -> list[str]:
    arg = arg.strip()
    if arg.startswith("["):
        try:
            v = json.loads(arg)
            if isinstance(v, list) and all(isinstance(x, str) for x in v):
                return v
        except ValueError:
            pass
    return ["/bin/sh", "-c", arg]


def apply_changes(cfg: dict[str, Any], changes: list[str]) -> dict[str, Any]:
    """Dockerfile instructions allowed by `docker commit --change`."""
    cfg = copy.deepcopy(cfg)
    for line in changes:
        line = line.strip()
        if not line:
            continue
        instr, _, arg = line.partition(" ")
        instr = instr.upper()
        arg = arg.strip()
        if instr == "CMD":
            cfg["Cmd"] = _json_or_shell(arg)
        elif instr == "ENTRYPOINT":
            cfg["Entrypoint"] = _json_or_shell(arg)
        elif instr == "ENV":
            pairs = _kv_pairs(arg)
            cfg["Env"] = merge_env(cfg.get("Env"), [f"{k}={v}" for k, v in pairs])
        elif instr == "LABEL":
            labels = dict(cfg.get("Labels") or {})
            labels.update(dict(_kv_pairs(arg)))
            cfg["Labels"] = labels
        elif instr == "EXPOSE":
            ports = dict(cfg.get("ExposedPorts") or {})
            for p in arg.split():
                ports[p if "/" in p else f"{p}/tcp"] = {}
            cfg["ExposedPorts"] = ports
        elif instr == "USER":
            cfg["User"] = arg
        elif instr == "WORKDIR":
            cfg["WorkingDir"] = os.path.join(cfg.get("WorkingDir") or "/", arg)
        elif instr == "VOLUME":
            vols = dict(cfg.get("Volumes") or {})
            for v in (_json_or_shell(arg) if arg.startswith("[") else arg.split()):
                vols[v] = {}
            cfg["Volumes"] = vols
        elif instr == "STOPSIGNAL":
            cfg["StopSignal"] = arg
        elif instr == "ONBUILD":
            cfg["OnBuild"] = (cfg.get("OnBuild") or []) + [arg]
        else:
            raise InvalidParameter(f"{instr} is not a valid change command")
    return cfg


def _kv_pairs(arg: str) -> list[tuple[str, str]]:
    words = shlex.split(arg)
    if words and "=" not in words[0]:
        # legacy `ENV key value with spaces`
        return [(words[0], " ".join(words[1:]))]
    out = []
    for w in words:
        k, _, v = w.partition("=")
        out.append((k, v))
    return out
