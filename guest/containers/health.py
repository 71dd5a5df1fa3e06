"""Healthchecks: run `Config.Healthcheck.Test` in the container on its interval and keep Docker's
`State.Health` (`starting` → `healthy`/`unhealthy`, FailingStreak, the last 5 results)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from skiffbox.guest.containers.store import Container, now_rfc3339
from skiffbox.guest.errors import EngineError

if TYPE_CHECKING:
    from skiffbox.guest.containers.service import ContainerService

log = logging.getLogger("skiffd.health")

NS = 1_000_000_000
DEFAULT_INTERVAL = 30.0
DEFAULT_TIMEOUT = 30.0
DEFAULT_RETRIES = 3
DEFAULT_START_INTERVAL = 5.0
MAX_LOG = 5


def _secs(ns: Any, default: float) -> float:
    try:
        v = int(ns or 0)
    except (TypeError, ValueError):
        return default
    return v / NS if v > 0 else default


def command(test: list[str]) -> list[str] | None:
    if not test or test[0] == "NONE":
        return None
    if test[0] == "CMD":
        return list(test[1:])
    if test[0] == "CMD-SHELL":
        return ["/bin/sh", "-c", " ".join(test[1:])]
    return list(test)


class HealthChecker:
    def __init__(self, svc: "ContainerService", c: Container) -> None:
        self.svc = svc
        self.c = c
        hc = c.config.get("Healthcheck") or {}
        self.cmd = command(hc.get("Test") or [])
        self.interval = _secs(hc.get("Interval"), DEFAULT_INTERVAL)
        self.timeout = _secs(hc.get("Timeout"), DEFAULT_TIMEOUT)
        self.retries = int(hc.get("Retries") or DEFAULT_RETRIES)
        self.start_period = _secs(hc.get("StartPeriod"), 0.0)
        self.start_interval = _secs(hc.get("StartInterval"), DEFAULT_START_INTERVAL)

    async def run(self) -> None:
        if self.cmd is None:
            return
        loop = asyncio.get_running_loop()
        started = loop.time()
        while self.c.running:
            in_start = loop.time() - started < self.start_period
            health = self.c.state.get("Health") or {}
            wait = self.start_interval if (in_start and health.get("Status") == "starting") else self.interval
            await asyncio.sleep(wait)
            if not self.c.running or self.c.paused:
                continue
            await self.probe(in_start=loop.time() - started < self.start_period)

    async def probe(self, in_start: bool = False) -> None:
        c = self.c
        start = now_rfc3339()
        try:
            code, out = await self.svc.execs.run_capture(c, self.cmd or [], self.timeout)
        except EngineError as e:
            code, out = -1, e.message
        except Exception as e:  # the container went away mid-check
            log.debug("healthcheck of %s: %s", c.id[:12], e)
            return
        if not c.running:
            return
        health = c.state.setdefault("Health", {"Status": "starting", "FailingStreak": 0, "Log": []})
        entry = {"Start": start, "End": now_rfc3339(), "ExitCode": code, "Output": out}
        health["Log"] = (health.get("Log") or [])[-(MAX_LOG - 1):] + [entry]
        old = health.get("Status")
        if code == 0:
            health["FailingStreak"] = 0
            health["Status"] = "healthy"
        elif not (in_start and old == "starting"):
            health["FailingStreak"] = int(health.get("FailingStreak") or 0) + 1
            if health["FailingStreak"] >= self.retries:
                health["Status"] = "unhealthy"
        self.svc.save(c)
        if health["Status"] != old:
            self.svc.event(c, f"health_status: {health['Status']}")
