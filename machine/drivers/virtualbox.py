"""The `virtualbox` driver, the default on macOS and Windows (docker-machine's drivers/virtualbox).

It follows docker-machine's proven VBoxManage sequence and fixes what users suffered from:
- The host-only network defaults to 192.168.56.1/24, inside the 192.168.56.0/21 range VirtualBox
  ≥ 6.1.28 allows on Linux/macOS; a refused address (E_ACCESSDENIED) is explained with
  /etc/vbox/networks.conf. An existing adapter/DHCP server for the network is reused, never rewritten.
  macOS with VirtualBox 7 has no host-only adapters: a host-only *network* (vmnet) is used there.
- The engine and SSH are reached through NAT port forwards on 127.0.0.1, so VPNs that hijack the
  host-only route do not break `docker`; the host-only IP is still `machine ip` and in the cert.
- No zero-filled disks: the boot disk is the cached boot image converted by VirtualBox's own
  convertfromraw/clonemedium, and the data disk is a dynamically allocated VDI (createmedium), so a
  200 GB disk costs nothing up front. No qemu-img is needed on the user's machine.
- The guest's kernel must drive what VirtualBox presents: the disks sit on an IDE (PIIX4)
  controller and both NICs are virtio-net, which Debian's generic and cloud kernels both have
  (the cloud kernel lacks AHCI and e1000, VirtualBox's defaults; only the generic kernel has vboxsf).
- The first boot is configured by a NoCloud seed ISO on the IDE DVD drive (SSH key, hostname,
  data disk, the shared home folder mounted with vboxsf at the same path as on the host).

Backends: VBoxManage (`vbox_manage.CliBackend`), or the VirtualBox SDK through pyvbox
(`vbox_api.ApiBackend`) when its bindings import and talk to this VirtualBox.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import platform as _platform
import re
import shutil
import socket
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from skiffbox.machine.drivers.base import CreateFlag, Driver, DriverError, State
from skiffbox.machine.drivers.vbox_manage import (
    HOSTONLY_RANGE_SINCE,
    NETWORKS_CONF,
    Attachment,
    Backend,
    CliBackend,
    DhcpServer,
    HostOnlyNet,
    NatRule,
    StorageController,
    VBoxError,
    Version,
    check_version,
    hostonly_ip_allowed,
    netmask_ok,
    networks_conf_help,
)

log = logging.getLogger(__name__)

# The Debian 12 "generic" cloud image: generic kernel (vboxsf, AHCI, e1000, virtio) + cloud-init,
# BIOS-bootable. ("genericcloud" has the cloud kernel, which cannot mount VirtualBox shared folders.)
DEBIAN_GENERIC_URL = "https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-generic-amd64.qcow2"
DEBIAN_ARM64_URL = "https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-arm64.qcow2"
DEBIAN_SUMS_URL = "https://cloud.debian.org/images/cloud/bookworm/latest/SHA512SUMS"

DEFAULT_CIDR = "192.168.56.1/24"
IDE = "IDE"
NAT_NIC, HOSTONLY_NIC = 1, 2
# The data disk's ATA identity (IDE primary slave), so the guest finds it by a stable name:
# udev names it /dev/disk/by-id/ata-<model>_<serial>.
DATA_MODEL, DATA_SERIAL = "SKIFF-DATA", "skiff-data-1"
DATA_DEVICE = f"/dev/disk/by-id/ata-{DATA_MODEL}_{DATA_SERIAL}"
# arm64 VMs: one VirtIO-SCSI controller, root on target 0 and data on target 1, so the data disk is
# the second SCSI disk (VirtualBox sets no VPD serial there that by-id could name)
VIRTIO_SCSI = "VirtIO-SCSI"
ARM_DATA_DEVICE = "/dev/sdb"
ARM_OSTYPE = "Debian_arm64"
VPD_KEY = "VBoxInternal/Devices/piix3ide/0/Config/PrimarySlave/{}"
GUEST_UID = 1000  # the machine's SSH user is the first user the seed creates
NIC_TYPES = ("Am79C970A", "Am79C973", "82540EM", "82543GC", "82545EM", "virtio")

# VBox.log lines that mean hardware virtualisation is unusable (docker-machine's vtx.go list).
VTX_LOG_PATTERNS = (
    "VT-x is disabled",
    "the host CPU does NOT support HW virtualization",
    "VERR_VMX_UNABLE_TO_START_VM",
    "VERR_VMX_NO_VMX",
    "VERR_SVM_DISABLED",
    "VERR_SVM_NO_SVM",
)

VTX_FIX = (
    "Enable Intel VT-x or AMD-V (SVM) in the computer's BIOS/UEFI setup (on a VM, enable nested "
    "virtualisation for it). To skip this check, use --virtualbox-no-vtx-check."
)
# VirtualBox runs VMs beside an active Hyper-V (WSL2, Docker Desktop, Windows 11's virtualization-based
# security) through the Windows Hypervisor Platform API since 6.1.16 (usable; earlier 6.x mostly failed).
HYPERV_COEXIST_SINCE = (6, 1, 16)
HYPERV_WHY = "Hyper-V is active on this computer (WSL2, Docker Desktop or Windows' virtualization-based security use it)"
HYPERV_WARNING = (
    HYPERV_WHY + ". VirtualBox {version} runs the VM beside it through the Windows Hypervisor Platform; going on. "
    "What you lose: speed (CPU-heavy work and especially disk and network I/O are slower than with VirtualBox "
    "owning VT-x), and some features (nested virtualisation inside the VM; some VirtualBox versions also show "
    "a green turtle icon and cannot use all CPU features). WSL2 and Docker Desktop keep working. "
    "If the VM then fails to start with VERR_NEM_NOT_AVAILABLE, enable the Windows feature 'Windows Hypervisor "
    "Platform' (admin PowerShell: `Enable-WindowsOptionalFeature -Online -FeatureName HypervisorPlatform`) and reboot."
)
HYPERV_TOO_OLD = (
    HYPERV_WHY + ", and VirtualBox {version} cannot run VMs beside it. Install VirtualBox 7.x (or 6.1.16 or "
    "newer), which runs beside Hyper-V through the Windows Hypervisor Platform; or use --virtualbox-no-vtx-check "
    "to try anyway. (Turning Hyper-V off with `bcdedit /set hypervisorlaunchtype off` also works, but it "
    "breaks WSL2 and Docker Desktop until you turn it back on.)"
)
HYPERV_FIX = (
    HYPERV_WHY + ", and VirtualBox could not run the VM through the Windows Hypervisor Platform "
    "(VERR_NEM_NOT_AVAILABLE). Enable the Windows feature 'Windows Hypervisor Platform' (admin PowerShell: "
    "`Enable-WindowsOptionalFeature -Online -FeatureName HypervisorPlatform`), reboot, and use VirtualBox 7.x "
    "(or 6.1.16+). Turning Hyper-V off (`bcdedit /set hypervisorlaunchtype off`) also works, but breaks WSL2 "
    "and Docker Desktop."
)


STATE_MAP = {
    "running": State.RUNNING,
    "paused": State.PAUSED,
    "saved": State.SAVED,
    "poweroff": State.STOPPED,
    "aborted": State.STOPPED,
    "aborted-saved": State.STOPPED,  # 7.0+: crashed with a saved state; startvm discards it
    "teleported": State.STOPPED,
    "starting": State.STARTING,
    "restoring": State.STARTING,
    "stopping": State.STOPPING,
    "saving": State.STOPPING,
}


# ---- host checks -------------------------------------------------------------------------------
Runner = Callable[[list[str]], str]


def _run_text(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


_PS = ["powershell", "-NoProfile", "-NonInteractive", "-Command"]


def windows_hypervisor_present(run: Runner | None = None) -> bool:
    return (run or _run_text)(_PS + ["(Get-CimInstance Win32_ComputerSystem).HypervisorPresent"]).strip().lower() == "true"


APPLE_SILICON_SINCE = (7, 1, 0)


def apple_silicon_problem(version: Version) -> str | None:
    """VirtualBox runs VMs on Apple silicon from 7.1 (arm64 guests only); before, it cannot."""
    if version >= APPLE_SILICON_SINCE:
        return None
    return (
        f"VirtualBox {'.'.join(map(str, version))} cannot run VMs on Apple silicon: 7.1 or newer runs arm64 guests "
        "here (brew install --cask virtualbox). Or use the qemu driver, which runs a native arm64 VM with "
        "Apple's hypervisor: `machine create -d qemu NAME`."
    )


def hyperv_check(platform: str, version: Version, *, run: Runner | None = None) -> str | None:
    """With Hyper-V active on Windows: the warning for a VirtualBox that runs beside it (what the user
    loses), or DriverError for one that cannot. None where there is no Hyper-V."""
    if platform != "win32" or not windows_hypervisor_present(run):
        return None
    shown = ".".join(map(str, version))
    if version < HYPERV_COEXIST_SINCE:
        raise DriverError(HYPERV_TOO_OLD.format(version=shown))
    return HYPERV_WARNING.format(version=shown)


def host_virtualization_problem(
    platform: str, *, cpuinfo: Path = Path("/proc/cpuinfo"), run: Runner | None = None, machine: str | None = None
) -> str | None:
    """Why VirtualBox cannot run a 64-bit VM on this host, with the fix; None when it looks fine."""
    run = run or _run_text
    machine = machine or _platform.machine()
    if platform == "darwin":
        if machine == "arm64":
            return None  # VirtualBox 7.1+ runs arm64 guests here (apple_silicon_problem checks the version)
        features = run(["sysctl", "-n", "machdep.cpu.features"])
        if features and "VMX" not in features.split():
            return f"This Mac's CPU does not report VT-x (VMX). {VTX_FIX}"
        return None
    if platform == "win32":
        if windows_hypervisor_present(run):
            return None  # Windows hides VT-x from the firmware query then; hyperv_check() decides
        fw = run(_PS + ["(Get-CimInstance Win32_Processor).VirtualizationFirmwareEnabled"]).strip()
        if fw.lower().startswith("false"):
            return f"VT-x/AMD-V is disabled in this computer's firmware. {VTX_FIX}"
        return None
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    if flags and not flags & {"vmx", "svm"}:
        return (
            f"This CPU does not offer hardware virtualisation (no vmx or svm flag in {cpuinfo}), and "
            f"VirtualBox 6.1+ cannot run VMs without it. {VTX_FIX}"
        )
    return None


def explain_start_failure(text: str) -> str | None:
    """Turn a startvm error / VBox.log into the fix, or None if it is something else."""
    if "VERR_NEM_NOT_AVAILABLE" in text or "Not in a hypervisor partition" in text or "HYPER_V" in text:
        return HYPERV_FIX
    if any(p in text for p in VTX_LOG_PATTERNS) or "VERR_VMX_MSR" in text:
        return f"VirtualBox cannot use hardware virtualisation. {VTX_FIX}"
    if "VERR_VM_DRIVER_NOT_INSTALLED" in text or "The vboxdrv kernel module is not loaded" in text:
        return "The VirtualBox kernel driver is not loaded: run `sudo /sbin/vboxconfig` (Linux) or reinstall VirtualBox."
    if "Host-only adapters are no longer supported" in text:
        return "This VirtualBox only supports host-only networks; remove the machine and create it again."
    if "Nonexistent host networking interface" in text:
        return "The VM's host-only adapter is gone (removed in VirtualBox?); `machine start` recreates it."
    return None


# ---- boot images ---------------------------------------------------------------------------------
def image_kind(path: Path) -> str:
    """raw | qcow2 | vdi | vmdk | vhd | iso, from the file's magic (never its name)."""
    with open(path, "rb") as f:
        head = f.read(0x8006)
        f.seek(0, os.SEEK_END)
        size = f.tell()
        tail = b""
        if size >= 512:
            f.seek(size - 512)
            tail = f.read(8)
    if head[:4] == b"QFI\xfb":
        return "qcow2"
    if head[0x40:0x44] == b"\x7f\x10\xda\xbe":
        return "vdi"
    if head[:4] == b"KDMV" or head.startswith(b"# Disk DescriptorFile"):
        return "vmdk"
    if head[:8] == b"conectix" or tail == b"conectix":
        return "vhd"
    if head[0x8001:0x8006] == b"CD001":
        return "iso"
    return "raw"


