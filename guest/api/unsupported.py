"""Documented endpoints of features skiff does not have, answered as a dockerd without them answers.

What a dockerd would do but skiff cannot is a 501 that says so, where a 404 "page not found" would look like a
broken daemon. (The swarm, its nodes, secrets and configs are guest/api/swarm.py's, its services and tasks
guest/api/services.py's, plugins guest/api/plugins.py's.)
"""

from __future__ import annotations

from skiffbox.guest.api.http import Request, Response, Route
from skiffbox.guest.engine import Engine
from skiffbox.guest.errors import NotImplementedYet


async def attach_ws(engine: Engine, req: Request) -> Response:
    engine.containers.get(req.params["id"])  # 404 for an unknown container, as dockerd
    raise NotImplementedYet("attach over a websocket is not supported by skiff; use POST /containers/{id}/attach")


async def session(engine: Engine, req: Request) -> Response:
    raise NotImplementedYet("skiff has the classic builder only (no BuildKit sessions); build with DOCKER_BUILDKIT=0")


ROUTES: list[Route[Engine]] = [
    ("GET", "/containers/{id}/attach/ws", attach_ws),
    ("POST", "/session", session),
]
