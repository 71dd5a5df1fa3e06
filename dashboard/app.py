"""The dashboard's HTTP and websocket routes (Starlette). JSON under /api, streams under /ws, the page and
its modules under /static. Every engine call goes through skiffclient in a worker thread."""

from __future__ import annotations

import html
import json
import mimetypes
from pathlib import Path
from typing import Any, Callable

import anyio.to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

from skiffbox.client.api import APIClient, APIError
from skiffbox.client.transport import TransportError
from skiffbox.dashboard import machines, runform, streams
from skiffbox.dashboard.engines import LOCAL, EngineError, Engines, local_url, port_host
from skiffbox.dashboard.jobs import Jobs
from skiffbox.dashboard.security import Guard

STATIC = Path(__file__).resolve().parent / "static"
mimetypes.add_type("text/javascript", ".mjs")  # module scripts need a JavaScript type; not every OS's table has .mjs
CONTAINER_OPS = ("start", "stop", "restart", "kill", "pause", "unpause")


class State:
    def __init__(self, default_engine: str) -> None:
        self.engines = Engines()
        self.jobs = Jobs()
        self.default_engine = default_engine


def _state(request: Request | WebSocket) -> State:
    return request.app.state.dash  # type: ignore[no-any-return]


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status)


async def _engine_call(request: Request, fn: Callable[..., Any], *args: Any) -> Any:
    st = _state(request)
    return await anyio.to_thread.run_sync(lambda: st.engines.call(request.path_params["engine"], fn, *args))


async def _body(request: Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except ValueError:
        raise HTTPException(400, "the request body is not JSON") from None
    if not isinstance(data, dict):
        raise HTTPException(400, "the request body must be a JSON object")
    return data


# ---- page -------------------------------------------------------------------------------------------
async def index(request: Request) -> Response:
    page = (STATIC / "index.html").read_text()
    st = _state(request)
    page = page.replace("{{TOKEN}}", html.escape(request.app.state.token)).replace(
        "{{ENGINE}}", html.escape(st.default_engine))
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})


# ---- engines and machines ----------------------------------------------------------------------------
async def engines(request: Request) -> Response:
    names = await anyio.to_thread.run_sync(machines.names)
    url = await anyio.to_thread.run_sync(local_url)
    rows = [{"id": LOCAL, "name": "local", "url": url}] + [{"id": n, "name": n, "url": ""} for n in names]
    return JSONResponse({"engines": rows, "default": _state(request).default_engine})


async def machine_list(request: Request) -> Response:
    return JSONResponse(await anyio.to_thread.run_sync(machines.list_machines))


async def machine_drivers(request: Request) -> Response:
    return JSONResponse(await anyio.to_thread.run_sync(machines.drivers))


async def machine_create(request: Request) -> Response:
    body = await _body(request)
    name, driver = str(body.get("name", "")).strip(), str(body.get("driver", "")).strip()
    flags = {str(k): str(v) for k, v in (body.get("flags") or {}).items()}
    if not name or not driver:
        return _error(400, "a machine needs a name and a driver")
    job = _state(request).jobs.start(f"create machine {name}", lambda emit: machines.create(name, driver, flags, emit))
    return JSONResponse({"job": job.id}, status_code=202)


async def machine_op(request: Request) -> Response:
    name, op = request.path_params["name"], request.path_params["op"]
    if op not in machines.OPS:
        return _error(404, f"unknown operation {op!r}")
    st = _state(request)

    def work(emit: Any) -> None:
        machines.operate(name, op, emit)
        st.engines.forget(name)  # a new address or new certificates after start/restart/regenerate

    job = st.jobs.start(f"{op} machine {name}", work)
    return JSONResponse({"job": job.id}, status_code=202)


async def machine_remove(request: Request) -> Response:
    name = request.path_params["name"]
    force = request.query_params.get("force") in ("1", "true")
    st = _state(request)

    def work(emit: Any) -> None:
        machines.remove(name, force, emit)
        st.engines.forget(name)

    job = st.jobs.start(f"remove machine {name}", work)
    return JSONResponse({"job": job.id}, status_code=202)


async def job_list(request: Request) -> Response:
    return JSONResponse(_state(request).jobs.recent())


