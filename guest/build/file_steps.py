"""The instructions that write files (WORKDIR, COPY, ADD): the change is made in a scratch overlay of the
stage's image and its upper dir becomes the step's layer. COPY reads the build context, an earlier stage
or an image (`--from`); ADD also fetches URLs and unpacks local archives."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from skiffbox.guest.build import copying
from skiffbox.guest.build.dockerignore import go_clean
from skiffbox.guest.build.instructions import Instruction
from skiffbox.guest.build.scratch import Scratch
from skiffbox.guest.build.state import BuildError, StageState
from skiffbox.guest.containers.rootfs import secure_join
from skiffbox.guest.images.image import Image

if TYPE_CHECKING:  # the builder imports this module for its dispatch table
    from skiffbox.guest.build.builder import Builder, Step


async def workdir(b: Builder, st: StageState, ins: Instruction) -> None:
    path = b.expand(ins.args[0], b.env_for(st))
    if not path.startswith("/"):
        path = os.path.join("/", st.cfg.get("WorkingDir") or "/", path)
    path = go_clean(path)
    st.cfg["WorkingDir"] = path
    created_by = " ".join(st.shell + ["#(nop) WORKDIR " + path])
    if await b.probe(st, created_by):
        return

    def make(rootfs: Path) -> None:
        target = secure_join(rootfs, path)
        if not os.path.isdir(target):
            copying._mkdir_all(rootfs, target, None)

    diff = await _in_scratch(b, st, make)
    await b.commit(st, created_by, diff, probe=False)


async def copy(b: Builder, st: StageState, ins: Instruction) -> None:
    await _copy(b, st, ins, "COPY")


async def add(b: Builder, st: StageState, ins: Instruction) -> None:
    await _copy(b, st, ins, "ADD")


async def _copy(b: Builder, st: StageState, ins: Instruction, what: str) -> None:
    env = b.env_for(st)
    words = [b.expand(w, env) for w in ins.args]
    srcs, dest = words[:-1], words[-1]
    chown = b.expand(str(ins.flags["chown"]), env) if ins.flags.get("chown") else ""
    chmod_s = b.expand(str(ins.flags["chmod"]), env) if ins.flags.get("chmod") else ""
    chmod = copying.parse_chmod(chmod_s) if chmod_s else None
    from_ref = str(ins.flags.get("from") or "")
    if from_ref and what == "ADD":
        raise BuildError("ADD does not support --from")
    dest = copying.normalize_dest(st.cfg.get("WorkingDir") or "/", dest)
    mounts: list[Scratch] = []
    try:
        urls = [s for s in srcs if what == "ADD" and re.match(r"^https?://", s)]
        if from_ref:
            src_root = await _source_root(b, from_ref, mounts)
            in_context = False
        else:
            src_root = b.ctx.root
            in_context = True
        local = [s for s in srcs if s not in urls]
        downloads = await _download(b, urls) if urls else []
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
        if await b.probe(st, created_by):
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
            diff = await _in_scratch(b, st, work)
        except copying.CopyError as e:
            raise BuildError(f"{what} failed: {e.message}") from None
        await b.commit(st, created_by, diff, probe=False)
    finally:
        for m in mounts:
            await asyncio.to_thread(m.close)


async def _source_root(b: Builder, ref: str, mounts: list[Scratch]) -> Path:
    """The filesystem COPY --from reads: an earlier stage (by name or number) or an image."""
    idx = b.plan.stage_index(ref)
    img: Image | None
    if idx is not None and idx in b.stage_images:
        img = b.stage_images[idx]
        if img is None:  # a stage FROM scratch with no file steps
            d = b.tmp / "empty-root"
            d.mkdir(exist_ok=True)
            return d
    elif idx is not None:
        raise BuildError(f"invalid from flag value {ref}: stage {ref} is not built yet")
    else:
        img = await b.image(ref, b.opts.platform, pull=False)
    m = _scratch(b, img)
    mounts.append(m)
    await asyncio.to_thread(m.open)
    return m.merged


async def _download(b: Builder, urls: list[str]) -> list[copying.Source]:
    import urllib.parse
    import urllib.request

    out = []
    for url in urls:
        d = b.tmp_path("download-")
        d.mkdir()
        name = os.path.basename(urllib.parse.urlparse(url).path) or "download"

        def fetch(d: Path = d, url: str = url, name: str = name) -> Path:
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


def _scratch(b: Builder, img: Image | None) -> Scratch:
    return Scratch(b.tmp_path("s"), img.layer_dirs() if img is not None else [])


async def _in_scratch(b: Builder, st: StageState, fn: Callable[[Path], None]) -> Path | None:
    """Run `fn(rootfs)` on a writable overlay of the current image; the changes, as a layer tar."""
    m = _scratch(b, st.image)

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


STEPS: dict[str, Step] = {"workdir": workdir, "copy": copy, "add": add}
