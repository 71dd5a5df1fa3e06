"""A task: one run of a service's task template, as an ordinary container of this engine.

The record is the API's Task (ID, Version, Spec, ServiceID, Slot, NodeID, Status, DesiredState...) plus a few
fields of our own under `_` (the container, when it may restart) that the API never shows. The container is
made the way dockerd's executor makes it (daemon/cluster/executor/container/container.go): named
`<service>.<slot>.<task>` (`<service>.<node>.<task>` for global modes), the ContainerSpec applied, swarm
labels on it, secrets and configs mounted read-only from files written for the task.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from skiffbox.guest.errors import EngineError
from skiffbox.guest.network.overlay import TASK_LABEL
from skiffbox.guest.swarm import ids
from skiffbox.guest.swarm.contracts import SecretPayload
from skiffbox.guest.swarm.specs import duration_s
from skiffbox.guest.util.timefmt import now_rfc3339

# Task states in swarmkit's order (api/types.proto TaskState): a task only moves forward.
STATES = ("new", "pending", "assigned", "accepted", "preparing", "ready", "starting", "running", "complete",
          "shutdown", "failed", "rejected", "remove", "orphaned")
TERMINAL = {"complete", "shutdown", "failed", "rejected", "remove", "orphaned"}
def new_task(service: dict[str, Any], slot: int | None, node_id: str, index: int) -> dict[str, Any]:
    now = now_rfc3339()
    spec = service["Spec"]
    tspec = {k: v for k, v in spec["TaskTemplate"].items() if k != "Runtime"}
    if not tspec.get("Networks") and spec.get("Networks"):
        tspec["Networks"] = spec["Networks"]  # the deprecated top-level field still attaches them
    task: dict[str, Any] = {
        "ID": ids.new_id(), "Version": {"Index": index}, "CreatedAt": now, "UpdatedAt": now, "Labels": {},
        "Spec": tspec, "ServiceID": service["ID"],
    }
    if slot:  # Go's omitempty: a replicated job's first slot, 0, is not shown
        task["Slot"] = slot
    task["NodeID"] = node_id
    task["Status"] = {"Timestamp": now, "State": "new", "Message": "created", "PortStatus": {}}
    task["DesiredState"] = "complete" if _is_job(spec) else "running"
    if _is_job(spec):
        task["JobIteration"] = dict((service.get("JobStatus") or {}).get("JobIteration") or {})
    return task


def _is_job(spec: dict[str, Any]) -> bool:
    mode = spec.get("Mode") or {}
    return "ReplicatedJob" in mode or "GlobalJob" in mode


def container_name(service_name: str, task: dict[str, Any]) -> str:
    return f"{service_name}.{task.get('Slot') or task['NodeID']}.{task['ID']}"


def set_state(task: dict[str, Any], state: str, message: str, index: int, err: str | None = None,
              container: dict[str, Any] | None = None) -> None:
    old = task["Status"]
    now = now_rfc3339()
    st: dict[str, Any] = {"Timestamp": now, "State": state, "Message": message}  # dockerd's field order
    if err:
        st["Err"] = err
    if container is not None or "ContainerStatus" in old:
        st["ContainerStatus"] = container if container is not None else old["ContainerStatus"]
    st["PortStatus"] = old.get("PortStatus") or {}
    task["Status"] = st
    task["UpdatedAt"] = now
    task["Version"] = {"Index": index}


def attachments(ctr_rec: dict[str, Any], resolve: Callable[[str], dict[str, Any]]) -> list[dict[str, Any]]:
    """NetworksAttachments of a running task: its swarm networks (`resolve`: network record by ID) with its address
    on each, as dockerd shows them."""
    out = []
    for ep in ((ctr_rec.get("NetworkSettings") or {}).get("Networks") or {}).values():
        try:
            rec = resolve(ep.get("NetworkID") or "")
        except EngineError:
            continue
        if rec.get("Scope") != "swarm" or not ep.get("IPAddress"):
            continue
        ipam = rec.get("IPAM") or {}
        driver = {"Name": ipam.get("Driver") or "default"}
        net = {"ID": rec["Id"], "Spec": {"Name": rec["Name"], "Labels": rec.get("Labels") or {},
                                          "DriverConfiguration": {"Name": rec["Driver"]},
                                          "IPAMOptions": {"Driver": driver}, "Scope": "swarm"},
               "DriverState": {"Name": rec["Driver"]},
               "IPAMOptions": {"Driver": driver, "Configs": [{k: v for k, v in c.items() if k in ("Subnet", "Gateway")}
                                                             for c in ipam.get("Config") or []]}}
        if rec.get("Ingress"):
            net["Spec"]["Ingress"] = True
        out.append({"Network": net, "Addresses": [f"{ep['IPAddress']}/{ep.get('IPPrefixLen') or 0}"]})
    return out


def port_status(service: dict[str, Any]) -> dict[str, Any]:
    """A task's published host-mode ports (ingress ones are the service's Endpoint's)."""
    ports = [p for p in (service["Spec"].get("EndpointSpec") or {}).get("Ports") or [] if p.get("PublishMode") == "host"]
    return {"Ports": ports} if ports else {}


