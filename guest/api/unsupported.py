"""Documented endpoints of features skiff does not have, answered as a dockerd without them answers.

A dockerd that is not in a swarm answers every cluster endpoint with 503 and a fixed message, and one with
no plugins installed lists none and finds none; clients (docker-py's swarm teardown, `docker info`,
`docker plugin ls`) depend on those answers, where a 404 "page not found" looks like a broken daemon.
What a dockerd would do but skiff cannot (installing a plugin) is a 501 that says so. (The swarm itself, its
nodes, secrets and configs are guest/api/swarm.py's.)
"""

from __future__ import annotations

from skiffbox.guest.api.http import Request, Response, Route, json_response
from skiffbox.guest.engine import Engine
from skiffbox.guest.errors import NotFound, NotImplementedYet
from skiffbox.guest.util.filters import parse_filters

_NO_PLUGINS = "skiff does not support engine plugins (its volume and network drivers are built in)"

PLUGIN_FILTERS = {"capability", "enable"}


async def list_plugins(engine: Engine, req: Request) -> Response:
    parse_filters(req.q("filters"), PLUGIN_FILTERS)
    return json_response([])


async def no_such_plugin(engine: Engine, req: Request) -> Response:
    raise NotFound(f'plugin "{req.params["name"]}" not found')


async def no_plugin_support(engine: Engine, req: Request) -> Response:
    raise NotImplementedYet(_NO_PLUGINS)


async def attach_ws(engine: Engine, req: Request) -> Response:
    engine.containers.get(req.params["id"])  # 404 for an unknown container, as dockerd
    raise NotImplementedYet("attach over a websocket is not supported by skiff; use POST /containers/{id}/attach")


async def session(engine: Engine, req: Request) -> Response:
    raise NotImplementedYet("skiff has the classic builder only (no BuildKit sessions); build with DOCKER_BUILDKIT=0")


ROUTES: list[Route[Engine]] = [
    ("GET", "/plugins", list_plugins),
    ("GET", "/plugins/privileges", no_plugin_support),
    ("POST", "/plugins/pull", no_plugin_support),
    ("POST", "/plugins/create", no_plugin_support),
    ("GET", "/plugins/{name*}/json", no_such_plugin),
    ("POST", "/plugins/{name*}/enable", no_such_plugin),
    ("POST", "/plugins/{name*}/disable", no_such_plugin),
    ("POST", "/plugins/{name*}/upgrade", no_such_plugin),
    ("POST", "/plugins/{name*}/push", no_such_plugin),
    ("POST", "/plugins/{name*}/set", no_such_plugin),
    ("DELETE", "/plugins/{name*}", no_such_plugin),
    ("GET", "/containers/{id}/attach/ws", attach_ws),
    ("POST", "/session", session),
]
