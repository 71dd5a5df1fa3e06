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
                        architecture, os, …); tags: references to point at the new image.
    svc.get(ref_or_id) -> Image             synchronous resolve (for code that is not async)
    await svc.tag(source, repo, tag)        tag (tag None: taken from `repo`, else `latest`)
    svc.count() -> int;  await svc.disk_usage() -> {"LayersSize": int, "Images": [...]}
    guest.images.layers.write_tar(upper_dir, out, convert_whiteouts=True, exclude=None)
                        an overlay upper dir as a Docker layer tar (0:0 char devices and opaque dirs
                        become `.wh.` entries) for commit/diff/export

Deleting an image asks `engine.containers.image_users(image_id) -> list[(container_id, running)]`.
Events published: image pull, tag, untag, delete, push, save, load, import, prune.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from skiffbox.guest.config import DaemonConfig
from skiffbox.guest.contracts import EventSink
from skiffbox.guest.errors import Conflict, EngineError, InvalidParameter, NotFound, no_such_image
from skiffbox.guest.images import platforms
from skiffbox.guest.images import progress as pmsg
from skiffbox.guest.images.image import Image, familiar, is_tag_ref, parse_created
from skiffbox.guest.images.layers import Limits
from skiffbox.guest.images.progress import Progress
from skiffbox.guest.images.reference import Reference, ReferenceError_, is_full_id, parse_normalized, split_repo_tag
from skiffbox.guest.images.registry import AuthConfig, RegistryClient
from skiffbox.guest.images.store import ImageRec, Store, chain_ids

log = logging.getLogger("skiffd.images")


def _now_rfc3339() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1e9):09d}Z"