def public(task: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in task.items() if not k.startswith("_")}


# -- the container ------------------------------------------------------------------------------------------


def container_body(service: dict[str, Any], task: dict[str, Any], networks: list[tuple[str, dict[str, Any]]],
                   files: list[tuple[str, Path, dict[str, Any]]], publish: bool) -> dict[str, Any]:
    """The create request for `task`'s container. `networks`: (network name, attachment config) to join;
    `files`: (target in the container, file written for it, its reference's File); `publish`: whether this task
    publishes the service's ingress ports on the host (one node, no routing mesh: the first slot does)."""
    spec = service["Spec"]
    cs = task["Spec"].get("ContainerSpec") or {}
    name = container_name(spec["Name"], task)
    labels = dict(cs.get("Labels") or {})
    labels.update({"com.docker.swarm.node.id": task["NodeID"], "com.docker.swarm.service.id": service["ID"],
                   "com.docker.swarm.service.name": spec["Name"], "com.docker.swarm.task": "",
                   TASK_LABEL: task["ID"], "com.docker.swarm.task.name": name})
    hosts = []
    for entry in cs.get("Hosts") or []:
        parts = entry.split()
        hosts += [f"{h}:{parts[0]}" for h in parts[1:]]
    dns = cs.get("DNSConfig") or {}
    res = task["Spec"].get("Resources") or {}
    limits, reserve = res.get("Limits") or {}, res.get("Reservations") or {}
    mounts = [dict(m) for m in cs.get("Mounts") or []]
    mounts += [{"Type": "bind", "Source": str(src), "Target": target, "ReadOnly": True} for target, src, _ in files]
    log = task["Spec"].get("LogDriver") or {}
    exposed: dict[str, Any] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for p in (spec.get("EndpointSpec") or {}).get("Ports") or []:
        key = f"{p['TargetPort']}/{p.get('Protocol') or 'tcp'}"
        exposed[key] = {}
        if p.get("PublishedPort") and (p.get("PublishMode") == "host" or publish):
            bindings.setdefault(key, []).append({"HostIp": "", "HostPort": str(p["PublishedPort"])})
    hc: dict[str, Any] = {
        "Mounts": mounts or None, "ExtraHosts": hosts or None, "GroupAdd": cs.get("Groups") or None,
        "Dns": dns.get("Nameservers") or None, "DnsSearch": dns.get("Search") or None,
        "DnsOptions": dns.get("Options") or None, "ReadonlyRootfs": bool(cs.get("ReadOnly")),
        "Init": cs.get("Init"), "CapAdd": cs.get("CapabilityAdd") or None, "CapDrop": cs.get("CapabilityDrop") or None,
        "Sysctls": cs.get("Sysctls") or None, "Ulimits": cs.get("Ulimits") or None,
        "SecurityOpt": _security_opts(cs.get("Privileges") or {}) or None,
        "NanoCpus": int(limits.get("NanoCPUs") or 0), "Memory": int(limits.get("MemoryBytes") or 0),
        "MemoryReservation": int(reserve.get("MemoryBytes") or 0), "PidsLimit": limits.get("Pids") or None,
        "OomScoreAdj": int(cs.get("OomScoreAdj") or 0), "PortBindings": bindings or None,
        "NetworkMode": networks[0][0] if networks else "default", "RestartPolicy": {"Name": "no"},
    }
    if log.get("Name"):
        hc["LogConfig"] = {"Type": log["Name"], "Config": log.get("Options") or {}}
    aliases = [spec["Name"]]
    endpoints = {net: {"Aliases": aliases + list(att.get("Aliases") or []), "DriverOpts": att.get("DriverOpts")}
                 for net, att in networks}
    body: dict[str, Any] = {
        "Image": cs["Image"], "Labels": labels, "Env": cs.get("Env") or None, "Entrypoint": cs.get("Command") or None,
        "Cmd": cs.get("Args") or None, "Hostname": cs.get("Hostname") or "", "WorkingDir": cs.get("Dir") or "",
        "User": cs.get("User") or "", "Tty": bool(cs.get("TTY")), "OpenStdin": bool(cs.get("OpenStdin")),
        "StopSignal": cs.get("StopSignal") or None, "Healthcheck": cs.get("Healthcheck") or None,
        "StopTimeout": int(duration_s(cs.get("StopGracePeriod"), 10.0)), "ExposedPorts": exposed or None,
        "HostConfig": hc, "NetworkingConfig": {"EndpointsConfig": endpoints} if endpoints else None,
    }
    return body


