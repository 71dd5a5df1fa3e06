"""Volume endpoints: /volumes, /volumes/create, /volumes/{name}, /volumes/prune (thin over VolumeService)."""

from __future__ import annotations


from skiffbox.guest.api.http import Request, Response, Route, json_response, no_content
from skiffbox.guest.engine import Engine
from skiffbox.guest.errors import InvalidParameter, Unavailable
from skiffbox.guest.util.filters import parse_filters

LIST_FILTERS = {"dangling", "driver", "label", "name", "label!"}
PRUNE_FILTERS = {"label", "label!", "all"}


async def list_volumes(engine: Engine, req: Request) -> Response:
    return json_response({"Volumes": engine.volumes.ls(parse_filters(req.q("filters"), LIST_FILTERS)), "Warnings": []})


async def create(engine: Engine, req: Request) -> Response:
    body = await req.json(default={}) or {}
    if not isinstance(body, dict):
        raise InvalidParameter("invalid volume config")
    if body.get("ClusterVolumeSpec"):
        raise Unavailable("cluster volumes need swarm mode, which skiff does not provide")
    v = engine.volumes.create(body.get("Name") or None, body.get("Driver") or "local", body.get("DriverOpts") or {},
                     body.get("Labels") or {})
    return json_response(engine.volumes.public(v), 201)


async def inspect(engine: Engine, req: Request) -> Response:
    return json_response(engine.volumes.inspect(req.params["name"]))


async def update(engine: Engine, req: Request) -> Response:
    raise Unavailable("volume update only valid for cluster volumes, but swarm is not enabled")  # dockerd's answer


async def remove(engine: Engine, req: Request) -> Response:
    engine.volumes.remove(req.params["name"], req.q_bool("force"))
    return no_content()


async def prune(engine: Engine, req: Request) -> Response:
    # Before API 1.42 prune removed every unused volume; since then only anonymous ones unless all=true.
    gone, size = engine.volumes.prune(parse_filters(req.q("filters"), PRUNE_FILTERS), not req.version_at_least("1.42"))
    return json_response({"VolumesDeleted": gone, "SpaceReclaimed": size})


ROUTES: list[Route[Engine]] = [
    ("GET", "/volumes", list_volumes),
    ("POST", "/volumes/create", create),
    ("GET", "/volumes/{name}", inspect),
    ("PUT", "/volumes/{name}", update),
    ("DELETE", "/volumes/{name}", remove),
    ("POST", "/volumes/prune", prune),
]