def qcow2_problem(path: Path) -> str | None:
    """VirtualBox's QCOW backend refuses v3 images with incompatible feature bits (qcow2 spec)."""
    with open(path, "rb") as f:
        head = f.read(80)
    version = struct.unpack(">I", head[4:8])[0]
    if version not in (2, 3):
        return f"qcow2 version {version} is not supported"
    if version == 3:
        incompat = struct.unpack(">Q", head[72:80])[0]
        if incompat:
            return (
                f"its incompatible-feature bits {incompat:#x} (e.g. zstd compression, extended L2, an "
                "external data file or a dirty flag) cannot be read by VirtualBox; use a raw image or a "
                "plain qcow2"
            )
    return None


def default_share(platform: str, env: dict[str, str] | None = None) -> tuple[str, str, str]:
    """(host dir, share name, guest mount point) as docker-machine shared them, at the same path.

    On Linux the user's own home (not all of /home): the guest's SSH user lives in /home too."""
    env = dict(os.environ) if env is None else env
    if platform == "darwin":
        return "/Users", "Users", "/Users"
    if platform == "win32":
        drive = env.get("SYSTEMDRIVE", "C:").rstrip("\\")
        letter = drive[0].lower()
        return f"{drive}\\Users", f"{letter}/Users", f"/{letter}/Users"
    home = str(Path(env.get("HOME") or Path.home()))
    return home, "hosthome", home


