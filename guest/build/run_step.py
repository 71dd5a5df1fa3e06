"""RUN: the command runs in a real container of the engine (the containers service, through
contracts.ContainersForBuild): created from the step's image with the shell command, started, its output
streamed into the build stream, waited for; its upper dir becomes the step's layer."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skiffbox.guest.build.config_steps import cmdline
from skiffbox.guest.build.instructions import Instruction
from skiffbox.guest.build.scratch import upper_to_tar
from skiffbox.guest.build.state import BuildError, StageState
from skiffbox.guest.errors import EngineError

if TYPE_CHECKING:  # the builder imports this module for its dispatch table
    from skiffbox.guest.build.builder import Builder
    from skiffbox.guest.containers.store import Container


async def run(b: Builder, st: StageState, ins: Instruction) -> None:
    cmd = cmdline(st, ins)
    args = b.args.for_run(st.args, st.cfg.get("Env"))
    save = list(cmd)
    if args:
        shown = b.args.shown_in_history(args)
        save = [f"|{len(shown)}", *shown, *cmd]
    created_by = " ".join(save)
    if await b.probe(st, created_by):
        return
    network = str(ins.flags.get("network") or b.opts.networkmode or "default")
    hc: dict[str, Any] = {"NetworkMode": network, **b.opts.host_config}
    if b.opts.extra_hosts:
        hc["ExtraHosts"] = list(b.opts.extra_hosts)
    if b.opts.shm_size:
        hc["ShmSize"] = b.opts.shm_size
    body = {
        "Image": st.image_id,
        "Cmd": cmd,
        "Entrypoint": [""],
        "Env": list(st.cfg.get("Env") or []) + [f"{k}={v}" for k, v in args.items()],
        "User": st.cfg.get("User") or "",
        "WorkingDir": st.cfg.get("WorkingDir") or "",
        "Healthcheck": {"Test": ["NONE"]},
        "Labels": {},
        "AttachStdout": True,
        "AttachStderr": True,
        "HostConfig": hc,
    }
    if st.image is None:
        raise BuildError("RUN needs a base image: FROM scratch has no shell")
    c, _warnings = await b.containers.create(body, None)
    cid = c.id
    b.out.stream(f" ---> Running in {cid[:12]}\n")
    ok = False
    try:
        code = await _run_container(b, c)
        if code != 0:
            raise BuildError(f"The command '{' '.join(cmd)}' returned a non-zero code: {code}", code)
        diff = await asyncio.to_thread(upper_to_tar, Path(c.upper), b.tmp / f"run-{cid[:12]}.tar")
        await b.commit(st, created_by, diff, probe=False)
        ok = True
    finally:
        # As Docker: --rm (the default) removes a step's container once it succeeded, --force-rm
        # always; a failed step's container stays for inspection.
        if ok and b.opts.rm:
            await remove_container(b, cid, announce=True)
        elif not ok and (b.opts.forcerm or _cancelled()):
            await remove_container(b, cid, announce=False)
        else:
            b.containers_left.append(cid)


async def _run_container(b: Builder, c: Container) -> int:
    ctrs = b.containers
    waiter = ctrs.wait_future(c.id, "next-exit")
    try:
        await ctrs.start_container(c.id)
    except EngineError as e:
        waiter.cancel()
        raise BuildError(e.message) from None
    try:
        entries = ctrs.log_entries(c, stdout=True, stderr=True, follow=True, tail=None, since=None, until=None)
        async for entry in entries:
            text = entry.data.decode("utf-8", "replace")
            if entry.stream == 2:
                b.out.stream(f"\x1b[91m{text}\x1b[0m")
            else:
                b.out.stream(text)
        res = await waiter
    except asyncio.CancelledError:
        try:
            await ctrs.kill(c.id, "KILL")
        except EngineError:
            pass
        raise
    err = res.get("Error")
    if err and isinstance(err, dict) and err.get("Message"):
        raise BuildError(err["Message"])
    return int(res.get("StatusCode") or 0)


async def remove_container(b: Builder, cid: str, announce: bool) -> None:
    try:
        await b.containers.remove(cid, force=True, volumes=True)
    except EngineError as e:
        b.out.stream(f"Error removing intermediate container {cid[:12]}: {e.message}\n")
        return
    if announce:
        b.out.stream(f" ---> Removed intermediate container {cid[:12]}\n")


def _cancelled() -> bool:
    t = asyncio.current_task()
    return t is not None and t.cancelling() > 0
