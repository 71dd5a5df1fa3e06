"""GET /distribution/{name}/json: an image's manifest descriptor and platforms, asked of its registry
(`docker manifest inspect`-like lookups and docker-py's `get_registry_data`) without pulling anything."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from skiffbox.guest.api.http import Request, Response, Route, json_response
from skiffbox.guest.engine import Engine
from skiffbox.guest.errors import InvalidParameter
from skiffbox.guest.images.pull import registry_error, via_endpoints
from skiffbox.guest.images.reference import parse_normalized
from skiffbox.guest.images.registry import (MAX_MANIFEST, MT_DOCKER_LIST, MT_OCI_INDEX, AuthConfig, RegistryClient,
                                            RegistryError)

_PLATFORM_KEYS = (("architecture", "architecture"), ("os", "os"), ("os.version", "os.version"),
                  ("os.features", "os.features"), ("variant", "variant"))


def _platform(p: dict[str, Any]) -> dict[str, Any]:
    return {k: p[src] for k, src in _PLATFORM_KEYS if p.get(src)}


def _inspect(client: RegistryClient, ref: str) -> dict[str, Any]:
    body, media_type, digest = client.get_manifest(ref)
    try:
        m = json.loads(body)
    except ValueError:
        raise InvalidParameter(f"the registry's manifest for {ref} is not JSON") from None
    if media_type in (MT_OCI_INDEX, MT_DOCKER_LIST) or "manifests" in m:
        platforms = [_platform(d.get("platform") or {}) for d in m.get("manifests") or []]
    else:
        cfg = (m.get("config") or {}).get("digest")
        platforms = []
        if cfg:
            r, _ = client.open_blob(cfg)
            try:
                platforms = [_platform(json.loads(r.read_all(MAX_MANIFEST)))]
            except ValueError:
                platforms = []
            finally:
                r.close()
    return {"Descriptor": {"mediaType": media_type, "digest": digest, "size": len(body)}, "Platforms": platforms}


async def inspect(engine: Engine, req: Request) -> Response:
    ref = parse_normalized(req.params["name"])
    auth = AuthConfig.from_header(req.headers.get("x-registry-auth"))
    try:
        return json_response(await via_endpoints(engine.cfg, ref, auth,
                                                 lambda client: asyncio.to_thread(_inspect, client, ref.tag_or_digest)))
    except RegistryError as e:
        raise registry_error(ref, e) from None


ROUTES: list[Route[Engine]] = [("GET", "/distribution/{name*}/json", inspect)]
