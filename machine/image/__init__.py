"""The VM's boot image (what boot2docker.iso was): download+cache, NoCloud seed, offline build.

`resolve(spec)` turns what the user gave (`--qemu-boot-image`) into a local image:

    ""/"debian"      the official Debian 12 cloud image (downloaded once, checksum from SHA512SUMS)
    "build"          the image `machine image build` makes from Debian packages (built if missing)
    http(s)://…      any image URL, verified if it carries `#sha256=…`/`#sha512=…` (pinned: `upgrade`
                     keeps it), else by a SHA256SUMS/SHA512SUMS beside it that lists the file
    PATH             a local disk image, or a folder made by `machine image build`
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from skiffbox.machine.image.cache import DEBIAN_CLOUD_SUMS, DEBIAN_CLOUD_URL, ImageCache, ProgressFn
from skiffbox.machine.image.errors import ImageError

__all__ = ["ImageError", "ResolvedImage", "resolve", "text_progress"]


@dataclass
class ResolvedImage:
    disk: Path
    format: str  # qcow2 | raw | vmdk | vdi (as qemu-img names it)
    virtual_size: int
    source: str  # what the user asked for, for `inspect`
    kernel: Path | None = None  # direct kernel boot when the image ships one (our built image)
    initrd: Path | None = None
    cmdline: str | None = None
    has_runtime: bool = False  # True: engine packages are in the image; False: the seed installs them

    def to_config(self) -> dict:
        return {"Disk": str(self.disk), "Format": self.format, "VirtualSize": self.virtual_size,
                "Source": self.source, "Kernel": str(self.kernel) if self.kernel else "",
                "Initrd": str(self.initrd) if self.initrd else "", "Cmdline": self.cmdline or "",
                "HasRuntime": self.has_runtime}

    @classmethod
    def from_config(cls, d: dict) -> ResolvedImage:
        return cls(Path(d["Disk"]), d["Format"], int(d["VirtualSize"]), d.get("Source", ""),
                   Path(d["Kernel"]) if d.get("Kernel") else None,
                   Path(d["Initrd"]) if d.get("Initrd") else None, d.get("Cmdline") or None,
                   bool(d.get("HasRuntime")))


def disk_info(path: Path) -> tuple[str, int]:
    """(format, virtual size) from `qemu-img info`."""
    try:
        out = subprocess.run(["qemu-img", "info", "--output=json", str(path)], capture_output=True,
                             text=True, check=True).stdout
    except FileNotFoundError:
        raise ImageError("qemu-img not found: install QEMU (Debian: qemu-utils)") from None
    except subprocess.CalledProcessError as e:
        raise ImageError(f"{path} is not a disk image QEMU can read: {e.stderr.strip()}") from None
    info = json.loads(out)
    return info["format"], int(info["virtual-size"])


def _from_built_dir(d: Path, source: str) -> ResolvedImage:
    info = json.loads((d / "image.json").read_text())
    fmt, size = disk_info(d / "disk.qcow2")
    return ResolvedImage(d / "disk.qcow2", fmt, size, source, d / "vmlinuz", d / "initrd.img",
                         info["cmdline"], has_runtime=True)


def text_progress(label: str) -> ProgressFn:
    """A dependency-free progress line on stderr (a rich bar when stderr is a terminal)."""
    state = {"last": -1.0}

    def report(done: int, total: int | None) -> None:
        if total:
            pct = int(done * 100 / total)
            if pct == state["last"] and done != total:
                return
            state["last"] = pct
            end = "\n" if done >= total else ""
            print(f"\r{label}: {done >> 20} / {total >> 20} MiB ({pct}%)", end=end, file=sys.stderr,
                  flush=True)
        elif done - state["last"] >= 8 << 20:
            state["last"] = done
            print(f"\r{label}: {done >> 20} MiB", end="", file=sys.stderr, flush=True)

    return report


def resolve(spec: str, cache_dir: Path, *, refresh: bool = False, progress: ProgressFn | None = None,
            build_progress=None) -> ResolvedImage:
    spec = (spec or "").strip()
    if spec in ("", "debian"):
        cache = ImageCache(cache_dir, progress or text_progress("Downloading the Debian 12 cloud image"))
        disk = cache.fetch(DEBIAN_CLOUD_URL, checksums_url=DEBIAN_CLOUD_SUMS, refresh=refresh)
        fmt, size = disk_info(disk)
        return ResolvedImage(disk, fmt, size, spec or "debian")
    if spec == "build":
        from skiffbox.machine.image.build import build_image

        img = build_image(cache_dir, build_progress or (lambda m: print(m, file=sys.stderr, flush=True)))
        return _from_built_dir(img.dir, spec)
    if spec.startswith(("http://", "https://")):
        disk = ImageCache(cache_dir, progress or text_progress("Downloading the boot image")).fetch(
            spec, refresh=refresh, sums_beside=True)
        fmt, size = disk_info(disk)
        return ResolvedImage(disk, fmt, size, spec)
    path = Path(spec).expanduser().resolve()
    if path.is_dir() and (path / "image.json").is_file():
        return _from_built_dir(path, spec)
    if not path.is_file():
        raise ImageError(f"boot image {spec!r} not found (give a file, a URL, 'build' or 'debian')")
    fmt, size = disk_info(path)
    # a disk from `machine image build` has its kernel beside it: boot that directly
    if path.name == "disk.qcow2" and (path.parent / "image.json").is_file():
        return _from_built_dir(path.parent, spec)
    return ResolvedImage(path, fmt, size, spec)
