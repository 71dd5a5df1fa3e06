"""Images in and out of tarballs: layers from a diff tar (commit/build), import of a rootfs tarball,
and `docker save`/`docker load` archives (Docker's `manifest.json` layout, plus an OCI layout).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import posixpath
import queue
import secrets
import shutil
import tarfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from skiffbox.guest.errors import EngineError, InvalidParameter, SystemError_
from skiffbox.guest.images import progress as pmsg
from skiffbox.guest.images.blobs import BlobWriter, check_digest, sha256_bytes
from skiffbox.guest.images.image import familiar
from skiffbox.guest.images.layers import unpack
from skiffbox.guest.images.progress import Progress
from skiffbox.guest.images.reference import parse_normalized
from skiffbox.guest.images.store import ImageRec, LayerRec, chain_ids
from skiffbox.guest.images.streams import CHUNK, FullReader, HashingReader, Prefetcher, Readable, decompressed
from skiffbox.guest.images.tarsafety import members, open_stream

if TYPE_CHECKING:
    from skiffbox.guest.images.service import ImageService

log = logging.getLogger("skiffd.images")

MT_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"


def _unpack_tar_into_store(svc: "ImageService", src: Readable,
                           compressed_ok: bool = True) -> tuple[str, Path, BlobWriter, str, int, int]:
    """Worker-thread half: unpack `src` (optionally compressed) into a new layer dir, keeping the
    uncompressed tar as a blob (its digest is the diff ID). Returns (dir name, tmp dir, writer, diff_id, size,
    tar size)."""
    store = svc.store
    name, tmp = store.new_layer_dir()
    writer = store.blobs.writer()
    try:
        raw = decompressed(src) if compressed_ok else src
        tar = HashingReader(raw, tee=writer.write)
        pre = Prefetcher(tar)
        try:
            res = unpack(pre, tmp, svc.limits)
            pre.drain()
        finally:
            pre.close()
        writer.finish()
        return name, tmp, writer, tar.digest, res.size, tar.count
    except BaseException:
        writer.abort()
        shutil.rmtree(tmp, ignore_errors=True)
        raise


async def add_layer_from_stream(svc: "ImageService", src: Readable, parent_chain: str | None) -> LayerRec:
    """Add one layer (from an uncompressed or compressed tar stream) on top of `parent_chain`."""
    name, tmp, writer, diff_id, size, nbytes = await asyncio.to_thread(_unpack_tar_into_store, svc, src)
    cid = chain_ids([parent_chain, diff_id])[1] if parent_chain else diff_id
    existing = svc.store.layers.get(cid)
    if existing is not None:
        writer.abort()
        await asyncio.to_thread(shutil.rmtree, tmp, True)
        return existing
    writer.commit(diff_id)
    rec = LayerRec(cid, diff_id, parent_chain, name, size, [{"digest": diff_id, "mediaType": MT_LAYER_TAR, "size": nbytes}],
                   nbytes)
    return svc.store.commit_layer(rec, tmp)


async def add_layer_from_tar(svc: "ImageService", path: Path, parent_chain: str | None) -> LayerRec:
    f: BinaryIO = open(path, "rb")
    try:
        return await add_layer_from_stream(svc, f, parent_chain)
    finally:
        f.close()


# ---------------------------------------------------------------------------------------------
# Bridges between the event loop and worker threads for big streams
# ---------------------------------------------------------------------------------------------


class QueueReader:
    """A blocking reader (for a worker thread) over chunks the event loop feeds in (a request body)."""

    def __init__(self, maxsize: int = 16) -> None:
        self.q: queue.Queue[bytes | None | BaseException] = queue.Queue(maxsize)
        self._buf = b""
        self._eof = False

    async def feed(self, chunks: AsyncIterator[bytes]) -> None:
        try:
            async for c in chunks:
                await asyncio.to_thread(self.q.put, c)
            await asyncio.to_thread(self.q.put, None)
        except BaseException as e:
            self.abort(e)
            raise

    @contextlib.asynccontextmanager
    async def feeding(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[None]:
        """Feed `chunks` in the background while the block reads. When the source itself fails (an import URL that
        is no URL, a download error) that error is the one raised, and the feeder's outcome is always collected."""
        feeder = asyncio.ensure_future(self.feed(chunks))
        try:
            yield
        except BaseException:
            err = feeder.exception() if feeder.done() and not feeder.cancelled() else None
            if isinstance(err, EngineError):
                raise err from None
            raise
        finally:
            if not feeder.done():
                feeder.cancel()
            elif not feeder.cancelled():
                feeder.exception()  # collected: asyncio would otherwise log it as never retrieved

    def abort(self, e: BaseException) -> None:
        """Wake the reading thread with an error, without blocking (cancellation, shutdown)."""
        while True:
            try:
                self.q.put_nowait(e)
                return
            except queue.Full:
                try:
                    self.q.get_nowait()
                except queue.Empty:
                    pass

    def read(self, n: int = -1) -> bytes:
        while not self._buf and not self._eof:
            item = self.q.get()
            if item is None:
                self._eof = True
            elif isinstance(item, BaseException):
                self._eof = True
                raise InvalidParameter(f"reading the request body failed: {item}")
            else:
                self._buf = item
        if n is None or n < 0:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def drain_in_thread(self) -> None:
        while self.read(CHUNK):
            pass


