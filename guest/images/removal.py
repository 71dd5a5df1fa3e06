"""Taking images away: `docker rmi` (untag, delete, the parent chain after it), `docker image prune`, and the
garbage collection of layers no image needs any more.

moby's rules (daemon/images/image_delete.go): a reference is untagged first; the image itself goes when no
reference is left, unless a conflict stops it. Hard conflicts (child images, a running container) stop even
`--force`; soft ones (other references, a stopped container) only without it. An image forced away from a
stopped container is hidden, not removed: its layers stay until the container is gone.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from skiffbox.guest.errors import Conflict, InvalidParameter, NotFound
from skiffbox.guest.images.catalog import ImageCatalog
from skiffbox.guest.images.events import ImageEvents
from skiffbox.guest.images.image import familiar, is_tag_ref, parse_created
from skiffbox.guest.images.reference import ReferenceError_, is_full_id, parse_normalized
from skiffbox.guest.util.filters import bool_filter, match_labels
from skiffbox.guest.util.timefmt import parse_time


class ImageRemoval:
    def __init__(self, catalog: ImageCatalog, events: ImageEvents,
                 image_users: Callable[[str], list[tuple[str, bool]]], busy: Callable[[], set[str]]) -> None:
        """`image_users(image_id)` -> [(container id, running)]; `busy()`: the chain IDs running pulls and
        loads hold (layers gc must keep although no image uses them yet)."""
        self.catalog = catalog
        self.store = catalog.store
        self.events = events
        self.image_users = image_users
        self.busy = busy

    def users(self, iid: str) -> list[tuple[str, bool]]:
        return [(str(cid), bool(running)) for cid, running in self.image_users(iid)]

    async def purge_hidden(self) -> None:
        """Forget deleted images once no container uses them any more, then free their layers."""
        gone = [iid for iid in self.store.hidden if not self.users(iid)]
        for iid in gone:
            self.store.remove_image(iid)
        if gone:
            await self.gc()

    def _conflict(self, iid: str, soft: bool, active_ref: bool = True) -> tuple[str, bool] | None:
        """checkImageDeleteConflict: (message, used-by-a-container) or None.

        Hard conflicts (children, a running container) always count; `soft` adds the ones `force`
        overrides (other references with `active_ref`, stopped containers)."""
        short = iid[7:19]
        if self.store.children(iid):
            return f"conflict: unable to delete {short} (cannot be forced) - image has dependent child images", False
        users = self.users(iid)
        running = [c for c, r in users if r]
        if running:
            return (f"conflict: unable to delete {short} (cannot be forced) - image is being used by running "
                    f"{_who(running[0])}"), True
        if not soft:
            return None
        if active_ref and self.store.refs_for(iid):
            return f"conflict: unable to delete {short} (must be forced) - image is referenced in multiple repositories", False
        stopped = [c for c, r in users if not r]
        if stopped:
            return (f"conflict: unable to delete {short} (must be forced) - image is being used by stopped "
                    f"{_who(stopped[0])}"), True
        return None

    def _untag(self, ref: str, iid: str, records: list[dict[str, str]]) -> None:
        self.store.remove_ref(ref)
        records.append({"Untagged": familiar(ref)})
        self.events.publish("untag", iid, iid)

    async def delete(self, ref_or_id: str, force: bool = False, noprune: bool = False) -> list[dict[str, str]]:
        rec = self.catalog.lookup(ref_or_id)
        iid = rec.id
        records: list[dict[str, str]] = []
        refs = self.store.refs_for(iid)
        by_id = self._is_id_ref(ref_or_id, iid)
        removed_ref = False
        if not by_id:
            ref = str(parse_normalized(ref_or_id).tag_or_latest())
            single = _single_repo(refs)
            if not force and single:
                users = self.users(iid)
                if users:
                    raise Conflict(f"conflict: unable to remove repository reference \"{ref_or_id}\" (must force) - "
                                   f"{_who(users[0][0])} is using its referenced image {iid[7:19]}")
            self._untag(ref, iid, records)
            refs = self.store.refs_for(iid)
            if is_tag_ref(ref):
                name = ref.rsplit(":", 1)[0]
                if not any(is_tag_ref(r) and r.rsplit(":", 1)[0] == name for r in refs):
                    for r in [r for r in refs if not is_tag_ref(r) and r.split("@", 1)[0] == name]:
                        self._untag(r, iid, records)
                refs = self.store.refs_for(iid)
            if refs:
                return records
            removed_ref = True
        else:
            if _single_repo(refs):
                c = self._conflict(iid, soft=not force, active_ref=False)
                if c is not None:
                    raise Conflict(c[0])
                for r in refs:
                    self._untag(r, iid, records)
        await self._delete_image(iid, records, force, not noprune, quiet=removed_ref)
        return records

    def _is_id_ref(self, s: str, iid: str) -> bool:
        if is_full_id(s):
            return True
        try:
            ref = parse_normalized(s)
            if str(ref.tag_or_latest()) in self.store.refs:
                return False
        except ReferenceError_:
            pass
        p = s[7:] if s.startswith("sha256:") else s
        return iid[7:].startswith(p)

    async def _delete_image(self, iid: str, records: list[dict[str, str]], force: bool, prune: bool,
                            quiet: bool) -> None:
        """imageDeleteHelper: the image itself (its remaining references first), then, with `prune`, its
        parents that nothing else holds. `quiet`: a conflict only stops it, without an error."""
        c = self._conflict(iid, soft=not force)
        if c is not None:
            msg, used = c
            dangling = not self.store.refs_for(iid) and not self.store.children(iid)
            if quiet and (not dangling or used):
                return
            raise Conflict(msg)
        rec = self.store.images[iid]
        parent = rec.parent
        for r in self.store.refs_for(iid):
            self._untag(r, iid, records)
        if self.users(iid):  # forced past a stopped container: its layers stay until it is gone
            self.store.hide_image(iid)
        else:
            self.store.remove_image(iid)
        self.events.publish("delete", iid, iid)
        records.append({"Deleted": iid})
        for chain, _ in await self.gc():
            records.append({"Deleted": chain})
        if prune and parent and parent in self.store.images:
            await self._delete_image(parent, records, False, True, True)

    async def gc(self) -> list[tuple[str, Path]]:
        """Drop layers and blobs no image needs (keeping what running pulls need); trash deleted off-loop."""
        for iid in [i for i in self.store.hidden if not self.users(i)]:
            self.store.remove_image(iid)
        removed = self.store.gc(busy=self.busy())
        removed.reverse()  # top layer first, as Docker lists them
        trash = [t for _, t in removed]
        if trash:
            await asyncio.to_thread(_remove_trees, trash)
        return removed

    async def prune(self, filters: dict[str, list[str]]) -> dict[str, Any]:
        for k in filters:
            if k not in ("dangling", "label", "label!", "until"):
                raise InvalidParameter(f"invalid filter '{k}'")
        dangling_only = bool_filter(filters.get("dangling"), "dangling", default=True)
        await self.gc()  # also forgets images deleted while containers used them, once they are gone
        until = None
        if filters.get("until"):
            until = parse_time(filters["until"][-1])
        layer_sizes = {c: l.size for c, l in self.store.layers.items()}
        deleted: list[dict[str, str]] = []
        candidates = []
        for rec in list(self.store.images.values()):
            refs = self.store.refs_for(rec.id)
            if dangling_only and self.store.children(rec.id):
                continue
            if not refs and self.store.children(rec.id):
                continue
            if until is not None and parse_created(rec.config.get("created")) >= until:
                continue
            labels = (rec.config.get("config") or {}).get("Labels") or {}
            if filters.get("label") and not match_labels(labels, filters["label"]):
                continue
            if filters.get("label!") and any(match_labels(labels, [l]) for l in filters["label!"]):
                continue
            candidates.append((rec.id, refs))
        for iid, refs in candidates:
            if iid not in self.store.images:
                continue
            targets: list[str]
            if refs:
                if dangling_only and any(is_tag_ref(r) for r in refs):
                    continue
                targets = refs
            else:
                targets = [iid[7:]]
            for t in targets:
                try:
                    deleted += await self.delete(t, force=False, noprune=False)
                except (Conflict, NotFound):
                    continue
        reclaimed = sum(layer_sizes.get(d["Deleted"], 0) for d in deleted if "Deleted" in d)
        self.events.pruned(reclaimed)
        return {"ImagesDeleted": deleted or None, "SpaceReclaimed": reclaimed}


def _remove_trees(paths: list[Path]) -> None:
    for p in paths:
        shutil.rmtree(p, ignore_errors=True)


def _who(container_id: str) -> str:
    return f"container {container_id[:12]}" if container_id else "a container"


def _single_repo(refs: list[str]) -> bool:
    """isSingleReference: at most one tag, and every reference in one repository."""
    names = {r.split("@", 1)[0] if not is_tag_ref(r) else r.rsplit(":", 1)[0] for r in refs}
    tags = [r for r in refs if is_tag_ref(r)]
    return len(tags) <= 1 and len(names) <= 1
