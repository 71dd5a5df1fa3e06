"""Image endpoints: create (pull/import), list, inspect, history, tag, delete, push, get (save), load, prune."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from skiffbox.guest.api.http import Reply, Request, Response, Route, Stream, json_response
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


async def progress_stream(run: Callable[[Progress], Awaitable[Any]], errors_in_stream: bool = False) -> Reply:
    """Run `run(progress)`; an error before the first message is a plain HTTP error (the CLI prints
    `Error response from daemon: …`), after it an `errorDetail` line in the 200 stream (as moby does).
    `errors_in_stream`: every error is a line in the 200 stream (moby's load; docker-py raises ImageLoadError)."""
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
        if exc is not None and not errors_in_stream:
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


async def create(engine: Engine, req: Request) -> Reply:
    from_image = req.q("fromImage")
    from_src = req.q("fromSrc")
    tag = req.q("tag")
    platform = req.q("platform") or None
    if from_image:
        ref = split_repo_tag(from_image, tag)
        auth = AuthConfig.from_header(req.headers.get("x-registry-auth"))
        if ref.tag is None and ref.digest is None:  # no tag at all: `docker pull --all-tags`
            return await progress_stream(lambda out: engine.images.pull_all_tags(ref, auth, platform, out))
        return await progress_stream(lambda out: engine.images.pull(ref, auth, platform, out))
    if from_src:
        repo = req.q("repo")
        target = split_repo_tag(repo, tag).tag_or_latest() if repo else None
        message = req.q("message") or f"Imported from {from_src}"
        changes = req.q_all("changes")
        platforms.parse(platform)  # a bad platform is a plain 400, before any progress
        chunks = req.stream() if from_src == "-" else importer.url_chunks(from_src)
        return await progress_stream(
            lambda out: importer.import_reporting(engine.images, chunks, target, message, changes, platform, out))
    raise InvalidParameter("fromImage or fromSrc is required")


async def list_images(engine: Engine, req: Request) -> Response:
    flt = parse_filters(req.q("filters"))
    legacy = req.q("filter")
    if legacy:
        flt.setdefault("reference", []).append(legacy)
    out = await engine.images.list(req.q_bool("all"), flt, legacy_none=not req.version_at_least("1.43"),
                         with_virtual_size=not req.version_at_least("1.44"))
    return json_response(out)


async def prune(engine: Engine, req: Request) -> Response:
    return json_response(await engine.images.prune(parse_filters(req.q("filters"))))


async def get_many(engine: Engine, req: Request) -> Reply:
    names = req.q_all("names")
    return Stream(await archive.save_stream(engine.images, names), content_type="application/x-tar")


async def load(engine: Engine, req: Request) -> Reply:
    quiet = req.q_bool("quiet")
    return await progress_stream(lambda out: archive.load_archive(engine.images, req.stream(), out, quiet),
                                 errors_in_stream=True)


async def auth(engine: Engine, req: Request) -> Response:
    return json_response(await engine.images.login(await req.json({})))


async def search(engine: Engine, req: Request) -> Reply:
    raise InvalidParameter("search is not supported by this engine (no index service is configured)")


async def inspect(engine: Engine, req: Request) -> Response:
    return json_response(engine.images.inspect(req.params["name"], req.version_at_least))


async def history(engine: Engine, req: Request) -> Response:
    return json_response(engine.images.history(req.params["name"]))


async def tag(engine: Engine, req: Request) -> Response:
    await engine.images.tag(req.params["name"], req.q("repo") or "", req.q("tag"))
    return Response(201, b"", None)


async def push(engine: Engine, req: Request) -> Reply:
    auth = AuthConfig.from_header(req.headers.get("x-registry-auth"))
    name, tag = req.params["name"], req.q("tag")
    return await progress_stream(lambda out: engine.images.push(name, tag, auth, out))


async def get_one(engine: Engine, req: Request) -> Reply:
    return Stream(await archive.save_stream(engine.images, [req.params["name"]]), content_type="application/x-tar")


async def delete(engine: Engine, req: Request) -> Response:
    return json_response(await engine.images.delete(req.params["name"], req.q_bool("force"), req.q_bool("noprune")))


ROUTES: list[Route[Engine]] = [
    ("POST", "/images/create", create),
    ("GET", "/images/json", list_images),
    ("POST", "/images/prune", prune),
    ("GET", "/images/get", get_many),
    ("POST", "/images/load", load),
    ("POST", "/auth", auth),
    ("GET", "/images/search", search),
    ("GET", "/images/{name*}/json", inspect),
    ("GET", "/images/{name*}/history", history),
    ("POST", "/images/{name*}/tag", tag),
    ("POST", "/images/{name*}/push", push),
    ("GET", "/images/{name*}/get", get_one),
    ("DELETE", "/images/{name*}", delete),
]
