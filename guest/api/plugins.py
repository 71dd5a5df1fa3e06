"""Plugin endpoints: /plugins (thin over guest/plugins/store.py). Plugins can be made from a local context,
listed, inspected, configured and removed; installing from a registry and enabling are 501s that say why."""

from __future__ import annotations

import asyncio
import json
import tempfile
from typing import Any

from skiffbox.guest.api.http import Request, Response, Route, json_response, no_content
from skiffbox.guest.engine import Engine
from skiffbox.guest.errors import InvalidParameter, NotImplementedYet
from skiffbox.guest.images.reference import parse_normalized
from skiffbox.guest.images.registry import RegistryClient
from skiffbox.guest.plugins.store import LIST_FILTERS
from skiffbox.guest.util.filters import parse_filters

_NO_INSTALL = ("skiff does not pull, upgrade or push engine plugins through a registry (its volume and network "
               "drivers are built in)")
_MAX_CONFIG = 1 << 20


async def list_plugins(engine: Engine, req: Request) -> Response:
    return json_response(engine.plugins.ls(parse_filters(req.q("filters"), LIST_FILTERS)))


async def inspect_plugin(engine: Engine, req: Request) -> Response:
    return json_response(engine.plugins.inspect(req.params["name"]))


async def create_plugin(engine: Engine, req: Request) -> Response:
    name = req.q("name") or ""
    with tempfile.TemporaryFile(dir=engine.plugins.dir) as f:  # the context may be large: never all in memory
        async for chunk in req.stream():
            f.write(chunk)
        f.seek(0)
        await asyncio.to_thread(engine.plugins.create, name, f)
    return no_content()


async def set_plugin(engine: Engine, req: Request) -> Response:
    body = await req.json(default=[])
    if not isinstance(body, list):
        raise InvalidParameter("invalid plugin settings: expected a list of NAME=VALUE strings")
    engine.plugins.set(req.params["name"], [str(a) for a in body])
    return no_content()


async def enable_plugin(engine: Engine, req: Request) -> Response:
    engine.plugins.enable(req.params["name"])
    return Response(200, b"", None)


async def disable_plugin(engine: Engine, req: Request) -> Response:
    engine.plugins.disable(req.params["name"])
    return Response(200, b"", None)


async def remove_plugin(engine: Engine, req: Request) -> Response:
    engine.plugins.remove(req.params["name"])
    return Response(200, b"", None)


async def known_but_not_installable(engine: Engine, req: Request) -> Response:
    engine.plugins.inspect(req.params["name"])  # 404 first for an unknown plugin, as dockerd
    raise NotImplementedYet(_NO_INSTALL)


async def not_installable(engine: Engine, req: Request) -> Response:
    raise NotImplementedYet(_NO_INSTALL)


def _fetch_config(engine: Engine, name: str) -> Any:
    """A plugin's config from its registry (as dockerd: the registry itself, no mirrors)."""
    ref = parse_normalized(name)
    client = RegistryClient(ref.domain, ref.path, None, engine.cfg.insecure_registries, endpoint=ref.endpoint_host)
    try:
        body, _, _ = client.get_manifest(ref.tag_or_digest)
        digest = json.loads(body)["config"]["digest"]
        resp, _ = client.open_blob(digest)
        return json.loads(resp.read_all(_MAX_CONFIG))
    finally:
        client.close()


async def plugin_privileges(engine: Engine, req: Request) -> Response:
    remote = req.q("remote") or ""
    return json_response(await asyncio.to_thread(engine.plugins.privileges, remote,
                                                 lambda name: _fetch_config(engine, name)))


ROUTES: list[Route[Engine]] = [
    ("GET", "/plugins", list_plugins),
    ("GET", "/plugins/privileges", plugin_privileges),
    ("POST", "/plugins/pull", not_installable),
    ("POST", "/plugins/create", create_plugin),
    ("GET", "/plugins/{name*}/json", inspect_plugin),
    ("POST", "/plugins/{name*}/enable", enable_plugin),
    ("POST", "/plugins/{name*}/disable", disable_plugin),
    ("POST", "/plugins/{name*}/upgrade", known_but_not_installable),
    ("POST", "/plugins/{name*}/push", known_but_not_installable),
    ("POST", "/plugins/{name*}/set", set_plugin),
    ("DELETE", "/plugins/{name*}", remove_plugin),
]
