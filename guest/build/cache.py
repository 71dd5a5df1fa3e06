"""The build cache: (parent image, step) -> the image that step produced.

Keyed as Docker's classic builder keys it: the parent image ID plus the step's full description — the
history text, which for RUN carries the build args it sees (`|1 V=1 /bin/sh -c …`) and for COPY/ADD the
checksum of the source files (`COPY file:<sha> in /app/`). Everything else a step depends on (ENV,
WORKDIR, USER, SHELL, …) is already in the parent image's config, so an unchanged step on an unchanged
parent hits, and a changed file misses from that step on (its new layer gives every later step a new
parent). Entries whose image was removed are dropped when they are looked up.

One JSON file, rewritten atomically; builds in one daemon share it through one lock.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

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