def _security_opts(priv: dict[str, Any]) -> list[str]:
    out = []
    se = priv.get("SELinuxContext") or {}
    if se.get("Disable"):
        out.append("label=disable")
    for key in ("User", "Role", "Type", "Level"):
        if se.get(key):
            out.append(f"label={key.lower()}:{se[key]}")
    if priv.get("NoNewPrivileges"):
        out.append("no-new-privileges=true")
    if (priv.get("Seccomp") or {}).get("Mode") == "unconfined":
        out.append("seccomp=unconfined")
    if (priv.get("AppArmor") or {}).get("Mode") == "disabled":
        out.append("apparmor=unconfined")
    return out


# -- secrets and configs ------------------------------------------------------------------------------------


def write_files(folder: Path, cs: dict[str, Any], secret: Any, config: Any) -> list[tuple[str, Path, dict[str, Any]]]:
    """The task's secrets (at /run/secrets/NAME unless the target is absolute) and configs (at /NAME), written
    under `folder` with the reference's owner and mode; `secret`/`config` look a payload up by ID."""
    out: list[tuple[str, Path, dict[str, Any]]] = []
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    for key, lookup, base in (("Secrets", secret, "/run/secrets"), ("Configs", config, "/")):
        for i, ref in enumerate(cs.get(key) or []):
            file = ref.get("File")
            if not file:
                continue  # a runtime-only reference (credential specs): nothing to mount
            payload: SecretPayload = lookup(ref.get(f"{key[:-1]}ID") or "")
            target = file["Name"] if file["Name"].startswith("/") else os.path.join(base, file["Name"])
            path = folder / f"{key.lower()}-{i}"
            path.write_bytes(payload.data)
            os.chown(path, _int(file.get("UID")), _int(file.get("GID")))
            os.chmod(path, int(file.get("Mode") if file.get("Mode") is not None else 0o444))
            out.append((target, path, file))
    return out


def remove_files(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def _int(v: Any) -> int:
    try:
        return int(v or 0)
    except (TypeError, ValueError):
        return 0
