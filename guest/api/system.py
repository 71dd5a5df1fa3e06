"""System endpoints: /_ping, /version, /info, /events, /system/df (thin over guest/system.py and the event bus)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

from skiffbox.guest import events, system
from skiffbox.guest.api.http import (API_VERSION, MIN_API_VERSION, Request, Response, Route, Stream,
                                     json_response)
from skiffbox.guest.engine import Engine
from skiffbox.guest.util.filters import parse_filters
from skiffbox.guest.util.timefmt import parse_time

_PING_HEADERS = {
    "Cache-Control": "no-cache, no-store, must-revalidate",
    "Pragma": "no-cache",
    "Builder-Version": "1",
}


async def ping(engine: Engine, req: Request) -> Response:
    return Response(200, b"OK", "text/plain; charset=utf-8", {**_PING_HEADERS, "Swarm": engine.swarm.ping_header()})


async def version(engine: Engine, req: Request) -> Response:
    return json_response(system.version_info(API_VERSION, MIN_API_VERSION))


async def info(engine: Engine, req: Request) -> Response:
    return json_response(await system.engine_info(engine))


async def df(engine: Engine, req: Request) -> Response:
    return json_response(await system.disk_usage(engine))


async def events_stream(engine: Engine, req: Request) -> Stream:
    return Stream(_event_stream(engine, parse_filters(req.q("filters")), parse_time(req.q("since")),
                                parse_time(req.q("until"))))


async def _event_stream(engine: Engine, flt: dict[str, list[str]], since: float | None,
                        until: float | None) -> AsyncIterator[bytes]:
    q = engine.events.subscribe()
    try:
        if since is not None:
            for ev in engine.events.history():
                t = ev["timeNano"] / 1e9
                if t >= since and (until is None or t <= until) and events.matches(ev, flt):
                    yield json.dumps(ev).encode() + b"\n"
        # Flush the headers straight away: clients block on them before anything happens.
        yield b""
        while True:
            timeout = None
            if until is not None:
                timeout = until - time.time()
                if timeout <= 0:
                    return
            try:
                ev = await asyncio.wait_for(q.get(), timeout)
            except asyncio.TimeoutError:
                return
            if ev["timeNano"] / 1e9 < (since or 0):
                continue
            if events.matches(ev, flt):
                yield json.dumps(ev).encode() + b"\n"
    finally:
        engine.events.unsubscribe(q)


ROUTES: list[Route[Engine]] = [
    ("GET", "/_ping", ping),
    ("HEAD", "/_ping", ping),
    ("GET", "/version", version),
    ("GET", "/info", info),
    ("GET", "/events", events_stream),
    ("GET", "/system/df", df),
]
