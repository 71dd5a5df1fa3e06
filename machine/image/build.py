"""`machine image build`: make the guest image offline from Debian packages (Linux host, root).

The result is what boot2docker.iso was for Toolbox: one read-only, bootable disk that every
machine uses as the backing file of its own qcow2 overlay. Layouts (no loop devices or mounts
needed to build them, see shared/reference/probe_vm.md):

    x86_64   MBR (syslinux) | p1 FAT16 64 MiB: syslinux, vmlinuz, initrd.img | p2 ext4 "rootfs"
    aarch64  GPT | p1 ESP FAT32 128 MiB: EFI/BOOT/BOOTAA64.EFI (systemd-boot), loader/, vmlinuz,
             initrd.img | p2 ext4 "rootfs" — a standard removable-media UEFI disk, which is what
             edk2 under QEMU (TCG, KVM or HVF on a Mac) and VirtualBox 7.1 on Apple silicon boot

An image for another architecture than the host's (arm64 on an x86_64 host) is built through
binfmt_misc + Debian's qemu-user-static: debootstrap and the chroot steps run the arm64 binaries
under qemu-aarch64, registered with the F flag so the chroot needs no interpreter inside it.

`vmlinuz` and `initrd.img` are also kept beside the disk so QEMU can boot them directly (about
5 s faster under TCG than SeaBIOS + syslinux); VirtualBox boots the disk through the MBR.

The kernel is linux-image-amd64, not the cloud kernel: the cloud kernel lacks AHCI and e1000,
which are VirtualBox's default controller and NIC. Unneeded module trees (sound, GPU, wireless…)
are removed to keep the image small.

The build is cached by content: the key hashes the recipe (suite, packages, every file written
into the image, this module's format version), so tests and users build once per recipe.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skiffbox.machine.image.errors import ImageError

FORMAT_VERSION = 1
SUITE = "bookworm"
ROOT_SIZE = "10G"  # sparse: only the allocated part lands in the qcow2
BOOT_MB = 64
KERNEL_CMDLINE = "root=LABEL=rootfs rw console=ttyS0,115200 quiet"
ESP_MB = 128  # FAT32 needs at least 65525 clusters; the uncompressed arm64 kernel is ~30 MiB

PACKAGES = [
    # boot and base system
    "linux-image-amd64", "systemd-sysv", "udev", "dbus", "kmod", "procps", "iproute2",
    "netbase", "ca-certificates", "e2fsprogs", "sudo", "openssh-server",
    # what provisioning and the engine need (guest/ runs on Debian's python3)
    "python3", "python3-venv", "python3-h11",
    "runc", "crun", "conmon", "netavark", "aardvark-dns", "dnsmasq-base", "iptables", "catatonit",
]
# initramfs with only the block drivers both hypervisors use (virtio for QEMU, ahci/piix for
# VirtualBox): smaller and faster to load under TCG than MODULES=most.
INITRD_MODULES = ["virtio_pci", "virtio_blk", "virtio_scsi", "ahci", "ata_piix", "sd_mod", "ext4"]
# module trees a headless container VM never loads
PRUNE_MODULES = [
    "sound", "drivers/gpu", "drivers/media", "drivers/net/wireless", "drivers/infiniband",
    "drivers/bluetooth", "drivers/staging", "drivers/isdn", "drivers/iio", "drivers/input/touchscreen",
    "drivers/net/ethernet/mellanox", "drivers/net/ethernet/chelsio", "drivers/net/ethernet/qlogic",
    "drivers/net/can", "drivers/scsi/lpfc", "drivers/scsi/qla2xxx", "net/wireless", "net/mac80211",
    "net/bluetooth",
]

# ---- files written into the image (part of the cache key) ------------------------------------
FILES: dict[str, str] = {
    "etc/hostname": "skiff\n",
    "etc/hosts": "127.0.0.1\tlocalhost\n127.0.1.1\tskiff\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    "etc/fstab": "LABEL=rootfs / ext4 rw,discard,errors=remount-ro 0 1\n",
    # QEMU slirp's and VirtualBox NAT's DNS proxy; no resolved in the image
    "etc/resolv.conf": "nameserver 10.0.2.3\n",
    "etc/systemd/network/20-wired.network": (
        "[Match]\nName=en* eth*\n\n[Network]\nDHCP=yes\n\n[DHCPv4]\nUseDNS=no\n"
    ),
    "etc/ssh/sshd_config.d/10-skiff.conf": (
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUseDNS no\nHostKey /etc/ssh/ssh_host_ed25519_key\n"
    ),
    "etc/systemd/system/ssh-hostkey.service": (
        "[Unit]\nDescription=Generate the SSH host key on first boot\n"
        "ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key\nBefore=ssh.service\n\n"
        "[Service]\nType=oneshot\n"
        'ExecStart=/usr/bin/ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key\n\n'
        "[Install]\nWantedBy=multi-user.target\n"
    ),
    "etc/systemd/system/skiff-seed.service": (
        "[Unit]\nDescription=Apply the NoCloud seed (user, SSH key, hostname, disks, shares)\n"
        "After=local-fs.target systemd-udevd.service\nBefore=ssh.service\n"
        "Wants=systemd-udevd.service\n\n"
        "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/usr/local/sbin/skiff-seed\n\n"
        "[Install]\nWantedBy=multi-user.target\n"
    ),
    # what the engine needs early; 9p and the rest load on demand
    "etc/modules-load.d/skiff.conf": "overlay\nbr_netfilter\nveth\n",
    "etc/sysctl.d/60-skiff.conf": "net.ipv4.ip_forward=1\n",
    "etc/initramfs-tools/conf.d/skiff": "MODULES=list\nCOMPRESS=gzip\n",
    "etc/initramfs-tools/modules": "".join(m + "\n" for m in INITRD_MODULES),
    "etc/dpkg/dpkg.cfg.d/01-nodoc": (
        "path-exclude /usr/share/doc/*\npath-include /usr/share/doc/*/copyright\n"
        "path-exclude /usr/share/man/*\npath-exclude /usr/share/info/*\n"
        "path-exclude /usr/share/locale/*\npath-include /usr/share/locale/locale.alias\n"
    ),
    "etc/apt/apt.conf.d/99-skiff": 'Acquire::Languages "none";\nAPT::Install-Recommends "false";\n',
    "usr/sbin/policy-rc.d": "#!/bin/sh\n# no daemons start inside the build chroot\nexit 101\n",
}
ENABLE = ["systemd-networkd.service", "ssh-hostkey.service", "skiff-seed.service"]
# units a headless VM does not need; each costs seconds of boot under TCG
MASK = ["systemd-networkd-wait-online.service", "getty@tty1.service", "modprobe@drm.service",
        "modprobe@efi_pstore.service", "systemd-pstore.service", "sys-kernel-debug.mount",
        "sys-kernel-tracing.mount"]
DISABLE = [
    "apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer", "e2scrub_reap.service",
    "fstrim.timer", "dpkg-db-backup.timer",
]
SYSLINUX_CFG = (
    "SERIAL 0 115200\nDEFAULT linux\nPROMPT 0\nTIMEOUT 0\nLABEL linux\n  KERNEL /vmlinuz\n"
    "  INITRD /initrd.img\n  APPEND root=LABEL=rootfs rw console=tty0 console=ttyS0,115200 quiet\n"
)
HOST_TOOLS = {
    "debootstrap": "debootstrap", "chroot": "coreutils", "mkfs.ext4": "e2fsprogs",
    "mkfs.vfat": "dosfstools", "mcopy": "mtools", "syslinux": "syslinux", "sfdisk": "fdisk",
    "qemu-img": "qemu-utils",
}
MBR_BIN = Path("/usr/lib/SYSLINUX/mbr.bin")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class BuiltImage:
    """A finished image in the cache: disk plus the kernel/initrd for direct boot."""

    dir: Path

    @property
    def disk(self) -> Path:
        return self.dir / "disk.qcow2"

    @property
    def kernel(self) -> Path:
        return self.dir / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.dir / "initrd.img"

    @property
    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = json.loads((self.dir / "image.json").read_text())
        return info

    def exists(self) -> bool:
        return all(p.is_file() for p in (self.disk, self.kernel, self.initrd, self.dir / "image.json"))


def seed_script() -> str:
    return (Path(__file__).with_name("firstboot.py")).read_text()


@dataclass(frozen=True)
class Target:
    """What differs between the architectures' images."""

    arch: str  # x86_64 | aarch64 (QEMU's names)
    deb: str  # amd64 | arm64 (Debian's)
    packages: tuple[str, ...]
    initrd_modules: tuple[str, ...]
    cmdline: str
    boot: str  # bios (MBR + syslinux) | efi (GPT + ESP + systemd-boot)

    def files(self) -> dict[str, str]:
        return {**FILES, "etc/initramfs-tools/modules": "".join(m + "\n" for m in self.initrd_modules)}


