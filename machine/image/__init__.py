"""The VM's boot image (what boot2docker.iso was): download+cache, NoCloud seed, offline build.

`resolve(spec)` turns what the user gave (`--qemu-boot-image`) into a local image:

    ""/"debian"      the official Debian 12 cloud image for the guest's architecture (amd64 or
                     arm64; downloaded once, checksum from SHA512SUMS)
    "build"          the image `machine image build` makes from Debian packages for that
                     architecture (built if missing; the cache keeps one per architecture)
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
from typing import Any, Callable

from skiffbox.machine.image.cache import DEBIAN_CLOUD_SUMS, ImageCache, ProgressFn, debian_cloud_url
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
    arch: str = "x86_64"  # the guest architecture the image is for

    def to_config(self) -> dict[str, Any]:
        return {"Disk": str(self.disk), "Format": self.format, "VirtualSize": self.virtual_size,
                "Source": self.source, "Kernel": str(self.kernel) if self.kernel else "",
                "Initrd": str(self.initrd) if self.initrd else "", "Cmdline": self.cmdline or "",
                "HasRuntime": self.has_runtime, "Arch": self.arch}

    @classmethod
    def from_config(cls, d: dict[str, Any]) -> ResolvedImage:
        return cls(Path(d["Disk"]), d["Format"], int(d["VirtualSize"]), d.get("Source", ""),
                   Path(d["Kernel"]) if d.get("Kernel") else None,
                   Path(d["Initrd"]) if d.get("Initrd") else None, d.get("Cmdline") or None,
                   bool(d.get("HasRuntime")), d.get("Arch") or "x86_64")


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
    arch = info.get("arch", "x86_64")
    if info.get("boot") == "efi":  # the arm64 image boots its ESP through UEFI, as on real Macs
        return ResolvedImage(d / "disk.qcow2", fmt, size, source, has_runtime=True, arch=arch)
    return ResolvedImage(d / "disk.qcow2", fmt, size, source, d / "vmlinuz", d / "initrd.img",
                         info["cmdline"], has_runtime=True, arch=arch)


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
            build_progress: Callable[[str], None] | None = None, arch: str = "x86_64") -> ResolvedImage:
    """`arch` is the guest's (x86_64 | aarch64). A URL or file is taken to be for that arch; a
    built image that says otherwise is refused (it would not boot)."""
    spec = (spec or "").strip()
    if spec in ("", "debian"):
        cache = ImageCache(cache_dir, progress or text_progress(f"Downloading the Debian 12 cloud image ({arch})"))
        disk = cache.fetch(debian_cloud_url(arch), checksums_url=DEBIAN_CLOUD_SUMS, refresh=refresh)
        fmt, size = disk_info(disk)
        return ResolvedImage(disk, fmt, size, spec or "debian", arch=arch)
    if spec == "build":
        from skiffbox.machine.image.build import build_image

        built = build_image(cache_dir, build_progress or (lambda m: print(m, file=sys.stderr, flush=True)),
                            arch=arch)
        return _from_built_dir(built.dir, spec)
    if spec.startswith(("http://", "https://")):
        disk = ImageCache(cache_dir, progress or text_progress("Downloading the boot image")).fetch(
            spec, refresh=refresh, sums_beside=True)
        fmt, size = disk_info(disk)
        return ResolvedImage(disk, fmt, size, spec, arch=arch)
    path = Path(spec).expanduser().resolve()
    built_dir = path if path.is_dir() else path.parent
    if (path.is_dir() or path.name == "disk.qcow2") and (built_dir / "image.json").is_file():
        img = _from_built_dir(built_dir, spec)  # a `machine image build` folder (or its disk)
        if img.arch != arch:
            raise ImageError(f"{spec} is an {img.arch} image; this machine's guest is {arch} "
                             f"(use --qemu-arch {img.arch}, or build one: machine image build --arch {arch})")
        return img
    if not path.is_file():
        raise ImageError(f"boot image {spec!r} not found (give a file, a URL, 'build' or 'debian')")
    fmt, size = disk_info(path)
    return ResolvedImage(path, fmt, size, spec, arch=arch)
