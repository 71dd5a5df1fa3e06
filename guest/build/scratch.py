"""A writable overlay of an image in the build's scratch space: COPY, ADD and WORKDIR write into its
merged view, and its upper dir — already in overlay's whiteout format — becomes the step's layer."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from skiffbox.guest.containers import rootfs


def upper_to_tar(upper: Path, dest: Path) -> Path | None:
    """An overlay upper dir as a layer tar (Docker's `.wh.` whiteouts), or None when nothing changed."""
    from skiffbox.guest.images.layers import write_tar

    if not any(os.scandir(upper)):
        return None
    with open(dest, "wb") as f:
        write_tar(upper, f)
    return dest


class Scratch:
    def __init__(self, d: Path, layers: list[Path]) -> None:
        self.dir = d
        self.layers = list(layers)  # lowest first
        self.merged = d / "merged"
        self.mounted = False

    def open(self) -> None:
        for sub in ("upper", "work", "merged"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        rootfs.mount_overlay(self.layers, self.dir / "upper", self.dir / "work", self.merged, self.dir / "empty")
        self.mounted = True

    def unmount(self) -> None:
        if self.mounted:
            rootfs.umount(str(self.merged))
            self.mounted = False

    def diff_tar(self) -> Path | None:
        return upper_to_tar(self.dir / "upper", self.dir / "diff.tar")

    def release_upper(self) -> None:
        """Free the copy once the diff tar exists (the tar stays until the layer is stored)."""
        shutil.rmtree(self.dir / "upper", ignore_errors=True)
        shutil.rmtree(self.dir / "work", ignore_errors=True)

    def close(self) -> None:
        self.unmount()
        shutil.rmtree(self.dir, ignore_errors=True)