# ---- one engine ---------------------------------------------------------------------------------------
async def engine_info(request: Request) -> Response:
    def get(api: APIClient) -> dict[str, Any]:
        v = api.server_version()
        return {"version": v, "info": api.info(), "api": api.version}

    out = await _engine_call(request, get)
    ep = await anyio.to_thread.run_sync(_state(request).engines.endpoint, request.path_params["engine"])
    out.update(url=ep.url, portHost=port_host(ep))
    return JSONResponse(out)


async def container_list(request: Request) -> Response:
    return JSONResponse(await _engine_call(request, lambda api: api.containers(all=True)))


async def container_inspect(request: Request) -> Response:
    return JSONResponse(await _engine_call(request, APIClient.container_inspect, request.path_params["id"]))


async def container_op(request: Request) -> Response:
    cid, op = request.path_params["id"], request.path_params["op"]
    if op not in CONTAINER_OPS:
        return _error(404, f"unknown operation {op!r}")
    await _engine_call(request, getattr(APIClient, op), cid)
    return JSONResponse({"ok": True})


async def container_remove(request: Request) -> Response:
    force = request.query_params.get("force") in ("1", "true")
    await _engine_call(request, lambda api: api.remove(request.path_params["id"], force=force))
    return JSONResponse({"ok": True})


async def container_run(request: Request) -> Response:
    form = await _body(request)
    try:
        runform.create_body(form)  # refuse a bad form before anything is sent to the engine
    except runform.FormError as e:
        return _error(400, str(e))
    cid = await _engine_call(request, runform.run, form)
    return JSONResponse({"Id": cid}, status_code=201)


async def image_list(request: Request) -> Response:
    return JSONResponse(await _engine_call(request, lambda api: api.images()))


async def image_remove(request: Request) -> Response:
    force = request.query_params.get("force") in ("1", "true")
    out = await _engine_call(request, lambda api: api.image_remove(request.path_params["ref"], force=force))
    return JSONResponse(out)


async def image_pull(request: Request) -> Response:
    from skiffbox.client.streams import iter_json_stream
    from skiffbox.cli.skiffclient.commands.images import open_pull

    ref = str((await _body(request)).get("ref", "")).strip()
    if not ref:
        return _error(400, "which image? (e.g. busybox:latest)")
    st, engine = _state(request), request.path_params["engine"]

    def work(emit: Any) -> str:
        def pull(api: APIClient) -> str:
            resp, shown = open_pull(api, ref)
            for msg in iter_json_stream(resp):
                if msg.get("error"):
                    raise RuntimeError(msg["error"])
                emit(msg)
            return str(shown)
        return str(st.engines.call(engine, pull))

    job = st.jobs.start(f"pull {ref}", work)
    return JSONResponse({"job": job.id}, status_code=202)


async def network_list(request: Request) -> Response:
    return JSONResponse(await _engine_call(request, lambda api: api.networks()))


async def network_remove(request: Request) -> Response:
    await _engine_call(request, APIClient.network_remove, request.path_params["id"])
    return JSONResponse({"ok": True})


async def volume_list(request: Request) -> Response:
    out = await _engine_call(request, lambda api: api.volumes())
    return JSONResponse(out.get("Volumes") or [])


async def volume_remove(request: Request) -> Response:
    await _engine_call(request, APIClient.volume_remove, request.path_params["name"])
    return JSONResponse({"ok": True})


# ---- streams --------------------------------------------------------------------------------------------
async def _stream_client(ws: WebSocket) -> APIClient | None:
    """A client of its own for a long stream, or None after telling the page why not."""
    await ws.accept()
    try:
        return await anyio.to_thread.run_sync(_state(ws).engines.client, ws.path_params["engine"])
    except (EngineError, TransportError) as e:
        await ws.send_text(json.dumps({"error": str(e)}))
        await ws.close()
        return None


async def _open_and_pump(ws: WebSocket, open_: Callable[[APIClient], Any],
                         produce: Callable[[Any, APIClient], Any]) -> None:
    api = await _stream_client(ws)
    if api is None:
        return
    try:
        try:
            resp = await anyio.to_thread.run_sync(open_, api)
        except (APIError, TransportError, EngineError) as e:
            await ws.send_text(json.dumps({"error": str(e)}))
            await ws.close()
            return
        await streams.pump(ws, produce(resp, api), resp.abort)
    finally:
        api.t.close()