class PipeWriter:
    """A writer for a worker thread whose bytes an async generator yields (a response body)."""

    def __init__(self, maxsize: int = 8) -> None:
        self.q: queue.Queue[bytes | None | BaseException] = queue.Queue(maxsize)
        self._buf = bytearray()
        self.closed = False

    def write(self, b: bytes) -> int:
        if self.closed:
            raise BrokenPipeError("client went away")
        self._buf += b
        if len(self._buf) >= CHUNK:
            self.q.put(bytes(self._buf))
            self._buf.clear()
        return len(b)

    def flush(self) -> None:
        pass

    def finish(self, err: BaseException | None = None) -> None:
        if self._buf:
            self.q.put(bytes(self._buf))
            self._buf.clear()
        self.q.put(err)

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            while True:
                item = await asyncio.to_thread(self.q.get)
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.closed = True
            while True:  # unblock a writer waiting on a full queue
                try:
                    self.q.get_nowait()
                except queue.Empty:
                    break


# ---------------------------------------------------------------------------------------------
# docker save
# ---------------------------------------------------------------------------------------------


def _tar_file(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mode, ti.mtime = len(data), 0o644, 0
    tf.addfile(ti, io.BytesIO(data))


def _tar_dir(tf: tarfile.TarFile, name: str) -> None:
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, 0
    tf.addfile(ti)


class _LayerSource:
    """The uncompressed tar of a stored layer, read from its blob (decompressed on the fly)."""

    def __init__(self, svc: "ImageService", layer: LayerRec) -> None:
        self.svc, self.layer = svc, layer

    def open(self) -> tuple[Readable, Callable[[], None]]:
        blob = next((b for b in self.layer.blobs if self.svc.store.blobs.has(b["digest"])), None)
        if blob is None:
            raise SystemError_(f"layer {self.layer.diff_id} has no stored content")
        f = self.svc.store.blobs.open(blob["digest"])
        return decompressed(f), f.close

    def size(self) -> int:
        if self.layer.tar_size >= 0:
            return self.layer.tar_size
        r, close = self.open()
        try:
            n = 0
            while True:
                b = r.read(CHUNK)
                if not b:
                    return n
                n += len(b)
        finally:
            close()


def _write_save(svc: "ImageService", items: list[tuple[ImageRec, list[str]]], out: PipeWriter) -> None:
    """Moby 25+'s `docker save` layout: OCI layout (index.json, blobs/) plus the legacy manifest.json."""
    # typeshed wants a seekable file object; the stream mode "w|" only writes
    tf = tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT)  # type: ignore[call-overload]
    written: set[str] = set()
    manifest_json: list[dict[str, Any]] = []
    index_entries: list[dict[str, Any]] = []
    repositories: dict[str, dict[str, str]] = {}
    _tar_dir(tf, "blobs")
    _tar_dir(tf, "blobs/sha256")
    for rec, tags in items:
        layer_paths = []
        oci_layers = []
        for cid in rec.chain_ids:
            layer = svc.store.layers[cid]
            path = f"blobs/sha256/{layer.diff_id[7:]}"
            src = _LayerSource(svc, layer)
            size = src.size()
            if layer.diff_id not in written:
                ti = tarfile.TarInfo(path)
                ti.size, ti.mode, ti.mtime = size, 0o644, 0
                r, close = src.open()
                try:
                    h = HashingReader(r)
                    tf.addfile(ti, FullReader(h))
                finally:
                    close()
                if h.digest != layer.diff_id:
                    raise SystemError_(f"layer {layer.diff_id} is corrupted in the store")
                written.add(layer.diff_id)
            layer_paths.append(path)
            oci_layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.diff_id, "size": size})
        cfg = svc.store.blobs.read(rec.id)
        if rec.id not in written:
            _tar_file(tf, f"blobs/sha256/{rec.id[7:]}", cfg)
            written.add(rec.id)
        om = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                         "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": rec.id,
                                    "size": len(cfg)},
                         "layers": oci_layers}).encode()
        md = sha256_bytes(om)
        if md not in written:
            _tar_file(tf, f"blobs/sha256/{md[7:]}", om)
            written.add(md)
        fam = [familiar(t) for t in tags]
        manifest_json.append({"Config": f"blobs/sha256/{rec.id[7:]}", "RepoTags": fam or None, "Layers": layer_paths})
        names: list[str | None] = [*tags] or [None]
        for t in names:
            entry: dict[str, Any] = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": len(om)}
            if t:
                ref = parse_normalized(t)
                entry["annotations"] = {"io.containerd.image.name": str(ref), "org.opencontainers.image.ref.name": ref.tag}
                repositories.setdefault(ref.familiar_name, {})[ref.tag or "latest"] = rec.id[7:]
            index_entries.append(entry)
    _tar_file(tf, "index.json", json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                                            "manifests": index_entries}).encode())
    _tar_file(tf, "manifest.json", json.dumps(manifest_json).encode())
    _tar_file(tf, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
    if repositories:
        _tar_file(tf, "repositories", json.dumps(repositories).encode())
    tf.close()


async def save_stream(svc: "ImageService", names: list[str]) -> AsyncIterator[bytes]:
    """Resolve everything first (404 before any byte), then stream the archive from a worker thread."""
    if not names:
        raise InvalidParameter("no images given to save")
    by_id: dict[str, tuple[ImageRec, list[str]]] = {}

    def add(rec: ImageRec, tag: str | None) -> None:
        tags = by_id.setdefault(rec.id, (rec, []))[1]
        if tag and tag not in tags:
            tags.append(tag)

    for n in names:
        try:
            ref = parse_normalized(n)
        except InvalidParameter:
            ref = None
        if ref is not None and ref.tag is None and ref.digest is None:
            # A bare repository name saves every tag of it (as moby does).
            tagged = sorted(k for k, v in svc.store.refs.items() if "@" not in k and k.rsplit(":", 1)[0] == ref.name)
            if tagged:
                for k in tagged:
                    add(svc.store.images[svc.store.refs[k]], k)
                continue
        rec = svc.lookup(n)
        key = str(ref.tag_or_latest()) if ref is not None else None
        add(rec, key if key and ref is not None and not ref.digest and svc.store.refs.get(key) == rec.id else None)
    items = list(by_id.values())
    for rec, _ in items:
        svc.event("save", rec.id, rec.id)
    pipe = PipeWriter()

    def work() -> None:
        try:
            _write_save(svc, items, pipe)
            pipe.finish()
        except BaseException as e:  # the client sees a truncated tar; the log says why
            log.error("docker save failed: %s", e)
            pipe.finish(e)

    loop = asyncio.get_running_loop()
    loop.run_in_executor(None, work)
    return pipe.chunks()


# ---------------------------------------------------------------------------------------------
# docker load
# ---------------------------------------------------------------------------------------------

_SMALL = 16 << 20  # JSON members (manifests, configs, index) are read into memory up to this size


class _Spool:
    """The members of an uploaded archive: small ones in memory, big ones (layers) in temp files.

    Member names are only keys; nothing is ever extracted by its name."""

    def __init__(self, tmpdir: Path) -> None:
        self.dir = tmpdir
        self.small: dict[str, bytes] = {}
        self.files: dict[str, Path] = {}
        self.links: dict[str, str] = {}

    def read_archive(self, src: Readable) -> None:
        def bad(reason: str) -> InvalidParameter:
            return InvalidParameter(f"invalid archive: {reason}")

        tf = open_stream(src, "r|*", bad)
        if tf is None:
            raise bad("empty file")
        n = 0
        with tf:
            for m in members(tf, bad):
                name = _norm(m.name)
                if m.issym() or m.islnk():
                    self.links[name] = _norm(os.path.join(os.path.dirname(name), m.linkname) if m.issym() else m.linkname)
                    continue
                if not m.isreg():
                    continue
                f = tf.extractfile(m)
                assert f is not None
                if m.size <= _SMALL and (name.endswith(".json") or "/" not in name or name.startswith("blobs/") and m.size < 1 << 20):
                    self.small[name] = f.read()
                else:
                    n += 1
                    p = self.dir / f"m{n}"
                    with open(p, "wb") as out:
                        shutil.copyfileobj(f, out, CHUNK)
                    self.files[name] = p

    def _resolve(self, name: str) -> str:
        name = _norm(name)
        for _ in range(8):
            if name in self.links:
                name = self.links[name]
        return name

    def get_bytes(self, name: str) -> bytes:
        name = self._resolve(name)
        if name in self.small:
            return self.small[name]
        if name in self.files:
            if self.files[name].stat().st_size > _SMALL:
                raise InvalidParameter(f"archive member {name} is too large")
            return self.files[name].read_bytes()
        raise InvalidParameter(f"invalid archive: {name} is missing")

    def open(self, name: str) -> BinaryIO:
        name = self._resolve(name)
        if name in self.small:
            return io.BytesIO(self.small[name])
        if name in self.files:
            return open(self.files[name], "rb")
        raise InvalidParameter(f"invalid archive: {name} is missing")

    def has(self, name: str) -> bool:
        name = self._resolve(name)
        return name in self.small or name in self.files


def _norm(name: str) -> str:
    n = posixpath.normpath("/" + name).lstrip("/")
    return "" if n == "." else n


def _json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        raise InvalidParameter(f"invalid archive: {what} is not JSON") from None


def _images_in(sp: _Spool) -> list[tuple[str, list[str], list[str]]]:
    """(config member, layer members, tags) per image: manifest.json first (Docker), else index.json (OCI)."""
    out: list[tuple[str, list[str], list[str]]] = []
    if sp.has("manifest.json"):
        m = _json(sp.get_bytes("manifest.json"), "manifest.json")
        if not isinstance(m, list):
            raise InvalidParameter("invalid archive: manifest.json is not a list")
        for e in m:
            if not isinstance(e, dict) or not isinstance(e.get("Config"), str) or not isinstance(e.get("Layers"), list):
                raise InvalidParameter("invalid archive: bad entry in manifest.json")
            out.append((e["Config"], [str(x) for x in e["Layers"]], [str(t) for t in e.get("RepoTags") or []]))
        return out
    if sp.has("index.json"):
        idx = _json(sp.get_bytes("index.json"), "index.json")
        for d in idx.get("manifests") or []:
            out.extend(_oci_entry(sp, d, 0))
        return out
    raise InvalidParameter("invalid archive: no manifest.json or index.json (not a docker save or OCI archive)")


def _blob_path(digest: Any) -> str:
    check_digest(str(digest))
    return f"blobs/sha256/{str(digest)[7:]}"


def _oci_entry(sp: _Spool, d: Any, depth: int) -> list[tuple[str, list[str], list[str]]]:
    if depth > 2 or not isinstance(d, dict):
        return []
    m = _json(sp.get_bytes(_blob_path(d.get("digest"))), "an OCI manifest")
    ann = d.get("annotations") or {}
    name = ann.get("io.containerd.image.name") or ann.get("org.opencontainers.image.ref.name") or ""
    tags: list[str] = []
    if name:
        try:
            parse_normalized(name)
            tags = [name]
        except InvalidParameter:
            tags = []
    if "manifests" in m:  # a nested index (multi-platform): take the host's platform
        from skiffbox.guest.images import platforms

        try:
            chosen = platforms.choose(m["manifests"], platforms.host())
        except EngineError:
            return []
        sub = _oci_entry(sp, chosen, depth + 1)
        return [(c, l, tags or t) for c, l, t in sub]
    cfg = m.get("config") or {}
    layers = [_blob_path(l.get("digest")) for l in m.get("layers") or [] if isinstance(l, dict)]
    return [(_blob_path(cfg.get("digest")), layers, tags)]


async def _load_layers(svc: "ImageService", sp: _Spool, layer_names: list[str], diff_ids: list[str], chains: list[str],
                       out: Progress, quiet: bool) -> None:
    for i, (lname, diff_id, cid) in enumerate(zip(layer_names, diff_ids, chains)):
        if cid in svc.store.layers:
            continue
        if not quiet:
            out(pmsg.status("Loading layer", diff_id[7:19], current=0, total=0))
        f = sp.open(lname)
        try:
            rec = await add_layer_from_stream(svc, f, chains[i - 1] if i else None)
        finally:
            f.close()
        if rec.diff_id != diff_id:
            raise InvalidParameter(f"invalid archive: layer {lname} does not match diff ID {diff_id}")


async def load_archive(svc: "ImageService", src_chunks: AsyncIterator[bytes], out: Progress, quiet: bool) -> None:
    tmp = svc.root / f".tmp-load-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        reader = QueueReader()
        sp = _Spool(tmp)
        async with reader.feeding(src_chunks):
            await asyncio.to_thread(sp.read_archive, reader)
            await asyncio.to_thread(reader.drain_in_thread)
        entries = _images_in(sp)
        if not entries:
            raise InvalidParameter("invalid archive: it holds no image")
        for cfg_name, layer_names, tags in entries:
            cfg_bytes = sp.get_bytes(cfg_name)
            cfg = _json(cfg_bytes, "an image config")
            try:
                diff_ids = list(cfg["rootfs"]["diff_ids"])
            except (KeyError, TypeError):
                raise InvalidParameter("invalid archive: image config without rootfs.diff_ids") from None
            if len(diff_ids) != len(layer_names):
                raise InvalidParameter("invalid archive: layer count does not match the config's diff IDs")
            chains = chain_ids([check_digest(d) for d in diff_ids])
            with svc.pinned(chains):  # layers stay until the image that uses them is registered
                await _load_layers(svc, sp, layer_names, diff_ids, chains, out, quiet)
                rec = svc.store.add_image(cfg_bytes)
            loaded_tags = []
            for t in tags:
                ref = parse_normalized(t).tag_or_latest()
                if ref.digest:
                    continue
                old = svc.store.refs.get(str(ref))
                if old and old != rec.id:
                    out(pmsg.stream(f"The image {ref.familiar()} already exists, renaming the old one with ID {old} to empty string\n"))
                svc.set_tag(ref, rec.id)
                loaded_tags.append(ref.familiar())
            svc.event("load", rec.id, rec.id)
            if loaded_tags:
                for t in loaded_tags:
                    out(pmsg.stream(f"Loaded image: {t}\n"))
            else:
                out(pmsg.stream(f"Loaded image ID: {rec.id}\n"))
    finally:
        await asyncio.to_thread(shutil.rmtree, tmp, True)

