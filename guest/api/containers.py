"""/containers/…: thin handlers over ContainerService (guest/containers/service.py)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

from skiffbox.guest.api.http import Hijack, RawConn, Request, Response, Router, Stream, json_response, no_content
from skiffbox.guest.containers import attach as attach_mod
from skiffbox.guest.engine import Engine
from skiffbox.guest.errors import InvalidParameter, NotImplementedYet, no_such_container
from skiffbox.guest.util.filters import parse_filters
from skiffbox.guest.util.timefmt import parse_time

MULTIPLEXED = "application/vnd.docker.multiplexed-stream"
RAW = "application/vnd.docker.raw-stream"


def _stream_type(req: Request, tty: bool) -> str:
    return RAW if tty or not req.version_at_least("1.42") else MULTIPLEXED


def router(engine: Engine) -> Router:
    r = Router()

    def svc() -> Any:
        if engine.containers is None:
            raise NotImplementedYet("containers are not available")
        return engine.containers

    # -- list, create, inspect ------------------------------------------------------------------

    @r.route("GET", "/containers/json")
    async def list_(req: Request) -> Response:
        flt = parse_filters(req.q("filters"), None)
        from skiffbox.guest.containers.views import LIST_FILTERS

        for k in flt:
            if k not in LIST_FILTERS:
                raise InvalidParameter(f"invalid filter '{k}'")
        limit = req.q_int("limit")
        if limit is not None and limit < 0:
            limit = None
        out = await svc().list(all_=req.q_bool("all"), limit=limit, size=req.q_bool("size"), filters=flt)
        return json_response(out)

    @r.route("POST", "/containers/create")
    async def create(req: Request) -> Response:
        body = await req.json(default={})
        if not isinstance(body, dict):
            raise InvalidParameter("invalid JSON body")
        c, warnings = await svc().create(body, req.q("name") or None, req.q("platform") or None)
        return json_response({"Id": c.id, "Warnings": warnings}, 201)

    @r.route("GET", "/containers/{id}/json")
    async def inspect(req: Request) -> Response:
        return json_response(await svc().inspect(req.params["id"], size=req.q_bool("size")))

    # -- lifecycle ----------------------------------------------------------------------------

    @r.route("POST", "/containers/{id}/start")
    async def start(req: Request) -> Response:
        await svc().start_container(req.params["id"])
        return no_content()

    @r.route("POST", "/containers/{id}/stop")
    async def stop(req: Request) -> Response:
        await svc().stop(req.params["id"], req.q_int("t"), req.q("signal") or None)
        return no_content()

    @r.route("POST", "/containers/{id}/restart")
    async def restart(req: Request) -> Response:
        await svc().restart(req.params["id"], req.q_int("t"), req.q("signal") or None)
        return no_content()

    @r.route("POST", "/containers/{id}/kill")
    async def kill(req: Request) -> Response:
        await svc().kill(req.params["id"], req.q("signal") or None)
        return no_content()

    @r.route("POST", "/containers/{id}/pause")
    async def pause(req: Request) -> Response:
        await svc().pause(req.params["id"])
        return no_content()

    @r.route("POST", "/containers/{id}/unpause")
    async def unpause(req: Request) -> Response:
        await svc().unpause(req.params["id"])
        return no_content()

    @r.route("POST", "/containers/{id}/rename")
    async def rename(req: Request) -> Response:
        await svc().rename(req.params["id"], req.q("name") or "")
        return no_content()

    @r.route("POST", "/containers/{id}/update")
    async def update(req: Request) -> Response:
        warnings = await svc().update(req.params["id"], await req.json(default={}) or {})
        return json_response({"Warnings": warnings})

    @r.route("DELETE", "/containers/{id}")
    async def delete(req: Request) -> Response:
        await svc().remove(req.params["id"], force=req.q_bool("force"), volumes=req.q_bool("v"))
        return no_content()

    @r.route("POST", "/containers/prune")
    async def prune(req: Request) -> Response:
        flt = parse_filters(req.q("filters"), {"until", "label", "label!"})
        return json_response(await svc().prune(flt))

    @r.route("POST", "/containers/{id}/resize")
    async def resize(req: Request) -> Response:
        h, w = req.q_int("h", 0) or 0, req.q_int("w", 0) or 0
        await svc().resize(req.params["id"], h, w)
        return Response(200, b"", "text/plain; charset=utf-8")

    # -- wait, attach, logs --------------------------------------------------------------------

    @r.route("POST", "/containers/{id}/wait")
    async def wait(req: Request) -> Stream:
        fut = svc().wait_future(req.params["id"], req.q("condition") or None)

        async def body() -> AsyncIterator[bytes]:
            yield b""  # headers now: `docker run` sends start only after seeing them
            try:
                res = await fut
            finally:
                if not fut.done():
                    fut.cancel()
            yield json.dumps(res).encode() + b"\n"

        return Stream(body())

    @r.route("POST", "/containers/{id}/attach")
    async def attach(req: Request) -> Hijack:
        s = svc()
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

    @r.route("GET", "/containers/{id}/logs")
    async def logs(req: Request) -> Stream:
        s = svc()
        c = s.get(req.params["id"])
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
        ts = req.q_bool("timestamps")
        tty = c.tty
        entries = s.log_entries(c, stdout=stdout, stderr=stderr, follow=req.q_bool("follow"), tail=tail,
                                since=since, until=until)

        async def body() -> AsyncIterator[bytes]:
            yield b""
            async for e in entries:
                data = (e.ts_text.encode() + b" " + e.data) if ts else e.data
                yield data if tty else attach_mod.frame(e.stream, data)

        return Stream(body(), content_type=_stream_type(req, tty))

    # -- inspection of the running container -------------------------------------------------------

    @r.route("GET", "/containers/{id}/top")
    async def top(req: Request) -> Response:
        from skiffbox.guest.containers.stats import top as top_

        c = svc().get(req.params["id"])
        return json_response(await top_(svc(), c, req.q("ps_args") or ""))

    @r.route("GET", "/containers/{id}/stats")
    async def stats(req: Request) -> Response | Stream:
        from skiffbox.guest.containers.stats import stats_stream

        c = svc().get(req.params["id"])
        stream = req.q_bool("stream", True)
        one_shot = req.q_bool("one-shot")
        gen = stats_stream(svc(), c, stream=stream, one_shot=one_shot)
        if not stream:
            chunks = [chunk async for chunk in gen]
            return Response(200, b"".join(chunks), "application/json")
        return Stream(gen)

    @r.route("GET", "/containers/{id}/changes")
    async def changes(req: Request) -> Response:
        from skiffbox.guest.containers.changes import changes as changes_

        c = svc().get(req.params["id"])
        return json_response(await asyncio.to_thread(changes_, c))

    @r.route("GET", "/containers/{id}/export")
    async def export(req: Request) -> Stream:
        from skiffbox.guest.containers.archive import export_stream

        c = svc().get(req.params["id"])
        return Stream(export_stream(svc(), c), content_type="application/x-tar")

    # -- docker cp -----------------------------------------------------------------------------

    @r.route("HEAD", "/containers/{id}/archive")
    async def archive_head(req: Request) -> Response:
        from skiffbox.guest.containers.archive import stat_path

        c = svc().get(req.params["id"])
        st = await stat_path(svc(), c, _path_param(req))
        return Response(200, b"", None, {"X-Docker-Container-Path-Stat": _b64(st)})

    @r.route("GET", "/containers/{id}/archive")
    async def archive_get(req: Request) -> Response | Stream:
        from skiffbox.guest.containers.archive import get_archive

        if req.method == "HEAD":
            return await archive_head(req)
        c = svc().get(req.params["id"])
        st, chunks = await get_archive(svc(), c, _path_param(req))
        return Stream(chunks, content_type="application/x-tar", headers={"X-Docker-Container-Path-Stat": _b64(st)})

    @r.route("PUT", "/containers/{id}/archive")
    async def archive_put(req: Request) -> Response:
        from skiffbox.guest.containers.archive import put_archive

        c = svc().get(req.params["id"])
        await put_archive(svc(), c, _path_param(req), req.stream(),
                          no_overwrite_dir_non_dir=req.q_bool("noOverwriteDirNonDir"),
                          copy_uid_gid=req.q_bool("copyUIDGID"))
        return Response(200, b"", None)

    # -- commit --------------------------------------------------------------------------------

    @r.route("POST", "/commit")
    async def commit(req: Request) -> Response:
        from skiffbox.guest.containers.commit import commit as commit_

        ref = req.q("container") or ""
        if not ref:
            raise no_such_container("")
        body = await req.json(default=None)
        image_id = await commit_(svc(), ref, repo=req.q("repo") or "", tag=req.q("tag") or "",
                                 comment=req.q("comment") or "", author=req.q("author") or "",
                                 changes=req.q_all("changes"), pause=req.q_bool("pause", True), config=body)
        return json_response({"Id": image_id}, 201)

    return r


def _path_param(req: Request) -> str:
    p = req.q("path")
    if not p:
        raise InvalidParameter("path cannot be empty")
    return p


def _b64(obj: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(obj).encode()).decode()