TARGETS = {
    "x86_64": Target("x86_64", "amd64", tuple(PACKAGES), tuple(INITRD_MODULES), KERNEL_CMDLINE, "bios"),
    # arm64: the generic kernel boots on QEMU's `virt` and VirtualBox's arm64 VM (PL011 console);
    # systemd-boot-efi only provides the EFI loader binary copied to the ESP.
    "aarch64": Target(
        "aarch64", "arm64",
        tuple(p for p in PACKAGES if p != "linux-image-amd64") + ("linux-image-arm64", "systemd-boot-efi"),
        ("virtio_pci", "virtio_blk", "virtio_scsi", "ahci", "nvme", "sd_mod", "ext4"),
        "root=LABEL=rootfs rw console=ttyAMA0,115200 quiet", "efi"),
}
LOADER_CONF = "default skiff.conf\ntimeout 0\neditor no\n"


def target(arch: str) -> Target:
    try:
        return TARGETS[{"amd64": "x86_64", "arm64": "aarch64"}.get(arch, arch)]
    except KeyError:
        raise ImageError(f"cannot build an image for {arch!r}: use x86_64 or aarch64") from None


def recipe(arch: str = "x86_64") -> dict[str, Any]:
    """Everything that decides the image's content; its hash is the cache key."""
    t = target(arch)
    r = {
        "format": FORMAT_VERSION,
        "suite": SUITE,
        "packages": sorted(t.packages),
        "initrd_modules": list(t.initrd_modules),
        "prune": PRUNE_MODULES,
        "files": t.files(),
        "seed_script": seed_script(),
        "enable": ENABLE,
        "mask": MASK,
        "disable": DISABLE,
        "root_size": ROOT_SIZE,
        "cmdline": t.cmdline,
    }
    if t.boot == "bios":
        r["syslinux"] = SYSLINUX_CFG
    else:
        r.update(arch=t.deb, loader=LOADER_CONF, esp_mb=ESP_MB)  # x86_64 keeps its key from before arm64
    return r


