"""The image service: `engine.images`.

Interface the rest of the engine relies on (keep it stable):

    svc = engine.images
    img = await svc.resolve(ref_or_id)      # name[:tag], name@digest, full or short ID, like docker;
                                            # raises errors.no_such_image(ref)
    img.id              "sha256:<64 hex>"
    img.config          the image config dict: config.Cmd/Entrypoint/Env/WorkingDir/User/ExposedPorts/
                        Volumes/Labels/StopSignal/Healthcheck/OnBuild, rootfs.diff_ids, history,
                        architecture, os
    img.repo_tags, img.repo_digests, img.created (Unix seconds), img.parent
    img.layer_dirs()    unpacked layer dirs for overlay lowerdir, LOWEST FIRST (short paths; may be empty)

    img = await svc.pull(ref, auth=None, platform=None, progress=None)
                        auth: X-Registry-Auth dict ({"username","password",...}) or None;
                        platform: "linux/arm64" or None; progress: callable(dict) taking Docker's JSON
                        progress messages. Raises EngineError subclasses (404 not found, 400 bad input…).
    img = await svc.create_from_diff(diff_tar_path, parent, config, history_entry, tags)
                        diff_tar_path: an uncompressed layer tar in Docker's format (`.wh.` whiteouts, as
                        layers.write_tar makes from an overlay upper dir) or None for no new layer
                        (history_entry gets empty_layer=true); parent: Image or None; config: the image
                        config without rootfs/history (keys config, author, comment, created,
                        architecture, os, …); tags: references to point at the new image; layer= the
                        diff ID of a layer already stored over the parent's (instead of a tar).
    svc.get(ref_or_id) -> Image             synchronous resolve (for code that is not async)
    await svc.tag(source, repo, tag)        tag (tag None: taken from `repo`, else `latest`)
    svc.count() -> int;  await svc.disk_usage() -> {"LayersSize": int, "Images": [...]}
    guest.images.layers.write_tar(upper_dir, out, convert_whiteouts=True, exclude=None)
                        an overlay upper dir as a Docker layer tar (0:0 char devices and opaque dirs
                        become `.wh.` entries) for commit/diff/export

Deleting an image asks `image_users(image_id) -> list[(container_id, running)]` (given by the engine).
Events published: image pull, tag, untag, delete, push, save, load, import, prune.

The service ties the pieces together; each concept has its module: catalog.py (finding images, snapshots),
queries.py (list, inspect, history, disk usage), removal.py (rmi, prune, layer gc), events.py, pull.py and
push.py (registry transfers, over registry.py), archive.py and importer.py (save, load, import).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from skiffbox.guest.config import DaemonConfig
from skiffbox.guest.contracts import EventSink
from skiffbox.guest.errors import InvalidParameter, NotFound, no_such_image
from skiffbox.guest.images import platforms
from skiffbox.guest.images import progress as pmsg
from skiffbox.guest.images.archive import add_layer_from_tar
from skiffbox.guest.images.catalog import ImageCatalog
from skiffbox.guest.images.events import ImageEvents
from skiffbox.guest.images.image import Image
from skiffbox.guest.images.layers import Limits
from skiffbox.guest.images.progress import Progress
from skiffbox.guest.images.pull import Puller, registry_error, via_endpoints
from skiffbox.guest.images.push import push
from skiffbox.guest.images.queries import ImageQueries, VersionCheck
from skiffbox.guest.images.reference import (DEFAULT_DOMAIN, HUB_ENDPOINT, Reference, is_domain, is_full_id,
                                             parse_normalized, split_repo_tag)
from skiffbox.guest.images.registry import AuthConfig, RegistryClient, RegistryError
from skiffbox.guest.images.removal import ImageRemoval
from skiffbox.guest.images.store import ImageRec, LayerRec, Store, chain_ids
from skiffbox.guest.util.timefmt import now_rfc3339

log = logging.getLogger("skiffd.images")

AuthInput = dict[str, Any] | AuthConfig | None  # X-Registry-Auth as decoded JSON, or already parsed


def _auth(auth: AuthInput) -> AuthConfig | None:
    return auth if isinstance(auth, AuthConfig) or auth is None else AuthConfig.from_dict(auth)


class ImageService:
    def __init__(self, cfg: DaemonConfig, root: Path, events: EventSink,
                 image_users: Callable[[str], list[tuple[str, bool]]]) -> None:
        """`image_users(image_id)` -> [(container id, running)]: the containers made from an image (what `rmi`
        refuses or forces past). The containers service is built after this one: the engine passes a function
        that reaches it when called."""
        self.cfg = cfg
        self.root = Path(root) / "image"
        self.store = Store(self.root)
        self.store.load()
        self.limits = Limits.from_env()
        self.catalog = ImageCatalog(self.store)
        self.events = ImageEvents(self.catalog, events)
        # Chain IDs a running pull or load has made but not yet registered in an image: kept by gc.
        self.pins: Counter[str] = Counter()
        self.closing = threading.Event()  # set at shutdown: worker threads stop at their next chunk
        self.puller = Puller(self.store, cfg, self.limits, self.closing, self.pinned)
        self.queries = ImageQueries(self.catalog, image_users)
        self.removal = ImageRemoval(self.catalog, self.events, image_users,
                                    busy=lambda: self.puller.busy() | set(self.pins))

    async def start(self) -> None:
        await self.removal.purge_hidden()

    async def close(self) -> None:
        self.closing.set()

    @contextlib.contextmanager
    def pinned(self, chains: list[str]) -> Iterator[None]:
        self.pins.update(chains)
        try:
            yield
        finally:
            self.pins.subtract(chains)
            for c in chains:
                if self.pins[c] <= 0:
                    del self.pins[c]

    # -- finding images ------------------------------------------------------------------------------
    def image(self, rec: ImageRec) -> Image:
        return self.catalog.image(rec)

    def lookup(self, ref_or_id: str, hidden_ok: bool = False) -> ImageRec:
        return self.catalog.lookup(ref_or_id, hidden_ok)

    async def resolve(self, ref_or_id: str) -> Image:
        # Containers resolve their image by full ID, also after `rmi -f` removed it from view.
        return self.image(self.lookup(ref_or_id, hidden_ok=True))

    def get(self, ref_or_id: str) -> Image:
        """Synchronous `resolve` (for code that is not async)."""
        return self.image(self.lookup(ref_or_id))

    def count(self) -> int:
        return len(self.store.images)

    def event(self, action: str, actor: str, name: str | None) -> None:
        self.events.publish(action, actor, name)

    # -- registries ----------------------------------------------------------------------------------
    async def pull(self, ref: str | Reference, auth: AuthInput = None, platform: str | None = None,
                   progress: Progress | None = None) -> Image:
        out = progress or pmsg.null_progress
        r = parse_normalized(ref).tag_or_latest() if isinstance(ref, str) else ref
        want = platforms.parse(platform)
        rec, top_digest = await self.puller.pull(r, _auth(auth), want, out)
        digest_ref = str(r.with_digest(top_digest))
        key = str(r)
        old = self.store.refs.get(key)
        if digest_ref not in self.store.refs:
            # Like moby, a digest reference, once made, is never moved to another image (an index
            # pulled for another platform leaves it with the first image).
            self.store.set_ref(digest_ref, rec.id)
        if old != rec.id:
            self.store.set_ref(key, rec.id)
            self.store.touch_tag_time(rec.id)
        out(pmsg.status(f"Digest: {top_digest}"))
        if old == rec.id:
            out(pmsg.status(f"Status: Image is up to date for {r.familiar()}"))
        else:
            out(pmsg.status(f"Status: Downloaded newer image for {r.familiar()}"))
        self.event("pull", r.familiar(), r.familiar())
        return self.image(rec)

    async def pull_all_tags(self, ref: Reference, auth: AuthInput = None, platform: str | None = None,
                            progress: Progress | None = None) -> None:
        """`docker pull --all-tags`: every tag of the repository, one after the other (as moby does)."""
        out = progress or pmsg.null_progress
        a = _auth(auth)
        try:
            tags = await via_endpoints(self.cfg, ref, a, lambda client: asyncio.to_thread(client.list_tags))
        except RegistryError as e:
            raise registry_error(ref, e) from None
        if not tags:
            raise NotFound(f"repository {ref.familiar_name} has no tags")
        updated = False
        for t in sorted(tags):
            r = ref.with_tag(t)
            quiet: list[dict[str, Any]] = []

            def fwd(m: dict[str, Any], q: list[dict[str, Any]] = quiet) -> None:
                if str(m.get("status", "")).startswith("Status: "):
                    q.append(m)
                else:
                    out(m)

            await self.pull(r, a, platform, fwd)
            updated = updated or any("Downloaded newer" in m["status"] for m in quiet)
        word = "Downloaded newer image" if updated else "Image is up to date"
        out(pmsg.status(f"Status: {word} for {ref.familiar_name}"))

    async def push(self, name: str, tag: str | None, auth: AuthInput = None, progress: Progress | None = None) -> None:
        await push(self.store, self.cfg.insecure_registries, self.events, name, tag, _auth(auth),
                   progress or pmsg.null_progress)

    async def login(self, body: dict[str, Any]) -> dict[str, str]:
        """POST /auth: check credentials against the registry (`serveraddress`, default Docker Hub)."""
        a = AuthConfig.from_dict(body or {})
        if a is None:
            raise InvalidParameter("no credentials given")
        server = str((body or {}).get("serveraddress") or "")
        host = urlsplit(server).netloc if "://" in server else server.split("/", 1)[0]
        if host in ("", "index.docker.io", DEFAULT_DOMAIN):
            host = HUB_ENDPOINT
        if not is_domain(host):
            raise InvalidParameter(f"invalid registry address {server!r}: expected host[:port]")
        client = RegistryClient(host, "", a, self.cfg.insecure_registries)
        try:
            await asyncio.to_thread(client.login)
        finally:
            client.close()
        return {"Status": "Login Succeeded", "IdentityToken": ""}

    # -- tags --------------------------------------------------------------------------------------
    async def tag(self, source: str, repo: str, tag: str | None) -> Image:
        rec = self.lookup(source)
        if not repo:
            raise InvalidParameter("repository name must have at least one component")
        ref = split_repo_tag(repo, tag)
        if ref.digest:
            raise InvalidParameter("refusing to create a tag with a digest reference")
        ref = ref.tag_or_latest()
        if ref.path.split("/")[-1] == "sha256" and is_full_id(f"sha256:{ref.tag}"):
            raise InvalidParameter("refusing to create an ambiguous tag using digest algorithm as name")
        self.set_tag(ref, rec.id)
        return self.image(rec)

    def set_tag(self, ref: Reference, iid: str) -> None:
        self.store.set_ref(str(ref), iid)
        self.store.touch_tag_time(iid)
        self.event("tag", iid, ref.familiar())

    # -- create (commit, build, import) ----------------------------------------------------------------
    async def create_from_diff(self, diff_tar_path: Path | None, parent: Image | None, config: dict[str, Any],
                               history_entry: dict[str, Any], tags: list[str], layer: str | None = None) -> Image:
        prec = self.store.images.get(parent.id) if parent is not None else None
        if parent is not None and prec is None:
            raise no_such_image(parent.id)
        diff_ids = list(prec.diff_ids) if prec else []
        history = list((prec.config.get("history") or []) if prec else [])
        entry = dict(history_entry)
        entry.setdefault("created", now_rfc3339())
        if diff_tar_path is not None:
            parent_chain = chain_ids(diff_ids)[-1] if diff_ids else None
            lrec = await add_layer_from_tar(self, Path(diff_tar_path), parent_chain)
            diff_ids.append(lrec.diff_id)
            entry.pop("empty_layer", None)
        elif layer is not None:  # a layer already stored over the parent's chain (a build's --cache-from image)
            diff_ids.append(layer)
            entry.pop("empty_layer", None)
        else:
            entry["empty_layer"] = True
        history.append(entry)
        cfg = {k: v for k, v in config.items() if k not in ("rootfs", "history")}
        cfg.setdefault("created", entry["created"])
        if prec is not None:
            for k in ("architecture", "os", "variant"):
                if k in prec.config:
                    cfg.setdefault(k, prec.config[k])
        host = platforms.host()
        cfg.setdefault("architecture", host.arch)
        cfg.setdefault("os", "linux")
        cfg["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
        cfg["history"] = history
        raw = json.dumps(cfg, separators=(",", ":")).encode()
        rec = self.store.add_image(raw, parent=prec.id if prec else "")
        for t in tags:
            self.set_tag(parse_normalized(t).tag_or_latest(), rec.id)
        return self.image(rec)

    async def create_from_layer(self, layer: LayerRec, config: dict[str, Any], history_entry: dict[str, Any]) -> Image:
        """A parentless image from one stored layer (import)."""
        cfg = {k: v for k, v in config.items() if k not in ("rootfs", "history")}
        cfg["rootfs"] = {"type": "layers", "diff_ids": [layer.diff_id]}
        cfg["history"] = [history_entry]
        rec = self.store.add_image(json.dumps(cfg, separators=(",", ":")).encode())
        return self.image(rec)

    # -- views (queries.py) ----------------------------------------------------------------------------
    def summary(self, rec: ImageRec, legacy_none: bool = False, refs: list[str] | None = None) -> dict[str, Any]:
        return self.queries.summary(rec, legacy_none, refs)

    def inspect(self, ref_or_id: str, api_version_at_least: VersionCheck | None = None) -> dict[str, Any]:
        return self.queries.inspect(ref_or_id, api_version_at_least)

    def history(self, ref_or_id: str) -> list[dict[str, Any]]:
        return self.queries.history(ref_or_id)

    async def disk_usage(self) -> dict[str, Any]:
        return self.queries.disk_usage()

    # -- removal (removal.py) --------------------------------------------------------------------------
    async def delete(self, ref_or_id: str, force: bool = False, noprune: bool = False) -> list[dict[str, str]]:
        return await self.removal.delete(ref_or_id, force, noprune)

    async def prune(self, filters: dict[str, list[str]]) -> dict[str, Any]:
        return await self.removal.prune(filters)

    async def gc(self) -> list[tuple[str, Path]]:
        return await self.removal.gc()

    # Last: a method named `list` shadows the builtin in the annotations of the class body below it.
    async def list(self, all_: bool = False, filters: dict[str, list[str]] | None = None,
                   legacy_none: bool = False, with_virtual_size: bool = False) -> list[dict[str, Any]]:
        return self.queries.list_images(all_, filters, legacy_none, with_virtual_size)
