"""Long work started from the page (create a machine, start it, pull an image): run in a thread, its progress
kept as a list of messages that any number of websockets replay and then follow."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

Emit = Callable[[dict[str, Any]], None]


class Job:
    def __init__(self, jid: str, title: str, loop: asyncio.AbstractEventLoop) -> None:
        self.id, self.title = jid, title
        self.messages: list[dict[str, Any]] = []
        self.done = False
        self.error = ""
        self.error_kind = ""  # the exception's class name: the page tells a driver's refusal (NotSupported) from a failure
        self.result: Any = None
        self.started = time.time()
        self._loop = loop
        self._waiters: set[asyncio.Event] = set()

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "done": self.done, "error": self.error, "errorKind": self.error_kind,
                "started": self.started, "last": self.messages[-1] if self.messages else None}

    def emit(self, msg: dict[str, Any]) -> None:
        """From the worker thread."""
        self.messages.append(msg)
        self._loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        for ev in self._waiters:
            ev.set()

    async def follow(self, start: int = 0) -> AsyncIterator[dict[str, Any]]:
        """Every message from `start` on, then a last {"done": true, "error": …}."""
        ev = asyncio.Event()
        self._waiters.add(ev)
        try:
            i = start
            while True:
                ev.clear()
                while i < len(self.messages):
                    yield self.messages[i]
                    i += 1
                if self.done:
                    yield {"done": True, "error": self.error, "errorKind": self.error_kind, "result": self.result}
                    return
                await ev.wait()
        finally:
            self._waiters.discard(ev)


class Jobs:
    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._ids = itertools.count(1)

    def start(self, title: str, work: Callable[[Emit], Any]) -> Job:
        job = Job(str(next(self._ids)), title, asyncio.get_running_loop())
        self._jobs[job.id] = job

        def run() -> None:
            try:
                job.result = work(job.emit)
            except Exception as e:  # reported on the page; the worker must not die silently
                job.error, job.error_kind = str(e) or type(e).__name__, type(e).__name__
            job.done = True
            job._loop.call_soon_threadsafe(job._wake)

        threading.Thread(target=run, name=f"job-{job.id}", daemon=True).start()
        return job

    def get(self, jid: str) -> Job | None:
        return self._jobs.get(jid)

    def recent(self, n: int = 20) -> list[dict[str, Any]]:
        return [j.summary() for j in list(self._jobs.values())[-n:]]
