"""Image endpoints: create (pull/import), list, inspect, history, tag, delete, push, get (save), load, prune."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from skiffbox.guest.api.http import Reply, Request, Response, Router, Stream, json_response
from skiffbox.guest.engine import Engine
from skiffbox.guest.errors import EngineError, InvalidParameter
from skiffbox.guest.images import archive, importer, platforms
from skiffbox.guest.images import progress as pmsg
from skiffbox.guest.images.progress import Progress
from skiffbox.guest.images.reference import split_repo_tag
from skiffbox.guest.images.registry import AuthConfig
from skiffbox.guest.util.filters import parse_filters

log = logging.getLogger("skiffd.api.images")

_NL = b"\r\n"  # moby's stream formatter ends each JSON message with CRLF


def _line(msg: dict[str, Any]) -> bytes:
    return json.dumps(msg).encode() + _NL


async def progress_stream(run: Callable[[Progress], Awaitable[Any]]) -> Reply:
    """Run `run(progress)`; an error before the first message is a plain HTTP error (the CLI prints
    `Error response from daemon: …`), after it an `errorDetail` line in the 200 stream (as moby does)."""
    q: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    task = asyncio.ensure_future(run(q.put_nowait))
    first = asyncio.ensure_future(q.get())
    await asyncio.wait({task, first}, return_when=asyncio.FIRST_COMPLETED)
    head: list[dict[str, Any]] = []
    if first.done():
        head.append(first.result())
    else:
        first.cancel()
        exc = task.exception()
        if exc is not None:
            raise exc

    async def gen() -> AsyncIterator[bytes]:
        try:
            for m in head:
                yield _line(m)
            while True:
                if task.done():
                    while not q.empty():
                        yield _line(q.get_nowait())
                    exc = task.exception()
                    if exc is not None:
                        if not isinstance(exc, EngineError):
                            log.error("image operation failed", exc_info=exc)
                            text = f"{type(exc).__name__}: {exc}"
                        else:
                            text = exc.message
                        yield _line(pmsg.error(text))
                    return
                get = asyncio.ensure_future(q.get())
                await asyncio.wait({task, get}, return_when=asyncio.FIRST_COMPLETED)
                if get.done():
                    yield _line(get.result())
                else:
                    get.cancel()
        finally:
            if not task.done():
                task.cancel()

    return Stream(gen())


def router(engine: Engine) -> Router:
    r = Router()
    svc = engine.images

    @r.route("POST", "/images/create")
    async def create(req: Request) -> Reply:
        from_image = req.q("fromImage")
        from_src = req.q("fromSrc")
        tag = req.q("tag")
        platform = req.q("platform") or None
        if from_image:
            ref = split_repo_tag(from_image, tag)
            auth = AuthConfig.from_header(req.headers.get("x-registry-auth"))
            if ref.tag is None and ref.digest is None:  # no tag at all: `docker pull --all-tags`
                return await progress_stream(lambda out: svc.pull_all_tags(ref, auth, platform, out))
            return await progress_stream(lambda out: svc.pull(ref, auth, platform, out))
        if from_src:
            repo = req.q("repo")
            target = split_repo_tag(repo, tag).tag_or_latest() if repo else None
            message = req.q("message") or f"Imported from {from_src}"
            changes = req.q_all("changes")
            platforms.parse(platform)  # a bad platform is a plain 400, before any progress
            chunks = req.stream() if from_src == "-" else importer.url_chunks(from_src)
            return await progress_stream(
                lambda out: importer.import_reporting(svc, chunks, target, message, changes, platform, out))
        raise InvalidParameter("fromImage or fromSrc is required")

    @r.route("GET", "/images/json")
    async def list_images(req: Request) -> Response:
        flt = parse_filters(req.q("filters"))
        legacy = req.q("filter")
        if legacy:
            flt.setdefault("reference", []).append(legacy)
        out = await svc.list(req.q_bool("all"), flt, legacy_none=not req.version_at_least("1.43"),
                             with_virtual_size=not req.version_at_least("1.44"))
        return json_response(out)

    @r.route("POST", "/images/prune")
    async def prune(req: Request) -> Response:
        return json_response(await svc.prune(parse_filters(req.q("filters"))))

    @r.route("GET", "/images/get")
    async def get_many(req: Request) -> Reply:
        names = req.q_all("names")
        return Stream(await archive.save_stream(svc, names), content_type="application/x-tar")

    @r.route("POST", "/images/load")
    async def load(req: Request) -> Reply:
        quiet = req.q_bool("quiet")
        return await progress_stream(lambda out: archive.load_archive(svc, req.stream(), out, quiet))

    @r.route("POST", "/auth")
    async def auth(req: Request) -> Response:
        return json_response(await svc.login(await req.json({})))

    @r.route("GET", "/images/search")
    async def search(req: Request) -> Reply:
        raise InvalidParameter("search is not supported by this engine (no index service is configured)")

    @r.route("GET", "/images/{name*}/json")
    async def inspect(req: Request) -> Response:
        return json_response(svc.inspect(req.params["name"], req.version_at_least))

    @r.route("GET", "/images/{name*}/history")
    async def history(req: Request) -> Response:
        return json_response(svc.history(req.params["name"]))

    @r.route("POST", "/images/{name*}/tag")
    async def tag(req: Request) -> Response:
        await svc.tag(req.params["name"], req.q("repo") or "", req.q("tag"))
        return Response(201, b"", None)

    @r.route("POST", "/images/{name*}/push")
    async def push(req: Request) -> Reply:
        auth = AuthConfig.from_header(req.headers.get("x-registry-auth"))
        name, tag = req.params["name"], req.q("tag")
        return await progress_stream(lambda out: svc.push(name, tag, auth, out))

    @r.route("GET", "/images/{name*}/get")
    async def get_one(req: Request) -> Reply:
        return Stream(await archive.save_stream(svc, [req.params["name"]]), content_type="application/x-tar")

    @r.route("DELETE", "/images/{name*}")
    async def delete(req: Request) -> Response:
        return json_response(await svc.delete(req.params["name"], req.q_bool("force"), req.q_bool("noprune")))

    return r
