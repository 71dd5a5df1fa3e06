"""`docker import`: a root filesystem tarball (uploaded, or fetched from a URL) becomes a one-layer image."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from skiffbox.guest.errors import InvalidParameter
from skiffbox.guest.images import platforms
from skiffbox.guest.images import progress as pmsg
from skiffbox.guest.images.archive import QueueReader, add_layer_from_stream
from skiffbox.guest.images.image import Image
from skiffbox.guest.images.progress import Progress
from skiffbox.guest.images.reference import Reference
from skiffbox.guest.util.timefmt import now_rfc3339

if TYPE_CHECKING:
    from skiffbox.guest.images.service import ImageService


async def url_chunks(url: str) -> AsyncIterator[bytes]:
    """`fromSrc=<url>`: the tarball fetched over http(s), in 1 MiB pieces."""
    if not url.startswith(("http://", "https://")):
        raise InvalidParameter(f"import source {url!r} is not '-' or an http(s) URL")
    resp = await asyncio.to_thread(urllib.request.urlopen, url, None, 60)
    try:
        while True:
            b = await asyncio.to_thread(resp.read, 1 << 20)
            if not b:
                return
            yield b
    finally:
        resp.close()


async def import_image(svc: "ImageService", chunks: AsyncIterator[bytes], ref: Reference | None, message: str,
                       changes: list[str], platform: str | None) -> Image:
    from skiffbox.guest.containers.merge import apply_changes  # Dockerfile-style --change lines, one implementation

    config = apply_changes({}, [c for c in changes if c.strip()])
    reader = QueueReader()
    async with reader.feeding(chunks):
        layer = await add_layer_from_stream(svc, reader, None)
    plat = platforms.parse(platform) or platforms.host()
    created = now_rfc3339()
    cfg: dict[str, Any] = {"architecture": plat.arch, "os": plat.os, "created": created, "comment": message,
                           "config": config}
    if plat.variant and plat.arch != "amd64":
        cfg["variant"] = plat.variant
    img = await svc.create_from_layer(layer, cfg, {"created": created, "comment": message})
    if ref is not None:
        svc.set_tag(ref.tag_or_latest(), img.id)
    svc.event("import", img.id, img.id)
    return await svc.resolve(img.id)


async def import_reporting(svc: "ImageService", chunks: AsyncIterator[bytes], ref: Reference | None, message: str,
                           changes: list[str], platform: str | None, out: Progress) -> None:
    """import_image, then the new image's ID as the progress stream's last status (what `docker import` prints)."""
    img = await import_image(svc, chunks, ref, message, changes, platform)
    out(pmsg.status(img.id))