def recipe_key(arch: str = "x86_64") -> str:
    blob = json.dumps(recipe(arch), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def built_image(cache_dir: Path, arch: str = "x86_64") -> BuiltImage:
    """The cache folder of an architecture's image (keyed by its recipe, so by architecture)."""
    t = target(arch)
    infix = "" if t.arch == "x86_64" else f"{t.deb}-"
    return BuiltImage(Path(cache_dir) / "images" / f"debian-{SUITE}-{infix}skiff-{recipe_key(t.arch)}")


def host_mirrors() -> tuple[str, str]:
    """The Debian mirror and security mirror from the host's apt sources (the build uses the
    same mirrors the host already reaches)."""
    uris: list[str] = []
    deb822 = Path("/etc/apt/sources.list.d/debian.sources")
    if deb822.exists():
        uris = [ln.split(":", 1)[1].strip() for ln in deb822.read_text().splitlines()
                if ln.startswith("URIs:")]
    legacy = Path("/etc/apt/sources.list")
    if not uris and legacy.exists():
        uris = [ln.split()[1] for ln in legacy.read_text().splitlines()
                if ln.startswith("deb ") and len(ln.split()) > 2]
    mirror = next((u for u in uris if "security" not in u), "http://deb.debian.org/debian")
    security = next((u for u in uris if "security" in u), "http://deb.debian.org/debian-security")
    return mirror, security


BINFMT = Path("/proc/sys/fs/binfmt_misc")


def check_host(arch: str = "x86_64") -> None:
    if os.name != "posix" or not Path("/proc").is_dir():
        raise ImageError("`machine image build` needs a Linux host (debootstrap, chroot)")
    if os.geteuid() != 0:
        raise ImageError("`machine image build` needs root (debootstrap and chroot); run it with sudo")
    t = target(arch)
    tools = {k: v for k, v in HOST_TOOLS.items() if t.boot == "bios" or k != "syslinux"}
    missing = sorted({pkg for tool, pkg in tools.items() if shutil.which(tool) is None})
    if t.boot == "bios" and not MBR_BIN.exists():
        missing.append("syslinux-common")
    if missing:
        raise ImageError(f"missing host packages: apt-get install -y {' '.join(sorted(set(missing)))}")
    if t.arch != os.uname().machine:
        ensure_binfmt(t.arch)


def binfmt_status(arch: str, root: Path = BINFMT) -> str:
    """'' when `arch` binaries run here through binfmt_misc with a fixed (F) interpreter, else why not."""
    if not (root / "register").exists():
        return "binfmt_misc is not mounted"
    entry = root / f"qemu-{arch}"
    if not entry.is_file():
        return f"no binfmt_misc handler for {arch}"
    text = entry.read_text()
    if not text.startswith("enabled"):
        return f"the binfmt_misc handler qemu-{arch} is disabled"
    flags = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("flags:")), "")
    if "F" not in flags:
        return f"the binfmt_misc handler qemu-{arch} lacks the F flag (install qemu-user-static, not qemu-user)"
    return ""


