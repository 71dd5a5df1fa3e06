"""Builds in the daemon: their scratch space, the shared step cache, and the run of one build.

Each build gets `<data-root>/build/tmp/<id>/` (the extracted context, scratch overlays, diff tars),
removed when the build ends however it ends. Anything a killed daemon left there (mounts included) is
cleaned when the daemon starts.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from skiffbox.guest.build.builder import Builder
from skiffbox.guest.build.cache import BuildCache
from skiffbox.guest.build.context import BuildContext, receive
from skiffbox.guest.build.dockerfile import DockerfileError
from skiffbox.guest.build.instructions import Plan, load
from skiffbox.guest.build.output import Output
from skiffbox.guest.build.state import BuildError, BuildOptions
from skiffbox.guest.contracts import ContainersForBuild, ImagesForBuild
from skiffbox.guest.errors import EngineError, InvalidParameter

log = logging.getLogger("skiffd.build")


def _unmount_below(path: Path) -> None:
    from skiffbox.guest.containers import rootfs

    prefix = str(path) + "/"
    try:
        with open("/proc/self/mountinfo") as f:
            points = [line.split(" ", 5)[4] for line in f]
    except OSError:
        return
    for p in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        try:
            rootfs.umount(p, detach=True)
        except OSError as e:
            log.warning("cannot unmount leftover build mount %s: %s", p, e)


class BuildManager:
    def __init__(self, data_root: Path, images: ImagesForBuild, containers: ContainersForBuild) -> None:
        self.images = images
        self.containers = containers
        self.root = data_root / "build"
        self.tmp_root = self.root / "tmp"
        self.cache = BuildCache(self.root / "cache.json")
        self.tmp_root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        _unmount_below(self.tmp_root)
        for p in self.tmp_root.iterdir():
            shutil.rmtree(p, ignore_errors=True)
        self.running: dict[str, asyncio.Task[Any]] = {}

    async def prepare(self, body: AsyncIterator[bytes], opts: BuildOptions) -> tuple[BuildContext, Plan, Path]:
        """Receive the context and parse the Dockerfile: errors here are plain HTTP errors, as in Docker."""
        tmp = self.tmp_root / secrets.token_hex(8)
        try:
            ctx = await receive(body, tmp / "context", opts.dockerfile)
            try:
                plan = load(ctx.dockerfile)
            except DockerfileError as e:
                raise InvalidParameter(str(e)) from None
            if not ctx.dockerfile.strip():
                raise InvalidParameter(f"the Dockerfile ({opts.dockerfile}) cannot be empty")
            if opts.target:
                idx = plan.stage_index(opts.target)
                if idx is None or not plan.stages[idx].name:
                    raise InvalidParameter(f"failed to reach build target {opts.target} in Dockerfile")
        except BaseException:
            await asyncio.to_thread(self._remove_tmp, tmp)
            raise
        return ctx, plan, tmp

    def _remove_tmp(self, tmp: Path) -> None:
        _unmount_below(tmp)
        shutil.rmtree(tmp, ignore_errors=True)

    def run(self, ctx: BuildContext, plan: Plan, tmp: Path, opts: BuildOptions) -> AsyncIterator[bytes]:
        """Start the build; the returned iterator yields its JSON stream and ends with it."""
        out = Output(opts.quiet)
        builder = Builder(self.images, self.containers, ctx, opts, out, tmp, self.cache, plan)
        task = asyncio.create_task(self._build(builder, out, tmp))
        bid = tmp.name
        self.running[bid] = task
        task.add_done_callback(lambda _t: self.running.pop(bid, None))

        async def stream() -> AsyncIterator[bytes]:
            ended = False
            try:
                while True:
                    item = await out.queue.get()
                    if item is None:
                        ended = True
                        return
                    yield item
            finally:
                if not ended and not task.done():  # the client went away: stop the build
                    task.cancel()
                    try:
                        await task
                    except BaseException:
                        pass

        return stream()

    async def _build(self, b: Builder, out: Output, tmp: Path) -> None:
        try:
            img = await b.run()
            short = img.id[7:19]
            tagged = []
            for t in b.opts.tags:
                tagged.append(await self._tag(img.id, t))
            if b.opts.quiet:
                out.result(f"{img.id}\n")
            else:
                out.stream(f"Successfully built {short}\n")
                for t in tagged:
                    out.stream(f"Successfully tagged {t}\n")
        except asyncio.CancelledError:
            await b.cleanup_failed()
            raise
        except BuildError as e:
            await b.cleanup_failed()
            out.error(e.message, e.code)
        except EngineError as e:
            await b.cleanup_failed()
            out.error(e.message)
        except Exception as e:  # a bug: keep the traceback, tell the client
            log.exception("build failed")
            await b.cleanup_failed()
            out.error(f"{type(e).__name__}: {e}")
        finally:
            out.close()
            try:
                await asyncio.shield(asyncio.to_thread(self._remove_tmp, tmp))
            except asyncio.CancelledError:
                self._remove_tmp(tmp)  # cancelled again while cleaning: finish here, blocking
                raise

    async def _tag(self, image_id: str, ref: str) -> str:
        from skiffbox.guest.images.reference import parse_normalized

        await self.images.tag(image_id, ref, None)
        return parse_normalized(ref).tag_or_latest().familiar()

    def prune(self) -> dict[str, Any]:
        self.cache.prune()
        return {"CachesDeleted": [], "SpaceReclaimed": 0}
