"""The classic builder: runs a parsed Dockerfile step by step, each step a new image over the last.

Like Docker's classic builder (moby `builder/dockerfile`): every instruction after FROM produces an image
whose parent is the previous step's image, reusable from the cache on the next build; its history entry
reads as Docker writes it (`/bin/sh -c #(nop)  ENV A=1`, `|1 V=1 /bin/sh -c make`, `COPY file:<sha> in /app `).

Unlike it, only RUN uses a container: steps that change configuration just write a new image config, and
COPY/ADD/WORKDIR write files into a scratch overlay of the parent image whose upper dir becomes the layer.
RUN runs in a real container of the engine (`engine.containers`): create from the step's image with the
shell command, start, stream its output into the build stream, wait, take its upper dir as the layer.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skiffbox.guest.build import copying, values
from skiffbox.guest.build.buildargs import BuildArgs
from skiffbox.guest.build.cache import BuildCache
from skiffbox.guest.build.context import BuildContext
from skiffbox.guest.build.dockerfile import DockerfileError, parse
from skiffbox.guest.build.instructions import Instruction, Plan, Stage, load, to_instruction
from skiffbox.guest.build.dockerignore import go_clean
from skiffbox.guest.build.expand import ExpansionError, Lexer
from skiffbox.guest.build.output import Output
from skiffbox.guest.build.scratch import Scratch, upper_to_tar
from skiffbox.guest.containers.rootfs import secure_join
from skiffbox.guest.errors import EngineError, NotFound

log = logging.getLogger("skiffd.build")

DEFAULT_SHELL = ["/bin/sh", "-c"]
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_BUILDKIT_ONLY = {"copy": ("parents", "exclude"), "add": ("keep-git-dir", "checksum", "exclude", "unpack", "parents"),
                  "run": ("mount", "security")}


class BuildError(EngineError):
    """A failed step: shown in the build stream as `errorDetail` (code = the RUN command's exit code)."""

    status = 400

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class BuildOptions:
    tags: list[str] = field(default_factory=list)
    dockerfile: str = "Dockerfile"
    buildargs: dict[str, str | None] = field(default_factory=dict)
    target: str = ""
    nocache: bool = False
    pull: bool = False
    rm: bool = True
    forcerm: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    networkmode: str = ""
    platform: str = ""
    quiet: bool = False
    auth_configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    extra_hosts: list[str] = field(default_factory=list)
    shm_size: int = 0
    host_config: dict[str, Any] = field(default_factory=dict)  # cpu/memory limits for RUN containers


def _now_rfc3339() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1e9):09d}Z"


def _scratch_config() -> dict[str, Any]:
    return {"Env": [DEFAULT_PATH], "Cmd": None, "Entrypoint": None, "WorkingDir": "", "User": "",
            "Labels": None, "OnBuild": None, "Volumes": None}


@dataclass
class StageState:
    stage: Stage
    image: Any = None  # guest.images.image.Image, None before FROM / for scratch
    meta: dict[str, Any] = field(default_factory=dict)  # the image config without rootfs/history
    args: dict[str, str | None] = field(default_factory=dict)  # ARGs declared in this stage
    cmd_set: bool = False

    @property
    def cfg(self) -> dict[str, Any]:
        return self.meta.setdefault("config", {})

    @property
    def image_id(self) -> str:
        return self.image.id if self.image is not None else ""

    @property
    def shell(self) -> list[str]:
        return list(self.cfg.get("Shell") or DEFAULT_SHELL)


