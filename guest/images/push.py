"""Pushing an image: each layer as a gzip blob (as pulled, or compressed once and kept), mounted from
another repository of the same registry when we know it came from there, else uploaded; then the
config and a Docker schema 2 manifest. Output follows moby's push messages.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from typing import Any

from skiffbox.guest.errors import EngineError, NotFound, SystemError_
from skiffbox.guest.images import progress as pmsg
from skiffbox.guest.images.events import ImageEvents
from skiffbox.guest.images.progress import Progress, Throttle
from skiffbox.guest.images.reference import Reference, parse_normalized, split_repo_tag
from skiffbox.guest.images.registry import MT_DOCKER_CONFIG, MT_DOCKER_LAYER, MT_DOCKER_MANIFEST, AuthConfig, RegistryClient, RegistryError
from skiffbox.guest.images.store import ImageRec, LayerRec, Store
from skiffbox.guest.images.streams import CHUNK, GZIP_MAGIC, decompressed

MAX_CONCURRENT_UPLOADS = 5


def _is_gzip(store: Store, digest: str) -> bool:
    try:
        with store.blobs.open(digest) as f:
            return f.read(2) == GZIP_MAGIC
    except OSError:
        return False


class _Counting:
    """A file wrapper for http.client's body upload that reports progress as it is read."""

    def __init__(self, f: Any, size: int, report: Any) -> None:
        self.f, self.size, self.report, self.n = f, size, report, 0
        self.thr = Throttle()

    def read(self, n: int = -1) -> bytes:
        b: bytes = self.f.read(n if n and n > 0 else CHUNK)
        self.n += len(b)
        if b and self.thr.ready():
            self.report(self.n)
        return b

    def seek(self, *a: Any) -> Any:
        self.n = 0
        return self.f.seek(*a)


async def push(store: Store, insecure: list[str], events: ImageEvents, name: str, tag: str | None, auth: AuthConfig | None,
               out: Progress) -> None:
    """`docker push` of one tag, or of every tag of the repository; `insecure`: the insecure-registries setting."""
    base = parse_normalized(name)
    if base.digest:
        raise EngineError("cannot push a digest reference")
    if tag or base.tag:
        refs = [split_repo_tag(name, tag) if tag else base]
    else:  # `docker push --all-tags`: every tag of the repository
        refs = sorted((parse_normalized(r) for r in store.refs if "@" not in r and parse_normalized(r).name == base.name),
                      key=str)
    if not refs:
        raise NotFound(f"An image does not exist locally with the tag: {base.familiar_name}")
    recs: list[tuple[Reference, ImageRec]] = []
    for ref in refs:
        iid = store.refs.get(str(ref))
        if iid is None or iid not in store.images:
            raise NotFound(f"An image does not exist locally with the tag: {ref.familiar_name}")
        recs.append((ref, store.images[iid]))
    out(pmsg.status(f"The push refers to repository [{base.name}]"))
    client = RegistryClient(base.domain, base.path, auth, insecure, push=True,
                            endpoint=base.endpoint_host)
    try:
        for ref, rec in recs:
            await _push_one(store, events, client, ref, rec, out)
    finally:
        client.close()


