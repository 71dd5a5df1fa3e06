"""The build cache: (parent image, step) -> the image that step produced.

Keyed as Docker's classic builder keys it: the parent image ID plus the step's full description — the
history text, which for RUN carries the build args it sees (`|1 V=1 /bin/sh -c …`) and for COPY/ADD the
checksum of the source files (`COPY file:<sha> in /app/`). Everything else a step depends on (ENV,
WORKDIR, USER, SHELL, …) is already in the parent image's config, so an unchanged step on an unchanged
parent hits, and a changed file misses from that step on (its new layer gives every later step a new
parent). Entries whose image was removed are dropped when they are looked up.

One JSON file, rewritten atomically; builds in one daemon share it through one lock.

With `--cache-from` (the `cachefrom` query) the named images are the only cache sources, as in dockerd's classic
builder (moby's image/cache ImageCache): a step-cache hit counts only when its image is one of them or an
ancestor of one, and otherwise a step matches a source whose history continues the parent's history (same
entries, same layers) with the step's line next; the step's image is then that source, or, inside its history,
a new image over the parent with the source's layer for that entry (how a pulled image, which has no local
intermediate images, serves as cache). A name that is not an image is skipped; none left: nothing hits.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skiffbox.guest.images.image import Image
from skiffbox.guest.util.atomicfile import atomic_write


def step_key(parent_id: str, description: str) -> str:
    return hashlib.sha256(f"{parent_id}\n{description}".encode("utf-8", "surrogateescape")).hexdigest()


class BuildCache:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._entries: dict[str, dict[str, object]] = {}
        try:
            data = json.loads(path.read_text())
            if isinstance(data, dict):
                self._entries = {k: v for k, v in data.items() if isinstance(v, dict) and "image" in v}
        except (OSError, ValueError):
            pass

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, json.dumps(self._entries))

    def get(self, parent_id: str, description: str, exists: Callable[[str], bool]) -> str | None:
        key = step_key(parent_id, description)
        with self._lock:
            e = self._entries.get(key)
            if e is None:
                return None
            image = str(e["image"])
            if not exists(image):
                del self._entries[key]
                self._save()
                return None
            return image

    def put(self, parent_id: str, description: str, image_id: str) -> None:
        with self._lock:
            self._entries[step_key(parent_id, description)] = {"image": image_id, "time": time.time()}
            self._save()

    def images(self) -> set[str]:
        with self._lock:
            return {str(e["image"]) for e in self._entries.values()}

    def prune(self, keep: Callable[[str], bool] = lambda _i: False) -> list[str]:
        """Forget entries (all, or those whose image `keep` rejects); returns the images they named."""
        with self._lock:
            dropped = [k for k, e in self._entries.items() if not keep(str(e["image"]))]
            images = sorted({str(self._entries[k]["image"]) for k in dropped})
            for k in dropped:
                del self._entries[k]
            self._save()
            return images

    def __len__(self) -> int:
        return len(self._entries)


@dataclass
class SourceMatch:
    """A cache source's history entry that continues the parent: `image` is the source itself when that entry is
    its last, else the entry and its layer (None for an empty-layer entry) make the step's image."""
    image: Image | None
    entry: dict[str, Any]
    layer: str | None


class CacheSources:
    """The images named in `--cache-from` and everything they were built on (by parent ID)."""

    def __init__(self, sources: list[Image], ancestry: set[str]) -> None:
        self.sources = sources
        self.ancestry = ancestry

    def accepts(self, image_id: str) -> bool:
        return image_id in self.ancestry

    def match(self, parent: Image | None, created_by: str) -> SourceMatch | None:
        p_hist = _history(parent)
        p_layers = _diff_ids(parent)
        n = len(p_hist)
        for src in self.sources:
            hist, layers = _history(src), _diff_ids(src)
            if len(hist) <= n or hist[:n] != p_hist or layers[:len(p_layers)] != p_layers:
                continue
            entry = hist[n]
            if entry.get("created_by") != created_by:
                continue
            if n == len(hist) - 1:
                return SourceMatch(src, entry, None)
            if entry.get("empty_layer"):
                return SourceMatch(None, entry, None)
            index = sum(1 for h in hist[:n] if not h.get("empty_layer"))
            if index >= len(layers):
                continue
            return SourceMatch(None, entry, layers[index])
        return None


def _history(img: Image | None) -> list[dict[str, Any]]:
    return list(img.config.get("history") or []) if img is not None else []


def _diff_ids(img: Image | None) -> list[str]:
    return list((img.config.get("rootfs") or {}).get("diff_ids") or []) if img is not None else []
