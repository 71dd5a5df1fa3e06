"""Volume endpoints: /volumes, /volumes/create, /volumes/{name}, /volumes/prune (thin over VolumeService)."""

from __future__ import annotations

from typing import Any

from skiffbox.guest.api.http import Request, Response, Router, json_response, no_content
from skiffbox.guest.engine import Engine
from skiffbox.guest.errors import InvalidParameter, NotImplementedYet, Unavailable
from skiffbox.guest.util.filters import parse_filters

LIST_FILTERS = {"dangling", "driver", "label", "name", "label!"}
PRUNE_FILTERS = {"label", "label!", "all"}


def router(engine: Engine) -> Router:
    r = Router()

    def svc() -> Any:
        if engine.volumes is None:
            raise Unavailable("volumes are not available")
        return engine.volumes

    @r.route("GET", "/volumes")
    async def list_volumes(req: Request) -> Response:
        return json_response({"Volumes": svc().ls(parse_filters(req.q("filters"), LIST_FILTERS)), "Warnings": []})

    @r.route("POST", "/volumes/create")
    async def create(req: Request) -> Response:
        body = await req.json(default={}) or {}
        if not isinstance(body, dict):
            raise InvalidParameter("invalid volume config")
        if body.get("ClusterVolumeSpec"):
            raise Unavailable("cluster volumes need swarm mode, which skiff does not provide")
        v = svc().create(body.get("Name") or None, body.get("Driver") or "local", body.get("DriverOpts") or {},
                         body.get("Labels") or {})
        return json_response(svc().public(v), 201)

    @r.route("GET", "/volumes/{name}")
    async def inspect(req: Request) -> Response:
        return json_response(svc().inspect(req.params["name"]))

    @r.route("PUT", "/volumes/{name}")
    async def update(req: Request) -> Response:
        raise NotImplementedYet("volume update is only for swarm cluster volumes")

    @r.route("DELETE", "/volumes/{name}")
    async def remove(req: Request) -> Response:
        svc().remove(req.params["name"], req.q_bool("force"))
        return no_content()

    @r.route("POST", "/volumes/prune")
    async def prune(req: Request) -> Response:
        # Before API 1.42 prune removed every unused volume; since then only anonymous ones unless all=true.
        gone, size = svc().prune(parse_filters(req.q("filters"), PRUNE_FILTERS), not req.version_at_least("1.42"))
        return json_response({"VolumesDeleted": gone, "SpaceReclaimed": size})

    return r