def parse_share(spec: str) -> tuple[str, str, str]:
    """`--virtualbox-share-folder DIR:NAME` (NAME defaults to DIR's base name), mounted at /NAME."""
    drive = spec[:2] if re.match(r"^[A-Za-z]:[\\/]", spec) else ""  # a Windows drive's colon is not the separator
    body = spec[len(drive):]
    if ":" in body:
        host, name = drive + body.rsplit(":", 1)[0], body.rsplit(":", 1)[1]
    else:
        host, name = spec, Path(spec.replace("\\", "/")).name
    name = name.strip("/")
    if not name or re.search(r"\s", name):
        raise DriverError(f"bad --virtualbox-share-folder {spec!r}: use DIR:NAME (NAME without spaces)")
    return host, name, "/" + name


def dhcp_plan(iface: ipaddress.IPv4Interface) -> DhcpServer:
    """The DHCP server for a host-only network: VirtualBox's own defaults for a /24 (server .100,
    leases .101-.254), scaled for other sizes; never overlapping the host's address."""
    net = iface.network
    n = net.num_addresses
    if n < 8:
        raise DriverError(f"host-only network {net} is too small (use a /29 or larger, e.g. 192.168.56.1/24)")
    base = int(net.network_address)
    if n >= 256:
        server, lower = base + 100, base + 101
    else:
        server, lower = base + 2, base + n // 2
    upper = int(net.broadcast_address) - 1
    host = int(iface.ip)
    if server == host:
        server = base + 3 if host != base + 3 else base + 4
    if lower <= host <= upper:
        if host - base > n // 2:
            upper = host - 1
        else:
            lower = host + 1
    a = ipaddress.IPv4Address
    return DhcpServer("", str(a(server)), str(net.netmask), str(a(lower)), str(a(upper)), True)


def ip_for_mac(link_out: str, addr_out: str, mac: str) -> str | None:
    """From `ip -o link` and `ip -o -4 addr` output, the IPv4 address of the interface with `mac`."""
    want = mac.lower().replace(":", "").replace("-", "")
    ifname = None
    for line in link_out.splitlines():
        m = re.match(r"\d+:\s+([^:@\s]+)[@:].*\blink/ether\s+([0-9a-f:]{17})", line)
        if m and m.group(2).replace(":", "") == want:
            ifname = m.group(1)
            break
    if ifname is None:
        return None
    for line in addr_out.splitlines():
        m = re.match(r"\d+:\s+(\S+)\s+inet\s+([0-9.]+)/\d+", line)
        if m and m.group(1) == ifname:
            return m.group(2)
    return None


def free_port(prefer: int = 0) -> int:
    """A free TCP port on 127.0.0.1, `prefer` if it is free (keeps ports stable across restarts)."""
    for candidate in ([prefer] if prefer else []) + [0]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            port: int = s.getsockname()[1]
            return port
    raise DriverError("no free TCP port on 127.0.0.1")


def select_backend() -> Backend:
    """pyvbox when the VirtualBox SDK bindings import and answer; VBoxManage otherwise.
    SKIFF_VBOX_BACKEND=cli|api forces one."""
    want = os.environ.get("SKIFF_VBOX_BACKEND", "").lower()
    if want != "cli":
        from skiffbox.machine.drivers import vbox_api

        try:
            return vbox_api.ApiBackend()
        except vbox_api.ApiUnavailable as e:
            if want == "api":
                raise DriverError(f"the VirtualBox SDK backend is not usable: {e}") from None
            log.debug("pyvbox not used: %s", e)
    return CliBackend()