class Builder:
    def __init__(self, engine: Any, ctx: BuildContext, opts: BuildOptions, out: Output, tmp: Path,
                 cache: BuildCache, plan: Plan | None = None) -> None:
        self.engine = engine
        self.images = engine.images
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
        self.stage_images: dict[int, Any] = {}
        self.containers_left: list[str] = []
        self._scratch_n = 0
        self._downloads = 0

    def _env_for_expansion(self, st: StageState) -> dict[str, str]:
        return self.args.for_expansion(st.args, st.cfg.get("Env"))

    def _expand(self, word: str, env: dict[str, str]) -> str:
        try:
            return self.lexer.process_word(word, env)
        except ExpansionError as e:
            raise BuildError(str(e)) from None

    # ------------------------------------------------------------------------------------------
    # Output
    # ------------------------------------------------------------------------------------------

    def _print_step(self, text: str) -> None:
        self.step += 1
        self.out.stream(f"Step {self.step}/{self.total} : {text}")
        self.out.stream("\n")

    # ------------------------------------------------------------------------------------------
    # The build
    # ------------------------------------------------------------------------------------------

    async def run(self) -> Any:
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
                key = self._expand(key, env)
                val = self._expand(value, env) if value is not None else None
                global_args[key] = val
                self.args.meta[key] = val
                self.args.referenced.add(key)

        final: StageState | None = None
        for stage in stages:
            st = await self._from(stage)
            for ins in stage.instructions:
                self._print_step(ins.text)
                await self._dispatch(st, ins)
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

    # ------------------------------------------------------------------------------------------
    # FROM
    # ------------------------------------------------------------------------------------------

    async def _from(self, stage: Stage) -> StageState:
        self._print_step(stage.node.original)
        env = self.args.allowed(self.args.meta)
        base = self._expand(stage.base, env)
        if not base:
            raise BuildError(f"base name ({stage.base}) should not be blank")
        platform = self._expand(stage.platform, env) if stage.platform else self.opts.platform
        st = StageState(stage)
        prior = self.plan.stage_index(base)
        if base.lower() == "scratch":
            st.meta = {"config": _scratch_config()}
        elif prior is not None and prior < stage.index and base.lower() == (self.plan.stages[prior].name or "\0"):
            img = self.stage_images.get(prior)
            if img is None:
                st.meta = {"config": _scratch_config()}
            else:
                self._adopt(st, img)
        else:
            self._adopt(st, await self._image(base, platform, pull=self.opts.pull))
        self.out.stream(f" ---> {st.image_id[7:19]}\n")
        await self._onbuild(st)
        return st

    async def _image(self, ref: str, platform: str, pull: bool) -> Any:
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

    def _adopt(self, st: StageState, img: Any) -> None:
        st.image = img
        st.meta = {k: copy.deepcopy(v) for k, v in (img.config or {}).items() if k not in ("rootfs", "history")}
        cfg = st.cfg
        if not cfg.get("Env"):
            cfg["Env"] = [DEFAULT_PATH]

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
                await self._dispatch(st, ins)

    # ------------------------------------------------------------------------------------------
    # Steps
    # ------------------------------------------------------------------------------------------

    async def _dispatch(self, st: StageState, ins: Instruction) -> None:
        for flag in _BUILDKIT_ONLY.get(ins.cmd, ()):
            if flag in ins.flags:
                raise BuildError(f"the --{flag} option requires BuildKit. Refer to https://docs.docker.com/go/buildkit/ "
                                 "to learn how to build images with BuildKit enabled")
        handler = getattr(self, f"_do_{ins.cmd}")
        await handler(st, ins)

    def _nop(self, st: StageState, comment: str) -> str:
        return " ".join(st.shell + ["#(nop) ", comment])

    async def _commit_config(self, st: StageState, comment: str) -> None:
        """A step that only changes the image config: a new image with no new layer."""
        await self._commit(st, self._nop(st, comment), None)

    async def _commit(self, st: StageState, created_by: str, diff: Path | None, probe: bool = True) -> None:
        """Make the step's image (or take it from the cache)."""
        parent = st.image_id or "scratch"
        if probe and await self._probe(st, created_by):
            return
        meta = dict(st.meta)
        meta["created"] = _now_rfc3339()
        history = {"created": meta["created"], "created_by": created_by}
        if st.meta.get("author"):
            history["author"] = st.meta["author"]
        img = await self.images.create_from_diff(diff, st.image, meta, history, [])
        if diff is not None:
            diff.unlink(missing_ok=True)
        self.cache.put(parent, created_by, img.id)
        self._adopt_keep(st, img)

    def _adopt_keep(self, st: StageState, img: Any) -> None:
        st.image = img
        st.meta = {k: copy.deepcopy(v) for k, v in (img.config or {}).items() if k not in ("rootfs", "history")}

    async def _probe(self, st: StageState, created_by: str) -> bool:
        if self.opts.nocache:
            return False
        hit = self.cache.get(st.image_id or "scratch", created_by, self._image_exists)
        if hit is None:
            return False
        try:
            img = await self.images.resolve(hit)
        except NotFound:
            return False
        self.out.stream(" ---> Using cache\n")
        self._adopt_keep(st, img)
        return True

    def _image_exists(self, iid: str) -> bool:
        try:
            self.images.get(iid)
            return True
        except NotFound:
            return False

    # -- config-only instructions ------------------------------------------------------------

    async def _do_env(self, st: StageState, ins: Instruction) -> None:
        env = self._env_for_expansion(st)
        pairs = [(self._expand(k, env), self._expand(v or "", env)) for k, v in ins.kv]
        cur = list(st.cfg.get("Env") or [])
        for k, v in pairs:
            if not k:
                raise BuildError("ENV names can not be blank")
            entry = f"{k}={v}"
            for i, e in enumerate(cur):
                if e.partition("=")[0] == k:
                    cur[i] = entry
                    break
            else:
                cur.append(entry)
        st.cfg["Env"] = cur
        await self._commit_config(st, "ENV " + " ".join(f"{k}={v}" for k, v in pairs))

    async def _do_label(self, st: StageState, ins: Instruction) -> None:
        env = self._env_for_expansion(st)
        pairs = [(self._expand(k, env), self._expand(v or "", env)) for k, v in ins.kv]
        labels = dict(st.cfg.get("Labels") or {})
        for k, v in pairs:
            if not k:
                raise BuildError("LABEL names can not be blank")
            labels[k] = v
        st.cfg["Labels"] = labels
        await self._commit_config(st, "LABEL " + " ".join(f"{k}={v}" for k, v in pairs))

    async def _do_maintainer(self, st: StageState, ins: Instruction) -> None:
        st.meta["author"] = ins.args[0]
        await self._commit_config(st, "MAINTAINER " + ins.args[0])

    async def _do_arg(self, st: StageState, ins: Instruction) -> None:
        env = self._env_for_expansion(st)
        parts = []
        for key, value in ins.kv:
            key = self._expand(key, env)
            val = self._expand(value, env) if value is not None else None
            st.args[key] = val
            self.args.referenced.add(key)
            parts.append(key if val is None else f"{key}={val}")
        await self._commit_config(st, "ARG " + " ".join(parts))

    async def _do_user(self, st: StageState, ins: Instruction) -> None:
        user = self._expand(ins.args[0], self._env_for_expansion(st))
        st.cfg["User"] = user
        await self._commit_config(st, "USER " + user)

    async def _do_expose(self, st: StageState, ins: Instruction) -> None:
        env = self._env_for_expansion(st)
        ports: list[str] = []
        for p in ins.args:
            try:
                ports += self.lexer.process_words(p, env)
            except ExpansionError as e:
                raise BuildError(str(e)) from None
        exposed = dict(st.cfg.get("ExposedPorts") or {})
        for p in ports:
            for key in values.port_specs(p):
                exposed[key] = {}
        st.cfg["ExposedPorts"] = exposed
        await self._commit_config(st, "EXPOSE " + " ".join(sorted(ports)))

    async def _do_volume(self, st: StageState, ins: Instruction) -> None:
        env = self._env_for_expansion(st)
        vols = dict(st.cfg.get("Volumes") or {})
        names = []
        for v in ins.args:
            v = self._expand(v, env).strip()
            if not v:
                raise BuildError("VOLUME specified can not be an empty string")
            vols[v] = {}
            names.append(v)
        st.cfg["Volumes"] = vols
        await self._commit_config(st, "VOLUME " + values.go_list(names))

    async def _do_stopsignal(self, st: StageState, ins: Instruction) -> None:
        sig = self._expand(ins.args[0], self._env_for_expansion(st))
        if not values.valid_signal(sig):
            raise BuildError(f"Invalid signal: {sig}")
        st.cfg["StopSignal"] = sig
        await self._commit_config(st, "STOPSIGNAL " + sig)

    def _cmdline(self, st: StageState, ins: Instruction) -> list[str]:
        if ins.json:
            return list(ins.args)
        return st.shell + [ins.args[0] if ins.args else ""]

    async def _do_cmd(self, st: StageState, ins: Instruction) -> None:
        cmd = self._cmdline(st, ins)
        st.cfg["Cmd"] = cmd
        st.cmd_set = True
        await self._commit_config(st, "CMD " + values.go_quote_list(cmd))

    async def _do_entrypoint(self, st: StageState, ins: Instruction) -> None:
        ep = self._cmdline(st, ins)
        st.cfg["Entrypoint"] = ep
        if not st.cmd_set:
            st.cfg["Cmd"] = None
        await self._commit_config(st, "ENTRYPOINT " + values.go_quote_list(ep))

    async def _do_shell(self, st: StageState, ins: Instruction) -> None:
        st.cfg["Shell"] = list(ins.args)
        await self._commit_config(st, "SHELL " + values.go_list(ins.args))

    async def _do_healthcheck(self, st: StageState, ins: Instruction) -> None:
        hc = dict(ins.health or {})
        old = (st.cfg.get("Healthcheck") or {}).get("Test") or []
        if old and old[0] != "NONE":
            self.out.stream(f"Note: overriding previous HEALTHCHECK: {values.go_list(old)}\n")
        st.cfg["Healthcheck"] = hc
        await self._commit_config(st, "HEALTHCHECK " + values.health_text(hc))

    async def _do_onbuild(self, st: StageState, ins: Instruction) -> None:
        trigger = ins.trigger
        st.cfg["OnBuild"] = list(st.cfg.get("OnBuild") or []) + [trigger]
        await self._commit_config(st, "ONBUILD " + trigger)

    # -- filesystem instructions ---------------------------------------------------------------

    async def _do_workdir(self, st: StageState, ins: Instruction) -> None:
        path = self._expand(ins.args[0], self._env_for_expansion(st))
        if not path.startswith("/"):
            path = os.path.join("/", st.cfg.get("WorkingDir") or "/", path)
        path = go_clean(path)
        st.cfg["WorkingDir"] = path
        created_by = " ".join(st.shell + ["#(nop) WORKDIR " + path])
        if await self._probe(st, created_by):
            return

        def make(rootfs: Path) -> None:
            target = secure_join(rootfs, path)
            if not os.path.isdir(target):
                copying._mkdir_all(rootfs, target, None)

        diff = await self._in_scratch(st, make)
        await self._commit(st, created_by, diff, probe=False)

    async def _do_copy(self, st: StageState, ins: Instruction) -> None:
        await self._copy(st, ins, "COPY")

    async def _do_add(self, st: StageState, ins: Instruction) -> None:
        await self._copy(st, ins, "ADD")

    async def _copy(self, st: StageState, ins: Instruction, what: str) -> None:
        env = self._env_for_expansion(st)
        words = [self._expand(w, env) for w in ins.args]
        srcs, dest = words[:-1], words[-1]
        chown = self._expand(str(ins.flags["chown"]), env) if ins.flags.get("chown") else ""
        chmod_s = self._expand(str(ins.flags["chmod"]), env) if ins.flags.get("chmod") else ""
        chmod = copying.parse_chmod(chmod_s) if chmod_s else None
        from_ref = str(ins.flags.get("from") or "")
        if from_ref and what == "ADD":
            raise BuildError("ADD does not support --from")
        dest = copying.normalize_dest(st.cfg.get("WorkingDir") or "/", dest)
        mounts: list[Scratch] = []
        try:
            urls = [s for s in srcs if what == "ADD" and re.match(r"^https?://", s)]
            if from_ref:
                src_root = await self._source_root(from_ref, mounts)
                in_context = False
            else:
                src_root = self.ctx.root
                in_context = True
            local = [s for s in srcs if s not in urls]
            downloads = await self._download(urls) if urls else []
            try:
                sources = copying.resolve_sources(src_root, local, in_context=in_context) if local else []
            except copying.CopyError as e:
                raise BuildError(f"{what} failed: {e.message}") from None
            sources += downloads
            checksum = await asyncio.to_thread(copying.source_checksum, sources, bool(from_ref))
            flags = ""
            if chown:
                flags += f"--chown={chown} "
            if chmod_s:
                flags += f"--chmod={chmod_s} "
            created_by = " ".join(st.shell + [f"#(nop) {what} {flags}{checksum} in {dest} "])
            if await self._probe(st, created_by):
                return

            def work(rootfs: Path) -> None:
                owner: tuple[int, int] | None = (0, 0)
                if chown:
                    owner = copying.parse_chown(rootfs, chown)
                elif from_ref:
                    owner = None  # COPY --from keeps owners
                copying.copy_into(rootfs, dest, sources, owner=owner, chmod=chmod,
                                  decompress=(what == "ADD"), what=what)

            try:
                diff = await self._in_scratch(st, work)
            except copying.CopyError as e:
                raise BuildError(f"{what} failed: {e.message}") from None
            await self._commit(st, created_by, diff, probe=False)
        finally:
            for m in mounts:
                await asyncio.to_thread(m.close)

    async def _source_root(self, ref: str, mounts: list["Scratch"]) -> Path:
        """The filesystem COPY --from reads: an earlier stage (by name or number) or an image."""
        idx = self.plan.stage_index(ref)
        img = None
        if idx is not None and idx in self.stage_images:
            img = self.stage_images[idx]
            if img is None:
                return self._empty_dir()
        elif idx is not None:
            raise BuildError(f"invalid from flag value {ref}: stage {ref} is not built yet")
        else:
            img = await self._image(ref, self.opts.platform, pull=False)
        m = self._scratch(img)
        mounts.append(m)
        await asyncio.to_thread(m.open)
        return m.merged

    def _empty_dir(self) -> Path:
        d = self.tmp / "empty-root"
        d.mkdir(exist_ok=True)
        return d

    async def _download(self, urls: list[str]) -> list[copying.Source]:
        import urllib.parse
        import urllib.request

        out = []
        for url in urls:
            self._downloads += 1
            d = self.tmp / f"download-{self._downloads}"
            d.mkdir()
            name = os.path.basename(urllib.parse.urlparse(url).path) or "download"

            def fetch() -> Path:
                p = d / name
                with urllib.request.urlopen(url, timeout=60) as r, open(p, "wb") as f:  # noqa: S310
                    shutil.copyfileobj(r, f)
                    lm = r.headers.get("Last-Modified")
                os.chmod(p, 0o600)
                if lm:
                    from email.utils import parsedate_to_datetime

                    t = parsedate_to_datetime(lm).timestamp()
                    os.utime(p, (t, t))
                return p

            try:
                p = await asyncio.to_thread(fetch)
            except OSError as e:
                raise BuildError(f"ADD failed: {url}: {e}") from None
            out.append(copying.Source(p, name, name, remote=True))
        return out

    def _scratch(self, img: Any) -> "Scratch":
        self._scratch_n += 1
        return Scratch(self.tmp / f"s{self._scratch_n}", img.layer_dirs() if img is not None else [])

    async def _in_scratch(self, st: StageState, fn: Callable[[Path], None]) -> Path | None:
        """Run `fn(rootfs)` on a writable overlay of the current image; the changes, as a layer tar."""
        m = self._scratch(st.image)

        def run() -> Path | None:
            try:
                m.open()
                fn(m.merged)
                m.unmount()
                return m.diff_tar()
            finally:
                m.unmount()

        try:
            return await asyncio.to_thread(run)
        finally:
            m.release_upper()

    # -- RUN -----------------------------------------------------------------------------------

    async def _do_run(self, st: StageState, ins: Instruction) -> None:
        cmd = self._cmdline(st, ins)
        args = self.args.for_run(st.args, st.cfg.get("Env"))
        save = list(cmd)
        if args:
            shown = self.args.shown_in_history(args)
            save = [f"|{len(shown)}", *shown, *cmd]
        created_by = " ".join(save)
        if await self._probe(st, created_by):
            return
        ctrs = self.engine.containers
        if ctrs is None:
            raise BuildError("RUN needs the container engine, which is not available")
        network = str(ins.flags.get("network") or self.opts.networkmode or "default")
        hc: dict[str, Any] = {"NetworkMode": network, **self.opts.host_config}
        if self.opts.extra_hosts:
            hc["ExtraHosts"] = list(self.opts.extra_hosts)
        if self.opts.shm_size:
            hc["ShmSize"] = self.opts.shm_size
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
        c, _warnings = await ctrs.create(body, None)
        cid = c.id
        self.out.stream(f" ---> Running in {cid[:12]}\n")
        ok = False
        try:
            code = await self._run_container(ctrs, c)
            if code != 0:
                raise BuildError(f"The command '{' '.join(cmd)}' returned a non-zero code: {code}", code)
            diff = await asyncio.to_thread(upper_to_tar, Path(c.upper), self.tmp / f"run-{cid[:12]}.tar")
            await self._commit(st, created_by, diff, probe=False)
            ok = True
        finally:
            # As Docker: --rm (the default) removes a step's container once it succeeded, --force-rm
            # always; a failed step's container stays for inspection.
            if ok and self.opts.rm:
                await self._remove_container(ctrs, cid, announce=True)
            elif not ok and (self.opts.forcerm or _cancelled()):
                await self._remove_container(ctrs, cid, announce=False)
            else:
                self.containers_left.append(cid)

    async def _run_container(self, ctrs: Any, c: Any) -> int:
        waiter = ctrs.wait_future(c.id, "next-exit")
        try:
            await ctrs.start_container(c.id)
        except EngineError as e:
            waiter.cancel()
            raise BuildError(e.message) from None
        try:
            entries = ctrs.log_entries(c, stdout=True, stderr=True, follow=True, tail=None, since=None, until=None)
            async for e in entries:
                text = e.data.decode("utf-8", "replace")
                if e.stream == 2:
                    self.out.stream(f"\x1b[91m{text}\x1b[0m")
                else:
                    self.out.stream(text)
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

    async def _remove_container(self, ctrs: Any, cid: str, announce: bool) -> None:
        try:
            await ctrs.remove(cid, force=True, volumes=True)
        except EngineError as e:
            self.out.stream(f"Error removing intermediate container {cid[:12]}: {e.message}\n")
            return
        if announce:
            self.out.stream(f" ---> Removed intermediate container {cid[:12]}\n")

    async def cleanup_failed(self) -> None:
        """After a failure: remove the RUN containers Docker would remove (with forcerm)."""
        if self.opts.forcerm:
            for cid in self.containers_left:
                await self._remove_container(self.engine.containers, cid, announce=False)
            self.containers_left.clear()


def _cancelled() -> bool:
    t = asyncio.current_task()
    return t is not None and t.cancelling() > 0
