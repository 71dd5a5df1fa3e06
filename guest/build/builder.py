"""The classic builder: runs a parsed Dockerfile step by step, each step a new image over the last.

Like Docker's classic builder (moby `builder/dockerfile`): every instruction after FROM produces an image
whose parent is the previous step's image, reusable from the cache on the next build; its history entry
reads as Docker writes it (`/bin/sh -c #(nop)  ENV A=1`, `|1 V=1 /bin/sh -c make`, `COPY file:<sha> in /app `).

Unlike it, only RUN uses a container: steps that change configuration just write a new image config, and
COPY/ADD/WORKDIR write files into a scratch overlay of the parent image whose upper dir becomes the layer.
This module runs the stages (FROM, ONBUILD triggers, the step cache); the instructions' executors are in
config_steps.py (config only), file_steps.py (WORKDIR, COPY, ADD) and run_step.py (RUN, in a real container).
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from skiffbox.guest.build import config_steps, file_steps, run_step, values
from skiffbox.guest.build.buildargs import BuildArgs
from skiffbox.guest.build.cache import BuildCache, CacheSources
from skiffbox.guest.build.context import BuildContext
from skiffbox.guest.build.dockerfile import DockerfileError, parse
from skiffbox.guest.build.expand import ExpansionError, Lexer
from skiffbox.guest.build.instructions import Instruction, Plan, Stage, load, to_instruction
from skiffbox.guest.build.output import Output
from skiffbox.guest.build.state import DEFAULT_PATH, BuildError, BuildOptions, StageState, scratch_config
from skiffbox.guest.contracts import ContainersForBuild, ImagesForBuild
from skiffbox.guest.errors import EngineError, NotFound
from skiffbox.guest.images.image import Image
from skiffbox.guest.util.timefmt import now_rfc3339

log = logging.getLogger("skiffd.build")

_BUILDKIT_ONLY = {"copy": ("parents", "exclude"), "add": ("keep-git-dir", "checksum", "exclude", "unpack", "parents"),
                  "run": ("mount", "security")}

Step = Callable[["Builder", StageState, Instruction], Awaitable[None]]
_STEPS: dict[str, Step] = {**config_steps.STEPS, **file_steps.STEPS, "run": run_step.run}


class Builder:
    def __init__(self, images: ImagesForBuild, containers: ContainersForBuild, ctx: BuildContext,
                 opts: BuildOptions, out: Output, tmp: Path, cache: BuildCache, plan: Plan | None = None) -> None:
        self.images = images
        self.containers = containers
        self.ctx = ctx
        self.opts = opts
        self.out = out
        self.tmp = tmp
        self.cache = cache
        self.plan = plan or load(ctx.dockerfile)
        self.lexer = Lexer(self.plan.escape)
        self.step = 0
        self.total = 0
        self.args = BuildArgs(opts.buildargs)
        self.stage_images: dict[int, Image | None] = {}
        self.containers_left: list[str] = []  # RUN containers kept after a failure (removed with forcerm)
        self.sources = self._cache_sources(opts.cache_from) if opts.cache_from else None
        self._tmp_n = 0

    def tmp_path(self, prefix: str) -> Path:
        """A fresh path in the build's scratch space (removed with it when the build ends)."""
        self._tmp_n += 1
        return self.tmp / f"{prefix}{self._tmp_n}"

    def env_for(self, st: StageState) -> dict[str, str]:
        """The variables a word of this stage's instructions expands with (build args, then ENV)."""
        return self.args.for_expansion(st.args, st.cfg.get("Env"))

    def expand(self, word: str, env: dict[str, str]) -> str:
        try:
            return self.lexer.process_word(word, env)
        except ExpansionError as e:
            raise BuildError(str(e)) from None

    def expand_words(self, word: str, env: dict[str, str]) -> list[str]:
        try:
            return self.lexer.process_words(word, env)
        except ExpansionError as e:
            raise BuildError(str(e)) from None

    def _print_step(self, text: str) -> None:
        self.step += 1
        self.out.stream(f"Step {self.step}/{self.total} : {text}")
        self.out.stream("\n")

    # -- the build -----------------------------------------------------------------------------

    async def run(self) -> Image:
        plan = self.plan
        stages = plan.stages
        if self.opts.target:
            idx = plan.stage_index(self.opts.target)
            if idx is None or not plan.stages[idx].name:
                raise BuildError(f"failed to reach build target {self.opts.target} in Dockerfile")
            stages = stages[: idx + 1]
        if self.opts.labels:
            stages[-1].instructions.append(self._label_instruction(self.opts.labels))
        self.total = len(plan.meta_args) + sum(1 + len(s.instructions) for s in stages)

        global_args: dict[str, str | None] = {}
        for ins in plan.meta_args:
            self._print_step(ins.text)
            env = self.args.allowed(global_args)
            for key, value in ins.kv:
                key = self.expand(key, env)
                val = self.expand(value, env) if value is not None else None
                global_args[key] = val
                self.args.meta[key] = val
                self.args.referenced.add(key)

        final: StageState | None = None
        for stage in stages:
            st = await self._from(stage)
            for ins in stage.instructions:
                self._print_step(ins.text)
                await self.dispatch(st, ins)
                self.out.stream(f" ---> {st.image_id[7:19]}\n")
            if st.image is not None:
                self.out.aux({"ID": st.image.id})
            self.stage_images[stage.index] = st.image
            self.args.referenced.update(st.args)
            final = st
        assert final is not None
        if final.image is None:
            raise BuildError("No image was generated. Is your Dockerfile empty?")
        left = self.args.unused()
        if left:
            self.out.stream(f"[Warning] One or more build-args {values.go_list(left)} were not consumed\n")
        return final.image

    def _label_instruction(self, labels: dict[str, str]) -> Instruction:
        # As moby's NodeFromLabels: single-quoted values so they are not expanded.
        keys = sorted(labels)
        text = "LABEL " + " ".join(f"{json.dumps(k)}='{labels[k]}'" for k in keys)
        node = parse(text).nodes[0]
        ins = to_instruction(node)
        ins.kv = [(json.dumps(k), f"'{labels[k]}'") for k in keys]
        return ins

    # -- FROM and ONBUILD ----------------------------------------------------------------------

    async def _from(self, stage: Stage) -> StageState:
        self._print_step(stage.node.original)
        env = self.args.allowed(self.args.meta)
        base = self.expand(stage.base, env)
        if not base:
            raise BuildError(f"base name ({stage.base}) should not be blank")
        platform = self.expand(stage.platform, env) if stage.platform else self.opts.platform
        st = StageState(stage)
        prior = self.plan.stage_index(base)
        if base.lower() == "scratch":
            st.meta = {"config": scratch_config()}
        elif prior is not None and prior < stage.index and base.lower() == (self.plan.stages[prior].name or "\0"):
            img = self.stage_images.get(prior)
            if img is None:
                st.meta = {"config": scratch_config()}
            else:
                self._adopt(st, img)
        else:
            self._adopt(st, await self.image(base, platform, pull=self.opts.pull))
        self.out.stream(f" ---> {st.image_id[7:19]}\n")
        await self._onbuild(st)
        return st

    async def image(self, ref: str, platform: str, pull: bool) -> Image:
        """An image by reference, pulled when missing (or always with `pull`)."""
        if not pull:
            try:
                return await self.images.resolve(ref)
            except NotFound:
                pass
        auth = self._auth_for(ref)
        return await self.images.pull(ref, auth=auth, platform=platform or None, progress=self.out.raw)

    def _auth_for(self, ref: str) -> dict[str, Any] | None:
        if not self.opts.auth_configs:
            return None
        from skiffbox.guest.images.reference import parse_normalized

        try:
            domain = parse_normalized(ref).domain
        except EngineError:
            return None
        keys = [domain, f"https://{domain}", f"http://{domain}"]
        if domain in ("docker.io", "registry-1.docker.io", "index.docker.io"):
            keys += ["https://index.docker.io/v1/", "index.docker.io", "docker.io"]
        for k in keys:
            a = self.opts.auth_configs.get(k) or self.opts.auth_configs.get(k.rstrip("/"))
            if a:
                return a
        return None

    def _adopt(self, st: StageState, img: Image) -> None:
        """A stage's base image: like any step's image, and a PATH when its config has no Env."""
        self._adopt_keep(st, img)
        if not st.cfg.get("Env"):
            st.cfg["Env"] = [DEFAULT_PATH]

    def _adopt_keep(self, st: StageState, img: Image) -> None:
        st.image = img
        st.meta = {k: copy.deepcopy(v) for k, v in (img.config or {}).items() if k not in ("rootfs", "history")}

    async def _onbuild(self, st: StageState) -> None:
        triggers = list(st.cfg.get("OnBuild") or [])
        if not triggers:
            return
        self.out.stream(f"# Executing {len(triggers)} build trigger{'s' if len(triggers) > 1 else ''}\n")
        st.cfg["OnBuild"] = []
        for text in triggers:
            try:
                nodes = parse(text).nodes
                instructions = [to_instruction(n) for n in nodes]
            except DockerfileError as e:
                raise BuildError(e.detail) from None
            for ins in instructions:
                if ins.cmd == "onbuild":
                    raise BuildError("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
                if ins.cmd in ("maintainer", "from"):
                    raise BuildError(f"{ins.cmd.upper()} isn't allowed as an ONBUILD trigger")
                await self.dispatch(st, ins)

    # -- steps and the step cache --------------------------------------------------------------

    async def dispatch(self, st: StageState, ins: Instruction) -> None:
        for flag in _BUILDKIT_ONLY.get(ins.cmd, ()):
            if flag in ins.flags:
                raise BuildError(f"the --{flag} option requires BuildKit. Refer to https://docs.docker.com/go/buildkit/ "
                                 "to learn how to build images with BuildKit enabled")
        await _STEPS[ins.cmd](self, st, ins)

    async def commit_config(self, st: StageState, comment: str) -> None:
        """A step that only changes the image config: a new image with no new layer."""
        await self.commit(st, st.nop(comment), None)

    async def commit(self, st: StageState, created_by: str, diff: Path | None, probe: bool = True) -> None:
        """Make the step's image (or take it from the cache). The cache key is the parent image and the
        step's history line, which names everything the step depends on (COPY's content checksum,
        RUN's build args)."""
        parent = st.image_id or "scratch"
        if probe and await self.probe(st, created_by):
            return
        meta = dict(st.meta)
        meta["created"] = now_rfc3339()
        history = {"created": meta["created"], "created_by": created_by}
        if st.meta.get("author"):
            history["author"] = st.meta["author"]
        img = await self.images.create_from_diff(diff, st.image, meta, history, [])
        if diff is not None:
            diff.unlink(missing_ok=True)
        self.cache.put(parent, created_by, img.id)
        self._adopt_keep(st, img)

    async def probe(self, st: StageState, created_by: str) -> bool:
        """Whether the step's image is in the cache (then it is the stage's image now)."""
        if self.opts.nocache:
            return False
        hit = self.cache.get(st.image_id or "scratch", created_by, self._image_exists)
        img: Image | None = None
        if hit is not None and (self.sources is None or self.sources.accepts(hit)):
            try:
                img = await self.images.resolve(hit)
            except NotFound:
                img = None
        if img is None and self.sources is not None:
            img = await self._from_sources(st, created_by, self.sources)
        if img is None:
            return False
        self.out.stream(" ---> Using cache\n")
        self._adopt_keep(st, img)
        return True

    async def _from_sources(self, st: StageState, created_by: str, sources: CacheSources) -> Image | None:
        m = sources.match(st.image, created_by)
        if m is None:
            return None
        if m.image is not None:
            return m.image
        img = await self.images.create_from_diff(None, st.image, dict(st.meta, created=m.entry.get("created")),
                                                 m.entry, [], layer=m.layer)
        self.cache.put(st.image_id or "scratch", created_by, img.id)
        sources.ancestry.add(img.id)  # built from a source: a later hit on it counts
        return img

    def _cache_sources(self, refs: list[str]) -> CacheSources:
        """The `--cache-from` images (names that are not images are skipped, as dockerd does) and their ancestors."""
        sources: list[Image] = []
        ancestry: set[str] = set()
        for ref in refs:
            try:
                img: Image | None = self.images.get(ref)
            except NotFound:
                continue
            assert img is not None
            sources.append(img)
            while img is not None and img.id not in ancestry:
                ancestry.add(img.id)
                try:
                    img = self.images.get(img.parent) if img.parent else None
                except NotFound:
                    img = None
        return CacheSources(sources, ancestry)

    def _image_exists(self, iid: str) -> bool:
        try:
            self.images.get(iid)
            return True
        except NotFound:
            return False

    async def cleanup_failed(self) -> None:
        """After a failure: remove the RUN containers Docker would remove (with forcerm)."""
        if self.opts.forcerm:
            for cid in self.containers_left:
                await run_step.remove_container(self, cid, announce=False)
            self.containers_left.clear()
