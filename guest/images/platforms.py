"""Platforms (`linux/arm64/v8`): parsing, normalising and picking an entry of an image index.

Follows containerd's matcher that moby uses: the exact platform first, then compatible fallbacks
(amd64 → 386; arm64 → arm/v8…v5; arm/vN → arm/vN-1…v5); BuildKit attestation entries
(`unknown/unknown`) are never chosen.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skiffbox.guest import hostinfo
from skiffbox.guest.errors import InvalidParameter, NotFound

_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm", "armel": "arm",
                 "i386": "386", "i686": "386", "x86": "386"}


@dataclass(frozen=True)
class Platform:
    os: str
    arch: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.arch, self.variant) if p)


def normalize(os_: str, arch: str, variant: str = "") -> Platform:
    os_ = (os_ or "linux").lower()
    arch = (arch or "").lower()
    variant = (variant or "").lower()
    if arch in ("armhf",):
        variant = variant or "v7"
    if arch == "armel":
        variant = variant or "v6"
    arch = _ARCH_ALIASES.get(arch, arch)
    if arch == "arm64" and variant in ("", "8"):
        variant = "v8"
    elif arch == "arm" and variant in ("", "7"):
        variant = variant and f"v{variant}" or "v7"
    elif arch == "arm" and variant.isdigit():
        variant = f"v{variant}"
    elif arch == "amd64" and variant == "v1":
        variant = ""
    return Platform(os_, arch, variant)


def parse(spec: str | None) -> Platform | None:
    """`linux`, `linux/arm64`, `linux/arm/v7`, `arm64` (like containerd's platforms.Parse)."""
    if not spec:
        return None
    parts = spec.strip().split("/")
    if len(parts) > 3 or any(not p for p in parts):
        raise InvalidParameter(f'"{spec}": unknown operating system or architecture: invalid argument')
    if len(parts) == 1:
        p = parts[0].lower()
        if p in ("linux", "windows", "darwin", "freebsd"):
            return normalize(p, host().arch, host().variant)
        return normalize("linux", p)
    return normalize(parts[0], parts[1], parts[2] if len(parts) == 3 else "")


def host() -> Platform:
    return normalize("linux", hostinfo.go_arch())


def _candidates(p: Platform) -> list[Platform]:
    out = [p]
    if p.arch == "amd64":
        out += [Platform(p.os, "amd64", v) for v in ("v4", "v3", "v2", "") if v != p.variant and (not v or p.variant >= v)]
        out.append(Platform(p.os, "386"))
    elif p.arch == "arm64":
        out += [Platform(p.os, "arm", f"v{n}") for n in (8, 7, 6, 5)]
    elif p.arch == "arm" and p.variant.startswith("v") and p.variant[1:].isdigit():
        out += [Platform(p.os, "arm", f"v{n}") for n in range(int(p.variant[1:]) - 1, 4, -1)]
    seen: list[Platform] = []
    for c in out:
        if c not in seen:
            seen.append(c)
    return seen


def of_descriptor(desc: dict[str, Any]) -> Platform | None:
    pl = desc.get("platform")
    if not isinstance(pl, dict):
        return None
    return normalize(str(pl.get("os") or ""), str(pl.get("architecture") or ""), str(pl.get("variant") or ""))


def choose(manifests: list[Any], want: Platform) -> dict[str, Any]:
    """The best index entry for `want`; 404 with Docker's message when none fits."""
    best: tuple[int, int] | None = None
    chosen: dict[str, Any] | None = None
    cands = _candidates(want)
    for i, d in enumerate(manifests):
        if not isinstance(d, dict):
            continue
        pl = d.get("platform")
        if isinstance(pl, dict) and (pl.get("os") == "unknown" or pl.get("architecture") == "unknown"):
            continue  # attestation manifests
        p = of_descriptor(d)
        if p is None:
            rank = len(cands)  # an entry without platform matches anything, as a last resort
        else:
            try:
                rank = cands.index(p)
            except ValueError:
                continue
        if best is None or (rank, i) < best:
            best, chosen = (rank, i), d
    if chosen is None:
        raise NotFound(f"no matching manifest for {want} in the manifest list entries")
    return chosen


def matches(config: dict[str, Any], want: Platform) -> bool:
    got = normalize(str(config.get("os") or ""), str(config.get("architecture") or ""), str(config.get("variant") or ""))
    return got in _candidates(want) or (got.os == want.os and got.arch == want.arch and not want.variant)


# binfmt_misc handler names of Debian's qemu-user-static, per Go architecture
_QEMU_ARCH = {"amd64": "x86_64", "arm64": "aarch64", "arm": "arm", "386": "i386", "ppc64le": "ppc64le",
              "s390x": "s390x", "riscv64": "riscv64"}
BINFMT_MISC = Path("/proc/sys/fs/binfmt_misc")


def emulated(arch: str, binfmt: Path = BINFMT_MISC) -> bool:
    """A binfmt_misc handler runs `arch` binaries here (qemu-user-static's, enabled)."""
    name = _QEMU_ARCH.get(arch)
    try:
        return name is not None and (binfmt / f"qemu-{name}").read_text().startswith("enabled")
    except OSError:
        return False


def check_runnable(p: Platform, here: Platform | None = None, binfmt: Path = BINFMT_MISC) -> None:
    """Refuse, with what to do, a container whose binaries this machine cannot execute (Docker
    creates it and the start dies with "exec format error")."""
    here = here or host()
    if not p.arch:
        return  # an image that does not say (old imports): let it try
    if p.os != here.os:
        raise InvalidParameter(f"image operating system {p.os!r} cannot be used on this platform ({here})")
    if p in _candidates(here) or p.arch == here.arch or emulated(p.arch, binfmt):
        return
    raise InvalidParameter(
        f"image platform {p} cannot run on this {here} engine: no emulator for {p.arch} is installed. "
        f"Use an image for {here} (docker run --platform {here.os}/{here.arch}), or turn on emulation: "
        f"machine create --engine-opt emulation=true (an existing machine: add \"emulation\": true to its "
        f"engine options and run `machine provision`)")
