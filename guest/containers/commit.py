"""`docker commit`: the container's upper dir becomes a new layer on top of its image."""

from __future__ import annotations

import asyncio
import copy
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skiffbox.guest.containers.merge import apply_changes
from skiffbox.guest.containers.store import now_rfc3339
from skiffbox.guest.errors import Conflict, EngineError, InvalidParameter

if TYPE_CHECKING:
    from skiffbox.guest.containers.service import ContainerService

# Container-only settings that do not belong in an image config.
_DROP = ("Hostname", "Domainname", "AttachStdin", "AttachStdout", "AttachStderr", "Tty", "OpenStdin", "StdinOnce",
         "Image", "NetworkDisabled", "MacAddress")


def _split_changes(changes: list[str]) -> list[str]:
    out = []
    for ch in changes:
        out += [line for line in ch.splitlines() if line.strip()]
    return out


def image_config(ctr_config: dict[str, Any], override: dict[str, Any] | None, changes: list[str]) -> dict[str, Any]:
    cfg = {k: copy.deepcopy(v) for k, v in ctr_config.items() if k not in _DROP}
    for k, v in (override or {}).items():
        if k in _DROP:
            continue
        if v not in (None, "", [], {}):
            cfg[k] = copy.deepcopy(v)
    return apply_changes(cfg, _split_changes(changes))


async def commit(svc: "ContainerService", ref: str, *, repo: str, tag: str, comment: str, author: str,
                 changes: list[str], pause: bool, config: dict[str, Any] | None) -> str:
    from skiffbox.guest.images.layers import write_tar

    images = svc.images
    c = svc.get(ref)
    if tag and not repo:
        raise InvalidParameter("tag is specified without repository")
    parent = await images.resolve(c.rec["Image"])
    cfg = image_config(c.config, config, changes)
    paused_here = False
    fd, tmp = tempfile.mkstemp(prefix="commit-", suffix=".tar", dir=str(svc.root))
    try:
        async with c.lock:
            if c.state.get("Status") == "removing":
                raise Conflict(f"cannot commit container {c.id}: it is being removed")
            if pause and c.running and not c.paused:
                try:
                    await svc.runtime.pause(c.id)
                    paused_here = True
                except EngineError:
                    # It exited after the record said running (its exit not recorded yet): nothing to pause.
                    st = await svc.runtime.state(c.id)
                    if st is not None and st.get("status") in ("running", "paused"):
                        raise
            try:
                with os.fdopen(fd, "wb") as f:
                    await asyncio.to_thread(write_tar, c.upper, f, convert_whiteouts=True)
            finally:
                if paused_here:
                    await svc.runtime.resume(c.id)
        history = {"created": now_rfc3339(), "created_by": " ".join([c.rec.get("Path", "")] + list(c.rec.get("Args") or []))}
        if comment:
            history["comment"] = comment
        if author:
            history["author"] = author
        image_cfg: dict[str, Any] = {"config": cfg, "container": c.id, "container_config": c.config}
        if author:
            image_cfg["author"] = author
        if comment:
            image_cfg["comment"] = comment
        tags = [f"{repo}:{tag or 'latest'}"] if repo else []
        img = await images.create_from_diff(Path(tmp), parent, image_cfg, history, tags)
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass
    svc.event(c, "commit", comment=comment or "", imageID=img.id)
    return img.id