async def ws_events(ws: WebSocket) -> None:
    await _open_and_pump(ws, lambda api: api.events(), lambda resp, api: streams.json_stream(resp))


async def ws_logs(ws: WebSocket) -> None:
    cid = ws.path_params["id"]
    tail = ws.query_params.get("tail", "1000")
    tty = False

    def open_(api: APIClient) -> Any:
        nonlocal tty
        tty = bool(api.container_inspect(cid)["Config"].get("Tty"))
        return api.logs(cid, follow=True, tail=tail, timestamps=ws.query_params.get("timestamps") == "1")

    await _open_and_pump(ws, open_, lambda resp, api: streams.log_stream(resp, tty))


async def ws_stats(ws: WebSocket) -> None:
    cid = ws.path_params["id"]
    await _open_and_pump(ws, lambda api: api.stats(cid, stream=True), lambda resp, api: streams.json_stream(resp))


async def ws_exec(ws: WebSocket) -> None:
    api = await _stream_client(ws)
    if api is None:
        return
    try:
        cols = max(10, min(500, int(ws.query_params.get("cols", "80"))))
        rows = max(5, min(300, int(ws.query_params.get("rows", "24"))))
        await streams.terminal(ws, api, ws.path_params["id"], cols, rows)
    except (APIError, TransportError) as e:
        await ws.send_text(json.dumps({"error": str(e)}))
        await ws.close()
    finally:
        api.t.close()


async def ws_job(ws: WebSocket) -> None:
    await ws.accept()
    job = _state(ws).jobs.get(ws.path_params["id"])
    if job is None:
        await ws.send_text(json.dumps({"done": True, "error": "no such job"}))
    else:
        async for msg in job.follow():
            await ws.send_text(json.dumps(msg))
    await ws.close()


# ---- errors ---------------------------------------------------------------------------------------------
async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return _error(exc.status, exc.message)


async def unreachable(request: Request, exc: Exception) -> Response:
    return _error(502, str(exc))


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _error(exc.status_code, str(exc.detail))


async def bad_input(request: Request, exc: Exception) -> Response:
    return _error(400, str(exc))


def build_app(token: str, port: int, default_engine: str = LOCAL) -> Guard:
    e = "/api/e/{engine}"
    routes = [
        Route("/", index),
        Route("/api/engines", engines),
        Route("/api/machines", machine_list),
        Route("/api/machines", machine_create, methods=["POST"]),
        Route("/api/machines/drivers", machine_drivers),
        Route("/api/machines/{name}/{op}", machine_op, methods=["POST"]),
        Route("/api/machines/{name}", machine_remove, methods=["DELETE"]),
        Route("/api/jobs", job_list),
        Route(f"{e}/info", engine_info),
        Route(f"{e}/containers", container_list),
        Route(f"{e}/containers", container_run, methods=["POST"]),
        Route(f"{e}/containers/{{id}}", container_inspect),
        Route(f"{e}/containers/{{id}}", container_remove, methods=["DELETE"]),
        Route(f"{e}/containers/{{id}}/{{op}}", container_op, methods=["POST"]),
        Route(f"{e}/images", image_list),
        Route(f"{e}/images/pull", image_pull, methods=["POST"]),
        Route(f"{e}/images/{{ref:path}}", image_remove, methods=["DELETE"]),
        Route(f"{e}/networks", network_list),
        Route(f"{e}/networks/{{id}}", network_remove, methods=["DELETE"]),
        Route(f"{e}/volumes", volume_list),
        Route(f"{e}/volumes/{{name}}", volume_remove, methods=["DELETE"]),
        WebSocketRoute("/ws/e/{engine}/events", ws_events),
        WebSocketRoute("/ws/e/{engine}/containers/{id}/logs", ws_logs),
        WebSocketRoute("/ws/e/{engine}/containers/{id}/stats", ws_stats),
        WebSocketRoute("/ws/e/{engine}/containers/{id}/exec", ws_exec),
        WebSocketRoute("/ws/jobs/{id}", ws_job),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={
        APIError: api_error, TransportError: unreachable, EngineError: unreachable, HTTPException: http_error,
        runform.FormError: bad_input})
    app.state.dash = State(default_engine)
    app.state.token = token
    return Guard(app, token, port)
