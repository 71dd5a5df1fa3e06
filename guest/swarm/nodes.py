"""The swarm's one node: this machine, always the leader and only manager.

Its Spec (role, availability, name, labels) is the cluster's to store; Description and Status describe this
machine as it is now, so they are computed when read.
"""

from __future__ import annotations

import copy
import os
import socket
from typing import Any

from skiffbox.guest import __version__, hostinfo
from skiffbox.guest.errors import InvalidParameter
from skiffbox.guest.swarm.objects import Obj, rpc_error
from skiffbox.guest.util.filters import Filters, match_labels

LIST_FILTERS = {"id", "label", "membership", "name", "node.label", "role"}
_ROLES = ("worker", "manager")
_AVAILABILITIES = ("active", "pause", "drain")
# What dockerd lists as the node's engine plugins, for the drivers skiffd has built in.
_PLUGINS = [{"Type": "Log", "Name": "json-file"}, {"Type": "Log", "Name": "k8s-file"},
            {"Type": "Network", "Name": "bridge"}, {"Type": "Network", "Name": "host"},
            {"Type": "Network", "Name": "null"}, {"Type": "Network", "Name": "overlay"},
            {"Type": "Volume", "Name": "local"}]


def new_spec() -> dict[str, Any]:
    return {"Labels": {}, "Role": "manager", "Availability": "active"}


def check_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """A node update's spec as stored (dockerd's convert.NodeSpecToGRPC checks, then swarmkit's last-manager rule)."""
    role = str(spec.get("Role") or "")
    if role.lower() not in _ROLES:
        raise InvalidParameter(f'invalid Role: "{role}"')
    avail = str(spec.get("Availability") or "")
    if avail.lower() not in _AVAILABILITIES:
        raise InvalidParameter(f'invalid Availability: "{avail}"')
    if role.lower() == "worker":
        raise InvalidParameter(rpc_error("FailedPrecondition", "attempting to demote the last manager of the swarm"))
    out: dict[str, Any] = {}
    if spec.get("Name"):
        out["Name"] = spec["Name"]
    out.update({"Labels": dict(spec.get("Labels") or {}), "Role": role.lower(), "Availability": avail.lower()})
    return out


def public(node: Obj, tls_info: dict[str, Any], addr: str, manager_addr: str, engine_labels: list[str]) -> Obj:
    """The node as inspect shows it; the engine's labels (`skiffd --label k=v`) are what the `label` filter and
    placement constraints on engine.labels see."""
    out = copy.deepcopy(node)
    engine: dict[str, Any] = {"EngineVersion": __version__}
    if engine_labels:
        engine["Labels"] = dict(lbl.partition("=")[::2] for lbl in engine_labels)
    engine["Plugins"] = _PLUGINS
    out["Description"] = {
        "Hostname": socket.gethostname(),
        "Platform": {"Architecture": os.uname().machine, "OS": "linux"},
        "Resources": {"NanoCPUs": (os.cpu_count() or 1) * 1_000_000_000, "MemoryBytes": hostinfo.mem_total()},
        "Engine": engine,
        "TLSInfo": tls_info,
    }
    out["Status"] = {"State": "ready", "Addr": addr}
    out["ManagerStatus"] = {"Leader": True, "Reachability": "reachable", "Addr": manager_addr}
    return out


def matches(node: Obj, f: Filters) -> bool:
    spec = node["Spec"]
    name = spec.get("Name") or node["Description"]["Hostname"]
    return ((not f.get("id") or any(node["ID"].startswith(p) for p in f["id"]))
            and (not f.get("name") or any(name.startswith(p) for p in f["name"]))
            and (not f.get("role") or spec["Role"] in f["role"])
            and (not f.get("membership") or "accepted" in f["membership"])
            and match_labels(node["Description"].get("Engine", {}).get("Labels"), f.get("label", []))
            and match_labels(spec.get("Labels"), f.get("node.label", [])))
