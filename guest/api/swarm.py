"""Swarm endpoints: /swarm (init, join, leave, update, unlock), /nodes, /secrets, /configs (thin over
guest/swarm/cluster.py). Outside a swarm each answers as a swarm-less dockerd does (503)."""

from __future__ import annotations

from typing import Any

from skiffbox.guest.api.http import Request, Response, Route, json_response, no_content
from skiffbox.guest.engine import Engine
from skiffbox.guest.errors import InvalidParameter, NotImplementedYet, Unavailable
from skiffbox.guest.swarm import nodes, payloads
from skiffbox.guest.swarm.cluster import ALREADY_IN_SWARM
from skiffbox.guest.swarm.objects import parse_version
from skiffbox.guest.swarm.payloads import Payloads
from skiffbox.guest.util.filters import parse_filters

_NO_JOIN = "skiff runs a single-node swarm: this node cannot join another swarm (use \"docker swarm init\")"
_GO_BOOLS = {"1": True, "t": True, "T": True, "TRUE": True, "true": True, "True": True,
             "0": False, "f": False, "F": False, "FALSE": False, "false": False, "False": False}


async def _body(req: Request) -> dict[str, Any]:
    body = await req.json(default={})
    if not isinstance(body, dict):
        raise InvalidParameter("invalid JSON: the request body must be an object")
    return body


def _go_bool(req: Request, name: str) -> bool:
    """A query flag as dockerd's swarm router reads it (strconv.ParseBool)."""
    raw = req.q(name)
    if not raw:
        return False
    if raw not in _GO_BOOLS:
        raise InvalidParameter(f"invalid value for {name}: {raw}")
    return _GO_BOOLS[raw]


# --- /swarm ------------------------------------------------------------------------------------------------
async def inspect_swarm(engine: Engine, req: Request) -> Response:
    return json_response(engine.swarm.inspect())


async def init_swarm(engine: Engine, req: Request) -> Response:
    body = await _body(req)
    return json_response(await engine.swarm.init(body))


async def join_swarm(engine: Engine, req: Request) -> Response:
    await _body(req)
    if engine.swarm.active:
        raise Unavailable(ALREADY_IN_SWARM)
    raise NotImplementedYet(_NO_JOIN)


async def leave_swarm(engine: Engine, req: Request) -> Response:
    await engine.swarm.leave(req.q_bool("force"))
    return Response(200, b"", None)


async def update_swarm(engine: Engine, req: Request) -> Response:
    engine.swarm.require_manager()
    version = parse_version("swarm", req.q("version"))
    body = await _body(req)
    engine.swarm.update(version, body, _go_bool(req, "rotateWorkerToken"), _go_bool(req, "rotateManagerToken"),
                        _go_bool(req, "rotateManagerUnlockKey"))
    return Response(200, b"", None)


async def unlock_key(engine: Engine, req: Request) -> Response:
    return json_response({"UnlockKey": engine.swarm.unlock_key()})


async def unlock(engine: Engine, req: Request) -> Response:
    body = await _body(req)
    engine.swarm.unlock(str(body.get("UnlockKey") or ""))
    return Response(200, b"", None)


# --- /nodes ------------------------------------------------------------------------------------------------
async def list_nodes(engine: Engine, req: Request) -> Response:
    engine.swarm.require_manager()
    return json_response(engine.swarm.nodes(parse_filters(req.q("filters"), nodes.LIST_FILTERS)))


async def inspect_node(engine: Engine, req: Request) -> Response:
    return json_response(engine.swarm.node(req.params["id"]))


async def remove_node(engine: Engine, req: Request) -> Response:
    engine.swarm.remove_node(req.params["id"], req.q_bool("force"))
    return Response(200, b"", None)


async def update_node(engine: Engine, req: Request) -> Response:
    engine.swarm.require_manager()
    version = parse_version("node", req.q("version"))
    engine.swarm.update_node(req.params["id"], version, await _body(req))
    return Response(200, b"", None)


# --- /secrets and /configs: one set of handlers over the two kinds ----------------------------------------------
def _payloads(kind: str) -> list[Route[Engine]]:
    def store(engine: Engine) -> Payloads:
        engine.swarm.require_manager()
        return engine.swarm.secrets if kind == "secrets" else engine.swarm.configs

    async def ls(engine: Engine, req: Request) -> Response:
        s = store(engine)
        return json_response(s.ls(parse_filters(req.q("filters"), payloads.LIST_FILTERS)))

    async def create(engine: Engine, req: Request) -> Response:
        s = store(engine)
        return json_response({"ID": s.create(await _body(req))}, 201)

    async def inspect(engine: Engine, req: Request) -> Response:
        return json_response(store(engine).inspect(req.params["id"]))

    async def remove(engine: Engine, req: Request) -> Response:
        store(engine).remove(req.params["id"])
        return no_content()

    async def update(engine: Engine, req: Request) -> Response:
        s = store(engine)
        version = parse_version(s.kind, req.q("version"))
        s.update(req.params["id"], version, await _body(req))
        return Response(200, b"", None)

    return [("GET", f"/{kind}", ls), ("POST", f"/{kind}/create", create), ("GET", f"/{kind}/{{id}}", inspect),
            ("DELETE", f"/{kind}/{{id}}", remove), ("POST", f"/{kind}/{{id}}/update", update)]


ROUTES: list[Route[Engine]] = [
    ("GET", "/swarm", inspect_swarm),
    ("POST", "/swarm/init", init_swarm),
    ("POST", "/swarm/join", join_swarm),
    ("POST", "/swarm/leave", leave_swarm),
    ("POST", "/swarm/update", update_swarm),
    ("GET", "/swarm/unlockkey", unlock_key),
    ("POST", "/swarm/unlock", unlock),
    ("GET", "/nodes", list_nodes),
    ("GET", "/nodes/{id}", inspect_node),
    ("DELETE", "/nodes/{id}", remove_node),
    ("POST", "/nodes/{id}/update", update_node),
    *_payloads("secrets"),
    *_payloads("configs"),
]
