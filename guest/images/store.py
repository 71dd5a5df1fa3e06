"""Image metadata on disk: layers (one per chain ID), images (ID = sha256 of the config) and references.

Layout under `<data-root>/image/`:
  blobs/sha256/<hex>      configs and layer blobs (content store, see blobs.py)
  l/<short>/              one unpacked layer (an overlay lower dir); short names keep mount options small
  layers/<chain-hex>.json layer record, written only after its directory is complete
  db/<id-hex>.json        image record, written only after its layers and config blob exist
  repositories.json       tags and digests → image ID

Every file is written to a temp name and renamed, and each record is written only after what it points to
exists, so a daemon killed at any moment leaves either the old state or the new one; `load()` removes what
a crash left half-made (temp dirs, unreferenced layers and blobs).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skiffbox.guest.images.blobs import BlobStore, check_digest
from skiffbox.guest.util.atomicfile import TMP_PREFIX, atomic_write, durable_rename

log = logging.getLogger("skiffd.images")


def chain_ids(diff_ids: list[str]) -> list[str]:
    """ChainID(L0) = DiffID(L0); ChainID(L0..n) = sha256(ChainID(L0..n-1) + " " + DiffID(n))."""
    import hashlib

    out: list[str] = []
    for d in diff_ids:
        if not out:
            out.append(d)
        else:
            out.append("sha256:" + hashlib.sha256(f"{out[-1]} {d}".encode()).hexdigest())
    return out


@dataclass
class LayerRec:
    chain_id: str
    diff_id: str
    parent: str | None
    dir: str
    size: int
    # Where the layer's bytes can be had for push/save: compressed blobs as pulled (with the repository
    # they came from, for cross-repository mounts), or the tar itself.
    blobs: list[dict[str, Any]] = field(default_factory=list)
    tar_size: int = -1  # bytes of the uncompressed tar (what `docker save` writes)

    def to_json(self) -> dict[str, Any]:
        return {"chain_id": self.chain_id, "diff_id": self.diff_id, "parent": self.parent, "dir": self.dir,
                "size": self.size, "blobs": self.blobs, "tar_size": self.tar_size}


@dataclass
class ImageRec:
    id: str
    config: dict[str, Any]
    config_size: int
    parent: str = ""
    created_local: float = 0.0
    last_tag_time: float = 0.0
    hidden: bool = False  # deleted while a container still uses it: kept for its layers only
    _chains: list[str] | None = field(default=None, repr=False, compare=False)

    @property
    def diff_ids(self) -> list[str]:
        return list((self.config.get("rootfs") or {}).get("diff_ids") or [])

    @property
    def chain_ids(self) -> list[str]:
        if self._chains is None:  # configs never change: compute once
            self._chains = chain_ids(self.diff_ids)
        return self._chains

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "parent": self.parent, "created_local": self.created_local,
                "last_tag_time": self.last_tag_time, "hidden": self.hidden}


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = BlobStore(root / "blobs")
        self.ldir = root / "l"
        self.layer_db = root / "layers"
        self.image_db = root / "db"
        self.refs_file = root / "repositories.json"
        for d in (self.ldir, self.layer_db, self.image_db):
            d.mkdir(parents=True, exist_ok=True)
        self.layers: dict[str, LayerRec] = {}
        self.images: dict[str, ImageRec] = {}
        self.hidden: dict[str, ImageRec] = {}  # deleted images whose layers containers still use
        self.refs: dict[str, str] = {}  # "docker.io/library/busybox:latest" / "…@sha256:…" → image ID
        self._by_id: dict[str, set[str]] = {}  # the reverse of `refs`, for listing many images quickly

    # -- loading and recovery ----------------------------------------------------------------
    def load(self) -> None:
        self.blobs.cleanup_tmp()
        for p in self.ldir.iterdir():
            if p.name.startswith(TMP_PREFIX):
                _rmtree(p)
        for d in (self.layer_db, self.image_db, self.root):
            for p in d.glob(f"{TMP_PREFIX}*"):
                if p.is_file():
                    p.unlink()
        for p in self.layer_db.glob("*.json"):
            try:
                j = json.loads(p.read_text())
                rec = LayerRec(j["chain_id"], j["diff_id"], j.get("parent"), j["dir"], int(j.get("size", 0)), j.get("blobs") or [],
                               int(j.get("tar_size", -1)))
            except (OSError, ValueError, KeyError, TypeError):
                log.warning("dropping unreadable layer record %s", p)
                p.unlink()
                continue
            if not (self.ldir / rec.dir).is_dir():
                log.warning("layer %s lost its directory; dropping it", rec.chain_id)
                p.unlink()
                continue
            self.layers[rec.chain_id] = rec
        for p in self.image_db.glob("*.json"):
            iid = "sha256:" + p.stem
            try:
                j = json.loads(p.read_text())
                raw = self.blobs.read(iid)
                cfg = json.loads(raw)
            except (OSError, ValueError) as e:
                log.warning("dropping image %s: %s", iid, e)
                p.unlink()
                continue
            img = ImageRec(iid, cfg, len(raw), j.get("parent") or "", float(j.get("created_local") or 0),
                           float(j.get("last_tag_time") or 0), bool(j.get("hidden")))
            if any(c not in self.layers for c in img.chain_ids):
                log.warning("dropping image %s: a layer is missing", iid)
                p.unlink()
                continue
            (self.hidden if img.hidden else self.images)[iid] = img
        try:
            refs = json.loads(self.refs_file.read_text())
        except (OSError, ValueError):
            refs = {}
        self.refs = {k: v for k, v in refs.items() if v in self.images}
        for k, v in self.refs.items():
            self._by_id.setdefault(v, set()).add(k)
        if self.refs != refs:
            self.save_refs()
        self.gc()

    def gc(self, busy: set[str] | None = None) -> list[tuple[str, Path]]:
        """Drop layers no image uses (and not `busy`: being pulled), then unreferenced blobs.

        Returns (chain ID, trash dir) for each removed layer; the caller deletes the trash dirs (slow for
        big layers, so off the event loop). At start (`busy is None`) stray directories go too."""
        used: set[str] = set(busy or ())
        for img in (*self.images.values(), *self.hidden.values()):
            used.update(img.chain_ids)
        removed = []
        for c in [c for c in list(self.layers) if c not in used]:
            removed.append((c, self.remove_layer(c)))
        keep_blobs = set(self.images) | set(self.hidden)
        for l in self.layers.values():
            keep_blobs.update(b["digest"] for b in l.blobs)
        for d in list(self.blobs.digests()):
            if d not in keep_blobs and d not in (busy or ()):
                self.blobs.delete(d)
        dirs = {l.dir for l in self.layers.values()}
        for p in self.ldir.iterdir():
            if p.name not in dirs and not p.name.startswith(TMP_PREFIX) and busy is None:
                _rmtree(p)
        if busy is None:
            for _, trash in removed:
                _rmtree(trash)
        return removed

    # -- layers --------------------------------------------------------------------------------
    def new_layer_dir(self) -> tuple[str, Path]:
        """A temp directory to unpack into; `commit_layer` renames it to its final short name."""
        name = secrets.token_hex(6)
        tmp = self.ldir / f"{TMP_PREFIX}{name}"
        tmp.mkdir(mode=0o755)
        return name, tmp

    def commit_layer(self, rec: LayerRec, tmp: Path) -> LayerRec:
        existing = self.layers.get(rec.chain_id)
        if existing is not None:  # someone else finished the same layer first
            _rmtree(tmp)
            return existing
        durable_rename(tmp, self.ldir / rec.dir)  # the files on disk before the record that names them
        try:
            atomic_write(self.layer_db / f"{rec.chain_id[7:]}.json", json.dumps(rec.to_json()).encode())
        except BaseException:
            os.replace(self.ldir / rec.dir, tmp)  # the caller still owns (and removes) the unpacked layer
            raise
        self.layers[rec.chain_id] = rec
        return rec

    def add_layer_blob(self, chain_id: str, blob: dict[str, Any]) -> None:
        rec = self.layers[chain_id]
        blobs = [dict(b) for b in rec.blobs]  # the record changes only once the new one is on disk
        for b in blobs:
            if b["digest"] == blob["digest"]:
                # Oldest first, most recently seen last: pushes prefer recent mount sources (as moby does).
                old = list(b.get("repos") or [])
                repos = [r for r in old if r not in (blob.get("repos") or [])] + list(blob.get("repos") or [])
                if repos == old:
                    return
                b["repos"] = repos
                break
        else:
            blobs.append(blob)
        atomic_write(self.layer_db / f"{chain_id[7:]}.json", json.dumps({**rec.to_json(), "blobs": blobs}).encode())
        rec.blobs = blobs

    def remove_layer(self, chain_id: str) -> Path:
        """Forget a layer and move its directory aside (a `.tmp-` name, so a crash still cleans it up)."""
        rec = self.layers.pop(chain_id)
        try:
            (self.layer_db / f"{chain_id[7:]}.json").unlink()
        except FileNotFoundError:
            pass
        d = self.ldir / rec.dir
        gone = self.ldir / f"{TMP_PREFIX}rm-{rec.dir}"
        if d.exists():
            os.replace(d, gone)
        return gone

    def layer_path(self, chain_id: str) -> Path:
        return self.ldir / self.layers[chain_id].dir

    # -- images --------------------------------------------------------------------------------
    def add_image(self, config_bytes: bytes, parent: str = "") -> ImageRec:
        iid = self.blobs.put(config_bytes)
        cfg = json.loads(config_bytes)
        existing = self.images.get(iid)
        if existing is not None:
            return existing
        if iid in self.hidden:  # pulled or built again: visible again
            rec = self.hidden[iid]
            self._write_image(rec, hidden=False)
            rec.hidden = False
            self.images[iid] = self.hidden.pop(iid)
            return rec
        for c in chain_ids(list((cfg.get("rootfs") or {}).get("diff_ids") or [])):
            if c not in self.layers:
                raise RuntimeError(f"layer {c} missing for image {iid}")
        rec = ImageRec(iid, cfg, len(config_bytes), parent, time.time())
        self._write_image(rec)
        self.images[iid] = rec
        return rec

    def _write_image(self, rec: ImageRec, **changes: Any) -> None:
        atomic_write(self.image_db / f"{rec.id[7:]}.json", json.dumps({**rec.to_json(), **changes}).encode())

    # Each change below is written first and made in memory only once it is on disk: a failed write (a full
    # disk) leaves the store as it was, in memory as on disk.
    def touch_tag_time(self, iid: str) -> None:
        rec = self.images[iid]
        now = time.time()
        self._write_image(rec, last_tag_time=now)
        rec.last_tag_time = now

    def hide_image(self, iid: str) -> None:
        """Deleted for users, kept for the containers that still run from its layers."""
        rec = self.images[iid]
        self._untag_all(iid)
        self._write_image(rec, hidden=True)
        rec.hidden = True
        self.hidden[iid] = self.images.pop(iid)

    def remove_image(self, iid: str) -> None:
        self._untag_all(iid)
        try:
            (self.image_db / f"{iid[7:]}.json").unlink()
        except FileNotFoundError:
            pass
        self.images.pop(iid, None)
        self.hidden.pop(iid, None)

    def _untag_all(self, iid: str) -> None:
        gone = self._by_id.get(iid, set())
        if gone:
            self._write_refs({k: v for k, v in self.refs.items() if k not in gone})
            for k in gone:
                del self.refs[k]
        self._by_id.pop(iid, None)

    def children(self, iid: str) -> list[str]:
        return [i.id for i in self.images.values() if i.parent == iid]

    def search(self, prefix: str) -> list[str]:
        p = prefix[7:] if prefix.startswith("sha256:") else prefix
        if not p or any(c not in "0123456789abcdef" for c in p):
            return []
        return [i for i in self.images if i[7:].startswith(p)]

    # -- references ----------------------------------------------------------------------------
    def save_refs(self) -> None:
        self._write_refs(self.refs)

    def _write_refs(self, refs: dict[str, str]) -> None:
        atomic_write(self.refs_file, json.dumps(refs, indent=1, sort_keys=True).encode())

    def refs_for(self, iid: str) -> list[str]:
        return sorted(self._by_id.get(iid, ()))

    def set_ref(self, ref: str, iid: str) -> str | None:
        old = self.refs.get(ref)
        self._write_refs({**self.refs, ref: iid})
        if old is not None:
            self._by_id.get(old, set()).discard(ref)
        self.refs[ref] = iid
        self._by_id.setdefault(iid, set()).add(ref)
        return old

    def remove_ref(self, ref: str) -> None:
        old = self.refs.get(ref)
        if old is not None:
            self._write_refs({k: v for k, v in self.refs.items() if k != ref})
            del self.refs[ref]
            self._by_id.get(old, set()).discard(ref)

    def parents(self) -> set[str]:
        """IDs that are some image's parent (images with children)."""
        return {i.parent for i in self.images.values() if i.parent}


def _rmtree(p: Path) -> None:
    shutil.rmtree(p, ignore_errors=True)


__all__ = ["Store", "LayerRec", "ImageRec", "chain_ids", "atomic_write", "check_digest"]
