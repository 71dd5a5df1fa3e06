"""The VirtualBox SDK backend: pyvbox (PyPI `virtualbox`, the design card's package) behind the same
`vbox_manage.Backend` interface as VBoxManage.

It is used only when it can really work (vboxmanage.md §7):
- `import virtualbox` works (pure Python, always, once installed), and
- `virtualbox.VirtualBox()` works: that imports the SDK's `vboxapi` bindings, which VirtualBox installs
  for the *system* Python only (virtualenvs usually cannot import them), and connects to VBoxSVC, and
- VirtualBox is 6.0/6.1: pyvbox 2.1.1 is generated from the 6.1 API; 7.0 changed createMachine and
  7.1 moved CPU/firmware settings, so on 7.x it would fail half-way. VBoxManage is used there.

Disk conversion (convertfromraw has no API: it is the VD library inside VBoxManage), medium creation
and closing go through VBoxManage in both backends, so that logic lives in one place.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from skiffbox.machine.drivers.base import DriverError
from skiffbox.machine.drivers.vbox_manage import (
    Attachment,
    Backend,
    CliBackend,
    DhcpServer,
    HostOnlyIf,
    HostOnlyNet,
    NatRule,
    OptValue,
    StorageController,
    VBoxError,
    Version,
    parse_version,
)

SUPPORTED = ((6, 0), (6, 1))

# COM result codes by value, named as VBoxManage prints them (vboxmanage.md §1.6).
HRESULT_NAMES = {
    0x80070005: "E_ACCESSDENIED",
    0x80070057: "E_INVALIDARG",
    0x80004005: "E_FAIL",
    0x80BB0001: "VBOX_E_OBJECT_NOT_FOUND",
    0x80BB0002: "VBOX_E_INVALID_VM_STATE",
    0x80BB0003: "VBOX_E_VM_ERROR",
    0x80BB0004: "VBOX_E_FILE_ERROR",
    0x80BB0007: "VBOX_E_INVALID_OBJECT_STATE",
    0x80BB000C: "VBOX_E_OBJECT_IN_USE",
}

# XIDL enum values (6.1; checked against pyvbox's generated library in tests).
MACHINE_STATES = {1: "poweroff", 2: "saved", 3: "teleported", 4: "aborted", 5: "running", 6: "paused",
                  7: "gurumeditation", 8: "teleporting", 9: "livesnapshotting", 10: "starting",
                  11: "stopping", 12: "saving", 13: "restoring"}  # fmt: skip
ATTACHMENT = {"none": 0, "null": 0, "nat": 1, "bridged": 2, "intnet": 3, "hostonly": 4, "generic": 5, "natnetwork": 6}
ATTACHMENT_NAMES = {1: "nat", 2: "bridged", 3: "intnet", 4: "hostonly", 5: "generic", 6: "natnetwork"}
ADAPTER_TYPE = {"am79c970a": 1, "am79c973": 2, "82540em": 3, "82543gc": 4, "82545em": 5, "virtio": 6}
PROMISC = {"deny": 1, "allow-vms": 2, "allow-network": 2, "allow-all": 3}
FIRMWARE = {"bios": 1, "efi": 2, "efi32": 3, "efi64": 4, "efidual": 5}
BOOT_MENU = {"disabled": 0, "menuonly": 1, "messageandmenu": 2}
BOOT_DEVICE = {"none": 0, "floppy": 1, "dvd": 2, "disk": 3, "net": 4}
GRAPHICS = {"none": 0, "vboxvga": 1, "vmsvga": 2, "vboxsvga": 3}
CPU_PROPERTY = {"pae": 1, "longmode": 2}
HWVIRT_PROPERTY = {"hwvirtex": 1, "vtxvpid": 2, "nestedpaging": 3, "vtxux": 4, "largepages": 5}
STORAGE_BUS = {"ide": 1, "sata": 2, "scsi": 3, "floppy": 4, "sas": 5, "usb": 6, "pcie": 7, "virtio-scsi": 8}
CONTROLLER_TYPE = {"lsilogic": 1, "buslogic": 2, "intelahci": 3, "piix3": 4, "piix4": 5, "ich6": 6,
                   "i82078": 7, "lsilogicsas": 8, "usb": 9, "nvme": 10, "virtioscsi": 11}  # fmt: skip
DEVICE_TYPE = {"dvddrive": 2, "hdd": 3}
LOCK_SHARED, LOCK_WRITE = 1, 2
ACCESS_READ_ONLY, ACCESS_READ_WRITE = 1, 2
CLEANUP_DETACH_ALL_RETURN_HARD_DISKS = 3
HOSTIF_HOST_ONLY = 2
NAT_TCP, NAT_UDP = 1, 0
PORT_MODE_RAW_FILE = 3


class ApiUnavailable(DriverError):
    """pyvbox or the SDK's bindings (vboxapi) cannot be used here; VBoxManage is used instead."""


