"""`Image`: what the rest of the engine gets from the image service (a snapshot, safe to keep)."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from skiffbox.guest.images.reference import Reference, parse_normalized


@functools.lru_cache(maxsize=8192)
def _parse_created(value: str) -> float:
    return _parse_created_uncached(value)


def parse_created(value: Any) -> float:
    return _parse_created(value) if isinstance(value, str) else 0.0


def _parse_created_uncached(value: Any) -> float:
    """RFC 3339 (with nanoseconds) from an image config → Unix seconds; 0 when absent or unparsable."""
    if not isinstance(value, str) or not value:
        return 0.0
    s = value.strip().replace("Z", "+00:00")
    m = re.match(r"^(.*T\d\d:\d\d:\d\d)(\.\d+)?(.*)$", s)
    if not m:
        return 0.0
    frac = float("0" + m.group(2)) if m.group(2) else 0.0
    try:
        dt = datetime.fromisoformat(m.group(1) + (m.group(3) or ""))
    except ValueError:
        return 0.0
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp() + frac


@functools.lru_cache(maxsize=8192)
def familiar(ref: str) -> str:
    """A stored (fully qualified) reference as Docker shows it: `busybox:latest`, `127.0.0.1:5000/x:y`."""
    try:
        return parse_normalized(ref).familiar()
    except Exception:
        return ref


def is_tag_ref(ref: str) -> bool:
    return "@" not in ref


@dataclass
class Image:
    """An image as the engine sees it.

    `config` is the whole image config (`config.Cmd/Entrypoint/Env/...`, `rootfs.diff_ids`, `history`,
    `architecture`, `os`). `layer_dirs()` gives the unpacked layers for overlayfs, LOWEST FIRST (reverse
    them for `lowerdir=`); it is empty for an image without layers (e.g. `FROM scratch` + metadata).
    """

    id: str
    config: dict[str, Any]
    repo_tags: list[str]
    repo_digests: list[str]
    created: float
    parent: str = ""
    size: int = 0
    chain_ids: list[str] = field(default_factory=list)
    _dirs: list[Path] = field(default_factory=list, repr=False)

    def layer_dirs(self) -> list[Path]:
        return list(self._dirs)

    @property
    def short_id(self) -> str:
        return self.id[7:19]

    @property
    def labels(self) -> dict[str, str]:
        return dict((self.config.get("config") or {}).get("Labels") or {})

    def primary_name(self) -> str:
        """What a container created from this image shows as its image when created by ID."""
        return self.repo_tags[0] if self.repo_tags else self.id


__all__ = ["Image", "Reference", "parse_created", "familiar", "is_tag_ref"]
