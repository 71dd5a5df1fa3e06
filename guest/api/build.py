"""`POST /build` (the classic builder the docker CLI uses with DOCKER_BUILDKIT=0 or without buildx,
and docker-py's `images.build`) and `POST /build/prune`."""

from __future__ import annotations

import base64
import json
from typing import Any

from skiffbox.guest.api.http import Request, Response, Route, Stream, json_response
from skiffbox.guest.build.manager import BuildManager
from skiffbox.guest.build.state import BuildOptions
from skiffbox.guest.errors import InvalidParameter


def _b64json(value: str) -> Any:
    raw = value.strip()
    raw += "=" * (-len(raw) % 4)
    try:
        return json.loads(base64.urlsafe_b64decode(raw.encode()))
    except (ValueError, TypeError):
        return None


def _json_map(req: Request, name: str) -> dict[str, Any]:
    v = req.q_json(name, {})
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise InvalidParameter(f"invalid {name}: expected a JSON object")
    return v


def _options(req: Request) -> BuildOptions:
    from skiffbox.guest.images.reference import parse_normalized

    tags = [t for t in req.q_all("t") if t]
    for t in tags:
        ref = parse_normalized(t)  # 400 "invalid reference format" before anything runs
        if ref.digest:
            raise InvalidParameter(f"invalid reference format: {t} (a build tag cannot have a digest)")
    if (req.q("version") or "1") == "2":
        raise InvalidParameter("BuildKit is not supported by this daemon: build with DOCKER_BUILDKIT=0")
    if req.q("remote"):
        raise InvalidParameter("remote build contexts are not supported: send the context as a tar")
    buildargs = {str(k): (None if v is None else str(v)) for k, v in _json_map(req, "buildargs").items()}
    labels = {str(k): str(v) for k, v in _json_map(req, "labels").items()}
    auth: dict[str, dict[str, Any]] = {}
    hdr = req.headers.get("x-registry-config")
    if hdr:
        parsed = _b64json(hdr)
        if isinstance(parsed, dict):
            auth = {str(k): v for k, v in parsed.items() if isinstance(v, dict)}
    extra_hosts: list[str] = []
    for v in req.q_all("extrahosts"):
        extra_hosts += [h for h in v.split(",") if h]
    hc: dict[str, Any] = {}
    for q, key in (("memory", "Memory"), ("memswap", "MemorySwap"), ("cpushares", "CpuShares"),
                   ("cpuperiod", "CpuPeriod"), ("cpuquota", "CpuQuota")):
        n = req.q_int_or_zero(q)
        if n:
            hc[key] = n
    for q, key in (("cpusetcpus", "CpusetCpus"), ("cpusetmems", "CpusetMems"), ("cgroupparent", "CgroupParent")):
        if req.q(q):
            hc[key] = req.q(q)
    ulimits = req.q_json("ulimits", None)
    if ulimits:
        hc["Ulimits"] = ulimits
    rm = req.q_bool("rm", True) if req.q("rm") not in (None, "") else True
    cache_from = req.q_json("cachefrom", [])
    if not isinstance(cache_from, list) or not all(isinstance(c, str) for c in cache_from):
        raise InvalidParameter("invalid cachefrom: expected a JSON array of image names")
    return BuildOptions(
        tags=tags,
        dockerfile=req.q("dockerfile") or "Dockerfile",
        buildargs=buildargs,
        target=req.q("target") or "",
        nocache=req.q_bool("nocache"),
        cache_from=[c for c in cache_from if c],
        pull=req.q_bool("pull"),
        rm=rm,
        forcerm=req.q_bool("forcerm"),
        labels=labels,
        networkmode=req.q("networkmode") or "",
        platform=req.q("platform") or "",
        quiet=req.q_bool("q"),
        auth_configs=auth,
        extra_hosts=extra_hosts,
        shm_size=req.q_int("shmsize") or 0,
        host_config=hc,
    )


async def build(mgr: BuildManager, req: Request) -> Stream | Response:
    opts = _options(req)
    ctx, plan, tmp = await mgr.prepare(req.stream(), opts)
    return Stream(mgr.run(ctx, plan, tmp, opts), content_type="application/json")


async def prune(mgr: BuildManager, req: Request) -> Response:
    return json_response(mgr.prune())


async def cancel(mgr: BuildManager, req: Request) -> Response:
    return json_response({})


# The handlers' context is the build manager (the engine's `builds`, made with the other services).
ROUTES: list[Route[BuildManager]] = [
    ("POST", "/build", build),
    ("POST", "/build/prune", prune),
    ("POST", "/build/cancel", cancel),
]
