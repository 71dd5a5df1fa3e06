"""The Docker Engine API: one module of thin handlers per resource, over the engine core."""

from __future__ import annotations

import importlib

from skiffbox.guest.api.http import App, Router
from skiffbox.guest.engine import Engine

# Each module exposes `router(engine) -> Router`. Modules land one by one; a missing one is skipped
# so a half-built tree still serves what it has.
_MODULES = ["system", "images", "containers", "exec", "networks", "volumes", "build"]


def build_app(engine: Engine) -> App:
    root = Router()
    for name in _MODULES:
        try:
            mod = importlib.import_module(f"skiffbox.guest.api.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"skiffbox.guest.api.{name}":
                continue
            raise
        root.include(mod.router(engine))
    return App(root)
