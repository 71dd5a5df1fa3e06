"""Talking to VirtualBox through `VBoxManage`: finding it, running it, reading its output.

Two layers live here:
- `VBoxManage`, the runner: finds the binary (PATH, VBOX_INSTALL_PATH/VBOX_MSI_INSTALL_PATH, the
  usual install folders), checks the version, retries on the transient "The object is not ready",
  and treats any `error:` on stderr as a failure even with exit status 0 (as docker-machine and
  Vagrant do: VBoxManage sometimes prints an error and exits 0).
- `CliBackend`, the handful of VirtualBox operations the driver needs, spelled as VBoxManage calls.
  `machine/drivers/vbox_api.py` implements the same `Backend` interface with the Python SDK (pyvbox).

Output shapes and error texts follow /work/shared/reference/vboxmanage.md; options are written in the
6.1 "soup" spelling because 6.1 and every 7.x accept it (7.x also accepts the dashed names, 6.1 does not).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from skiffbox.machine.drivers.base import DriverError

log = logging.getLogger(__name__)

MIN_VERSION = (6, 1, 0)
# VirtualBox ≥ 6.1.28 restricts host-only addresses on Linux/macOS to this range (networks.conf).
HOSTONLY_RANGE_SINCE = (6, 1, 28)
DEFAULT_HOSTONLY_ALLOWED = ("192.168.56.0/21",)
NETWORKS_CONF = Path("/etc/vbox/networks.conf")

Version = tuple[int, int, int]
OptValue = str | tuple[str, ...]


# ---- errors ------------------------------------------------------------------------------------
class VBoxManageMissing(DriverError):
    """No VBoxManage binary was found."""


class VBoxError(DriverError):
    """A VirtualBox operation failed (from either backend). `text` holds all error output,
    `code` the COM result name (E_ACCESSDENIED, VBOX_E_OBJECT_NOT_FOUND, ...)."""

    code: str = ""
    message: str = ""
    text: str = ""

    @property
    def vm_not_found(self) -> bool:
        return "Could not find a registered machine" in self.text or self.code == "VBOX_E_OBJECT_NOT_FOUND"

    @property
    def not_ready(self) -> bool:
        return "The object is not ready" in self.text

    @property
    def access_denied(self) -> bool:
        # "The object is not ready" also carries E_ACCESSDENIED; that one is a transient race.
        return self.code == "E_ACCESSDENIED" and not self.not_ready

    @property
    def not_running(self) -> bool:
        return "is not currently running" in self.text or self.code == "VBOX_E_INVALID_VM_STATE"

    @property
    def invalid_arg(self) -> bool:
        return self.code in ("NS_ERROR_INVALID_ARG", "E_INVALIDARG")


class VBoxManageError(VBoxError):
    """A VBoxManage call failed: non-zero exit, or `error:` on stderr."""

    _ERROR_LINE = re.compile(r"error: (.*)")
    _CODE = re.compile(r"\b(?:Details: code|Code) (\w+) \((0x[0-9a-fA-F]{8})\)")

    def __init__(self, args: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        self.args_ = list(args)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.errors = [m.group(1).strip() for m in self._ERROR_LINE.finditer(stderr)]
        code = self._CODE.search(stderr)
        self.code = code.group(1) if code else ""
        self.hresult = int(code.group(2), 16) if code else 0
        first = next((e for e in self.errors if not e.startswith(("Details:", "Context:"))), "")
        self.message = first or (stderr.strip().splitlines() or [f"exit status {returncode}"])[-1]
        self.text = stderr
        super().__init__(
            f"VBoxManage {' '.join(self.args_[:2])} failed: {self.message}"
            + (f" ({self.code})" if self.code else "")
        )


# ---- discovery ---------------------------------------------------------------------------------
def candidate_paths(env: Mapping[str, str], platform: str) -> list[str]:
    """Places VBoxManage lives besides PATH, in the order docker-machine and Vagrant look."""
    found: list[str] = []
    exe = "VBoxManage.exe" if platform == "win32" else "VBoxManage"
    for var in ("VBOX_INSTALL_PATH", "VBOX_MSI_INSTALL_PATH"):
        # The MSI sets a value with a trailing backslash; Vagrant splits on ';' for old installers.
        for part in env.get(var, "").split(";" if platform == "win32" else os.pathsep):
            if part.strip():
                found.append(os.path.join(part.strip().rstrip("\\/") or part.strip(), exe))
    if platform == "win32":
        for root in (
            env.get("ProgramFiles", r"C:\Program Files"),
            env.get("ProgramW6432", r"C:\Program Files"),
            env.get("ProgramFiles(x86)", r"C:\Program Files (x86)"),
        ):
            found.append(rf"{root}\Oracle\VirtualBox\VBoxManage.exe")
    elif platform == "darwin":
        found += [
            "/Applications/VirtualBox.app/Contents/MacOS/VBoxManage",
            "/usr/local/bin/VBoxManage",
            "/usr/bin/VBoxManage",
        ]
    else:
        found += [
            "/usr/bin/VBoxManage",
            "/usr/local/bin/VBoxManage",
            "/usr/lib/virtualbox/VBoxManage",
            "/opt/VirtualBox/VBoxManage",
            # WSL: the Windows binary is reachable through /mnt/c.
            "/mnt/c/Program Files/Oracle/VirtualBox/VBoxManage.exe",
        ]
    return list(dict.fromkeys(found))


def find_vboxmanage(
    env: Mapping[str, str] | None = None,
    platform: str = sys.platform,
    which: Callable[[str], str | None] | None = None,
) -> str:
    env = os.environ if env is None else env
    which = which or (lambda name: shutil.which(name, path=env.get("PATH")))
    for name in ("VBoxManage", "vboxmanage") if platform != "win32" else ("VBoxManage.exe",):
        hit = which(name)
        if hit:
            return hit
    for path in candidate_paths(env, platform):
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise VBoxManageMissing(
        "VBoxManage was not found. Install VirtualBox (https://www.virtualbox.org/wiki/Downloads), "
        "or put VBoxManage on PATH, or set VBOX_INSTALL_PATH to its folder."
    )


# ---- parsers -----------------------------------------------------------------------------------
_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)")


def parse_version(text: str) -> Version:
    """`7.1.4r165100`, `6.1.38_Ubuntur153438`; warning lines may come first."""
    for line in text.splitlines():
        m = _VERSION.match(line.strip())
        if m:
            return int(m.group(1)), int(m.group(2)), int(m.group(3))
    raise DriverError(f"cannot read the VirtualBox version from {text.strip()!r}")


def _read_quoted(s: str, i: int) -> tuple[str, int]:
    """Read a "..." token starting at s[i] == '"'; `\\` and `\"` are the only escapes."""
    out: list[str] = []
    i += 1
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s) and s[i + 1] in '\\"':
            out.append(s[i + 1])
            i += 2
            continue
        if c == '"':
            return "".join(out), i + 1
        out.append(c)
        i += 1
    return "".join(out), i


def iter_machinereadable(text: str) -> Iterator[tuple[str, str]]:
    """`showvminfo --machinereadable` lines → (key, value) in order; quoted keys/values unquoted."""
    for line in text.splitlines():
        if not line or "=" not in line:
            continue
        if line.startswith('"'):
            key, i = _read_quoted(line, 0)
            if i >= len(line) or line[i] != "=":
                continue
        else:
            i = line.index("=")
            key = line[:i]
        rest = line[i + 1 :]
        yield key, (_read_quoted(rest, 0)[0] if rest.startswith('"') else rest)


def parse_machinereadable(text: str) -> dict[str, str]:
    """`showvminfo --machinereadable` → {key: value}. `Forwarding(i)` keys repeat per NIC, so read
    NAT rules with `parse_forwardings`, which keeps the order."""
    return dict(iter_machinereadable(text))


def parse_blocks(text: str, first_key: str) -> list[dict[str, str]]:
    """`list hostonlyifs|hostonlynets|dhcpservers`: `Key:   value` lines, a record starts at first_key."""
    blocks: list[dict[str, str]] = []
    for line in text.splitlines():
        if not line.strip() or line[:1].isspace() or ":" not in line:
            continue  # blank separators and indented option lines
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == first_key:
            blocks.append({})
        if blocks:
            blocks[-1][key] = value
    return blocks


def parse_list_vms(text: str) -> list[tuple[str, str]]:
    return re.findall(r'^"(.*)" \{([0-9a-fA-F-]+)\}$', text, re.M)


def parse_forwardings(text: str, nic: int = 1) -> dict[str, "NatRule"]:
    """The NAT rules of NIC `nic`: `Forwarding(i)` lines follow their NIC's lines, indices restart."""
    rules: dict[str, NatRule] = {}
    current = 0
    for key, value in iter_machinereadable(text):
        m = re.fullmatch(r"(?:nic|natnet|macaddress)(\d+)", key)
        if m:
            current = int(m.group(1))
        elif key.startswith("Forwarding(") and current == nic:
            rule = NatRule.parse(value)
            rules[rule.name] = rule
    return rules


