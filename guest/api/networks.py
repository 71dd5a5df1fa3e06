"""Network endpoints: /networks, /networks/{id}, create, connect, disconnect, prune (thin over NetworkService)."""

from __future__ import annotations


from skiffbox.guest.api.http import Request, Response, Route, json_response, no_content
from skiffbox.guest.containers.store import Container
from skiffbox.guest.engine import Engine
from skiffbox.guest.errors import InvalidParameter, NotFound
from skiffbox.guest.util.filters import parse_filters

LIST_FILTERS = {"dangling", "driver", "id", "label", "name", "scope", "type"}
PRUNE_FILTERS = {"until", "label", "label!"}


def find_container(engine: Engine, ref: str) -> Container:
    if not ref:
        raise InvalidParameter("container is required")
    return engine.containers.get(ref)


async def list_networks(engine: Engine, req: Request) -> Response:
    return json_response(engine.networks.ls(parse_filters(req.q("filters"), LIST_FILTERS)))


async def inspect_network(engine: Engine, req: Request) -> Response:
    scope = req.q("scope")
    net = engine.networks.inspect(req.params["id"])
    if scope and scope != net["Scope"]:
        raise NotFound(f"network {req.params['id']} not found")
    return json_response(net)


async def remove_network(engine: Engine, req: Request) -> Response:
    await engine.networks.remove(req.params["id"])
    return no_content()


async def create_network(engine: Engine, req: Request) -> Response:
    body = await req.json(default={})
    if not isinstance(body, dict):
        raise InvalidParameter("invalid network config")
    return json_response(await engine.networks.create(body), 201)


async def connect(engine: Engine, req: Request) -> Response:
    body = await req.json(default={}) or {}
    net = engine.networks.resolve(req.params["id"])
    ctr = find_container(engine, body.get("Container") or "")
    await engine.networks.connect_container(net["Name"], ctr, body.get("EndpointConfig") or {})
    try:
        engine.containers.save(ctr)  # its NetworkSettings now name the network
    except BaseException:  # a full disk: the connection is undone, in the network and in the record in memory
        await engine.networks.disconnect_container(net["Name"], ctr, force=True)
        raise
    engine.containers.refresh_resolv_conf(ctr)  # it may ask a resolver of its own now (network/resolver.py)
    return Response(200, b"", None)


async def disconnect(engine: Engine, req: Request) -> Response:
    body = await req.json(default={}) or {}
    net = engine.networks.resolve(req.params["id"])
    ctr = find_container(engine, body.get("Container") or "")
    nets = ctr.rec.setdefault("NetworkSettings", {}).setdefault("Networks", {})
    before = dict(nets)
    await engine.networks.disconnect_container(net["Name"], ctr, bool(body.get("Force")))
    try:
        engine.containers.save(ctr)
    except BaseException:  # a full disk: connected again, as the record on disk still says
        for name, es in before.items():
            if name in nets:
                continue
            if ctr.running:  # a live endpoint again, with the addresses and aliases asked for before
                await engine.networks.connect_container(name, ctr, {
                    k: es.get(k) for k in ("IPAMConfig", "Aliases", "Links", "MacAddress", "DriverOpts")})
            else:
                nets[name] = es
        raise
    return Response(200, b"", None)


async def prune(engine: Engine, req: Request) -> Response:
    gone = await engine.networks.prune(parse_filters(req.q("filters"), PRUNE_FILTERS))
    return json_response({"NetworksDeleted": gone})


ROUTES: list[Route[Engine]] = [
    ("GET", "/networks", list_networks),
    ("GET", "/networks/{id}", inspect_network),
    ("DELETE", "/networks/{id}", remove_network),
    ("POST", "/networks/create", create_network),
    ("POST", "/networks/{id}/connect", connect),
    ("POST", "/networks/{id}/disconnect", disconnect),
    ("POST", "/networks/prune", prune),
]