def ensure_binfmt(arch: str) -> None:
    """Make `arch` binaries runnable for the cross build: mount binfmt_misc if needed and enable
    Debian's qemu-user-static handler (binfmt-support's update-binfmts), else say what to install."""
    hint = "apt-get install -y qemu-user-static binfmt-support"
    if not (BINFMT / "register").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], capture_output=True)
    if binfmt_status(arch) and shutil.which("update-binfmts"):
        subprocess.run(["update-binfmts", "--enable", f"qemu-{arch}"], capture_output=True)
    why = binfmt_status(arch)
    if why:
        raise ImageError(f"cannot build an {arch} image on this {os.uname().machine} host: {why}. "
                         f"Install the emulators ({hint}) or build on an {arch} machine")


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    import fcntl  # here, not at the top: building is Linux-only, but Windows imports built_image()

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # a second build of the same recipe waits, then hits the cache
        yield


def _run(cmd: list[str], progress: Progress, env: dict[str, str] | None = None) -> None:
    progress("$ " + " ".join(cmd))
    proc = subprocess.run(cmd, text=True, capture_output=True, env=env)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise ImageError(f"{cmd[0]} failed (exit {proc.returncode}):\n{tail}")


@contextlib.contextmanager
def _chroot_mounts(root: Path, apt_cache: Path) -> Iterator[None]:
    mounted: list[Path] = []
    try:
        for src, dst in (("/proc", "proc"), ("/sys", "sys"), ("/dev", "dev"), ("/dev/pts", "dev/pts"),
                         (str(apt_cache), "var/cache/apt/archives")):
            target = root / dst
            target.mkdir(parents=True, exist_ok=True)
            subprocess.run(["mount", "--bind", src, str(target)], check=True)
            mounted.append(target)
        yield
    finally:
        for target in reversed(mounted):
            subprocess.run(["umount", "-l", str(target)], check=False)


