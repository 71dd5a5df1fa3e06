"""/containers/{id}/exec and /exec/…: thin handlers over the exec sessions (guest/containers/exec.py)."""

from __future__ import annotations

from typing import Any

from skiffbox.guest.api.containers import MULTIPLEXED, RAW
from skiffbox.guest.api.http import Hijack, RawConn, Request, Response, Router, json_response
from skiffbox.guest.engine import Engine
from skiffbox.guest.errors import InvalidParameter, NotImplementedYet


def router(engine: Engine) -> Router:
    r = Router()

    def execs() -> Any:
        if engine.containers is None:
            raise NotImplementedYet("containers are not available")
        return engine.containers.execs

    @r.route("POST", "/containers/{id}/exec")
    async def create(req: Request) -> Response:
        body = await req.json(default={})
        if not isinstance(body, dict):
            raise InvalidParameter("invalid JSON body")
        s = execs().create(req.params["id"], body)
        return json_response({"Id": s.id}, 201)

    @r.route("POST", "/exec/{id}/start")
    async def start(req: Request) -> Response | Hijack:
        body = await req.json(default={}) or {}
        mgr = execs()
        s = mgr.get(req.params["id"])
        mgr.check_startable(s)
        if "Tty" in body and body["Tty"] is not None:
            s.tty = bool(body["Tty"])
        if body.get("ConsoleSize"):
            s.console_size = body["ConsoleSize"]
        if body.get("Detach"):
            await mgr.start_detached(s)
            return Response(200, b"", None)

        async def run(raw: RawConn) -> None:
            await mgr.start_attached(s, raw)

        return Hijack(run, RAW if s.tty or not req.version_at_least("1.42") else MULTIPLEXED)

    @r.route("POST", "/exec/{id}/resize")
    async def resize(req: Request) -> Response:
        execs().resize(req.params["id"], req.q_int("h", 0) or 0, req.q_int("w", 0) or 0)
        return Response(200, b"", "text/plain; charset=utf-8")

    @r.route("GET", "/exec/{id}/json")
    async def inspect(req: Request) -> Response:
        return json_response(execs().get(req.params["id"]).inspect())

    return r
