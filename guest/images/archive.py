"""Images in and out of tarballs: layers from a diff tar (commit/build), import of a rootfs tarball,
and `docker save`/`docker load` archives (Docker's `manifest.json` layout, plus an OCI layout).
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from guest.images.layers import unpack
from guest.images.store import LayerRec, chain_ids
from guest.images.streams import HashingReader, Readable, decompressed

if TYPE_CHECKING:
    from guest.images.service import ImageService

MT_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"


def _unpack_tar_into_store(svc: "ImageService", src: Readable, compressed_ok: bool = True):
    """Worker-thread half: unpack `src` (optionally compressed) into a new layer dir, keeping the
    uncompressed tar as a blob (its digest is the diff ID). Returns (dir name, tmp dir, writer, diff_id, size)."""
    store = svc.store
    name, tmp = store.new_layer_dir()
    writer = store.blobs.writer()
    try:
        raw = decompressed(src) if compressed_ok else src
        tar = HashingReader(raw, tee=writer.write)
        res = unpack(tar, tmp, svc.limits)
        tar.drain()
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
    rec = LayerRec(cid, diff_id, parent_chain, name, size, [{"digest": diff_id, "mediaType": MT_LAYER_TAR, "size": nbytes}])
    return svc.store.commit_layer(rec, tmp)


async def add_layer_from_tar(svc: "ImageService", path: Path, parent_chain: str | None) -> LayerRec:
    f: BinaryIO = open(path, "rb")
    try:
        return await add_layer_from_stream(svc, f, parent_chain)
    finally:
        f.close()
