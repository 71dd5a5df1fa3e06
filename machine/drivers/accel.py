"""Which QEMU to run for a guest: architecture, binary, machine type, CPU, firmware, accelerator.

`plan()` is pure: the host (OS, CPU architecture, which accelerators are usable, QEMU's version)
comes in as arguments, so every host can be simulated in tests. `probe_host()` gathers the real
facts. The rules:

* The guest is native by default (aarch64 on Apple silicon and arm64 Linux, x86_64 elsewhere);
  `--qemu-arch` overrides it. Hardware acceleration only runs a guest of the host's own
  architecture, so a foreign guest always gets TCG.
* Accelerators, best first: KVM on Linux (only when /dev/kvm really runs a guest: see the driver's
  probe), HVF on macOS (`kern.hv_support`), WHPX on Windows (QEMU's `-accel help` lists it), and
  TCG last, with a warning that it is slow.
* aarch64 guests use the `virt` machine with edk2 UEFI firmware (Debian's AAVMF, Homebrew's
  edk2-aarch64-code.fd). `highmem=off` only where HVF cannot map the high PCI window: QEMU older
  than 7.0 on Apple silicon (M1's 36-bit IPA space; QEMU 7.0 sizes the memory map to the IPA
  limit itself, which is why Lima and podman machine pass highmem=on or nothing there). With
  highmem=off the guest gets at most 3 GiB of RAM.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

ARCHES = ("x86_64", "aarch64")
ACCELS = ("auto", "kvm", "hvf", "whpx", "tcg")
_ARCH_ALIASES = {"x86_64": "x86_64", "amd64": "x86_64", "x64": "x86_64", "aarch64": "aarch64",
                 "arm64": "aarch64", "armv8": "aarch64"}
# Which accelerator each host OS offers, for a guest of the host's own architecture.
_NATIVE_ACCEL = {"linux": "kvm", "darwin": "hvf", "win32": "whpx"}
HIGHMEM_OFF_MAX_MIB = 3072  # RAM below the 4 GiB line on `virt` with highmem=off
TCG_WARNING = ("no hardware acceleration: the VM runs under TCG (software emulation), which is "
               "several times slower to boot and to run containers")


class AccelError(ValueError):
    """The asked-for architecture or accelerator cannot work on this host."""


def normalize_arch(name: str) -> str:
    """`arm64`/`aarch64` → aarch64, `AMD64`/`x86_64` → x86_64 (Windows reports AMD64/ARM64)."""
    arch = _ARCH_ALIASES.get(name.strip().lower())
    if arch is None:
        raise AccelError(f"unsupported architecture {name!r}: use one of {', '.join(ARCHES)}")
    return arch


def host_os(plat: str) -> str:
    """sys.platform folded to linux / darwin / win32 (others pass through)."""
    return "linux" if plat.startswith("linux") else plat


@dataclass(frozen=True)
class Plan:
    arch: str                 # guest architecture: x86_64 | aarch64
    binary: str               # qemu-system-x86_64 | qemu-system-aarch64
    accel: str                # kvm | hvf | whpx | tcg
    machine: str              # -machine value
    cpu: str                  # -cpu value
    firmware: Path | None     # UEFI code for -drive if=pflash (aarch64); None: QEMU's default BIOS
    max_memory_mib: int = 0   # 0: no limit from the machine type
    warnings: tuple[str, ...] = field(default=())

    @property
    def accel_arg(self) -> str:
        # WHPX's in-kernel irqchip fails to start guests on many Windows builds (QEMU's docs and
        # every WHPX recipe turn it off); the userspace one costs little for a headless VM.
        return "whpx,kernel-irqchip=off" if self.accel == "whpx" else self.accel

    def describe(self) -> str:
        """One line for `machine create` and `inspect`."""
        what = {"kvm": "KVM", "hvf": "Apple Hypervisor.framework (HVF)", "whpx": "Windows Hypervisor Platform (WHPX)",
                "tcg": "TCG software emulation (slow)"}[self.accel]
        return f"{self.arch} guest, {what}"


def binary_for(arch: str) -> str:
    return f"qemu-system-{arch}"


def plan(*, os_name: str, host_machine: str, usable: Callable[[str], bool], want_arch: str = "",
         want_accel: str = "auto", qemu_version: tuple[int, ...] = (7, 2),
         firmware: Callable[[str], Path | None] = lambda arch: None) -> Plan:
    """The QEMU setup for a guest on this host. `usable(accel)` says whether an accelerator works
    here (called only for the one that could apply); `firmware(arch)` finds the UEFI code."""
    os_name = host_os(os_name)
    native = normalize_arch(host_machine)
    arch = normalize_arch(want_arch) if want_arch else native
    want_accel = (want_accel or "auto").lower()
    if want_accel not in ACCELS:
        raise AccelError(f"--qemu-accel must be one of {', '.join(ACCELS)}, not {want_accel!r}")
    hw = _NATIVE_ACCEL.get(os_name)
    warnings: list[str] = []
    if want_accel == "auto":
        accel = hw if hw and arch == native and usable(hw) else "tcg"
        if accel == "tcg":
            why = (f"the {arch} guest is not this {native} host's architecture" if arch != native
                   else f"{hw.upper()} is not usable here" if hw else f"no accelerator is known for {os_name}")
            warnings.append(f"{TCG_WARNING} ({why})")
    else:
        accel = want_accel
        if accel != "tcg" and arch != native:
            raise AccelError(f"{accel} cannot run an {arch} guest on this {native} host: use --qemu-accel tcg "
                             f"(slow) or --qemu-arch {native}")
        if accel != "tcg" and accel != hw:
            raise AccelError(f"{accel} is not available on {os_name} (this host offers {hw or 'only tcg'})")
        if accel == "tcg":
            warnings.append(TCG_WARNING)

    max_mem = 0
    fw: Path | None = None
    if arch == "x86_64":
        machine = "q35"
        cpu = "max" if accel in ("tcg", "whpx") else "host"  # WHPX has no `host` model; max = what it offers
    else:
        highmem = "off" if accel == "hvf" and tuple(qemu_version) < (7, 0) else "on"
        machine = f"virt,highmem={highmem}"
        if highmem == "off":
            max_mem = HIGHMEM_OFF_MAX_MIB
            warnings.append(f"QEMU {'.'.join(map(str, qemu_version))} needs highmem=off with HVF: at most "
                            f"{HIGHMEM_OFF_MAX_MIB} MiB of memory (QEMU 7.0 or newer lifts this)")
        if accel == "kvm":
            machine += ",gic-version=host"  # a GICv3-only host (most arm64 servers) cannot emulate v2
        # under TCG, pauth-impdef swaps QARMA pointer authentication for a cheap hash: same
        # semantics for the guest, much faster emulation (QEMU 7.1+)
        cpu = "host" if accel in ("kvm", "hvf") else (
            "max,pauth-impdef=on" if tuple(qemu_version) >= (7, 1) else "max")
        fw = firmware(arch)
        if fw is None:
            raise AccelError("no UEFI firmware for aarch64 guests found: install it (Debian/Ubuntu: apt-get "
                             "install qemu-efi-aarch64; macOS: brew install qemu ships edk2-aarch64-code.fd)")
    return Plan(arch, binary_for(arch), accel, machine, cpu, fw, max_mem, tuple(warnings))


# ---- the real host ---------------------------------------------------------------------------
def firmware_candidates(arch: str, qemu_path: str | None) -> list[Path]:
    """Where UEFI code for `arch` is installed: beside QEMU (Homebrew, MacPorts, the Windows
    installer: PREFIX/share/qemu), then the Debian/Fedora packages."""
    if arch != "aarch64":
        return []
    out: list[Path] = []
    if qemu_path:
        prefix = Path(qemu_path).resolve().parent.parent
        out += [prefix / "share" / "qemu" / "edk2-aarch64-code.fd", Path(qemu_path).resolve().parent / "share" /
                "edk2-aarch64-code.fd"]  # the Windows installer keeps share\ beside qemu-system-*.exe
    out += [Path("/opt/homebrew/share/qemu/edk2-aarch64-code.fd"), Path("/usr/local/share/qemu/edk2-aarch64-code.fd"),
            Path("/usr/share/AAVMF/AAVMF_CODE.fd"),                   # Debian/Ubuntu qemu-efi-aarch64
            Path("/usr/share/edk2/aarch64/QEMU_EFI-pflash.raw"),      # Fedora edk2-aarch64
            Path("/usr/share/qemu/edk2-aarch64-code.fd")]
    return out


def find_firmware(arch: str, qemu_path: str | None = None, candidates: Iterable[Path] | None = None) -> Path | None:
    env = os.environ.get("SKIFF_QEMU_FIRMWARE")
    if env:
        return Path(env)
    for p in candidates if candidates is not None else firmware_candidates(arch, qemu_path):
        if p.is_file():
            return p
    return None


def qemu_version(binary: str) -> tuple[int, ...]:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return (0,)
    for word in out.split():
        parts = word.split(".")
        if len(parts) >= 2 and all(p.isdigit() for p in parts[:2]):
            return tuple(int(p) for p in parts if p.isdigit())
    return (0,)


def accel_listed(binary: str, accel: str) -> bool:
    """`qemu-system-* -accel help` lists the accelerators compiled in (and, for WHPX on Windows,
    only when the Windows Hypervisor Platform feature is enabled)."""
    try:
        out = subprocess.run([binary, "-accel", "help"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return accel in out.split()


def hvf_supported() -> bool:
    try:
        out = subprocess.run(["sysctl", "-n", "kern.hv_support"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.stdout.strip() == "1"


def host_machine() -> str:
    """The CPU architecture of the host. On macOS a Rosetta-translated Python reports x86_64, so ask
    the kernel whether the CPU is really arm64."""
    machine = platform.machine()
    if sys.platform == "darwin" and machine == "x86_64":
        out = subprocess.run(["sysctl", "-n", "hw.optional.arm64"], capture_output=True, text=True)
        if out.stdout.strip() == "1":
            return "arm64"
    return machine

