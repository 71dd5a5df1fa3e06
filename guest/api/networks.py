"""Network endpoints: /networks, /networks/{id}, create, connect, disconnect, prune (thin over NetworkService)."""

from __future__ import annotations

import inspect
from typing import Any

from skiffbox.guest.api.http import Request, Response, Router, json_response, no_content
from skiffbox.guest.engine import Engine
from skiffbox.guest.errors import InvalidParameter, NotFound, Unavailable, no_such_container
from skiffbox.guest.util.filters import parse_filters

LIST_FILTERS = {"dangling", "driver", "id", "label", "name", "scope", "type"}
PRUNE_FILTERS = {"until", "label", "label!"}


async def _maybe_await(v: Any) -> Any:
    return await v if inspect.isawaitable(v) else v


async def find_container(engine: Engine, ref: str) -> Any:
    if not ref:
        raise InvalidParameter("container is required")
    if engine.containers is None:
        raise no_such_container(ref)
    return await _maybe_await(engine.containers.get(ref))


def router(engine: Engine) -> Router:
    r = Router()

    def svc() -> Any:
        if engine.networks is None:
            raise Unavailable("networking is not available")
        return engine.networks

    @r.route("GET", "/networks")
    async def list_networks(req: Request) -> Response:
        return json_response(svc().ls(parse_filters(req.q("filters"), LIST_FILTERS)))

    @r.route("GET", "/networks/{id}")
    async def inspect_network(req: Request) -> Response:
        scope = req.q("scope")
        net = svc().inspect(req.params["id"])
        if scope and scope != net["Scope"]:
            raise NotFound(f"network {req.params['id']} not found")
        return json_response(net)

    @r.route("DELETE", "/networks/{id}")
    async def remove_network(req: Request) -> Response:
        await svc().remove(req.params["id"])
        return no_content()

    @r.route("POST", "/networks/create")
    async def create_network(req: Request) -> Response:
        body = await req.json(default={})
        if not isinstance(body, dict):
            raise InvalidParameter("invalid network config")
        return json_response(await svc().create(body), 201)

    @r.route("POST", "/networks/{id}/connect")
    async def connect(req: Request) -> Response:
        body = await req.json(default={}) or {}
        net = svc().resolve(req.params["id"])
        ctr = await find_container(engine, body.get("Container") or "")
        await svc().connect_container(net["Name"], ctr, body.get("EndpointConfig") or {})
        return Response(200, b"", None)

    @r.route("POST", "/networks/{id}/disconnect")
    async def disconnect(req: Request) -> Response:
        body = await req.json(default={}) or {}
        net = svc().resolve(req.params["id"])
        ctr = await find_container(engine, body.get("Container") or "")
        await svc().disconnect_container(net["Name"], ctr, bool(body.get("Force")))
        return Response(200, b"", None)

    @r.route("POST", "/networks/prune")
    async def prune(req: Request) -> Response:
        gone = await svc().prune(parse_filters(req.q("filters"), PRUNE_FILTERS))
        return json_response({"NetworksDeleted": gone})

    return r