async def _push_one(store: Store, events: ImageEvents, client: RegistryClient, ref: Reference, rec: ImageRec,
                    out: Progress) -> None:
    layers = [store.layers[c] for c in rec.chain_ids]
    for l in reversed(layers):
        out(pmsg.status("Preparing", l.diff_id[7:19]))
    sem = asyncio.Semaphore(MAX_CONCURRENT_UPLOADS)
    loop = asyncio.get_running_loop()

    async def one(l: LayerRec) -> dict[str, Any]:
        short = l.diff_id[7:19]
        if sem.locked():
            out(pmsg.status("Waiting", short))
        async with sem:
            def emit(m: dict[str, Any]) -> None:
                loop.call_soon_threadsafe(out, m)

            blob = await asyncio.to_thread(_gzip_source, store, l)
            store.add_layer_blob(l.chain_id, blob)
            try:
                status = await asyncio.to_thread(_push_blob, store, client, blob, short, emit)
            except RegistryError as e:
                raise _push_error(ref, e) from None
            repo = f"{client.domain}/{client.repo}"
            store.add_layer_blob(l.chain_id, {"digest": blob["digest"], "repos": [repo]})
            out(pmsg.status(status, short))
            return {"mediaType": MT_DOCKER_LAYER, "size": blob["size"], "digest": blob["digest"]}

    results = await asyncio.gather(*(one(l) for l in layers), return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    cfg_bytes = store.blobs.read(rec.id)
    try:
        if await asyncio.to_thread(client.blob_exists, rec.id) is None:
            with store.blobs.open(rec.id) as f:
                await asyncio.to_thread(client.upload_blob, rec.id, f, len(cfg_bytes))
        manifest = {
            "schemaVersion": 2,
            "mediaType": MT_DOCKER_MANIFEST,
            "config": {"mediaType": MT_DOCKER_CONFIG, "size": len(cfg_bytes), "digest": rec.id},
            "layers": list(results),
        }
        body = json.dumps(manifest, indent=3).encode()
        digest = await asyncio.to_thread(client.put_manifest, ref.tag or "latest", body, MT_DOCKER_MANIFEST)
    except RegistryError as e:
        raise _push_error(ref, e) from None
    store.set_ref(str(ref.with_digest(digest)), rec.id)
    out(pmsg.status(f"{ref.tag}: digest: {digest} size: {len(body)}"))
    out(pmsg.aux({"Tag": ref.tag, "Digest": digest, "Size": len(body)}))
    events.publish("push", ref.familiar(), ref.familiar())


def _push_error(ref: Reference, e: RegistryError) -> EngineError:
    """moby shows the registry's error as `code: message` (e.g. `denied: requested access …`)."""
    return SystemError_(f"{e.code.lower().replace('_', ' ')}: {e.message}" if e.code else e.message)


def _gzip_source(store: Store, l: LayerRec) -> dict[str, Any]:
    """A gzip blob of the layer: one we have (as pulled), or compress the tar once and keep it."""
    for b in l.blobs:
        if store.blobs.has(b["digest"]) and _is_gzip(store, b["digest"]):
            return {"digest": b["digest"], "mediaType": MT_DOCKER_LAYER, "size": store.blobs.size(b["digest"]),
                    "repos": list(b.get("repos") or [])}
    src = next((b for b in l.blobs if store.blobs.has(b["digest"])), None)
    if src is None:
        raise SystemError_(f"layer {l.diff_id} has no stored content to push")
    with store.blobs.writer() as w:
        with store.blobs.open(src["digest"]) as f:
            raw = decompressed(f)
            # typeshed wants a readable file object; the "wb" mode only writes
            gz = gzip.GzipFile(fileobj=w, mode="wb", compresslevel=6, mtime=0)  # type: ignore[call-overload]
            while True:
                chunk = raw.read(CHUNK)
                if not chunk:
                    break
                gz.write(chunk)
            gz.close()
        size = w.size
        digest = w.commit()
    return {"digest": digest, "mediaType": MT_DOCKER_LAYER, "size": size, "repos": []}


def mount_candidates(repos: list[str], domain: str, target: str, limit: int = 3) -> list[str]:
    """Repositories of the same registry the blob came from: the most alike to `target` first (shared
    leading path components), then the most recently seen — moby's order; at most `limit` attempts."""
    tparts = target.split("/")

    def likeness(path: str) -> int:
        n = 0
        for a, b in zip(path.split("/"), tparts):
            if a != b:
                break
            n += 1
        return n

    cands = [r.partition("/")[2] for r in reversed(repos) if r.partition("/")[0] == domain and r.partition("/")[2] != target]
    return sorted(cands, key=likeness, reverse=True)[:limit]


def _push_blob(store: Store, client: RegistryClient, blob: dict[str, Any], short: str, emit: Any) -> str:
    digest, size = blob["digest"], blob["size"]
    if client.blob_exists(digest) is not None:
        return "Layer already exists"
    for path in mount_candidates(blob.get("repos") or [], client.domain, client.repo):
        if client.mount_blob(digest, path):
            return f"Mounted from {path}"
    with store.blobs.open(digest) as f:
        body = _Counting(f, size, lambda n: emit(pmsg.status("Pushing", short, current=n, total=size)))
        client.upload_blob(digest, body, size)  # type: ignore[arg-type]
    return "Pushed"