class ImageService:
    def __init__(self, cfg: DaemonConfig, root: Path, events: EventSink,
                 image_users: Callable[[str], list[tuple[str, bool]]]) -> None:
        """`image_users(image_id)` -> [(container id, running)]: the containers made from an image (what `rmi`
        refuses or forces past). The containers service is built after this one: the engine passes a function
        that reaches it when called."""
        self.cfg = cfg
        self.events = events
        self.image_users = image_users
        self.root = Path(root) / "image"
        self.store = Store(self.root)
        self.store.load()
        self.limits = Limits.from_env()
        from skiffbox.guest.images.pull import Puller

        self.puller = Puller(self)
        # Chain IDs a running pull or load has made but not yet registered in an image: kept by gc.
        self.pins: Counter[str] = Counter()
        self.closing = threading.Event()  # set at shutdown: worker threads stop at their next chunk

    async def start(self) -> None:
        await self.purge_hidden()

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

    async def purge_hidden(self) -> None:
        """Forget deleted images once no container uses them any more, then free their layers."""
        gone = [iid for iid in self.store.hidden if not self._users(iid)]
        for iid in gone:
            self.store.remove_image(iid)
        if gone:
            await self.gc()

    # -- snapshots ---------------------------------------------------------------------------------
    def image(self, rec: ImageRec) -> Image:
        refs = self.store.refs_for(rec.id)
        chains = rec.chain_ids
        return Image(
            id=rec.id,
            config=rec.config,
            repo_tags=[familiar(r) for r in refs if is_tag_ref(r)],
            repo_digests=[familiar(r) for r in refs if not is_tag_ref(r)],
            created=parse_created(rec.config.get("created")),
            parent=rec.parent,
            size=sum(self.store.layers[c].size for c in chains),
            chain_ids=chains,
            _dirs=[self.store.layer_path(c) for c in chains],
        )

    def lookup(self, ref_or_id: str, hidden_ok: bool = False) -> ImageRec:
        s = (ref_or_id or "").strip()
        if not s:
            raise no_such_image(ref_or_id)
        images = self.store.images
        if is_full_id(s):
            iid = s if s.startswith("sha256:") else f"sha256:{s}"
            if iid in images:
                return images[iid]
            if hidden_ok and iid in self.store.hidden:
                return self.store.hidden[iid]
            raise no_such_image(iid)
        shown = s
        try:
            ref = parse_normalized(s)
            shown = ref.tag_or_latest().familiar()
            iid = self.store.refs.get(str(ref.tag_or_latest()))
            if iid in images:
                return images[iid]
        except ReferenceError_:
            pass
        found = self.store.search(s)
        if len(found) == 1:
            return images[found[0]]
        raise no_such_image(shown)

    async def resolve(self, ref_or_id: str) -> Image:
        # Containers resolve their image by full ID, also after `rmi -f` removed it from view.
        return self.image(self.lookup(ref_or_id, hidden_ok=True))

    def get(self, ref_or_id: str) -> Image:
        """Synchronous `resolve` (for code that is not async)."""
        return self.image(self.lookup(ref_or_id))

    def count(self) -> int:
        return len(self.store.images)

    # -- events --------------------------------------------------------------------------------------
    def event(self, action: str, actor: str, name: str | None, rec: ImageRec | None = None) -> None:
        """moby's LogImageEvent: the image's labels ride along (when it still exists), plus `name`."""
        if rec is None and action != "delete":
            rec = self.store.images.get(actor)
            if rec is None:
                try:
                    rec = self.lookup(actor)
                except EngineError:
                    rec = None
        attrs: dict[str, str] = {}
        if rec is not None:
            attrs.update({str(k): str(v) for k, v in ((rec.config.get("config") or {}).get("Labels") or {}).items()})
        if name:
            attrs["name"] = name
        self.events.publish("image", action, actor, attrs)

    # -- pull --------------------------------------------------------------------------------------
    async def pull(self, ref: str | Reference, auth: dict | AuthConfig | None = None, platform: str | None = None,
                   progress: Progress | None = None) -> Image:
        out = progress or pmsg.null_progress
        r = parse_normalized(ref).tag_or_latest() if isinstance(ref, str) else ref
        a = auth if isinstance(auth, AuthConfig) or auth is None else AuthConfig.from_dict(auth)
        want = platforms.parse(platform)
        rec, top_digest = await self.puller.pull(r, a, want, out)
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

    async def pull_all_tags(self, ref: Reference, auth: dict | AuthConfig | None = None, platform: str | None = None,
                            progress: Progress | None = None) -> None:
        """`docker pull --all-tags`: every tag of the repository, one after the other (as moby does)."""
        from skiffbox.guest.images.pull import registry_error
        from skiffbox.guest.images.registry import RegistryError

        out = progress or pmsg.null_progress
        a = auth if isinstance(auth, AuthConfig) or auth is None else AuthConfig.from_dict(auth)
        client = RegistryClient(ref.domain, ref.path, a, self.cfg.insecure_registries, endpoint=ref.endpoint_host)
        try:
            tags = await asyncio.to_thread(client.list_tags)
        except RegistryError as e:
            raise registry_error(ref, e) from None
        finally:
            client.close()
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

    async def push(self, name: str, tag: str | None, auth: dict | AuthConfig | None = None,
                   progress: Progress | None = None) -> None:
        from skiffbox.guest.images.push import push

        a = auth if isinstance(auth, AuthConfig) or auth is None else AuthConfig.from_dict(auth)
        await push(self, name, tag, a, progress or pmsg.null_progress)

    async def login(self, body: dict[str, Any]) -> dict[str, str]:
        """POST /auth: check credentials against the registry (`serveraddress`, default Docker Hub)."""
        from urllib.parse import urlsplit

        from skiffbox.guest.images.reference import DEFAULT_DOMAIN, HUB_ENDPOINT

        a = AuthConfig.from_dict(body or {})
        if a is None:
            raise InvalidParameter("no credentials given")
        server = str((body or {}).get("serveraddress") or "")
        host = urlsplit(server).netloc if "://" in server else server.split("/", 1)[0]
        if host in ("", "index.docker.io", DEFAULT_DOMAIN):
            host = HUB_ENDPOINT
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

    # -- create (commit, build) ------------------------------------------------------------------
    async def create_from_diff(self, diff_tar_path: Path | None, parent: Image | None, config: dict[str, Any],
                               history_entry: dict[str, Any], tags: list[str]) -> Image:
        from skiffbox.guest.images.archive import add_layer_from_tar

        prec = self.store.images.get(parent.id) if parent is not None else None
        if parent is not None and prec is None:
            raise no_such_image(parent.id)
        diff_ids = list(prec.diff_ids) if prec else []
        history = list((prec.config.get("history") or []) if prec else [])
        entry = dict(history_entry)
        entry.setdefault("created", _now_rfc3339())
        if diff_tar_path is not None:
            parent_chain = chain_ids(diff_ids)[-1] if diff_ids else None
            lrec = await add_layer_from_tar(self, Path(diff_tar_path), parent_chain)
            diff_ids.append(lrec.diff_id)
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

    async def create_from_layer(self, layer: Any, config: dict[str, Any], history_entry: dict[str, Any]) -> Image:
        """A parentless image from one stored layer (import)."""
        cfg = {k: v for k, v in config.items() if k not in ("rootfs", "history")}
        cfg["rootfs"] = {"type": "layers", "diff_ids": [layer.diff_id]}
        cfg["history"] = [history_entry]
        rec = self.store.add_image(json.dumps(cfg, separators=(",", ":")).encode())
        return self.image(rec)

    # -- list / inspect / history --------------------------------------------------------------------
    def summary(self, rec: ImageRec, legacy_none: bool = False, refs: list[str] | None = None) -> dict[str, Any]:
        refs = self.store.refs_for(rec.id) if refs is None else refs
        tags = [familiar(r) for r in refs if is_tag_ref(r)]
        digests = [familiar(r) for r in refs if not is_tag_ref(r)]
        if legacy_none and not tags and not digests:
            tags, digests = ["<none>:<none>"], ["<none>@<none>"]
        size = sum(self.store.layers[c].size for c in rec.chain_ids)
        return {
            "Id": rec.id,
            "ParentId": rec.parent,
            "RepoTags": tags,
            "RepoDigests": digests,
            "Created": int(parse_created(rec.config.get("created"))),
            "Size": size,
            "SharedSize": -1,
            "Labels": (rec.config.get("config") or {}).get("Labels") or {},
            "Containers": -1,
        }

    async def list(self, all_: bool = False, filters: dict[str, list[str]] | None = None,
                   legacy_none: bool = False, with_virtual_size: bool = False) -> list[dict[str, Any]]:
        from skiffbox.guest.images.filters import image_filter

        keep = image_filter(self, filters or {})
        out = []
        parents = self.store.parents()
        for rec in self.store.images.values():
            refs = self.store.refs_for(rec.id)
            if not refs and not all_ and rec.id in parents:
                continue  # intermediate (build) images are shown with -a only
            shown = keep(rec, refs)
            if shown is None:
                continue
            s = self.summary(rec, legacy_none, shown)
            if with_virtual_size:
                s["VirtualSize"] = s["Size"]
            out.append(s)
        out.sort(key=lambda s: (s["Created"], s["Id"]), reverse=True)
        return out

    def inspect(self, ref_or_id: str, api_version_at_least: Any = None) -> dict[str, Any]:
        from skiffbox.guest.util.timefmt import rfc3339

        rec = self.lookup(ref_or_id)
        img = self.image(rec)
        cfg = rec.config
        c = cfg.get("config") or {}
        out: dict[str, Any] = {
            "Id": rec.id,
            "RepoTags": img.repo_tags,
            "RepoDigests": img.repo_digests,
            "Parent": rec.parent,
            "Comment": cfg.get("comment", ""),
            "Created": cfg.get("created") or "0001-01-01T00:00:00Z",
            "DockerVersion": cfg.get("docker_version", ""),
            "Author": cfg.get("author", ""),
            "Config": _container_config(c),
            "Architecture": cfg.get("architecture", ""),
            "Os": cfg.get("os", ""),
            "Size": img.size,
            "GraphDriver": {"Name": "overlay2", "Data": _graph_data([str(d) for d in img.layer_dirs()])},
            "RootFS": {"Type": "layers", "Layers": rec.diff_ids},
            "Metadata": {"LastTagTime": rfc3339(rec.last_tag_time) if rec.last_tag_time else "0001-01-01T00:00:00Z"},
        }
        if cfg.get("variant"):
            out["Variant"] = cfg["variant"]
        if cfg.get("os.version"):
            out["OsVersion"] = cfg["os.version"]
        if api_version_at_least is not None:
            if not api_version_at_least("1.44"):
                out["VirtualSize"] = img.size
            if not api_version_at_least("1.45"):
                out["Container"] = cfg.get("container", "")
                out["ContainerConfig"] = _container_config(cfg.get("container_config") or {})
        return out

    def history(self, ref_or_id: str) -> list[dict[str, Any]]:
        rec = self.lookup(ref_or_id)
        rows: list[dict[str, Any]] = []
        diff_ids = rec.diff_ids
        chains = chain_ids(diff_ids)
        n = 0
        for h in rec.config.get("history") or []:
            size = 0
            if not h.get("empty_layer"):
                if n >= len(chains):
                    raise InvalidParameter("too many non-empty layers in History section")
                layer = self.store.layers.get(chains[n])
                size = layer.size if layer else 0
                n += 1
            rows.insert(0, {"Id": "<missing>", "Created": int(parse_created(h.get("created"))),
                            "CreatedBy": h.get("created_by", ""), "Tags": None, "Size": size,
                            "Comment": h.get("comment", "")})
        cur: ImageRec | None = rec
        for row in rows:
            if cur is None:
                break
            row["Id"] = cur.id
            tags = [familiar(r) for r in self.store.refs_for(cur.id) if is_tag_ref(r)]
            row["Tags"] = tags or None
            cur = self.store.images.get(cur.parent) if cur.parent else None
        return rows

    # -- delete / prune --------------------------------------------------------------------------
    def _users(self, iid: str) -> list[tuple[str, bool]]:
        return [(str(cid), bool(running)) for cid, running in self.image_users(iid)]

    def _conflict(self, iid: str, soft: bool, active_ref: bool = True) -> tuple[str, bool] | None:
        """checkImageDeleteConflict: (message, used-by-a-container) or None.

        Hard conflicts (children, a running container) always count; `soft` adds the ones `force`
        overrides (other references with `active_ref`, stopped containers)."""
        short = iid[7:19]
        if self.store.children(iid):
            return f"conflict: unable to delete {short} (cannot be forced) - image has dependent child images", False
        users = self._users(iid)
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
        self.event("untag", iid, iid)

    async def delete(self, ref_or_id: str, force: bool = False, noprune: bool = False) -> list[dict[str, str]]:
        rec = self.lookup(ref_or_id)
        iid = rec.id
        records: list[dict[str, str]] = []
        refs = self.store.refs_for(iid)
        by_id = self._is_id_ref(ref_or_id, iid)
        removed_ref = False
        if not by_id:
            ref = self._stored_ref(ref_or_id, iid)
            single = _single_repo(refs)
            if not force and single:
                users = self._users(iid)
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
        await self._delete_helper(iid, records, force, not noprune, quiet=removed_ref)
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

    def _stored_ref(self, s: str, iid: str) -> str:
        return str(parse_normalized(s).tag_or_latest())

    async def _delete_helper(self, iid: str, records: list[dict[str, str]], force: bool, prune: bool, quiet: bool) -> None:
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
        if self._users(iid):  # forced past a stopped container: its layers stay until it is gone
            self.store.hide_image(iid)
        else:
            self.store.remove_image(iid)
        self.event("delete", iid, iid)
        records.append({"Deleted": iid})
        for chain, _ in await self.gc():
            records.append({"Deleted": chain})
        if prune and parent and parent in self.store.images:
            await self._delete_helper(parent, records, False, True, True)

    async def gc(self) -> list[tuple[str, Path]]:
        """Drop layers and blobs no image needs (keeping what running pulls need); trash deleted off-loop."""
        for iid in [i for i in self.store.hidden if not self._users(i)]:
            self.store.remove_image(iid)
        removed = self.store.gc(busy=self.puller.busy() | set(self.pins))
        removed.reverse()  # top layer first, as Docker lists them
        trash = [t for _, t in removed]
        if trash:
            await asyncio.to_thread(lambda: [shutil.rmtree(t, ignore_errors=True) for t in trash])
        return removed

    async def prune(self, filters: dict[str, list[str]]) -> dict[str, Any]:
        from skiffbox.guest.util.filters import bool_filter, match_labels
        from skiffbox.guest.util.timefmt import parse_time

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
        self.events.publish("image", "prune", "", {"reclaimed": str(reclaimed)})
        return {"ImagesDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    # -- disk usage ------------------------------------------------------------------------------------
    async def disk_usage(self) -> dict[str, Any]:
        use: dict[str, int] = {}
        for rec in self.store.images.values():
            for ch in set(rec.chain_ids):
                use[ch] = use.get(ch, 0) + 1
        images = []
        for rec in self.store.images.values():
            s = self.summary(rec, legacy_none=False)
            s["SharedSize"] = sum(self.store.layers[c].size for c in set(rec.chain_ids) if use.get(c, 0) > 1)
            s["Containers"] = len(self._users(rec.id))
            images.append(s)
        images.sort(key=lambda s: s["Created"], reverse=True)
        return {"LayersSize": sum(l.size for l in self.store.layers.values()), "Images": images}


def _who(container_id: str) -> str:
    return f"container {container_id[:12]}" if container_id else "a container"


def _single_repo(refs: list[str]) -> bool:
    """isSingleReference: at most one tag, and every reference in one repository."""
    names = {r.split("@", 1)[0] if not is_tag_ref(r) else r.rsplit(":", 1)[0] for r in refs}
    tags = [r for r in refs if is_tag_ref(r)]
    return len(tags) <= 1 and len(names) <= 1


_CONFIG_KEYS = ["Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr", "ExposedPorts",
                "Tty", "OpenStdin", "StdinOnce", "Env", "Cmd", "Healthcheck", "ArgsEscaped", "Image", "Volumes",
                "WorkingDir", "Entrypoint", "NetworkDisabled", "MacAddress", "OnBuild", "Labels", "StopSignal",
                "StopTimeout", "Shell"]


def _container_config(c: dict[str, Any]) -> dict[str, Any]:
    """The image's `Config` as inspect shows it (Docker fills the zero values of its struct)."""
    base: dict[str, Any] = {"Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": False,
                            "AttachStderr": False, "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": None,
                            "Cmd": None, "Image": "", "Volumes": None, "WorkingDir": "", "Entrypoint": None,
                            "OnBuild": None, "Labels": None}
    base.update(c)
    return base


def _graph_data(dirs: list[str]) -> dict[str, str]:
    if not dirs:
        return {}
    top = dirs[-1]
    data = {"MergedDir": top + "-merged", "UpperDir": top, "WorkDir": top + "-work"}
    if len(dirs) > 1:
        data["LowerDir"] = ":".join(reversed(dirs[:-1]))
    return data
