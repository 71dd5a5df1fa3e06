"""The Docker Engine API: one module of thin handlers per resource, over the engine core. Each module's
`ROUTES` lists (method, path pattern, handler); a handler is `async def h(context, req)`, the context being
the engine (the build handlers': its build manager, which keeps the builds in progress)."""

from __future__ import annotations

from skiffbox.guest.api import (build, containers, distribution, images, networks, plugins, services, swarm,
                                system, unsupported, volumes)
from skiffbox.guest.api import exec as exec_
from skiffbox.guest.api.http import Router
from skiffbox.guest.api.server import App
from skiffbox.guest.api.validate import BodyValidator
from skiffbox.guest.engine import Engine


def build_app(engine: Engine) -> App:
    root = Router()
    for mod in (system, images, distribution, containers, exec_, networks, volumes, swarm, services, plugins,
                unsupported):
        root.bind(engine, mod.ROUTES)
    root.bind(engine.builds, build.ROUTES)
    validator = BodyValidator.load()
    return App(root, validator.check, validator.check_query)
