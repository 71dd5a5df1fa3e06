"""A service's spec as dockerd stores and shows it: checked and normalized at create and update (swarmkit's
controlapi validation, in its words), and with the defaults swarmkit inserts for `?insertDefaults=true`."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

from skiffbox.guest.errors import InvalidParameter

SECOND = 1_000_000_000
MODES = ("Replicated", "Global", "ReplicatedJob", "GlobalJob")
JOB_MODES = ("ReplicatedJob", "GlobalJob")
_DNS_LABEL = re.compile(r"^[a-zA-Z0-9](?:[-_]*[A-Za-z0-9]+)*$")

# swarmkit api/defaults/service.go, as the API shows them.
_UPDATE_DEFAULTS: dict[str, Any] = {"Parallelism": 1, "FailureAction": "pause", "Monitor": 5 * SECOND, "MaxFailureRatio": 0,
                    "Order": "stop-first"}
_TASK_DEFAULTS: dict[str, dict[str, Any]] = {"Resources": {}, "RestartPolicy": {"Condition": "any", "Delay": 5 * SECOND, "MaxAttempts": 0},
                  "Placement": {}}
_CONTAINER_DEFAULTS: dict[str, Any] = {"StopGracePeriod": 10 * SECOND, "DNSConfig": {}}


def grpc_error(code: str, msg: str) -> str:
    """swarmkit's errors reach clients through dockerd as the gRPC status text."""
    return f"rpc error: code = {code} desc = {msg}"


def invalid(msg: str) -> InvalidParameter:
    return InvalidParameter(grpc_error("InvalidArgument", msg))


def mode_of(spec: dict[str, Any]) -> str:
    return next(m for m in MODES if m in (spec.get("Mode") or {}))


def normalize(spec: dict[str, Any], resolve_network: Callable[[str], str],
              check_secret: Callable[[str], None], check_config: Callable[[str], None]) -> dict[str, Any]:
    """The spec to store: validated, network names resolved to IDs, and the fields dockerd always shows."""
    spec = _without_nulls(spec)
    name = spec.get("Name") or ""
    if not name:
        raise invalid("meta: name must be provided")
    if len(name) > 63 or not _DNS_LABEL.match(name):
        raise invalid("name must be valid as a DNS name component")
    spec["Labels"] = dict(spec.get("Labels") or {})
    mode = {k: v for k, v in (spec.get("Mode") or {}).items() if v is not None}
    if len(mode) > 1:
        raise InvalidParameter("must specify only one service mode")
    if not mode:
        mode = {"Replicated": {}}
    spec["Mode"] = mode
    if "Replicated" in mode:
        mode["Replicated"] = {"Replicas": int((mode["Replicated"] or {}).get("Replicas", 1) or 0)}
    elif "ReplicatedJob" in mode:
        job = mode["ReplicatedJob"] or {}
        conc = int(job.get("MaxConcurrent") or 1)
        mode["ReplicatedJob"] = {"MaxConcurrent": conc, "TotalCompletions": int(job.get("TotalCompletions") or conc)}
    else:
        mode[next(iter(mode))] = {}
    tt = spec.get("TaskTemplate") or {}
    spec["TaskTemplate"] = tt
    cs = tt.get("ContainerSpec")
    if not isinstance(cs, dict) or not cs:
        raise invalid("TaskSpec: missing runtime")
    if not cs.get("Image"):
        raise invalid("ContainerSpec: image reference must be provided")
    cs.setdefault("Isolation", "default")
    if "HealthCheck" in cs:  # the API document's spelling; dockerd's struct field (and so its answers) say Healthcheck
        cs["Healthcheck"] = cs.pop("HealthCheck")
    for key, target in (("Secrets", check_secret), ("Configs", check_config)):
        kind = key[:-1].lower()
        seen: set[str] = set()
        for ref in cs.get(key) or []:
            rid, rname = ref.get(f"{key[:-1]}ID") or "", ref.get(f"{key[:-1]}Name") or ""
            if not rid or not rname:
                raise invalid(f"malformed {kind} reference")
            file = ref.get("File")
            if not file and "Runtime" not in ref:
                raise invalid(f"malformed {kind} reference, no target provided")
            if file:
                fname = file.get("Name") or ""
                if not fname:
                    raise invalid(f"malformed file {kind} reference, invalid target file name provided")
                if fname in seen:
                    raise invalid(f"{kind} references '{rname}' and another use the same target '{fname}'")
                seen.add(fname)
            target(rid)
    for m in cs.get("Mounts") or []:
        if not m.get("Type"):
            m["Type"] = "volume"
    tt["ForceUpdate"] = int(tt.get("ForceUpdate") or 0)
    tt.setdefault("Runtime", "container")
    for holder in (tt, spec):
        if holder.get("Networks"):
            holder["Networks"] = [_network(n, resolve_network) for n in holder["Networks"]]
        else:
            holder.pop("Networks", None)
    ep = spec.get("EndpointSpec")
    if ep is not None:
        ep = dict(ep)
        ep["Mode"] = ep.get("Mode") or "vip"
        if ep.get("Ports"):
            ep["Ports"] = [_port(p) for p in ep["Ports"]]
        spec["EndpointSpec"] = ep
    else:
        spec.pop("EndpointSpec", None)
    for key in ("UpdateConfig", "RollbackConfig"):
        if spec.get(key) is None:
            spec.pop(key, None)
    return spec