# ---- the driver ----------------------------------------------------------------------------------
class VirtualBoxDriver(Driver):
    name = "virtualbox"

    def __init__(
        self,
        machine_name: str,
        machine_dir: Path,
        *,
        backend: Backend | None = None,
        platform: str = sys.platform,
        host_arch: str | None = None,
    ) -> None:
        super().__init__(machine_name, machine_dir)
        self._backend = backend
        self.platform = platform
        self._host_arch = host_arch
        self.arch = ""  # guest architecture, fixed at create: aarch64 on Apple silicon, else x86_64
        self.cpus = 2
        self.memory = 2048
        self.disk_size = 20000
        self.boot_image = ""  # flag value: path or URL; empty = built image or Debian's
        self.boot_image_path = ""  # resolved local file
        self.hostonly_cidr = DEFAULT_CIDR
        self.hostonly_nictype = "virtio"
        self.hostonly_promisc = "deny"
        self.hostonly_no_dhcp = False
        self.nat_nictype = "virtio"
        self.host_dns_resolver = False
        self.dns_proxy = True
        self.share_folder = ""
        self.no_share = False
        self.no_vtx_check = False
        self.ui_type = "headless"
        self.engine_host_port = 0
        self.hostonly_adapter = ""
        self.hostonly_network = ""
        self.shares: list[tuple[str, str, str]] = []
        # bounded waits (docker-machine polls stop forever; we power off after this)
        self.stop_timeout = 90.0
        self.ip_timeout = 180.0
        self.ssh_runner: Callable[[str], str] | None = None  # tests; default: paramiko via machine.ssh
        self.networks_conf = NETWORKS_CONF

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = select_backend()
        return self._backend

    # ---- flags and persistence -----------------------------------------------------------------
    @classmethod
    def create_flags(cls) -> list[CreateFlag]:
        return [
            CreateFlag("virtualbox-memory", "Size of memory for the VM (MB)", 2048, "VIRTUALBOX_MEMORY_SIZE", int),
            CreateFlag("virtualbox-cpu-count", "Number of CPUs for the VM (-1 = all host CPUs)", 2, "VIRTUALBOX_CPU_COUNT", int),
            CreateFlag("virtualbox-disk-size", "Size of the data disk (MB); allocated as it fills", 20000, "VIRTUALBOX_DISK_SIZE", int),
            CreateFlag("virtualbox-boot-image", "Boot disk image: path or URL (raw, qcow2, VDI, VMDK, VHD); "
                       "default: the image built by `machine image build`, else Debian 12's generic cloud image",
                       "", "VIRTUALBOX_BOOT_IMAGE"),
            CreateFlag("virtualbox-hostonly-cidr", "Host-only network: host address/prefix (inside 192.168.56.0/21 "
                       "unless /etc/vbox/networks.conf allows more)", DEFAULT_CIDR, "VIRTUALBOX_HOSTONLY_CIDR"),
            CreateFlag("virtualbox-hostonly-nictype", "Host-only NIC type (virtio, 82540EM, ...)", "virtio", "VIRTUALBOX_HOSTONLY_NIC_TYPE"),
            CreateFlag("virtualbox-hostonly-nicpromisc", "Host-only NIC promiscuous mode (deny, allow-vms, allow-all)", "deny",
                       "VIRTUALBOX_HOSTONLY_NIC_PROMISC"),
            CreateFlag("virtualbox-hostonly-no-dhcp", "Do not set up a DHCP server on the host-only network", False,
                       "VIRTUALBOX_HOSTONLY_NO_DHCP", bool, True),
            CreateFlag("virtualbox-nat-nictype", "NAT NIC type (virtio, 82540EM, ...)", "virtio", "VIRTUALBOX_NAT_NICTYPE"),
            CreateFlag("virtualbox-host-dns-resolver", "Use the host's DNS resolver for the NAT NIC", False,
                       "VIRTUALBOX_HOST_DNS_RESOLVER", bool, True),
            CreateFlag("virtualbox-no-dns-proxy", "Disable the NAT DNS proxy", False, "VIRTUALBOX_NO_DNS_PROXY", bool, True),
            CreateFlag("virtualbox-share-folder", "Share DIR:NAME, mounted at /NAME (default: the home folder at the same path)",
                       "", "VIRTUALBOX_SHARE_FOLDER"),
            CreateFlag("virtualbox-no-share", "Do not share the home folder", False, "VIRTUALBOX_NO_SHARE", bool, True),
            CreateFlag("virtualbox-no-vtx-check", "Skip the VT-x/AMD-V and Hyper-V checks", False,
                       "VIRTUALBOX_NO_VTX_CHECK", bool, True),
            CreateFlag("virtualbox-ui-type", "VM window: headless, gui, sdl or separate", "headless", "VIRTUALBOX_UI_TYPE"),
        ]  # fmt: skip

    def set_config_from_flags(self, flags: dict[str, Any]) -> None:
        def get(name: str, default: Any) -> Any:
            v = flags.get(name.replace("-", "_"))
            return default if v is None or v == "" else v

        cpus = int(get("virtualbox-cpu-count", 2))
        self.cpus = min(os.cpu_count() or 1, 32) if cpus == -1 else cpus
        self.memory = int(get("virtualbox-memory", 2048))
        self.disk_size = int(get("virtualbox-disk-size", 20000))
        self.boot_image = str(get("virtualbox-boot-image", ""))
        self.hostonly_cidr = str(get("virtualbox-hostonly-cidr", DEFAULT_CIDR))
        self.hostonly_nictype = str(get("virtualbox-hostonly-nictype", "virtio"))
        self.hostonly_promisc = str(get("virtualbox-hostonly-nicpromisc", "deny"))
        self.hostonly_no_dhcp = bool(get("virtualbox-hostonly-no-dhcp", False))
        self.nat_nictype = str(get("virtualbox-nat-nictype", "virtio"))
        self.host_dns_resolver = bool(get("virtualbox-host-dns-resolver", False))
        self.dns_proxy = not bool(get("virtualbox-no-dns-proxy", False))
        self.share_folder = str(get("virtualbox-share-folder", ""))
        self.no_share = bool(get("virtualbox-no-share", False))
        self.no_vtx_check = bool(get("virtualbox-no-vtx-check", False))
        self.ui_type = str(get("virtualbox-ui-type", "headless")).lower()

    def to_config(self) -> dict[str, Any]:
        d = super().to_config()
        d.update({
            "CPU": self.cpus, "Memory": self.memory, "DiskSize": self.disk_size,
            "BootImage": self.boot_image, "BootImagePath": self.boot_image_path,
            "HostOnlyCIDR": self.hostonly_cidr, "HostOnlyNicType": self.hostonly_nictype,
            "HostOnlyPromiscMode": self.hostonly_promisc, "HostOnlyNoDHCP": self.hostonly_no_dhcp,
            "NatNicType": self.nat_nictype, "HostDNSResolver": self.host_dns_resolver, "DNSProxy": self.dns_proxy,
            "ShareFolder": self.share_folder, "NoShare": self.no_share, "Shares": [list(s) for s in self.shares],
            "NoVTXCheck": self.no_vtx_check, "UIType": self.ui_type, "EnginePort": self.engine_port,
            "EngineHostPort": self.engine_host_port, "HostOnlyAdapter": self.hostonly_adapter,
            "HostOnlyNetwork": self.hostonly_network, "SSHKeyPath": str(self.ssh_key_path()),
            "Arch": self.guest_arch(),
        })  # fmt: skip
        return d

    def load_config(self, data: dict[str, Any]) -> None:
        super().load_config(data)
        self.cpus = int(data.get("CPU", self.cpus))
        self.memory = int(data.get("Memory", self.memory))
        self.disk_size = int(data.get("DiskSize", self.disk_size))
        self.boot_image = data.get("BootImage", "")
        self.boot_image_path = data.get("BootImagePath", "")
        self.hostonly_cidr = data.get("HostOnlyCIDR", DEFAULT_CIDR)
        self.hostonly_nictype = data.get("HostOnlyNicType", self.hostonly_nictype)
        self.hostonly_promisc = data.get("HostOnlyPromiscMode", self.hostonly_promisc)
        self.hostonly_no_dhcp = bool(data.get("HostOnlyNoDHCP", False))
        self.nat_nictype = data.get("NatNicType", self.nat_nictype)
        self.host_dns_resolver = bool(data.get("HostDNSResolver", False))
        self.dns_proxy = bool(data.get("DNSProxy", True))
        self.share_folder = data.get("ShareFolder", "")
        self.no_share = bool(data.get("NoShare", False))
        self.shares = [tuple(s) for s in data.get("Shares", [])]
        self.no_vtx_check = bool(data.get("NoVTXCheck", False))
        self.ui_type = data.get("UIType", "headless")
        self.arch = data.get("Arch") or "x86_64"  # saved before arm64 support: x86_64
        self.engine_port = int(data.get("EnginePort", 2376))
        self.engine_host_port = int(data.get("EngineHostPort", 0))
        self.hostonly_adapter = data.get("HostOnlyAdapter", "")
        self.hostonly_network = data.get("HostOnlyNetwork", "")

    # ---- paths -----------------------------------------------------------------------------------
    @property
    def disk_path(self) -> Path:
        return self.machine_dir / "disk.vdi"

    @property
    def data_disk_path(self) -> Path:
        return self.machine_dir / "data.vdi"

    @property
    def seed_path(self) -> Path:
        return self.machine_dir / "seed.iso"

    def _cache_dir(self) -> Path:
        from skiffbox.machine.image.cache import default_cache_dir

        # machine_dir is <store>/machines/<name>
        return default_cache_dir(self.machine_dir.parent.parent)

    # ---- checks ----------------------------------------------------------------------------------
    def _vmnet(self) -> bool:
        """macOS + VirtualBox 7: host-only networks (vmnet) replace host-only adapters."""
        return self.platform == "darwin" and self.backend.version() >= (7, 0, 0)

    def _hostonly_iface(self) -> ipaddress.IPv4Interface:
        try:
            iface = ipaddress.IPv4Interface(self.hostonly_cidr)
        except ValueError:
            raise DriverError(
                f"--virtualbox-hostonly-cidr {self.hostonly_cidr!r} is not an IPv4 address/prefix like {DEFAULT_CIDR}"
            ) from None
        if iface.ip in (iface.network.network_address, iface.network.broadcast_address):
            raise DriverError(
                f"--virtualbox-hostonly-cidr {self.hostonly_cidr} must be the host's address in the network "
                f"(e.g. {iface.network.network_address + 1}/{iface.network.prefixlen}), not the network or broadcast address"
            )
        return iface

    def _check_hostonly_range(self, iface: ipaddress.IPv4Interface) -> None:
        if self.platform not in ("linux", "darwin") or self._vmnet():
            return
        if self.backend.version() < HOSTONLY_RANGE_SINCE:
            return
        if not hostonly_ip_allowed(str(iface.ip), self.networks_conf):
            raise DriverError(networks_conf_help(str(iface.ip), self.networks_conf))

    def guest_arch(self) -> str:
        """VirtualBox runs only guests of the host's architecture (no emulation)."""
        if not self.arch:
            from skiffbox.machine.drivers.accel import host_machine, normalize_arch

            self.arch = normalize_arch(self._host_arch or host_machine())
        return self.arch

    @property
    def arm(self) -> bool:
        return self.guest_arch() == "aarch64"

    def pre_create_check(self) -> None:
        check_version(self.backend.version())
        if self.platform == "darwin" and self.arm:
            problem = apple_silicon_problem(self.backend.version())
            if problem:
                raise DriverError(problem)
        if self.ui_type not in ("headless", "gui", "sdl", "separate"):
            raise DriverError(f"--virtualbox-ui-type must be headless, gui, sdl or separate, not {self.ui_type!r}")
        for flag, value in (("hostonly-nictype", self.hostonly_nictype), ("nat-nictype", self.nat_nictype)):
            if value not in NIC_TYPES:
                raise DriverError(f"--virtualbox-{flag} must be one of {', '.join(NIC_TYPES)}, not {value!r}")
        if self.memory < 512 or self.cpus < 1 or self.disk_size < 1024:
            raise DriverError("the VM needs at least 512 MB of memory, 1 CPU and a 1024 MB disk")
        if not self.no_vtx_check:
            problem = host_virtualization_problem(self.platform)
            if problem:
                raise DriverError(problem)
            warning = hyperv_check(self.platform, self.backend.version())
            if warning:
                log.warning("%s", warning)
        self._check_hostonly_range(self._hostonly_iface())
        self.shares = self._plan_shares()
        # Fetch the image before anything is made, so a failed download leaves nothing behind.
        self.boot_image_path = str(self._resolve_boot_image())

    def _plan_shares(self) -> list[tuple[str, str, str]]:
        if self.no_share:
            return []
        share = parse_share(self.share_folder) if self.share_folder else default_share(self.platform)
        if not Path(share[0]).is_dir():
            log.warning("not sharing %s: no such folder", share[0])
            return []
        return [share]

    def _resolve_boot_image(self) -> Path:
        src = self.boot_image
        if src.startswith(("http://", "https://")):
            from skiffbox.machine.image.cache import ImageCache

            return ImageCache(self._cache_dir()).fetch(src)
        if src:
            path = Path(src).expanduser()
            if not path.is_file():
                raise DriverError(f"--virtualbox-boot-image {src}: no such file")
        else:
            from skiffbox.machine.image.build import built_image

            built = built_image(self._cache_dir(), self.guest_arch())
            if built.exists():
                path = built.disk
            else:
                from skiffbox.machine.image.cache import ImageCache

                # arm64: the genericcloud image (EFI, generic-enough kernel for VirtualBox's virtio devices)
                url = DEBIAN_ARM64_URL if self.arm else DEBIAN_GENERIC_URL
                path = ImageCache(self._cache_dir()).fetch(url, checksums_url=DEBIAN_SUMS_URL)
        kind = image_kind(path)
        if kind == "iso":
            raise DriverError(f"{path} is an ISO image; the boot image must be a disk image (raw, qcow2, VDI, VMDK, VHD)")
        if kind == "qcow2":
            problem = qcow2_problem(path)
            if problem:
                raise DriverError(f"VirtualBox cannot read the boot image {path}: {problem}")
        return path

    # ---- create ----------------------------------------------------------------------------------
    def create(self) -> None:
        from skiffbox.machine.certs import generate_ssh_key

        if not self.boot_image_path:
            self.boot_image_path = str(self._resolve_boot_image())
        self.machine_dir.mkdir(parents=True, exist_ok=True)
        if not self.ssh_key_path().is_file():
            generate_ssh_key(self.ssh_key_path(), f"skiff-{self.machine_name}")
        b = self.backend
        self._make_boot_disk(Path(self.boot_image_path))
        b.create_medium(self.data_disk_path, self.disk_size, "VDI")
        self._write_seed()

        vm = self.machine_name
        if self.arm:
            self._create_arm_vm(vm)
            self.start()
            return
        b.create_vm(vm, self.machine_dir)
        b.modify_vm(vm, [
            ("firmware", "bios"), ("bioslogofadein", "off"), ("bioslogofadeout", "off"),
            ("bioslogodisplaytime", "0"), ("biosbootmenu", "disabled"), ("ostype", "Debian_64"),
            ("cpus", str(self.cpus)), ("memory", str(self.memory)), ("acpi", "on"), ("ioapic", "on"),
            ("rtcuseutc", "on"), ("cpuhotplug", "off"), ("pae", "on"), ("hpet", "on"), ("hwvirtex", "on"),
            ("nestedpaging", "on"), ("largepages", "on"), ("vtxvpid", "on"), ("accelerate3d", "off"),
            ("graphicscontroller", "vmsvga"), ("boot1", "disk"), ("boot2", "none"), ("boot3", "none"),
            ("boot4", "none"),
            # the guest's serial console (console=ttyS0) goes to a file: the only boot log of a headless VM
            ("uart1", ("0x3F8", "4")), ("uartmode1", ("file", str(self.machine_dir / "console.log"))),
        ])  # fmt: skip
        b.modify_vm(vm, [
            (f"nic{NAT_NIC}", "nat"), (f"nictype{NAT_NIC}", self.nat_nictype), (f"cableconnected{NAT_NIC}", "on"),
            (f"natdnshostresolver{NAT_NIC}", "on" if self.host_dns_resolver else "off"),
            (f"natdnsproxy{NAT_NIC}", "on" if self.dns_proxy else "off"),
        ])  # fmt: skip
        b.add_storage_controller(vm, StorageController(IDE, "ide", "PIIX4", True))
        b.attach(vm, Attachment(IDE, 0, 0, "hdd", str(self.disk_path)))
        b.attach(vm, Attachment(IDE, 0, 1, "hdd", str(self.data_disk_path)))
        b.attach(vm, Attachment(IDE, 1, 0, "dvddrive", str(self.seed_path)))
        b.set_extra_data(vm, VPD_KEY.format("ModelNumber"), DATA_MODEL)
        b.set_extra_data(vm, VPD_KEY.format("SerialNumber"), DATA_SERIAL)
        # For guests with Guest Additions: automount shares at /<name>, as boot2docker did.
        b.set_guest_property(vm, "/VirtualBox/GuestAdd/SharedFolders/MountPrefix", "/")
        b.set_guest_property(vm, "/VirtualBox/GuestAdd/SharedFolders/MountDir", "/")
        for host_dir, share, _guest in self.shares:
            b.add_shared_folder(vm, share, host_dir, automount=True)
            b.set_extra_data(vm, f"VBoxInternal2/SharedFoldersEnableSymlinksCreate/{share}", "1")
        self.start()

    def _create_arm_vm(self, vm: str) -> None:
        """An arm64 VM (VirtualBox 7.1+ on Apple silicon): `armv8virtual` platform, UEFI boot of the
        image's ESP, disks and seed on VirtIO-SCSI (an Arm VM has no IDE/PIIX), virtio NICs. The
        x86-only settings (PAE, HPET, VT-x, BIOS logo, the 0x3F8 UART) do not exist there."""
        b = self.backend
        b.create_vm(vm, self.machine_dir, platform_arch="arm")
        b.modify_vm(vm, [
            ("ostype", ARM_OSTYPE), ("firmware", "efi"), ("cpus", str(self.cpus)), ("memory", str(self.memory)),
            ("rtcuseutc", "on"), ("boot1", "disk"), ("boot2", "none"),
            ("boot3", "none"), ("boot4", "none"),
        ])  # fmt: skip
        b.modify_vm(vm, [
            (f"nic{NAT_NIC}", "nat"), (f"nictype{NAT_NIC}", "virtio"), (f"cableconnected{NAT_NIC}", "on"),
            (f"natdnshostresolver{NAT_NIC}", "on" if self.host_dns_resolver else "off"),
            (f"natdnsproxy{NAT_NIC}", "on" if self.dns_proxy else "off"),
        ])  # fmt: skip
        b.add_storage_controller(vm, StorageController(VIRTIO_SCSI, "virtio-scsi", "VirtIO", True, port_count=3))
        b.attach(vm, Attachment(VIRTIO_SCSI, 0, 0, "hdd", str(self.disk_path)))
        b.attach(vm, Attachment(VIRTIO_SCSI, 1, 0, "hdd", str(self.data_disk_path)))
        b.attach(vm, Attachment(VIRTIO_SCSI, 2, 0, "dvddrive", str(self.seed_path)))
        for host_dir, share, _guest in self.shares:
            b.add_shared_folder(vm, share, host_dir, automount=True)
            b.set_extra_data(vm, f"VBoxInternal2/SharedFoldersEnableSymlinksCreate/{share}", "1")

    def _make_boot_disk(self, image: Path) -> None:
        """The boot image → the machine's own VDI, with VirtualBox's tools (no qemu-img on the host)."""
        kind = image_kind(image)
        if kind == "raw":
            self.backend.convert_raw(image, self.disk_path, "VDI")
            return
        self.backend.clone_medium(image, self.disk_path, "VDI")
        # clonemedium registers the source too; the cached image must not stay in VirtualBox's registry
        # (it would pin the file, and a second machine made from it would collide on its UUID).
        try:
            self.backend.close_medium(image)
        except VBoxError as e:
            log.debug("closemedium %s: %s", image, e)

    def _write_seed(self) -> None:
        from skiffbox.machine.image.seed import SeedConfig, Share, write_seed_iso

        pub = Path(str(self.ssh_key_path()) + ".pub").read_text().strip()
        shares = [
            Share(tag=share, guest_path=guest, fstype="vboxsf", options=f"uid={GUEST_UID},gid={GUEST_UID},nofail")
            for _host, share, guest in self.shares
        ]
        cfg = SeedConfig(
            instance_id=str(uuid.uuid4()), hostname=self.machine_name, user=self.ssh_user,
            ssh_public_key=pub, data_device=ARM_DATA_DEVICE if self.arm else DATA_DEVICE, shares=shares,
        )  # fmt: skip
        write_seed_iso(self.seed_path, cfg)

    # ---- networking ------------------------------------------------------------------------------
    def _setup_hostonly(self) -> None:
        iface = self._hostonly_iface()
        self._check_hostonly_range(iface)
        vm = self.machine_name
        nic = HOSTONLY_NIC
        if self._vmnet():
            name = self._ensure_hostonly_network(iface)
            self.hostonly_network, self.hostonly_adapter = name, ""
            attach = [(f"nic{nic}", "hostonlynet"), (f"hostonlynet{nic}", name)]
        else:
            name = self._ensure_hostonly_adapter(iface)
            self.hostonly_adapter, self.hostonly_network = name, ""
            attach = [(f"nic{nic}", "hostonly"), (f"hostonlyadapter{nic}", name)]
        self.backend.modify_vm(vm, attach + [
            (f"nictype{nic}", self.hostonly_nictype), (f"nicpromisc{nic}", self.hostonly_promisc),
            (f"cableconnected{nic}", "on"),
        ])  # fmt: skip

    def _ensure_hostonly_adapter(self, iface: ipaddress.IPv4Interface) -> str:
        b = self.backend
        ip, mask = str(iface.ip), str(iface.network.netmask)
        ifs = b.host_only_ifs()
        same_ip = [i for i in ifs if i.ip == ip]
        if len(same_ip) > 1:
            raise DriverError(
                f"VirtualBox has several host-only adapters with the IP {ip} "
                f"({', '.join(i.name for i in same_ip)}); remove the extra ones in VirtualBox's Network Manager "
                "(File > Tools > Network Manager) or with `VBoxManage hostonlyif remove NAME`."
            )
        match = next((i for i in same_ip if netmask_ok(i.netmask, mask)), None)
        if match:
            name = match.name
        else:
            try:
                name = b.create_host_only_if()
            except VBoxError as e:
                hint = ""
                if "vboxnetctl" in e.text:
                    hint = " The vboxnetadp kernel module is not loaded: run `sudo /sbin/vboxconfig` or reinstall VirtualBox."
                elif self.platform == "win32":
                    hint = " Windows may have shown a permission prompt (sometimes minimised in the taskbar); accept it and retry."
                raise DriverError(f"VirtualBox could not create a host-only adapter: {e.message}.{hint}") from None
            try:
                b.config_host_only_if(name, ip, mask)
            except VBoxError as e:
                if e.access_denied:
                    raise DriverError(networks_conf_help(ip, self.networks_conf)) from None
                raise
        if not self.hostonly_no_dhcp:
            self._ensure_dhcp(f"HostInterfaceNetworking-{name}", iface)
        return name

    def _ensure_dhcp(self, netname: str, iface: ipaddress.IPv4Interface) -> None:
        b = self.backend
        current = next((s for s in b.dhcp_servers() if s.network_name == netname), None)
        if current and current.enabled and current.serves(iface.network) and current.ip != str(iface.ip):
            return  # a working server (e.g. VirtualBox's default for vboxnet0): leave it as it is
        plan = dhcp_plan(iface)
        plan.network_name = netname
        b.put_dhcp_server(plan, exists=current is not None)

    def _ensure_hostonly_network(self, iface: ipaddress.IPv4Interface) -> str:
        """macOS/VirtualBox 7: the host takes the network's lowest address; DHCP serves the rest."""
        net = iface.network
        lower, upper = str(net.network_address + 1), str(net.broadcast_address - 1)
        mask = str(net.netmask)
        if str(iface.ip) != lower:
            raise DriverError(
                f"with VirtualBox 7 on macOS the host takes the first address of the host-only network: "
                f"use --virtualbox-hostonly-cidr {lower}/{net.prefixlen}"
            )
        for n in self.backend.host_only_nets():
            if n.netmask == mask and n.lower_ip == lower:
                return n.name
        name = f"skiff-{net.network_address}"
        self.backend.add_host_only_net(HostOnlyNet(name, mask, lower, upper, True))
        return name

    def _setup_forwards(self) -> None:
        """SSH and the engine on 127.0.0.1 through NAT (VPNs cannot reroute loopback)."""
        vm = self.machine_name
        for rule_name, guest_port, attr in (("ssh", 22, "ssh_port"), ("engine", self.engine_port, "engine_host_port")):
            current = getattr(self, attr)
            prefer = current if current and current != 22 else 0
            self.backend.delete_nat_rule(vm, NAT_NIC, rule_name)
            port = free_port(prefer)
            self.backend.add_nat_rule(vm, NAT_NIC, NatRule(rule_name, "tcp", "127.0.0.1", port, "", guest_port))
            setattr(self, attr, port)

    # ---- lifecycle -------------------------------------------------------------------------------
    def _vmstate(self) -> str | None:
        info = self.backend.vm_info(self.machine_name)
        return None if info is None else info.get("VMState", "")

    def state(self) -> State:
        raw = self._vmstate()
        if raw is None:
            return State.ERROR
        return STATE_MAP.get(raw, State.NONE)

    def start(self) -> None:
        vm = self.machine_name
        st = self.state()
        if st == State.ERROR:
            raise DriverError(f"VirtualBox has no VM named {vm!r}; remove the machine and create it again")
        if st == State.PAUSED:
            self.backend.control_vm(vm, "resume")
        elif st == State.RUNNING:
            pass
        else:
            if st == State.STOPPED:  # a saved VM's settings are frozen until it resumes
                self._setup_hostonly()
                self._setup_forwards()
            self.ip_address = ""
            try:
                self.backend.start_vm(vm, self.ui_type)
            except VBoxError as e:
                fix = explain_start_failure(e.text + "\n" + self._vbox_log())
                raise DriverError(f"VirtualBox could not start {vm}: {e.message}" + (f". {fix}" if fix else "")) from None
            problem = self._vtx_in_log()
            if problem:
                self.kill()
                raise DriverError(problem)
        self.ip_address = self._wait_for_ip(self.ip_timeout)

    def _vbox_log(self) -> str:
        info = self.backend.vm_info(self.machine_name) or {}
        folder = info.get("LogFldr")
        try:
            return (Path(folder) / "VBox.log").read_text(errors="replace") if folder else ""
        except OSError:
            return ""

    def _vtx_in_log(self) -> str | None:
        text = self._vbox_log()
        # 5.x printed this and then fell back to raw mode (removed in 6.1), which still worked.
        text = text.replace("Falling back to raw-mode: VT-x is disabled in the BIOS for all CPU modes", "")
        if any(p in text for p in VTX_LOG_PATTERNS) or ("Power up failed" in text and "VERR_VMX" in text):
            return f"VirtualBox started {self.machine_name} without hardware virtualisation. {VTX_FIX}"
        return None

    def stop(self) -> None:
        vm = self.machine_name
        st = self.state()
        if st == State.PAUSED:
            self.backend.control_vm(vm, "resume")
            st = State.RUNNING
        if st == State.RUNNING:
            self.backend.control_vm(vm, "acpipowerbutton")
            deadline = time.monotonic() + self.stop_timeout
            while self.state() in (State.RUNNING, State.STOPPING):
                if time.monotonic() >= deadline:
                    log.warning("%s did not shut down within %.0f s; powering it off", vm, self.stop_timeout)
                    self._poweroff()
                    break
                time.sleep(1.0)
        self.ip_address = ""

    def _poweroff(self) -> None:
        try:
            self.backend.control_vm(self.machine_name, "poweroff")
        except VBoxError as e:
            if not e.not_running:
                raise
        # The session unlocks a moment after poweroff; later modifyvm calls need the write lock.
        deadline = time.monotonic() + 10.0
        while self.state() in (State.RUNNING, State.PAUSED, State.STOPPING) and time.monotonic() < deadline:
            time.sleep(0.2)

    def kill(self) -> None:
        if self.state() in (State.RUNNING, State.PAUSED, State.STOPPING, State.STARTING):
            self._poweroff()
        self.ip_address = ""

    def remove(self) -> None:
        """Everything this driver made: the VM (unregistervm --delete takes its disks) and any disk,
        seed or registration a half-finished create left behind."""
        vm = self.machine_name
        if self._vmstate() is not None:
            self.kill()
            self.backend.unregister_delete(vm)
        for path, kind in ((self.disk_path, "disk"), (self.data_disk_path, "disk"), (self.seed_path, "dvd")):
            if path.exists():
                try:
                    self.backend.close_medium(path, kind, delete=kind == "disk")
                except VBoxError as e:
                    log.debug("closemedium %s: %s", path, e)  # not registered: just a file
                path.unlink(missing_ok=True)
        shutil.rmtree(self.machine_dir / vm, ignore_errors=True)  # VirtualBox's own folder (logs)
        self.ip_address = ""

    # ---- addressing ------------------------------------------------------------------------------
    def ssh_hostname(self) -> str:
        return "127.0.0.1"

    def engine_endpoint(self) -> tuple[str, int]:
        if not self.engine_host_port:
            raise DriverError(f"machine {self.machine_name} has no engine port forward yet; start it first")
        return "127.0.0.1", self.engine_host_port

    def extra_cert_sans(self) -> list[str]:
        return [self.ip_address] if self.ip_address else []

    def shared_folders(self) -> list[tuple[str, str]]:
        return [(host_dir, guest) for host_dir, _share, guest in self.shares]

    def ip(self) -> str:
        """The host-only address (what `machine ip` prints); learnt at start, re-read if unknown."""
        if self.ip_address:
            return self.ip_address
        if self.state() != State.RUNNING:
            raise DriverError(f"machine {self.machine_name} is not running")
        self.ip_address = self._wait_for_ip(30.0)
        return self.ip_address

    def _hostonly_mac(self) -> str:
        info = self.backend.vm_info(self.machine_name) or {}
        mac = info.get(f"macaddress{HOSTONLY_NIC}", "")
        if not mac:
            raise DriverError(f"VM {self.machine_name} has no host-only NIC (NIC {HOSTONLY_NIC})")
        return mac

    def _ip_from_guest_properties(self, mac: str) -> str | None:
        """Guest Additions publish each NIC's MAC and IPv4 as /VirtualBox/GuestInfo/Net/<i>/..."""
        vm = self.machine_name
        count = self.backend.get_guest_property(vm, "/VirtualBox/GuestInfo/Net/Count")
        if not count or not count.isdigit():
            return None
        for i in range(int(count)):
            if (self.backend.get_guest_property(vm, f"/VirtualBox/GuestInfo/Net/{i}/MAC") or "").upper() == mac.upper():
                return self.backend.get_guest_property(vm, f"/VirtualBox/GuestInfo/Net/{i}/V4/IP")
        return None

    def _ip_over_ssh(self, mac: str) -> str | None:
        run = self.ssh_runner or self._ssh_run
        out = run("ip -o link show; echo ===; ip -o -4 addr show")
        link, _, addr = out.partition("===")
        return ip_for_mac(link, addr, mac)

    def _ssh_run(self, cmd: str) -> str:
        from skiffbox.machine.ssh import SSHError, connect

        try:
            with connect(self.ssh_endpoint(), timeout=10.0) as c:
                return c.run(cmd, check=True).stdout
        except SSHError as e:
            raise DriverError(str(e)) from None

    def _wait_for_ip(self, timeout: float) -> str:
        mac = self._hostonly_mac()
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            try:
                ip = self._ip_from_guest_properties(mac) or self._ip_over_ssh(mac)
                if ip:
                    return ip
                last = f"no IPv4 address on the interface with MAC {mac} yet"
            except DriverError as e:
                last = str(e)
            if time.monotonic() >= deadline:
                raise DriverError(
                    f"{self.machine_name} got no host-only IP address within {int(timeout)} s ({last}). "
                    f"The guest's console log is {self.machine_dir / 'console.log'}."
                )
            if self.state() != State.RUNNING:
                raise DriverError(
                    f"{self.machine_name} stopped while booting; see {self.machine_dir / 'console.log'} "
                    f"and `VBoxManage showvminfo {self.machine_name} --log 0`"
                )
            time.sleep(2.0)


__all__ = [
    "DEBIAN_GENERIC_URL",
    "VirtualBoxDriver",
    "default_share",
    "dhcp_plan",
    "explain_start_failure",
    "host_virtualization_problem",
    "hyperv_check",
    "image_kind",
    "ip_for_mac",
    "parse_share",
    "qcow2_problem",
    "select_backend",
]