def _on(v: OptValue) -> bool:
    if v not in ("on", "off"):
        raise DriverError(f"expected on/off, got {v!r}")
    return v == "on"


class ApiBackend(Backend):
    kind = "pyvbox"

    def __init__(self, module: ModuleType | None = None, cli: CliBackend | None = None) -> None:
        try:
            vb = module or importlib.import_module("virtualbox")
        except ImportError as e:
            raise ApiUnavailable(f"pyvbox is not installed ({e}); `pip install 'skiffbox[virtualbox]'` adds it") from None
        try:
            self.vbox = vb.VirtualBox()
            version = str(self.vbox.version)
        except ImportError as e:
            raise ApiUnavailable(
                f"the VirtualBox SDK bindings do not import in this Python ({e}); VirtualBox installs them "
                "for the system Python (sdk/installer/vboxapisetup.py)"
            ) from None
        except Exception as e:  # XPCOM/MSCOM init or VBoxSVC connection failures
            raise ApiUnavailable(f"cannot reach VirtualBox through the SDK: {e}") from None
        self._version = parse_version(version)
        if self._version[:2] not in SUPPORTED:
            raise ApiUnavailable(
                f"pyvbox speaks the VirtualBox 6.1 API and this is VirtualBox {version}; using VBoxManage"
            )
        self.vb = vb
        self.L = vb.library
        self._cli = cli

    @property
    def cli(self) -> CliBackend:
        if self._cli is None:
            self._cli = CliBackend()
        return self._cli

    # ---- plumbing ------------------------------------------------------------------------------
    def _enum(self, name: str, value: int) -> Any:
        return getattr(self.L, name)(value)

    def _error(self, e: Exception) -> VBoxError:
        err = VBoxError(str(getattr(e, "msg", "") or e))
        hresult = int(getattr(e, "value", 0) or 0) & 0xFFFFFFFF
        err.code = HRESULT_NAMES.get(hresult, f"0x{hresult:08x}" if hresult else "")
        err.message = str(getattr(e, "msg", "") or e)
        err.text = err.message
        return err

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except VBoxError:
            raise
        except getattr(self.L, "VBoxError", ()) as e:
            raise self._error(e) from None

    def _machine(self, vm: str) -> Any:
        with self._errors():
            return self.vbox.find_machine(vm)

    @contextlib.contextmanager
    def _session(self, vm: str, lock: int = LOCK_WRITE, save: bool = True) -> Iterator[Any]:
        """The session object, locked; settings saved on success (write lock), always unlocked."""
        machine = self._machine(vm)
        session = self.vb.Session()
        with self._errors():
            machine.lock_machine(session, self._enum("LockType", lock))
            try:
                yield session
                if save and lock == LOCK_WRITE:
                    session.machine.save_settings()
            finally:
                session.unlock_machine()

    def _wait(self, progress: Any, what: str) -> None:
        progress.wait_for_completion(-1)
        if int(progress.result_code) != 0:
            info = progress.error_info
            err = VBoxError(f"{what} failed: {getattr(info, 'text', '')}")
            err.code = HRESULT_NAMES.get(int(progress.result_code) & 0xFFFFFFFF, "")
            err.message = err.text = str(getattr(info, "text", ""))
            raise err

    # ---- Backend ---------------------------------------------------------------------------------
    def version(self) -> Version:
        return self._version

    def vm_info(self, vm: str) -> dict[str, str] | None:
        try:
            m = self._machine(vm)
        except VBoxError as e:
            if e.vm_not_found:
                return None
            raise
        with self._errors():
            info = {
                "name": m.name, "UUID": m.id_p, "CfgFile": m.settings_file_path, "LogFldr": m.log_folder,
                "VMState": MACHINE_STATES.get(int(m.state), ""),
            }  # fmt: skip
            for slot in range(8):
                a = m.get_network_adapter(slot)
                n = slot + 1
                if not a.enabled:
                    info[f"nic{n}"] = "none"
                    continue
                kind = ATTACHMENT_NAMES.get(int(a.attachment_type), "null")
                if kind == "hostonly":
                    info[f"hostonlyadapter{n}"] = a.host_only_interface
                info[f"macaddress{n}"] = a.mac_address
                info[f"nic{n}"] = kind
        return info

    def create_vm(self, name: str, basefolder: Path, platform_arch: str = "") -> None:
        if platform_arch == "arm":  # this backend speaks the 6.x API, which has no Arm VMs
            raise VBoxError("arm64 VMs need VirtualBox 7.1+ through VBoxManage")
        with self._errors():
            settings = self.vbox.compose_machine_filename(name, "", "", str(basefolder))
            m = self.vbox.create_machine(settings, name, [], "Debian_64", "")
            m.save_settings()
            self.vbox.register_machine(m)

    def modify_vm(self, vm: str, options: Sequence[tuple[str, OptValue]]) -> None:
        with self._session(vm) as s:
            m = s.machine
            for opt, value in options:
                self._apply(m, opt, value)

    def _apply(self, m: Any, opt: str, value: OptValue) -> None:
        """One modifyvm option (soup spelling) as IMachine calls. Unknown options are errors."""
        E = self._enum
        v = value if isinstance(value, str) else ""
        base = opt.rstrip("0123456789")
        idx = int(opt[len(base):]) if opt != base else 0
        bios = m.bios_settings
        simple: dict[str, Callable[[], None]] = {
            "memory": lambda: setattr(m, "memory_size", int(v)),
            "cpus": lambda: setattr(m, "cpu_count", int(v)),
            "ostype": lambda: setattr(m, "os_type_id", v),
            "firmware": lambda: setattr(m, "firmware_type", E("FirmwareType", FIRMWARE[v.lower()])),
            "bioslogofadein": lambda: setattr(bios, "logo_fade_in", _on(v)),
            "bioslogofadeout": lambda: setattr(bios, "logo_fade_out", _on(v)),
            "bioslogodisplaytime": lambda: setattr(bios, "logo_display_time", int(v)),
            "biosbootmenu": lambda: setattr(bios, "boot_menu_mode", E("BIOSBootMenuMode", BOOT_MENU[v.lower()])),
            "acpi": lambda: setattr(bios, "acpi_enabled", _on(v)),
            "ioapic": lambda: setattr(bios, "ioapic_enabled", _on(v)),
            "rtcuseutc": lambda: setattr(m, "rtc_use_utc", _on(v)),
            "cpuhotplug": lambda: setattr(m, "cpu_hot_plug_enabled", _on(v)),
            "hpet": lambda: setattr(m, "hpet_enabled", _on(v)),
            "accelerate3d": lambda: setattr(m.graphics_adapter, "accelerate3_d_enabled", _on(v)),
            "graphicscontroller": lambda: setattr(
                m.graphics_adapter, "graphics_controller_type", E("GraphicsControllerType", GRAPHICS[v.lower()])),
        }  # fmt: skip
        if base in CPU_PROPERTY:
            m.set_cpu_property(E("CPUPropertyType", CPU_PROPERTY[base]), _on(v))
        elif base in HWVIRT_PROPERTY:
            m.set_hw_virt_ex_property(E("HWVirtExPropertyType", HWVIRT_PROPERTY[base]), _on(v))
        elif opt in simple:
            simple[opt]()
        elif base == "boot" and 1 <= idx <= 4:
            m.set_boot_order(idx, E("DeviceType", BOOT_DEVICE[v.lower()]))
        elif base == "uart" and idx:
            port = m.get_serial_port(idx - 1)
            if value == "off":
                port.enabled = False
            elif isinstance(value, str):
                raise DriverError(f"--{opt} takes an I/O base and an IRQ (or off), not {value!r}")
            else:
                io, irq = value
                port.io_base, port.irq, port.enabled = int(io, 0), int(irq), True
        elif base == "uartmode" and idx and not isinstance(value, str) and value[0] == "file":
            port = m.get_serial_port(idx - 1)
            port.path = value[1]
            port.host_mode = E("PortMode", PORT_MODE_RAW_FILE)
        elif idx and base in ("nic", "nictype", "cableconnected", "nicpromisc", "hostonlyadapter",
                              "natdnshostresolver", "natdnsproxy", "macaddress"):  # fmt: skip
            a = m.get_network_adapter(idx - 1)
            if base == "nic":
                a.enabled = v != "none"
                if v != "none":
                    a.attachment_type = E("NetworkAttachmentType", ATTACHMENT[v])
            elif base == "nictype":
                a.adapter_type = E("NetworkAdapterType", ADAPTER_TYPE[v.lower()])
            elif base == "cableconnected":
                a.cable_connected = _on(v)
            elif base == "nicpromisc":
                a.promisc_mode_policy = E("NetworkAdapterPromiscModePolicy", PROMISC[v])
            elif base == "hostonlyadapter":
                a.host_only_interface = v
            elif base == "natdnshostresolver":
                a.nat_engine.dns_use_host_resolver = _on(v)
            elif base == "natdnsproxy":
                a.nat_engine.dns_proxy = _on(v)
            elif base == "macaddress":
                a.mac_address = v
        else:
            raise DriverError(f"the pyvbox backend does not know the modifyvm option --{opt}")

    def add_storage_controller(self, vm: str, ctl: StorageController) -> None:
        with self._session(vm) as s:
            c = s.machine.add_storage_controller(ctl.name, self._enum("StorageBus", STORAGE_BUS[ctl.bus]))
            if ctl.controller:
                c.controller_type = self._enum("StorageControllerType", CONTROLLER_TYPE[ctl.controller.lower()])
            c.use_host_io_cache = ctl.host_io_cache

    def attach(self, vm: str, att: Attachment) -> None:
        dev = self._enum("DeviceType", DEVICE_TYPE[att.kind])
        access = ACCESS_READ_ONLY if att.kind == "dvddrive" else ACCESS_READ_WRITE
        with self._session(vm) as s, self._errors():
            medium = self.vbox.open_medium(att.medium, dev, self._enum("AccessMode", access), False)
            s.machine.attach_device(att.controller, att.port, att.device, dev, medium)

    def add_nat_rule(self, vm: str, nic: int, rule: NatRule) -> None:
        proto = NAT_TCP if rule.proto == "tcp" else NAT_UDP
        with self._session(vm) as s:
            engine = s.machine.get_network_adapter(nic - 1).nat_engine
            engine.add_redirect(rule.name, self._enum("NATProtocol", proto), rule.host_ip, rule.host_port,
                                rule.guest_ip, rule.guest_port)  # fmt: skip

    def nat_rules(self, vm: str, nic: int) -> dict[str, NatRule]:
        with self._errors():
            redirects = self._machine(vm).get_network_adapter(nic - 1).nat_engine.redirects
        rules = {}
        for r in redirects:  # "name,proto(0|1),hostip,hostport,guestip,guestport"
            f = str(r).split(",")
            rules[f[0]] = NatRule(f[0], "tcp" if f[1] == "1" else "udp", f[2], int(f[3]), f[4], int(f[5]))
        return rules

    def delete_nat_rule(self, vm: str, nic: int, name: str) -> None:
        try:
            with self._session(vm) as s:
                s.machine.get_network_adapter(nic - 1).nat_engine.remove_redirect(name)
        except VBoxError as e:
            if not e.invalid_arg:  # no such rule
                raise

    def add_shared_folder(self, vm: str, name: str, host_path: str, automount: bool) -> None:
        with self._session(vm) as s:
            s.machine.create_shared_folder(name, host_path, True, automount, "")

    def set_extra_data(self, vm: str, key: str, value: str) -> None:
        with self._errors():
            self._machine(vm).set_extra_data(key, value)

    def set_guest_property(self, vm: str, key: str, value: str) -> None:
        with self._errors():
            self._machine(vm).set_guest_property_value(key, value)

    def get_guest_property(self, vm: str, key: str) -> str | None:
        with self._errors():
            value = self._machine(vm).get_guest_property_value(key)
        return value or None

    def start_vm(self, vm: str, ui_type: str) -> None:
        m = self._machine(vm)
        session = self.vb.Session()
        with self._errors():
            # The environment list must be passed: the wrapper's default "" fails pyvbox's type check.
            progress = m.launch_vm_process(session, ui_type, [])
            try:
                self._wait(progress, f"starting {vm}")
            finally:
                session.unlock_machine()

    def control_vm(self, vm: str, action: str) -> None:
        with self._session(vm, LOCK_SHARED) as s:
            c = s.console
            if action == "poweroff":
                self._wait(c.power_down(), f"powering off {vm}")
            elif action == "acpipowerbutton":
                c.power_button()
            elif action == "pause":
                c.pause()
            elif action == "resume":
                c.resume()
            elif action == "reset":
                c.reset()
            elif action == "savestate":
                self._wait(s.machine.save_state(), f"saving {vm}")
            else:
                raise DriverError(f"the pyvbox backend does not know controlvm {action}")

    def unregister_delete(self, vm: str) -> None:
        m = self._machine(vm)
        with self._errors():
            media = m.unregister(self._enum("CleanupMode", CLEANUP_DETACH_ALL_RETURN_HARD_DISKS))
            self._wait(m.delete_config(media), f"deleting {vm}")

    def host_only_ifs(self) -> list[HostOnlyIf]:
        with self._errors():
            ifs = self.vbox.host.find_host_network_interfaces_of_type(
                self._enum("HostNetworkInterfaceType", HOSTIF_HOST_ONLY))
            return [HostOnlyIf(i.name, i.ip_address, i.network_mask, bool(i.dhcp_enabled), str(i.status),
                               i.network_name) for i in ifs]  # fmt: skip

    def create_host_only_if(self) -> str:
        with self._errors():
            progress, iface = self.vbox.host.create_host_only_network_interface()
            self._wait(progress, "creating a host-only adapter")
            return str(iface.name)

    def config_host_only_if(self, name: str, ip: str, netmask: str) -> None:
        with self._errors():
            self.vbox.host.find_host_network_interface_by_name(name).enable_static_ip_config(ip, netmask)

    def host_only_nets(self) -> list[HostOnlyNet]:
        return []  # 7.0+ (macOS) only; this backend serves 6.x

    def add_host_only_net(self, net: HostOnlyNet) -> None:
        raise DriverError("host-only networks need VirtualBox 7; the pyvbox backend serves 6.x")

    def dhcp_servers(self) -> list[DhcpServer]:
        with self._errors():
            return [DhcpServer(s.network_name, s.ip_address, s.network_mask, s.lower_ip, s.upper_ip, bool(s.enabled))
                    for s in self.vbox.dhcp_servers]  # fmt: skip

    def put_dhcp_server(self, srv: DhcpServer, exists: bool) -> None:
        with self._errors():
            if exists:
                s = self.vbox.find_dhcp_server_by_network_name(srv.network_name)
            else:
                s = self.vbox.create_dhcp_server(srv.network_name)
            s.set_configuration(srv.ip, srv.netmask, srv.lower_ip, srv.upper_ip)
            s.enabled = srv.enabled

    # VirtualBox's disk tools: VBoxManage in both backends (convertfromraw has no API).
    def convert_raw(self, src: Path, dst: Path, fmt: str) -> None:
        self.cli.convert_raw(src, dst, fmt)

    def clone_medium(self, src: Path, dst: Path, fmt: str) -> None:
        self.cli.clone_medium(src, dst, fmt)

    def create_medium(self, path: Path, size_mb: int, fmt: str) -> None:
        self.cli.create_medium(path, size_mb, fmt)

    def close_medium(self, path: Path, kind: str = "disk", delete: bool = False) -> None:
        self.cli.close_medium(path, kind, delete)


def api_status() -> str:
    """One line for diagnostics: which backend would be used and why."""
    if os.environ.get("SKIFF_VBOX_BACKEND", "").lower() == "cli":
        return "VBoxManage (SKIFF_VBOX_BACKEND=cli)"
    try:
        b = ApiBackend()
    except ApiUnavailable as e:
        return f"VBoxManage ({e})"
    return f"pyvbox (VirtualBox {'.'.join(map(str, b.version()))})"


__all__ = ["ApiBackend", "ApiUnavailable", "api_status"]
