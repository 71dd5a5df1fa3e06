"""/containers/…: thin handlers over ContainerService (guest/containers/service.py)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from skiffbox.guest.api.http import (Hijack, RawConn, Request, Response, Route, Stream, json_response,
                                     no_content)
from skiffbox.guest.containers import attach as attach_mod
from skiffbox.guest.engine import Engine
from skiffbox.guest.errors import InvalidParameter, NotFound, no_such_container
from skiffbox.guest.util.filters import parse_filters
from skiffbox.guest.util.timefmt import parse_time

MULTIPLEXED = "application/vnd.docker.multiplexed-stream"
RAW = "application/vnd.docker.raw-stream"


def _stream_type(req: Request, tty: bool) -> str:
    return RAW if tty or not req.version_at_least("1.42") else MULTIPLEXED


# -- list, create, inspect ------------------------------------------------------------------
async def list_(engine: Engine, req: Request) -> Response:
    flt = parse_filters(req.q("filters"), None)
    from skiffbox.guest.containers.views import LIST_FILTERS

    for k in flt:
        if k not in LIST_FILTERS:
            raise InvalidParameter(f"invalid filter '{k}'")
    limit = req.q_int("limit")
    if limit is not None and limit < 0:
        limit = None
    out = await engine.containers.list(all_=req.q_bool("all"), limit=limit, size=req.q_bool("size"), filters=flt)
    return json_response(out)


async def create(engine: Engine, req: Request) -> Response:
    body = await req.json(default={})
    if not isinstance(body, dict):
        raise InvalidParameter("invalid JSON body")
    c, warnings = await engine.containers.create(body, req.q("name") or None, req.q("platform") or None)
    return json_response({"Id": c.id, "Warnings": warnings}, 201)


async def inspect(engine: Engine, req: Request) -> Response:
    return json_response(await engine.containers.inspect(req.params["id"], size=req.q_bool("size")))


# -- lifecycle ----------------------------------------------------------------------------
async def start(engine: Engine, req: Request) -> Response:
    await engine.containers.start_container(req.params["id"])
    return no_content()


async def stop(engine: Engine, req: Request) -> Response:
    await engine.containers.stop(req.params["id"], req.q_int("t"), req.q("signal") or None)
    return no_content()


async def restart(engine: Engine, req: Request) -> Response:
    await engine.containers.restart(req.params["id"], req.q_int("t"), req.q("signal") or None)
    return no_content()


async def kill(engine: Engine, req: Request) -> Response:
    await engine.containers.kill(req.params["id"], req.q("signal") or None)
    return no_content()


async def pause(engine: Engine, req: Request) -> Response:
    await engine.containers.pause(req.params["id"])
    return no_content()


async def unpause(engine: Engine, req: Request) -> Response:
    await engine.containers.unpause(req.params["id"])
    return no_content()


async def rename(engine: Engine, req: Request) -> Response:
    await engine.containers.rename(req.params["id"], req.q("name") or "")
    return no_content()


async def update(engine: Engine, req: Request) -> Response:
    warnings = await engine.containers.update(req.params["id"], await req.json(default={}) or {})
    return json_response({"Warnings": warnings})


async def delete(engine: Engine, req: Request) -> Response:
    await engine.containers.remove(req.params["id"], force=req.q_bool("force"), volumes=req.q_bool("v"))
    return no_content()


async def delete_link(engine: Engine, req: Request) -> Response:
    """DELETE /containers/{parent}/{alias}: with link=1 a legacy link's removal; otherwise no such container
    (moby's route takes the whole rest of the path as the name)."""
    if not req.q_bool("link"):
        raise NotFound(f"No such container: {req.params['id']}/{req.params['link']}")
    engine.containers.remove_link(req.params["id"], req.params["link"])
    return no_content()


async def prune(engine: Engine, req: Request) -> Response:
    flt = parse_filters(req.q("filters"), {"until", "label", "label!"})
    return json_response(await engine.containers.prune(flt))


async def resize(engine: Engine, req: Request) -> Response:
    h, w = req.q_int("h", 0) or 0, req.q_int("w", 0) or 0
    await engine.containers.resize(req.params["id"], h, w)
    return Response(200, b"", "text/plain; charset=utf-8")


# -- wait, attach, logs --------------------------------------------------------------------
async def wait(engine: Engine, req: Request) -> Stream:
    fut = engine.containers.wait_future(req.params["id"], req.q("condition") or None)

    async def body() -> AsyncIterator[bytes]:
        yield b""  # headers now: `docker run` sends start only after seeing them
        try:
            res = await fut
        finally:
            if not fut.done():
                fut.cancel()
        yield json.dumps(res).encode() + b"\n"

    return Stream(body())


async def attach(engine: Engine, req: Request) -> Hijack:
    s = engine.containers
    c = s.get(req.params["id"])
    stdin, stdout, stderr = req.q_bool("stdin"), req.q_bool("stdout"), req.q_bool("stderr")
    stream, logs = req.q_bool("stream"), req.q_bool("logs")
    keys = attach_mod.parse_detach_keys(req.q("detachKeys"))
    tty = c.tty
    if c.paused:
        from skiffbox.guest.errors import Conflict

        raise Conflict("You cannot attach to a paused container, unpause it first")
    # Registered before the 101 goes out: the client sends `start` right after it.
    sock_fut = await s.attach_socket(c) if stream else None

    async def run(raw: RawConn) -> None:
        prefix: list[bytes] = []
        if logs:
            async for e in s.log_entries(c, stdout=stdout, stderr=stderr, follow=False, tail=None, since=None,
                                         until=None):
                prefix.append(e.data if tty else attach_mod.frame(e.stream, e.data))
        if sock_fut is None:
            for p in prefix:
                await raw.write(p)
            return
        try:
            sock = await sock_fut
        except OSError:
            sock = None
        if sock is None:
            for p in prefix:
                await raw.write(p)
            return
        s.event(c, "attach")
        await attach_mod.relay(raw, sock, tty=tty, stdout=stdout, stderr=stderr,
                               stdin=stdin and bool(c.config.get("OpenStdin")),
                               close_stdin_on_eof=bool(c.config.get("StdinOnce")),
                               detach_keys=keys if stdin else None, prefix=prefix)

    return Hijack(run, _stream_type(req, tty))


@dataclass(frozen=True)
class LogQuery:
    """A logs request's parameters (containers, services and tasks read the same ones)."""

    stdout: bool
    stderr: bool
    follow: bool
    tail: int | None
    since: float | None
    until: float | None
    timestamps: bool


def log_query(req: Request) -> LogQuery:
    stdout, stderr = req.q_bool("stdout"), req.q_bool("stderr")
    if not (stdout or stderr):
        raise InvalidParameter("Bad parameters: you must choose at least one stream")
    tail_s = req.q("tail") or "all"
    tail = None
    if tail_s != "all":
        try:
            tail = int(tail_s)
        except ValueError:
            raise InvalidParameter(f"invalid value for tail: {tail_s}") from None
        if tail < 0:
            tail = None
    since = parse_time(req.q("since")) if req.q("since") not in (None, "", "0") else None
    until = parse_time(req.q("until")) if req.q("until") not in (None, "", "0") else None
    return LogQuery(stdout, stderr, req.q_bool("follow"), tail, since, until, req.q_bool("timestamps"))


async def logs(engine: Engine, req: Request) -> Stream:
    s = engine.containers
    c = s.get(req.params["id"])
    q = log_query(req)
    ts = q.timestamps
    tty = c.tty
    entries = s.log_entries(c, stdout=q.stdout, stderr=q.stderr, follow=q.follow, tail=q.tail,
                            since=q.since, until=q.until)

    async def body() -> AsyncIterator[bytes]:
        yield b""
        async for e in entries:
            data = (e.ts_text.encode() + b" " + e.data) if ts else e.data
            yield data if tty else attach_mod.frame(e.stream, data)

    return Stream(body(), content_type=_stream_type(req, tty))


# -- inspection of the running container -------------------------------------------------------
async def top(engine: Engine, req: Request) -> Response:
    from skiffbox.guest.containers.stats import top as top_

    c = engine.containers.get(req.params["id"])
    return json_response(await top_(engine.containers, c, req.q("ps_args") or ""))


async def stats(engine: Engine, req: Request) -> Response | Stream:
    from skiffbox.guest.containers.stats import stats_stream

    c = engine.containers.get(req.params["id"])
    stream = req.q_bool("stream", True)
    one_shot = req.q_bool("one-shot")
    gen = stats_stream(engine.containers, c, stream=stream, one_shot=one_shot)
    if not stream:
        chunks = [chunk async for chunk in gen]
        return Response(200, b"".join(chunks), "application/json")
    return Stream(gen)


async def changes(engine: Engine, req: Request) -> Response:
    from skiffbox.guest.containers.changes import changes as changes_

    c = engine.containers.get(req.params["id"])
    return json_response(await asyncio.to_thread(changes_, c))


async def export(engine: Engine, req: Request) -> Stream:
    from skiffbox.guest.containers.archive import export_stream

    c = engine.containers.get(req.params["id"])
    return Stream(export_stream(engine.containers, c), content_type="application/x-tar")


# -- docker cp -----------------------------------------------------------------------------
async def archive_head(engine: Engine, req: Request) -> Response:
    from skiffbox.guest.containers.archive import stat_path

    c = engine.containers.get(req.params["id"])
    st = await stat_path(engine.containers, c, _path_param(req))
    return Response(200, b"", None, {"X-Docker-Container-Path-Stat": _b64(st)})


async def archive_get(engine: Engine, req: Request) -> Response | Stream:
    from skiffbox.guest.containers.archive import get_archive

    if req.method == "HEAD":
        return await archive_head(engine, req)
    c = engine.containers.get(req.params["id"])
    st, chunks = await get_archive(engine.containers, c, _path_param(req))
    return Stream(chunks, content_type="application/x-tar", headers={"X-Docker-Container-Path-Stat": _b64(st)})


async def archive_put(engine: Engine, req: Request) -> Response:
    from skiffbox.guest.containers.archive import put_archive

    c = engine.containers.get(req.params["id"])
    await put_archive(engine.containers, c, _path_param(req), req.stream(),
                      no_overwrite_dir_non_dir=req.q_bool("noOverwriteDirNonDir"),
                      copy_uid_gid=req.q_bool("copyUIDGID"))
    return Response(200, b"", None)


# -- commit --------------------------------------------------------------------------------
async def commit(engine: Engine, req: Request) -> Response:
    from skiffbox.guest.containers.commit import commit as commit_

    ref = req.q("container") or ""
    if not ref:
        raise no_such_container("")
    body = await req.json(default=None)
    image_id = await commit_(engine.containers, ref, repo=req.q("repo") or "", tag=req.q("tag") or "",
                             comment=req.q("comment") or "", author=req.q("author") or "",
                             changes=req.q_all("changes"), pause=req.q_bool("pause", True), config=body)
    return json_response({"Id": image_id}, 201)


def _path_param(req: Request) -> str:
    p = req.q("path")
    if not p:
        raise InvalidParameter("path cannot be empty")
    return p


def _b64(obj: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(obj).encode()).decode()


ROUTES: list[Route[Engine]] = [
    ("GET", "/containers/json", list_),
    ("POST", "/containers/create", create),
    ("GET", "/containers/{id}/json", inspect),
    ("POST", "/containers/{id}/start", start),
    ("POST", "/containers/{id}/stop", stop),
    ("POST", "/containers/{id}/restart", restart),
    ("POST", "/containers/{id}/kill", kill),
    ("POST", "/containers/{id}/pause", pause),
    ("POST", "/containers/{id}/unpause", unpause),
    ("POST", "/containers/{id}/rename", rename),
    ("POST", "/containers/{id}/update", update),
    ("DELETE", "/containers/{id}", delete),
    ("DELETE", "/containers/{id}/{link}", delete_link),
    ("POST", "/containers/prune", prune),
    ("POST", "/containers/{id}/resize", resize),
    ("POST", "/containers/{id}/wait", wait),
    ("POST", "/containers/{id}/attach", attach),
    ("GET", "/containers/{id}/logs", logs),
    ("GET", "/containers/{id}/top", top),
    ("GET", "/containers/{id}/stats", stats),
    ("GET", "/containers/{id}/changes", changes),
    ("GET", "/containers/{id}/export", export),
    ("HEAD", "/containers/{id}/archive", archive_head),
    ("GET", "/containers/{id}/archive", archive_get),
    ("PUT", "/containers/{id}/archive", archive_put),
    ("POST", "/commit", commit),
]
