"""The Docker Engine API: one module of thin handlers per resource, over the engine core. Each module's
`ROUTES` lists (method, path pattern, handler); a handler is `async def h(context, req)`, the context being
the engine (the build handlers': its build manager, which keeps the builds in progress)."""

from __future__ import annotations

from skiffbox.guest.api import build, containers, images, networks, system, volumes
from skiffbox.guest.api import exec as exec_
from skiffbox.guest.api.http import App, Router
from skiffbox.guest.engine import Engine


def build_app(engine: Engine) -> App:
    root = Router()
    for mod in (system, images, containers, exec_, networks, volumes):
        root.bind(engine, mod.ROUTES)
    root.bind(engine.builds, build.ROUTES)
    return App(root)