def build_image(cache_dir: Path, progress: Progress = print, *, mirror: str | None = None,
                security_mirror: str | None = None, force: bool = False, arch: str = "x86_64") -> BuiltImage:
    """Build (or reuse) the image of `arch` for the current recipe under `cache_dir`; returns it."""
    t = target(arch)
    image = built_image(cache_dir, t.arch)
    with _lock(image.dir.parent / f".{image.dir.name}.lock"):
        if image.exists() and not force:
            progress(f"image cached: {image.dir}")
            return image
        check_host(t.arch)
        host_mirror, host_security = host_mirrors()
        mirror = mirror or host_mirror
        security_mirror = security_mirror or host_security
        work = image.dir.with_name(image.dir.name + ".tmp")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        t0 = time.monotonic()
        try:
            _build(work, Path(cache_dir), mirror, security_mirror, progress, t)
            shutil.rmtree(image.dir, ignore_errors=True)
            work.rename(image.dir)
        finally:
            if work.exists():
                _cleanup(work)
        progress(f"image built in {time.monotonic() - t0:.0f} s: {image.dir}")
        return image


def _size_bytes(size: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(size[:-1]) * units[size[-1]] if size[-1] in units else int(size)


def _cleanup(work: Path) -> None:
    # the rootfs may still carry bind mounts if a step died mid-way
    rootfs = work / "rootfs"
    for sub in ("var/cache/apt/archives", "dev/pts", "dev", "sys", "proc"):
        subprocess.run(["umount", "-l", str(rootfs / sub)], check=False, capture_output=True)
    shutil.rmtree(work, ignore_errors=True)


def _build(work: Path, cache_dir: Path, mirror: str, security_mirror: str, progress: Progress,
           t: Target = TARGETS["x86_64"]) -> None:
    rootfs = work / "rootfs"
    deb_cache = cache_dir / "debs"
    (deb_cache / "debootstrap").mkdir(parents=True, exist_ok=True)
    # one apt archive per architecture: builds of two architectures run at once (each holds only its
    # own recipe lock), and two apt-gets cannot share /var/cache/apt/archives (its lock file)
    apt_cache = deb_cache / ("apt" if t.arch == "x86_64" else f"apt-{t.deb}")
    (apt_cache / "partial").mkdir(parents=True, exist_ok=True)
    files = t.files()
    packages = list(t.packages)

    progress(f"debootstrap (minbase, {t.deb})")
    _run(["debootstrap", "--variant=minbase", f"--arch={t.deb}", f"--cache-dir={deb_cache / 'debootstrap'}",
          SUITE, str(rootfs), mirror], progress)

    progress("configure apt, dpkg and initramfs before installing packages")
    (rootfs / "etc/apt/sources.list").unlink(missing_ok=True)
    (rootfs / "etc/apt/sources.list.d").mkdir(parents=True, exist_ok=True)
    (rootfs / "etc/apt/sources.list.d/debian.sources").write_text(
        f"Types: deb\nURIs: {mirror}\nSuites: {SUITE} {SUITE}-updates\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        f"Types: deb\nURIs: {security_mirror}\nSuites: {SUITE}-security\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )
    (rootfs / "etc/resolv.conf").unlink(missing_ok=True)
    shutil.copy("/etc/resolv.conf", rootfs / "etc/resolv.conf")
    for rel, text in files.items():
        if rel in ("etc/resolv.conf", "etc/hosts", "etc/hostname", "etc/fstab"):
            continue  # written after the chroot no longer needs the host's DNS
        dst = rootfs / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text(text)
    (rootfs / "usr/sbin/policy-rc.d").chmod(0o755)

    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", LC_ALL="C.UTF-8")
    with _chroot_mounts(rootfs, apt_cache):
        progress("apt-get update (bookworm, -updates, -security)")
        _run(["chroot", str(rootfs), "apt-get", "update", "-q"], progress, env)
        progress(f"apt-get install {len(packages)} packages (kernel, sshd, python3, runtimes)")
        _run(["chroot", str(rootfs), "apt-get", "install", "-y", "-q", "--no-install-recommends",
              "-o", "Dpkg::Options::=--force-confold", *packages], progress, env)
        _run(["chroot", str(rootfs), "apt-get", "-y", "-q", "dist-upgrade"], progress, env)
        kver = sorted(os.listdir(rootfs / "usr/lib/modules"))[-1]
        progress(f"prune kernel modules of {kver}")
        for sub in PRUNE_MODULES:
            shutil.rmtree(rootfs / "usr/lib/modules" / kver / "kernel" / sub, ignore_errors=True)
        _run(["chroot", str(rootfs), "depmod", kver], progress, env)
        _run(["chroot", str(rootfs), "update-initramfs", "-u", "-k", kver], progress, env)
        _run(["chroot", str(rootfs), "systemctl", "enable", *ENABLE], progress, env)
        _run(["chroot", str(rootfs), "systemctl", "mask", *MASK], progress, env)
        subprocess.run(["chroot", str(rootfs), "systemctl", "disable", *DISABLE],
                       capture_output=True, env=env)  # some of these units may not exist

    progress("final configuration and cleanup")
    for rel in ("etc/resolv.conf", "etc/hosts", "etc/hostname", "etc/fstab"):
        (rootfs / rel).unlink(missing_ok=True)
        (rootfs / rel).write_text(files[rel])
    seed = rootfs / "usr/local/sbin/skiff-seed"
    seed.write_text(seed_script())
    seed.chmod(0o755)
    (rootfs / "usr/sbin/policy-rc.d").unlink()
    for key in rootfs.glob("etc/ssh/ssh_host_*"):
        key.unlink()  # every machine makes its own on first boot
    (rootfs / "etc/machine-id").write_text("")
    (rootfs / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    for pattern in ("usr/share/man/*", "usr/share/info/*", "var/lib/apt/lists/*_Packages",
                    "var/lib/apt/lists/*_Release*", "var/lib/apt/lists/*_InRelease", "var/cache/apt/*.bin",
                    "var/log/*.log", "var/log/apt/*", "tmp/*"):
        for p in rootfs.glob(pattern):
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    for p in (rootfs / "usr/share/doc").glob("*/*"):
        if p.name != "copyright" and not p.is_dir():
            p.unlink()
    for p in (rootfs / "usr/share/locale").glob("*"):
        if p.name != "locale.alias":
            shutil.rmtree(p) if p.is_dir() else p.unlink()

    kver = sorted(os.listdir(rootfs / "usr/lib/modules"))[-1]
    shutil.copy(rootfs / "boot" / f"vmlinuz-{kver}", work / "vmlinuz")
    shutil.copy(rootfs / "boot" / f"initrd.img-{kver}", work / "initrd.img")

    if t.boot == "efi":
        _make_efi_disk(work, rootfs, t, progress)
    else:
        _make_bios_disk(work, rootfs, progress)
    (work / "image.json").write_text(json.dumps({
        "key": recipe_key(t.arch),
        "suite": SUITE,
        "arch": t.arch,
        "boot": t.boot,
        "kernel_version": kver,
        "cmdline": t.cmdline,
        "packages": sorted(packages),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "mirror": mirror,
    }, indent=2) + "\n")


def _make_efi_disk(work: Path, rootfs: Path, t: Target, progress: Progress) -> None:
    """GPT: ESP (systemd-boot as the removable-media loader, kernel, initrd) + ext4 root."""
    progress("make the UEFI-bootable disk (GPT + FAT32 ESP with systemd-boot + ext4 root, no mounts)")
    loader = rootfs / "usr/lib/systemd/boot/efi/systemd-bootaa64.efi"
    esp = work / "esp.fat"
    _run(["mkfs.vfat", "-F", "32", "-C", "-n", "ESP", str(esp), str(ESP_MB * 1024)], progress)
    kernel = work / "vmlinuz"
    if kernel.read_bytes()[:2] == b"\x1f\x8b":
        # Debian's arm64 vmlinuz is a gzipped Image (GRUB unpacks it); an EFI loader needs the
        # PE image itself, so the ESP gets it uncompressed (and so does direct kernel boot)
        import gzip

        kernel.write_bytes(gzip.decompress(kernel.read_bytes()))
    (work / "skiff.conf").write_text(f"title Skiff\nlinux /vmlinuz\ninitrd /initrd.img\noptions {t.cmdline}\n")
    (work / "loader.conf").write_text(LOADER_CONF)
    _run(["mmd", "-i", str(esp), "::EFI", "::EFI/BOOT", "::loader", "::loader/entries"], progress)
    for src, dst in ((loader, "EFI/BOOT/BOOTAA64.EFI"), (work / "loader.conf", "loader/loader.conf"),
                     (work / "skiff.conf", "loader/entries/skiff.conf"), (kernel, "vmlinuz"),
                     (work / "initrd.img", "initrd.img")):
        _run(["mcopy", "-i", str(esp), str(src), f"::{dst}"], progress)
    disk = work / "disk.img"
    root_offset = (1 + ESP_MB) * 1024 * 1024
    with open(disk, "wb") as fh:
        fh.truncate(root_offset + _size_bytes(ROOT_SIZE) + (1 << 20))  # + room for the backup GPT
    layout = (f"label: gpt\nstart=2048, size={ESP_MB * 2048}, type=U, name=ESP\n"
              f"start={2048 + ESP_MB * 2048}, size={_size_bytes(ROOT_SIZE) // 512}, type=L, name=rootfs\n")
    progress("$ sfdisk disk.img")
    subprocess.run(["sfdisk", "-q", str(disk)], input=layout, text=True, check=True, capture_output=True)
    _run(["dd", f"if={esp}", f"of={disk}", "bs=1M", "seek=1", "conv=notrunc,sparse", "status=none"], progress)
    _finish_disk(work, rootfs, disk, root_offset, progress)
    for name in ("esp.fat", "skiff.conf", "loader.conf"):
        (work / name).unlink()


def _finish_disk(work: Path, rootfs: Path, disk: Path, root_offset: int, progress: Progress) -> None:
    # the root filesystem is made in place at the partition's offset: no 10 GiB copy
    _run(["mkfs.ext4", "-q", "-F", "-L", "rootfs", "-E", f"root_owner=0:0,offset={root_offset}",
          "-d", str(rootfs), str(disk), ROOT_SIZE], progress)
    shutil.rmtree(rootfs)
    progress("convert to qcow2")
    _run(["qemu-img", "convert", "-O", "qcow2", str(disk), str(work / "disk.qcow2")], progress)
    disk.unlink()


def _make_bios_disk(work: Path, rootfs: Path, progress: Progress) -> None:
    progress("make the BIOS-bootable disk (MBR + syslinux FAT + ext4 root, no mounts)")
    boot_img = work / "boot.fat"
    _run(["mkfs.vfat", "-C", "-n", "BOOT", str(boot_img), str(BOOT_MB * 1024)], progress)
    (work / "syslinux.cfg").write_text(SYSLINUX_CFG)
    for name in ("vmlinuz", "initrd.img", "syslinux.cfg"):
        _run(["mcopy", "-i", str(boot_img), str(work / name), f"::{name}"], progress)
    _run(["syslinux", "--install", str(boot_img)], progress)
    disk = work / "disk.img"
    root_offset = (1 + BOOT_MB) * 1024 * 1024
    with open(disk, "wb") as fh:
        fh.truncate(root_offset + _size_bytes(ROOT_SIZE))
    layout = (f"label: dos\nstart=2048, size={BOOT_MB * 2048}, type=e, bootable\n"
              f"start={2048 + BOOT_MB * 2048}, type=83\n")
    progress("$ sfdisk disk.img")
    subprocess.run(["sfdisk", "-q", str(disk)], input=layout, text=True, check=True, capture_output=True)
    _run(["dd", f"if={MBR_BIN}", f"of={disk}", "bs=440", "count=1", "conv=notrunc", "status=none"], progress)
    _run(["dd", f"if={boot_img}", f"of={disk}", "bs=1M", "seek=1", "conv=notrunc,sparse", "status=none"],
         progress)
    _finish_disk(work, rootfs, disk, root_offset, progress)
    boot_img.unlink()
    (work / "syslinux.cfg").unlink()