def netmask_ok(mask: str, want: str) -> bool:
    """A fresh host-only interface may report the mask as hex `0f000000` (docker-machine's "buggy
    netmask"); accept that spelling as 255.255.255.0 like docker-machine does."""
    if mask == want:
        return True
    return mask.lower() == "0f000000" and want == "255.255.255.0"


# ---- value types -------------------------------------------------------------------------------
@dataclass(frozen=True)
class NatRule:
    name: str
    proto: str
    host_ip: str
    host_port: int
    guest_ip: str
    guest_port: int

    def spec(self) -> str:
        return (
            f"{self.name},{self.proto},{self.host_ip},{self.host_port},"
            f"{self.guest_ip},{self.guest_port}"
        )

    @classmethod
    def parse(cls, spec: str) -> "NatRule":
        f = [p.strip() for p in spec.split(",")]
        if len(f) != 6:
            raise DriverError(f"bad NAT rule {spec!r}")
        return cls(f[0], f[1], f[2], int(f[3]), f[4], int(f[5]))


@dataclass
class HostOnlyIf:
    name: str
    ip: str
    netmask: str
    dhcp: bool = False
    status: str = ""
    network_name: str = ""

    @classmethod
    def from_block(cls, b: Mapping[str, str]) -> "HostOnlyIf":
        return cls(
            name=b.get("Name", ""),
            ip=b.get("IPAddress", ""),
            netmask=b.get("NetworkMask", ""),
            dhcp=b.get("DHCP", "").lower() == "enabled",
            status=b.get("Status", ""),
            network_name=b.get("VBoxNetworkName", "") or f"HostInterfaceNetworking-{b.get('Name', '')}",
        )


