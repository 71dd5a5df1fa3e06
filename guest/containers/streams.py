"""What clients wait on and read from a container: its next exit or removal, conmon's attach socket (now or at
the start), its logs, and its tty size."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from skiffbox.guest.containers import logs, monitor
from skiffbox.guest.containers.store import Container
from skiffbox.guest.errors import Conflict, InvalidParameter

WAIT_CONDITIONS = ("not-running", "next-exit", "removed")


def wait_future(c: Container, condition: str | None) -> asyncio.Future[dict[str, Any]]:
    """Registered before the response headers go out, so a `start` right after cannot be missed."""
    cond = condition or "not-running"
    if cond not in WAIT_CONDITIONS:
        raise InvalidParameter(f"invalid condition: \"{cond}\"")
    loop = asyncio.get_running_loop()
    f: asyncio.Future[dict[str, Any]] = loop.create_future()
    if cond == "removed":
        c.remove_waiters.append(f)
    elif cond == "next-exit" or c.running or c.state.get("Restarting"):
        c.exit_waiters.append(f)
    else:
        f.set_result({"StatusCode": int(c.state.get("ExitCode") or 0), "Error": None})
    return f


def exit_future(c: Container) -> asyncio.Future[dict[str, Any]]:
    f: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    c.exit_waiters.append(f)
    return f


def resolve_exit(c: Container, code: int, error: str | None) -> None:
    res = {"StatusCode": code, "Error": {"Message": error} if error else None}
    waiters, c.exit_waiters = c.exit_waiters, []
    for f in waiters:
        if not f.done():
            f.set_result(res)


def resolve_removed(c: Container) -> None:
    res = {"StatusCode": int(c.state.get("ExitCode") or 0), "Error": None}
    waiters, c.remove_waiters = c.remove_waiters, []
    for f in waiters:
        if not f.done():
            f.set_result(res)


async def attach_socket(c: Container) -> asyncio.Future[Any]:
    """A future for conmon's attach socket: now if running, else when the container starts."""
    f: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    if c.running:
        try:
            f.set_result(monitor.connect_attach(c.bundle))
        except OSError:
            f.set_result(None)
    else:
        c.attachers.append(f)
    return f


def connect_attachers(c: Container) -> None:
    """Attach clients that came before start connect once conmon is up, so they see every byte of output."""
    for fut in c.attachers:
        if not fut.done():
            try:
                fut.set_result(monitor.connect_attach(c.bundle))
            except OSError as e:
                fut.set_exception(e)
    c.attachers.clear()


def release_attachers(c: Container) -> None:
    """Attach clients waiting for a start that will not come (it failed, or the container is gone)."""
    for fut in c.attachers:
        if not fut.done():
            fut.set_result(None)
    c.attachers.clear()


def log_entries(c: Container, *, stdout: bool, stderr: bool, follow: bool, tail: int | None,
                since: float | None, until: float | None) -> AsyncIterator[Any]:
    if c.host_config.get("LogConfig", {}).get("Type") == "none":
        raise InvalidParameter('configured logging driver does not support reading')

    def done() -> bool:
        return c.removed or not (c.running or c.state.get("Restarting") or c.state.get("Status") == "created" and c.attachers)

    def wake() -> asyncio.Future[Any]:
        return exit_future(c)

    async def gen() -> AsyncIterator[Any]:
        async for e in logs.stream(c.log_path, tail=tail, since=since, until=until, follow=follow,
                                   done=done, wake=wake if follow else None):
            if (e.stream == 1 and stdout) or (e.stream == 2 and stderr):
                yield e

    return gen()


def resize(c: Container, h: int, w: int) -> None:
    if not c.running:
        raise Conflict(f"Container {c.id} is not running")
    if c.tty:
        monitor.write_ctl(c.bundle, 1, h, w)
