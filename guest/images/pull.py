"""Pulling an image: manifest (or index → platform), config, then each missing layer in one streaming pass.

Per layer, one worker thread reads the blob from the registry and, in the same pass, hashes it and
writes it to the blob store (digest check), decompresses it, hashes the tar (diff ID check against the
config) and unpacks it into a fresh directory. Only when both digests match are the blob and the layer
directory renamed into place and recorded; the image record and its tags come last. Two pulls needing
the same layer share one transfer (keyed by chain ID) and both see its progress.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from skiffbox.guest.config import DaemonConfig
from skiffbox.guest.errors import EngineError, InvalidParameter, NotFound, SystemError_
from skiffbox.guest.images import platforms, progress
from skiffbox.guest.images.blobs import BlobWriter, DigestMismatch, SingleFlight, check_digest
from skiffbox.guest.images.layers import LayerError, Limits, ratio_check, unpack
from skiffbox.guest.images.progress import Progress
from skiffbox.guest.images.reference import DEFAULT_DOMAIN, Reference
from skiffbox.guest.images.registry import (INDEX_TYPES, MANIFEST_TYPES, MT_SCHEMA1, AuthConfig, BlobReader, RegistryClient,
                                   RegistryError)
from skiffbox.guest.images.store import ImageRec, LayerRec, Store, chain_ids
from skiffbox.guest.images.streams import HashingReader, Prefetcher, decompressed

log = logging.getLogger("skiffd.images")

T = TypeVar("T")


async def via_endpoints(cfg: DaemonConfig, ref: Reference, auth: AuthConfig | None,
                        attempt: Callable[[RegistryClient], Awaitable[T]], closing: threading.Event | None = None) -> T:
    """`attempt(client)` at each endpoint moby's lookup gives for `ref`: for Docker Hub, every `registry-mirrors`
    entry in order and then Docker Hub itself, any failure on a mirror moving on to the next endpoint (the last
    endpoint's error is the one reported). Pulls, `pull --all-tags`' tag list and /distribution all go this way.
    The client is closed after its attempt."""
    mirrors: list[str] = list(cfg.registry_mirrors) if ref.domain == DEFAULT_DOMAIN else []
    for mirror in [*mirrors, None]:
        client = RegistryClient(ref.domain, ref.path, auth, cfg.insecure_registries, endpoint=ref.endpoint_host,
                                mirror=mirror)
        try:
            return await attempt(client)
        except EngineError as e:
            if mirror is None or (closing is not None and closing.is_set()):
                raise
            log.info("%s: mirror %s failed, trying the next endpoint: %s", ref, mirror, e)
        finally:
            client.close()
    raise AssertionError("unreachable")

MAX_CONCURRENT_DOWNLOADS = 3
_CONFIG_PREFIXES = ("application/vnd.oci.image", "application/vnd.docker")
_CONFIG_LEGACY = ("", "application/octet-stream", "application/json", "text/html")
_PLUGIN_CONFIG = "application/vnd.docker.plugin.v1+json"


def registry_error(ref: Reference, e: RegistryError) -> EngineError:
    """Docker's wording for registry errors, which users and docker-py (ImageNotFound) recognise."""
    text = f"{e.code.lower().replace('_', ' ')}: {e.message}" if e.code else e.message
    if e.code in ("DENIED", "UNAUTHORIZED") or e.http_status in (401, 403):
        return NotFound(f"pull access denied for {ref.familiar_name}, repository does not exist or may require "
                        f"'docker login': {text}")
    if e.code == "MANIFEST_UNKNOWN" or (e.http_status == 404 and not e.code.startswith("NAME")):
        return NotFound(f"manifest for {ref.familiar()} not found: {text}")
    if e.code == "NAME_UNKNOWN":
        return NotFound(f"repository {ref.familiar_name} not found: {text}")
    if e.http_status == 429:
        return EngineError(f"toomanyrequests: {e.message}")
    return SystemError_(text)


def _desc(d: Any, what: str) -> dict[str, Any]:
    if not isinstance(d, dict) or not isinstance(d.get("digest"), str):
        raise InvalidParameter(f"invalid manifest: bad {what} descriptor")
    check_digest(d["digest"])
    size = d.get("size", -1)
    if not isinstance(size, int):
        raise InvalidParameter(f"invalid manifest: bad size in {what} descriptor")
    return d


def parse_manifest(body: bytes) -> dict[str, Any]:
    try:
        m = json.loads(body)
    except ValueError:
        raise InvalidParameter("invalid manifest: not JSON") from None
    if not isinstance(m, dict):
        raise InvalidParameter("invalid manifest: not a JSON object")
    return m


@dataclass
class _Transfer:
    """Progress of one layer transfer, fanned out to every pull waiting for it."""

    short: str
    watchers: list[Progress] = field(default_factory=list)

    def emit(self, msg: dict[str, Any]) -> None:
        for w in list(self.watchers):
            try:
                w(msg)
            except Exception:  # a gone client must not break the transfer
                pass


def _unpack_stream(src: Any, dest: Path, limits: Limits, compressed: Callable[[], int]) -> tuple[Any, HashingReader]:
    """Decompress `src`, hash the tar (diff ID) and unpack it; parsing runs a chunk-queue behind the
    decompression (a second thread), so the two overlap."""
    tar = HashingReader(decompressed(src), check=ratio_check(limits, compressed))
    pre = Prefetcher(tar)
    try:
        res = unpack(pre, dest, limits)
        pre.drain()
    finally:
        pre.close()
    return res, tar


class Puller:
    def __init__(self, store: Store, cfg: DaemonConfig, limits: Limits, closing: threading.Event,
                 pinned: Callable[[list[str]], AbstractContextManager[None]]) -> None:
        """`closing`: set at shutdown (workers stop at their next chunk); `pinned(chains)`: keeps the layers a
        pull has made from gc until its image is registered."""
        self.store = store
        self.cfg = cfg
        self.limits = limits
        self.closing = closing
        self.pinned = pinned
        self._unpacking = threading.Lock()  # one layer unpacks at a time; the others download meanwhile
        self.flight: SingleFlight[LayerRec] = SingleFlight()
        self.config_flight: SingleFlight[bytes] = SingleFlight()
        self.transfers: dict[str, _Transfer] = {}
        self._sem: asyncio.Semaphore | None = None

    @property
    def sem(self) -> asyncio.Semaphore:
        if self._sem is None:
            self._sem = asyncio.Semaphore(MAX_CONCURRENT_DOWNLOADS)
        return self._sem

    def busy(self) -> set[str]:
        """Chain IDs and blob digests a running pull still needs (garbage collection keeps them)."""
        return set(self.flight.keys()) | set(self.config_flight.keys())

    async def resolve_manifest(self, client: RegistryClient, ref: Reference, want: platforms.Platform,
                               out: Progress) -> tuple[dict[str, Any], str, str]:
        """(image manifest, digest the reference resolved to, media type); indexes resolved to `want`.

        As in moby, `Pulling from` goes out once the reference resolved: errors before it are HTTP
        errors, later ones (no matching platform…) arrive in the stream."""
        try:
            body, mt, digest = await asyncio.to_thread(client.get_manifest, ref.tag_or_digest)
            m = parse_manifest(body)
            mt = m.get("mediaType") or mt
            if mt in MT_SCHEMA1 or m.get("schemaVersion") == 1:
                raise InvalidParameter(f"{ref.familiar()}: schema 1 manifests are not supported (the image is too old; re-push it)")
            top = digest
            # moby's id for this line: the tag, or the whole reference when pulling by digest
            out(progress.status(f"Pulling from {ref.path}", str(ref) if ref.digest else ref.tag_or_digest))
            if mt in INDEX_TYPES or ("manifests" in m and "layers" not in m):
                entries = m.get("manifests")
                if not isinstance(entries, list):
                    raise InvalidParameter("invalid image index: no manifests")
                chosen = _desc(platforms.choose(entries, want), "manifest")
                body, mt, digest = await asyncio.to_thread(client.get_manifest, chosen["digest"])
                m = parse_manifest(body)
                mt = m.get("mediaType") or chosen.get("mediaType") or mt
                if mt in INDEX_TYPES or "manifests" in m:
                    raise InvalidParameter("invalid image index: nested indexes are not supported")
        except RegistryError as e:
            raise registry_error(ref, e) from None
        if mt and mt not in MANIFEST_TYPES and "layers" not in m:
            raise InvalidParameter(f"unsupported manifest media type {mt!r} for {ref.familiar()}")
        if m.get("schemaVersion") != 2:
            raise InvalidParameter("invalid manifest: schemaVersion must be 2")
        cfg = _desc(m.get("config"), "config")
        cmt = str(cfg.get("mediaType") or "")
        if cmt == _PLUGIN_CONFIG or not (cmt.startswith(_CONFIG_PREFIXES) or cmt in _CONFIG_LEGACY):
            raise InvalidParameter(f"{ref.familiar()} is not a container image: config media type {cmt!r}")
        layers = m.get("layers")
        if not isinstance(layers, list):
            raise InvalidParameter("invalid manifest: no layers")
        for l in layers:
            _desc(l, "layer")
        return m, top, mt

    async def pull(self, ref: Reference, auth: AuthConfig | None, want: platforms.Platform | None,
                   out: Progress) -> tuple[ImageRec, str]:
        """Returns the image and the digest the reference resolved to (printed as `Digest:`).

        Docker Hub images try each `registry-mirrors` entry in order, then Docker Hub itself: as in moby,
        any failure on a mirror (unreachable, 404, 5xx, a broken blob…) moves on to the next endpoint,
        and the last endpoint's error is the one reported. The image is recorded under its docker.io
        name whichever endpoint served it."""
        return await via_endpoints(self.cfg, ref, auth, lambda client: self._pull_from(client, ref, want, out),
                                   self.closing)

    async def _pull_from(self, client: RegistryClient, ref: Reference, want: platforms.Platform | None,
                         out: Progress) -> tuple[ImageRec, str]:
        t0 = time.monotonic()
        try:
            m, top_digest, _ = await self.resolve_manifest(client, ref, want or platforms.host(), out)
            cfg_digest = m["config"]["digest"]
            rec = self.store.images.get(cfg_digest)
            if rec is None:
                rec = await self._pull_image(client, ref, m, want, out)
            log.debug("pulled %s in %.2fs", ref, time.monotonic() - t0)
            return rec, top_digest
        finally:
            client.close()

    async def _fetch_config(self, client: RegistryClient, desc: dict[str, Any]) -> bytes:
        digest = desc["digest"]

        def fetch() -> bytes:
            r = BlobReader(client, digest)
            try:
                data = b""
                while len(data) <= 8 << 20:
                    b = r.read(1 << 20)
                    if not b:
                        break
                    data += b
            finally:
                r.close()
            if len(data) > 8 << 20:
                raise InvalidParameter("image config larger than 8 MiB")
            return data

        async def work() -> bytes:
            if self.store.blobs.has(digest):
                return self.store.blobs.read(digest)
            data = await asyncio.to_thread(fetch)
            self.store.blobs.put(data, expected=digest)
            return data

        try:
            return await self.config_flight.run(digest, work)
        except RegistryError as e:
            raise SystemError_(f"fetching image config {digest}: {e.message}") from None
        except DigestMismatch:
            raise InvalidParameter(f"image config verification failed for digest {digest}") from None

    async def _pull_image(self, client: RegistryClient, ref: Reference, m: dict[str, Any],
                          want: platforms.Platform | None, out: Progress) -> ImageRec:
        cfg_bytes = await self._fetch_config(client, m["config"])
        try:
            cfg = json.loads(cfg_bytes)
            diff_ids = list(cfg["rootfs"]["diff_ids"])
        except (ValueError, KeyError, TypeError):
            raise InvalidParameter("invalid image config: no rootfs.diff_ids") from None
        for d in diff_ids:
            check_digest(d)
        layers = m["layers"]
        if len(layers) != len(diff_ids):
            raise InvalidParameter(f"invalid image: the manifest has {len(layers)} layers, the config {len(diff_ids)} diff IDs")
        if want is not None and not platforms.matches(cfg, want):
            got = platforms.normalize(str(cfg.get("os") or ""), str(cfg.get("architecture") or ""), str(cfg.get("variant") or ""))
            raise InvalidParameter(f"image with reference {ref.familiar()} was found but its platform ({got}) does not "
                                   f"match the specified platform ({want})")
        chains = chain_ids(diff_ids)
        with self.pinned(chains):
            return await self._pull_layers(client, m, cfg_bytes, diff_ids, chains, out)

    async def _pull_layers(self, client: RegistryClient, m: dict[str, Any], cfg_bytes: bytes, diff_ids: list[str],
                           chains: list[str], out: Progress) -> ImageRec:
        layers = m["layers"]
        ref_repo = f"{client.domain}/{client.repo}"
        jobs = []
        for i, (desc, diff_id, cid) in enumerate(zip(layers, diff_ids, chains)):
            short = desc["digest"][7:19]
            if cid in self.store.layers:
                if any(b["digest"] == desc["digest"] for b in self.store.layers[cid].blobs):
                    self.store.add_layer_blob(cid, {"digest": desc["digest"], "repos": [ref_repo]})
                out(progress.status("Already exists", short))
                continue
            out(progress.status("Pulling fs layer", short))
            jobs.append((desc, diff_id, cid, chains[i - 1] if i else None, short))
        if jobs:
            results = await asyncio.gather(*(self._layer(client, *j, out) for j in jobs), return_exceptions=True)
            for r in results:
                if isinstance(r, BaseException):
                    raise r
        return self.store.add_image(cfg_bytes)

    async def _layer(self, client: RegistryClient, desc: dict[str, Any], diff_id: str, cid: str, parent: str | None,
                     short: str, out: Progress) -> LayerRec:
        t = self.transfers.get(cid)
        if t is None:
            t = self.transfers[cid] = _Transfer(short)
        t.watchers.append(out)

        async def work() -> LayerRec:
            try:
                if self.sem.locked():
                    t.emit(progress.status("Waiting", short))
                async with self.sem:
                    if cid in self.store.layers:
                        return self.store.layers[cid]
                    loop = asyncio.get_running_loop()

                    def emit(msg: dict[str, Any]) -> None:
                        loop.call_soon_threadsafe(t.emit, msg)

                    t0 = time.monotonic()
                    rec, tmp, writer = await asyncio.to_thread(self._download_unpack, client, desc, diff_id, cid, parent,
                                                               short, emit)
                    log.debug("layer %s: %d bytes fetched and unpacked in %.2fs", short, desc.get("size", -1),
                              time.monotonic() - t0)
                    # Renames happen here, on the loop, so garbage collection never sees a blob without its layer.
                    writer.commit(desc["digest"])
                    rec = self.store.commit_layer(rec, tmp)
                    t.emit(progress.status("Pull complete", short))
                    return rec
            finally:
                self.transfers.pop(cid, None)

        try:
            return await self.flight.run(cid, work)
        finally:
            if out in t.watchers:
                t.watchers.remove(out)

    def _download_unpack(self, client: RegistryClient, desc: dict[str, Any], diff_id: str, cid: str,
                         parent: str | None, short: str, emit: Callable[[dict[str, Any]], None]
                         ) -> tuple[LayerRec, Path, BlobWriter]:
        """Runs in a worker thread: blob → (hash, blob file) → decompress → (hash) → unpack, in one pass."""
        store = self.store
        limits: Limits = self.limits
        digest = desc["digest"]
        size = int(desc.get("size") or -1)
        name, tmp = store.new_layer_dir()
        writer = store.blobs.writer()
        thr = progress.Throttle()
        reader: BlobReader | None = None
        try:
            reader = BlobReader(client, digest)
            total = size if size > 0 else reader.total

            def on_compressed(n: int) -> None:
                if self.closing.is_set():
                    raise SystemError_("the daemon is shutting down")
                if size > 0 and n > size:
                    raise InvalidParameter(f"blob {digest} is larger than its descriptor says ({size} bytes)")
                if thr.ready():
                    emit(progress.status("Downloading", short, current=n, total=total))

            comp = HashingReader(reader, tee=writer.write, check=on_compressed)
            if self._unpacking.acquire(blocking=False):
                # Nobody is unpacking: download, verify, decompress and unpack in one pass.
                try:
                    res, tar = _unpack_stream(comp, tmp, limits, lambda: comp.count)
                finally:
                    self._unpacking.release()
                comp.drain()
                emit(progress.status("Verifying Checksum", short))
                if comp.digest != digest:
                    raise DigestMismatch(f"filesystem layer verification failed for digest {digest}")
                emit(progress.status("Download complete", short))
            else:
                # Another layer is being unpacked: finish the download (and its digest check) meanwhile,
                # then unpack from the stored blob. One unpack at a time keeps the interpreter lock with
                # the thread that creates files instead of bouncing between several (as dockerd does).
                comp.drain()
                emit(progress.status("Verifying Checksum", short))
                if comp.digest != digest:
                    raise DigestMismatch(f"filesystem layer verification failed for digest {digest}")
                emit(progress.status("Download complete", short))
                writer.finish()
                with self._unpacking, open(writer.tmp, "rb") as f:
                    res, tar = _unpack_stream(f, tmp, limits, lambda: comp.count)
            if tar.digest != diff_id:
                raise LayerError(f"layer {short}: content does not match the image config "
                                 f"(diff ID {tar.digest}, expected {diff_id})")
            emit(progress.status("Extracting", short, current=comp.count, total=comp.count))
            writer.finish()
            mt = str(desc.get("mediaType") or "")
            blob = {"digest": digest, "mediaType": mt, "size": comp.count, "repos": [client.domain + "/" + client.repo]}
            return LayerRec(cid, diff_id, parent, name, res.size, [blob], tar.count), tmp, writer
        except RegistryError as e:
            writer.abort()
            shutil.rmtree(tmp, ignore_errors=True)
            raise SystemError_(f"downloading layer {digest}: {e.message}") from None
        except BaseException:
            writer.abort()
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            if reader is not None:
                reader.close()