@dataclass
class HostOnlyNet:
    """A 7.x host-only *network* (macOS/vmnet builds); there is no host interface to configure."""

    name: str
    netmask: str
    lower_ip: str
    upper_ip: str
    enabled: bool = True


@dataclass
class DhcpServer:
    network_name: str
    ip: str
    netmask: str
    lower_ip: str
    upper_ip: str
    enabled: bool

    @classmethod
    def from_block(cls, b: Mapping[str, str]) -> "DhcpServer":
        # 6.1+ keys first, then the 5.x/6.0 spellings.
        return cls(
            network_name=b.get("NetworkName", ""),
            ip=b.get("Dhcpd IP", b.get("IP", "")),
            netmask=b.get("NetworkMask", ""),
            lower_ip=b.get("LowerIPAddress", b.get("lowerIPAddress", "")),
            upper_ip=b.get("UpperIPAddress", b.get("upperIPAddress", "")),
            enabled=b.get("Enabled", "").lower() in ("yes", "true"),
        )

    def serves(self, network: ipaddress.IPv4Network) -> bool:
        try:
            return all(
                ipaddress.IPv4Address(a) in network for a in (self.ip, self.lower_ip, self.upper_ip)
            )
        except ValueError:
            return False


@dataclass
class Attachment:
    controller: str
    port: int
    device: int
    kind: str  # "hdd" | "dvddrive"
    medium: str  # path, "none" or "emptydrive"


