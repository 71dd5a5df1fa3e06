"""/containers/{id}/exec and /exec/…: thin handlers over the exec sessions (guest/containers/exec.py)."""

from __future__ import annotations


from skiffbox.guest.api.containers import MULTIPLEXED, RAW
from skiffbox.guest.api.http import Hijack, RawConn, Request, Response, Route, json_response
from skiffbox.guest.engine import Engine
from skiffbox.guest.errors import InvalidParameter


async def create(engine: Engine, req: Request) -> Response:
    body = await req.json(default={})
    if not isinstance(body, dict):
        raise InvalidParameter("invalid JSON body")
    s = engine.containers.execs.create(req.params["id"], body)
    return json_response({"Id": s.id}, 201)


async def start(engine: Engine, req: Request) -> Response | Hijack:
    body = await req.json(default={}) or {}
    mgr = engine.containers.execs
    s = mgr.get(req.params["id"])
    mgr.check_startable(s)
    if "Tty" in body and body["Tty"] is not None:
        s.raw_stream = bool(body["Tty"])
    if body.get("ConsoleSize"):
        s.console_size = body["ConsoleSize"]
    if body.get("Detach"):
        await mgr.start_detached(s)
        return Response(200, b"", None)

    async def run(raw: RawConn) -> None:
        await mgr.start_attached(s, raw)

    return Hijack(run, RAW if s.raw or not req.version_at_least("1.42") else MULTIPLEXED)


async def resize(engine: Engine, req: Request) -> Response:
    engine.containers.execs.resize(req.params["id"], req.q_int("h", 0) or 0, req.q_int("w", 0) or 0)
    return Response(200, b"", "text/plain; charset=utf-8")


async def inspect(engine: Engine, req: Request) -> Response:
    return json_response(engine.containers.execs.get(req.params["id"]).inspect())


ROUTES: list[Route[Engine]] = [
    ("POST", "/containers/{id}/exec", create),
    ("POST", "/exec/{id}/start", start),
    ("POST", "/exec/{id}/resize", resize),
    ("GET", "/exec/{id}/json", inspect),
]
