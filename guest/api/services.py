"""/services and /tasks: thin handlers over the swarm's services (guest/swarm/services.py). Every one answers
503 "not a swarm manager" while the node is not in a swarm, as dockerd does."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from skiffbox.guest.api.containers import MULTIPLEXED, RAW, log_query
from skiffbox.guest.api.http import Request, Response, Route, Stream, json_response
from skiffbox.guest.containers.attach import frame
from skiffbox.guest.engine import Engine
from skiffbox.guest.errors import InvalidParameter
from skiffbox.guest.util.filters import parse_filters

async def list_services(engine: Engine, req: Request) -> Response:
    flt = parse_filters(req.q("filters"))
    return json_response(engine.services.ls(flt, status=req.q_bool("status")))


async def create(engine: Engine, req: Request) -> Response:
    body = await req.json(default={})
    sid = await engine.services.create(body)
    return json_response({"ID": sid}, 201)


async def inspect(engine: Engine, req: Request) -> Response:
    return json_response(engine.services.inspect(req.params["id"], insert_defaults=req.q_bool("insertDefaults")))


async def delete(engine: Engine, req: Request) -> Response:
    await engine.services.remove(req.params["id"])
    return Response(200, b"", None)


async def update(engine: Engine, req: Request) -> Response:
    raw = req.q("version")
    try:
        version = int(raw) if raw not in (None, "") else None
    except ValueError:
        raise InvalidParameter(f"invalid service version '{raw}': must be an integer") from None
    body = await req.json(default={})
    rollback = req.q("rollback") or None
    if rollback not in (None, "previous"):
        raise InvalidParameter(f"invalid value for rollback: {rollback!r}")
    warnings = await engine.services.update(req.params["id"], version, body, rollback)
    return json_response({"Warnings": warnings or None})


async def list_tasks(engine: Engine, req: Request) -> Response:
    return json_response(engine.services.list_tasks(parse_filters(req.q("filters"))))


async def inspect_task(engine: Engine, req: Request) -> Response:
    return json_response(engine.services.inspect_task(req.params["id"]))


async def service_logs(engine: Engine, req: Request) -> Stream:
    svc = engine.services.get(req.params["id"])
    return _logs(engine, req, lambda: engine.services.tasks_of(svc["ID"]),
                 bool(svc["Spec"]["TaskTemplate"]["ContainerSpec"].get("TTY")),
                 more=lambda: svc["ID"] in engine.services.services)


async def task_logs(engine: Engine, req: Request) -> Stream:
    t = engine.services.task(req.params["id"])
    return _logs(engine, req, lambda: [t], bool((t["Spec"].get("ContainerSpec") or {}).get("TTY")))


def _logs(engine: Engine, req: Request, task_list: Callable[[], list[dict[str, Any]]], tty: bool,
          more: Callable[[], bool] = lambda: False) -> Stream:
    q = log_query(req)
    details = req.q_bool("details")
    entries = engine.services.logs(task_list, stdout=q.stdout, stderr=q.stderr, follow=q.follow, tail=q.tail,
                                   since=q.since, until=q.until, more=more)

    async def body() -> AsyncIterator[bytes]:
        yield b""
        async for t, e in entries:
            data = e.data
            if details:  # the task's swarm context, as dockerd's log details
                data = (f"com.docker.swarm.node.id={t['NodeID']},com.docker.swarm.service.id={t['ServiceID']},"
                        f"com.docker.swarm.task.id={t['ID']} ").encode() + data
            if q.timestamps:
                data = e.ts_text.encode() + b" " + data
            yield data if tty else frame(e.stream, data)

    return Stream(body(), content_type=RAW if tty else MULTIPLEXED)


ROUTES: list[Route[Engine]] = [
    ("GET", "/services", list_services),
    ("POST", "/services/create", create),
    ("GET", "/services/{id}", inspect),
    ("DELETE", "/services/{id}", delete),
    ("POST", "/services/{id}/update", update),
    ("GET", "/services/{id}/logs", service_logs),
    ("GET", "/tasks", list_tasks),
    ("GET", "/tasks/{id}", inspect_task),
    ("GET", "/tasks/{id}/logs", task_logs),
]