@dataclass
class StorageController:
    name: str
    bus: str  # ide | sata | scsi | virtio-scsi ...
    controller: str = ""  # PIIX4, IntelAhci, ...
    host_io_cache: bool = True
    extra: dict[str, str] = field(default_factory=dict)
    port_count: int = 0  # 0: the controller's default


# ---- the runner ------------------------------------------------------------------------------
class VBoxManage:
    """Runs VBoxManage. One instance per binary; cheap to create."""

    def __init__(
        self,
        path: str | None = None,
        *,
        retries: int = 5,
        retry_delay: float = 0.1,
        timeout: float = 600.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.path = path or find_vboxmanage(env)
        self.retries = retries
        self.retry_delay = retry_delay
        self.timeout = timeout
        self._env = dict(env) if env is not None else None
        self._version: Version | None = None

    def run(self, *args: str, input: bytes | None = None, check: bool = True) -> str:
        """Run one call; return stdout (warning lines dropped). Retries "object is not ready"."""
        attempt = 0
        while True:
            rc, out, err = self._exec(list(args), input)
            failed = rc != 0 or re.search(r"error: ", err) is not None
            if not failed:
                if err.strip():
                    log.debug("VBoxManage %s: %s", args[0] if args else "", err.strip())
                return _drop_warnings(out)
            exc = VBoxManageError(args, rc, out, err)
            if exc.not_ready and attempt < self.retries:
                attempt += 1
                log.debug("VBoxManage %s: object not ready, retry %d", args[0], attempt)
                time.sleep(self.retry_delay)
                continue
            if check:
                raise exc
            return _drop_warnings(out)

    def _exec(self, args: list[str], input: bytes | None) -> tuple[int, str, str]:
        # no console window flashing up for every call on Windows
        creationflags: int = getattr(subprocess, "CREATE_NO_WINDOW", 0) if sys.platform == "win32" else 0
        try:
            proc = subprocess.run(
                [self.path, *args],
                input=input,
                capture_output=True,
                timeout=self.timeout,
                env=self._env,
                creationflags=creationflags,
            )
        except FileNotFoundError as e:
            raise VBoxManageMissing(f"cannot run {self.path}: {e}") from e
        except subprocess.TimeoutExpired as e:
            raise DriverError(
                f"VBoxManage {' '.join(args[:2])} did not finish within {self.timeout:.0f} s"
            ) from e
        if proc.returncode == 126:
            raise VBoxManageMissing(
                f"{self.path} exists but cannot run a program it needs (exit 126): "
                "the VirtualBox installation looks damaged; reinstall VirtualBox."
            )
        return (
            proc.returncode,
            proc.stdout.decode("utf-8", "replace"),
            proc.stderr.decode("utf-8", "replace"),
        )

    def version(self) -> Version:
        if self._version is None:
            self._version = parse_version(self.run("--version"))
        return self._version


_WARNING = re.compile(r"^(WARNING|Warning): ")


def _drop_warnings(out: str) -> str:
    """The Linux wrapper (vboxdrv not loaded, LOGNAME mismatch) and some libxml builds print warning
    lines on stdout ahead of real output; they corrupt parsed names if kept."""
    if "arning: " not in out and "ARNING: " not in out:
        return out
    lines = out.splitlines(keepends=True)
    kept = [ln for ln in lines if not _WARNING.match(ln)]
    for ln in lines:
        if _WARNING.match(ln):
            log.warning("VBoxManage: %s", ln.strip())
    return "".join(kept)


def check_version(v: Version) -> None:
    if v < MIN_VERSION:
        raise DriverError(
            f"VirtualBox {'.'.join(map(str, v))} is too old; this driver needs VirtualBox 6.1 or newer "
            "(https://www.virtualbox.org/wiki/Downloads)."
        )


# ---- host-only address policy --------------------------------------------------------------------
def allowed_hostonly_ranges(conf: Path = NETWORKS_CONF) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """What /etc/vbox/networks.conf allows (lines `* CIDR CIDR ...`), or the built-in default."""
    try:
        text = conf.read_text()
    except OSError:
        return [ipaddress.ip_network(c) for c in DEFAULT_HOSTONLY_ALLOWED]
    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("*"):
            for cidr in line[1:].split():
                try:
                    nets.append(ipaddress.ip_network(cidr, strict=False))
                except ValueError:
                    continue
    return nets


def networks_conf_help(ip: str, conf: Path = NETWORKS_CONF) -> str:
    net = ipaddress.ip_interface(f"{ip}/24").network if ip else None
    return (
        f"VirtualBox refused the host-only address {ip} (E_ACCESSDENIED). Since VirtualBox 6.1.28, "
        "Linux and macOS hosts only allow host-only addresses in 192.168.56.0/21 "
        "(192.168.56.0 - 192.168.63.255). Either choose an address in that range, e.g. "
        "--virtualbox-hostonly-cidr 192.168.56.1/24, or allow your range by adding a line like "
        f"'* {net or '10.0.0.0/8'}' to {conf} (create the file as root; '* 0.0.0.0/0 ::/0' allows all). "
        "VirtualBox reads that file when its service starts: quit every VirtualBox program (VBoxSVC) "
        "after editing it."
    )


def hostonly_ip_allowed(ip: str, conf: Path = NETWORKS_CONF) -> bool:
    addr = ipaddress.ip_address(ip)
    return any(addr in net for net in allowed_hostonly_ranges(conf) if net.version == addr.version)


# ---- the backend interface -------------------------------------------------------------------
class Backend(ABC):
    """The VirtualBox operations the driver uses. `modify_vm` takes VBoxManage modifyvm option names
    (soup spelling, without dashes) so both backends share one vocabulary."""

    kind: str

    @abstractmethod
    def version(self) -> Version: ...

    @abstractmethod
    def vm_info(self, vm: str) -> dict[str, str] | None:
        """Machine-readable info (showvminfo keys), or None when no such VM is registered."""

    @abstractmethod
    def create_vm(self, name: str, basefolder: Path, platform_arch: str = "") -> None:
        """platform_arch: "" (the host's; what 6.1/7.0 know) | "x86" | "arm" (VirtualBox 7.1+)."""

    @abstractmethod
    def modify_vm(self, vm: str, options: Sequence[tuple[str, OptValue]]) -> None:
        """Options in order; a tuple value is several arguments (`--uartmode1 file PATH`)."""

    @abstractmethod
    def add_storage_controller(self, vm: str, ctl: StorageController) -> None: ...

    @abstractmethod
    def attach(self, vm: str, att: Attachment) -> None: ...

    @abstractmethod
    def add_nat_rule(self, vm: str, nic: int, rule: NatRule) -> None: ...

    @abstractmethod
    def nat_rules(self, vm: str, nic: int) -> dict[str, NatRule]: ...

    @abstractmethod
    def delete_nat_rule(self, vm: str, nic: int, name: str) -> None:
        """Remove a rule; no error when it does not exist."""

    @abstractmethod
    def add_shared_folder(self, vm: str, name: str, host_path: str, automount: bool) -> None: ...

    @abstractmethod
    def set_extra_data(self, vm: str, key: str, value: str) -> None: ...

    @abstractmethod
    def set_guest_property(self, vm: str, key: str, value: str) -> None: ...

    @abstractmethod
    def get_guest_property(self, vm: str, key: str) -> str | None: ...

    @abstractmethod
    def start_vm(self, vm: str, ui_type: str) -> None: ...

    @abstractmethod
    def control_vm(self, vm: str, action: str) -> None:
        """poweroff | acpipowerbutton | pause | resume | reset | savestate"""

    @abstractmethod
    def unregister_delete(self, vm: str) -> None: ...

    @abstractmethod
    def host_only_ifs(self) -> list[HostOnlyIf]: ...

    @abstractmethod
    def create_host_only_if(self) -> str: ...

    @abstractmethod
    def config_host_only_if(self, name: str, ip: str, netmask: str) -> None: ...

    @abstractmethod
    def host_only_nets(self) -> list[HostOnlyNet]: ...

    @abstractmethod
    def add_host_only_net(self, net: HostOnlyNet) -> None: ...

    @abstractmethod
    def dhcp_servers(self) -> list[DhcpServer]: ...

    @abstractmethod
    def put_dhcp_server(self, srv: DhcpServer, exists: bool) -> None: ...

    # Disk conversion is VirtualBox's VD library (no VBoxSVC needed); the API backend delegates it.
    @abstractmethod
    def convert_raw(self, src: Path, dst: Path, fmt: str) -> None: ...

    @abstractmethod
    def clone_medium(self, src: Path, dst: Path, fmt: str) -> None: ...

    @abstractmethod
    def create_medium(self, path: Path, size_mb: int, fmt: str) -> None:
        """A dynamically allocated disk: nothing is written for the empty space."""

    @abstractmethod
    def close_medium(self, path: Path, kind: str = "disk", delete: bool = False) -> None: ...


def _onoff(v: bool) -> str:
    return "on" if v else "off"


class CliBackend(Backend):
    kind = "VBoxManage"

    def __init__(self, vbm: VBoxManage | None = None) -> None:
        self.vbm = vbm or VBoxManage()

    def version(self) -> Version:
        return self.vbm.version()

    def vm_info(self, vm: str) -> dict[str, str] | None:
        try:
            return parse_machinereadable(self.vbm.run("showvminfo", vm, "--machinereadable"))
        except VBoxManageError as e:
            if e.vm_not_found:
                return None
            raise

    def create_vm(self, name: str, basefolder: Path, platform_arch: str = "") -> None:
        arch = [f"--platform-architecture={platform_arch}"] if platform_arch else []  # 7.1+ only
        self.vbm.run("createvm", "--basefolder", str(basefolder), "--name", name, *arch, "--register")

    def modify_vm(self, vm: str, options: Sequence[tuple[str, OptValue]]) -> None:
        args = ["modifyvm", vm]
        for opt, value in options:
            args += [f"--{opt}", *((value,) if isinstance(value, str) else value)]
        self.vbm.run(*args)

    def add_storage_controller(self, vm: str, ctl: StorageController) -> None:
        args = ["storagectl", vm, "--name", ctl.name, "--add", ctl.bus]
        if ctl.controller:
            args += ["--controller", ctl.controller]
        args += ["--hostiocache", _onoff(ctl.host_io_cache)]
        if ctl.port_count:
            args += ["--portcount", str(ctl.port_count)]
        self.vbm.run(*args)

    def attach(self, vm: str, att: Attachment) -> None:
        self.vbm.run(
            "storageattach", vm, "--storagectl", att.controller, "--port", str(att.port),
            "--device", str(att.device), "--type", att.kind, "--medium", att.medium,
        )  # fmt: skip

    def add_nat_rule(self, vm: str, nic: int, rule: NatRule) -> None:
        self.vbm.run("modifyvm", vm, f"--natpf{nic}", rule.spec())

    def nat_rules(self, vm: str, nic: int) -> dict[str, NatRule]:
        return parse_forwardings(self.vbm.run("showvminfo", vm, "--machinereadable"), nic)

    def delete_nat_rule(self, vm: str, nic: int, name: str) -> None:
        try:
            self.vbm.run("modifyvm", vm, f"--natpf{nic}", "delete", name)
        except VBoxManageError as e:
            # A missing rule is a bare E_INVALIDARG without error info; that is "already gone".
            if not e.invalid_arg:
                raise

    def add_shared_folder(self, vm: str, name: str, host_path: str, automount: bool) -> None:
        args = ["sharedfolder", "add", vm, "--name", name, "--hostpath", host_path]
        if automount:
            args.append("--automount")
        self.vbm.run(*args)

    def set_extra_data(self, vm: str, key: str, value: str) -> None:
        self.vbm.run("setextradata", vm, key, value)

    def set_guest_property(self, vm: str, key: str, value: str) -> None:
        self.vbm.run("guestproperty", "set", vm, key, value)

    def get_guest_property(self, vm: str, key: str) -> str | None:
        out = self.vbm.run("guestproperty", "get", vm, key)
        m = re.search(r"^Value: (.*)$", out, re.M)
        return m.group(1) if m else None

    def start_vm(self, vm: str, ui_type: str) -> None:
        self.vbm.run("startvm", vm, "--type", ui_type)

    def control_vm(self, vm: str, action: str) -> None:
        self.vbm.run("controlvm", vm, action)

    def unregister_delete(self, vm: str) -> None:
        self.vbm.run("unregistervm", vm, "--delete")

    def host_only_ifs(self) -> list[HostOnlyIf]:
        return [HostOnlyIf.from_block(b) for b in parse_blocks(self.vbm.run("list", "hostonlyifs"), "Name")]

    def create_host_only_if(self) -> str:
        out = self.vbm.run("hostonlyif", "create")
        m = re.search(r"Interface '(.+)' was successfully created", out)
        if not m:
            raise DriverError(f"unexpected output from VBoxManage hostonlyif create: {out.strip()!r}")
        return m.group(1)

    def config_host_only_if(self, name: str, ip: str, netmask: str) -> None:
        self.vbm.run("hostonlyif", "ipconfig", name, "--ip", ip, "--netmask", netmask)

    def host_only_nets(self) -> list[HostOnlyNet]:
        out = self.vbm.run("list", "hostonlynets")
        return [
            HostOnlyNet(
                b.get("Name", ""), b.get("NetworkMask", ""), b.get("LowerIP", ""),
                b.get("UpperIP", ""), b.get("State", "").lower() == "enabled",
            )  # fmt: skip
            for b in parse_blocks(out, "Name")
        ]

    def add_host_only_net(self, net: HostOnlyNet) -> None:
        self.vbm.run(
            "hostonlynet", "add", "--name", net.name, "--netmask", net.netmask,
            "--lower-ip", net.lower_ip, "--upper-ip", net.upper_ip,
            "--enable" if net.enabled else "--disable",
        )  # fmt: skip

    def dhcp_servers(self) -> list[DhcpServer]:
        out = self.vbm.run("list", "dhcpservers")
        return [DhcpServer.from_block(b) for b in parse_blocks(out, "NetworkName")]

    def put_dhcp_server(self, srv: DhcpServer, exists: bool) -> None:
        # Legacy spellings (--netname/--ip/--lowerip/--upperip) are accepted by 6.1 and 7.x alike.
        self.vbm.run(
            "dhcpserver", "modify" if exists else "add", "--netname", srv.network_name,
            "--ip", srv.ip, "--netmask", srv.netmask, "--lowerip", srv.lower_ip,
            "--upperip", srv.upper_ip, "--enable" if srv.enabled else "--disable",
        )  # fmt: skip

    def convert_raw(self, src: Path, dst: Path, fmt: str) -> None:
        self.vbm.run("convertfromraw", str(src), str(dst), "--format", fmt)

    def clone_medium(self, src: Path, dst: Path, fmt: str) -> None:
        self.vbm.run("clonemedium", "disk", str(src), str(dst), "--format", fmt)

    def create_medium(self, path: Path, size_mb: int, fmt: str) -> None:
        self.vbm.run("createmedium", "disk", "--filename", str(path), "--size", str(size_mb),
                     "--format", fmt, "--variant", "Standard")

    def close_medium(self, path: Path, kind: str = "disk", delete: bool = False) -> None:
        args = ["closemedium", kind, str(path)]
        if delete:
            args.append("--delete")
        self.vbm.run(*args)


__all__ = [
    "Attachment",
    "Backend",
    "CliBackend",
    "DhcpServer",
    "HostOnlyIf",
    "HostOnlyNet",
    "NatRule",
    "StorageController",
    "VBoxError",
    "VBoxManage",
    "VBoxManageError",
    "VBoxManageMissing",
    "allowed_hostonly_ranges",
    "candidate_paths",
    "check_version",
    "find_vboxmanage",
    "hostonly_ip_allowed",
    "iter_machinereadable",
    "netmask_ok",
    "networks_conf_help",
    "parse_blocks",
    "parse_forwardings",
    "parse_list_vms",
    "parse_machinereadable",
    "parse_version",
]