def _without_nulls(v: Any) -> Any:
    """Go decodes a JSON null as the zero value, which the API then omits: null fields are not kept."""
    if isinstance(v, dict):
        return {k: _without_nulls(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [_without_nulls(x) for x in v]
    return v


def _network(n: Any, resolve: Callable[[str], str]) -> dict[str, Any]:
    out: dict[str, Any] = {"Target": n} if isinstance(n, str) else dict(n)
    out["Target"] = resolve(out.get("Target") or "")
    return out


def _port(p: dict[str, Any]) -> dict[str, Any]:
    out = {"Protocol": p.get("Protocol") or "tcp", "TargetPort": int(p.get("TargetPort") or 0),
           "PublishedPort": int(p.get("PublishedPort") or 0), "PublishMode": p.get("PublishMode") or "ingress"}
    if p.get("Name"):
        out = {"Name": p["Name"], **out}
    return out


def check_update(old: dict[str, Any], new: dict[str, Any]) -> None:
    """What swarmkit refuses to change on a running service."""
    if old["Name"] != new["Name"]:
        raise InvalidParameter(grpc_error("Unimplemented", "renaming services is not supported"))
    if mode_of(old) != mode_of(new):
        raise InvalidParameter(grpc_error("InvalidArgument", "service mode change is not allowed"))


def with_defaults(spec: dict[str, Any]) -> dict[str, Any]:
    """`?insertDefaults=true`: swarmkit's defaults under what the spec sets."""
    out = copy.deepcopy(spec)
    tt = out.setdefault("TaskTemplate", {})
    for k, v in _TASK_DEFAULTS.items():
        tt[k] = _merge(copy.deepcopy(v), tt.get(k))
    cs = tt.setdefault("ContainerSpec", {})
    for k, v in _CONTAINER_DEFAULTS.items():
        cs.setdefault(k, copy.deepcopy(v))
    for key in ("UpdateConfig", "RollbackConfig"):
        out[key] = _merge(dict(_UPDATE_DEFAULTS), out.get(key))
    return out


def _merge(base: dict[str, Any], over: dict[str, Any] | None) -> dict[str, Any]:
    for k, v in (over or {}).items():
        if v is not None:
            base[k] = v
    return base


def duration_s(ns: Any, default: float = 0.0) -> float:
    try:
        return int(ns) / SECOND if ns is not None else default
    except (TypeError, ValueError):
        return default
