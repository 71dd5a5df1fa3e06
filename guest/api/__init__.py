"""The Docker Engine API: one module of thin handlers per resource, over the engine core."""

from __future__ import annotations

from skiffbox.guest.api import build, containers, images, networks, system, volumes
from skiffbox.guest.api import exec as exec_
from skiffbox.guest.api.http import App, Router
from skiffbox.guest.engine import Engine


def build_app(engine: Engine) -> App:
    root = Router()
    for mod in (system, images, containers, exec_, networks, volumes, build):
        root.include(mod.router(engine))
    return App(root)
