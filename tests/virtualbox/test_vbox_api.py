"""The pyvbox backend.

Honest scope: no VirtualBox and no SDK bindings (vboxapi) exist here, so
- what is real: the fallback when pyvbox is installed but cannot reach VirtualBox (the usual case in a
  virtualenv), and our enum values checked against pyvbox's generated 6.1 library;
- what is NOT real: the lifecycle test drives the driver through ApiBackend over `FakeCOM`, a small
  recorder standing in for pyvbox's objects. It proves the option → API attribute mapping and the call
  order our code makes, not that VirtualBox accepts them.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import pytest

from skiffbox.machine.drivers import vbox_api
from skiffbox.machine.drivers.base import DriverError, State
from skiffbox.machine.drivers.vbox_api import ApiBackend, ApiUnavailable
from skiffbox.machine.drivers.vbox_manage import CliBackend
from skiffbox.machine.drivers.virtualbox import VirtualBoxDriver, select_backend
from tests.virtualbox.conftest import FakeVBox
from tests.virtualbox.test_driver import make_raw_image


# ---- real: pyvbox installed, no vboxapi ----------------------------------------------------------
def test_real_pyvbox_without_sdk_falls_back_to_vboxmanage(fake_vbox: FakeVBox, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("virtualbox", reason="pyvbox (PyPI `virtualbox`) not installed")
    monkeypatch.delenv("SKIFF_VBOX_BACKEND", raising=False)
    with pytest.raises(ApiUnavailable, match="vboxapi"):
        ApiBackend()
    assert isinstance(select_backend(), CliBackend)
    assert vbox_api.api_status().startswith("VBoxManage (the VirtualBox SDK bindings do not import")
    monkeypatch.setenv("SKIFF_VBOX_BACKEND", "api")
    with pytest.raises(DriverError, match="SDK backend is not usable"):
        select_backend()


def test_without_pyvbox(monkeypatch: pytest.MonkeyPatch, fake_vbox: FakeVBox) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "virtualbox", None)  # what an uninstalled package looks like to import
    monkeypatch.delenv("SKIFF_VBOX_BACKEND", raising=False)
    with pytest.raises(ApiUnavailable, match=r"pip install 'skiffbox\[virtualbox\]'"):
        ApiBackend()
    assert isinstance(select_backend(), CliBackend)


def test_enum_values_match_pyvbox() -> None:
    L = pytest.importorskip("virtualbox.library", reason="pyvbox (PyPI `virtualbox`) not installed")

    def names(enum: str, table: dict[Any, int]) -> dict[Any, str]:
        # the XIDL name for each value (aliases such as MachineState.FirstOnline = Running skipped)
        def name(v: int) -> str:
            found = [n for n, val, _doc in getattr(L, enum)._enums if val == v]
            return next((n for n in found if not n.startswith(("First", "Last"))), found[0])

        return {k: name(v) for k, v in table.items()}

    assert names("NetworkAttachmentType", {"nat": 1, "hostonly": 4}) == {"nat": "NAT", "hostonly": "HostOnly"}
    assert names("NetworkAdapterType", vbox_api.ADAPTER_TYPE) == {
        "am79c970a": "Am79C970A", "am79c973": "Am79C973", "82540em": "I82540EM", "82543gc": "I82543GC",
        "82545em": "I82545EM", "virtio": "Virtio"}  # fmt: skip
    assert names("MachineState", {k: k for k in vbox_api.MACHINE_STATES}) == {
        1: "PoweredOff", 2: "Saved", 3: "Teleported", 4: "Aborted", 5: "Running", 6: "Paused", 7: "Stuck",
        8: "Teleporting", 9: "LiveSnapshotting", 10: "Starting", 11: "Stopping", 12: "Saving", 13: "Restoring"}  # fmt: skip
    assert str(L.StorageControllerType(vbox_api.CONTROLLER_TYPE["piix4"])) == "PIIX4"
    assert str(L.StorageBus(vbox_api.STORAGE_BUS["ide"])) == "IDE"
    assert str(L.HWVirtExPropertyType(vbox_api.HWVIRT_PROPERTY["nestedpaging"])) == "NestedPaging"
    assert str(L.HWVirtExPropertyType(vbox_api.HWVIRT_PROPERTY["largepages"])) == "LargePages"
    assert str(L.CPUPropertyType(vbox_api.CPU_PROPERTY["pae"])) == "PAE"
    assert str(L.CleanupMode(vbox_api.CLEANUP_DETACH_ALL_RETURN_HARD_DISKS)) == "DetachAllReturnHardDisksOnly"
    assert str(L.PortMode(vbox_api.PORT_MODE_RAW_FILE)) == "RawFile"
    assert str(L.GraphicsControllerType(vbox_api.GRAPHICS["vmsvga"])) == "VMSVGA"
    assert str(L.NATProtocol(vbox_api.NAT_TCP)) == "TCP"
    assert str(L.HostNetworkInterfaceType(vbox_api.HOSTIF_HOST_ONLY)) == "HostOnly"
    assert str(L.LockType(vbox_api.LOCK_WRITE)) == "Write"
    assert L.VBoxErrorObjectNotFound.value == 0x80BB0001 and L.OleErrorAccessdenied.value == 0x80070005


# ---- a recorder standing in for pyvbox's COM objects (NOT VirtualBox) --------------------------------
class FakeError(Exception):
    def __init__(self, value: int, msg: str) -> None:
        super().__init__(msg)
        self.value, self.msg = value, msg


def _lib() -> types.SimpleNamespace:
    enums = {n: type(n, (int,), {}) for n in (
        "LockType", "FirmwareType", "BIOSBootMenuMode", "GraphicsControllerType", "CPUPropertyType",
        "HWVirtExPropertyType", "DeviceType", "PortMode", "NetworkAttachmentType", "NetworkAdapterType",
        "NetworkAdapterPromiscModePolicy", "StorageBus", "StorageControllerType", "AccessMode", "NATProtocol",
        "CleanupMode", "HostNetworkInterfaceType")}  # fmt: skip
    return types.SimpleNamespace(VBoxError=FakeError, **enums)


class Obj(types.SimpleNamespace):
    pass


class Progress:
    def __init__(self, code: int = 0, text: str = "") -> None:
        self.result_code, self.error_info = code, Obj(text=text)

    def wait_for_completion(self, timeout: int) -> None:
        assert timeout == -1


class NAT:
    def __init__(self) -> None:
        self.redirects: list[str] = []
        self.dns_use_host_resolver = self.dns_proxy = None

    def add_redirect(self, name: str, proto: int, hip: str, hport: int, gip: str, gport: int) -> None:
        self.redirects.append(f"{name},{int(proto)},{hip},{hport},{gip},{gport}")

    def remove_redirect(self, name: str) -> None:
        if not any(r.split(",")[0] == name for r in self.redirects):
            raise FakeError(0x80070057, "no such rule")
        self.redirects = [r for r in self.redirects if r.split(",")[0] != name]


class Machine:
    def __init__(self, name: str, settings: str) -> None:
        self.name, self.id_p, self.settings_file_path = name, f"uuid-{name}", settings
        self.log_folder = str(Path(settings).parent / "Logs")
        self.state = 1
        self.adapters = [Obj(enabled=False, attachment_type=0, mac_address=f"08002700000{i}", nat_engine=NAT(),
                             host_only_interface="") for i in range(8)]  # fmt: skip
        self.ports = [Obj(enabled=False) for _ in range(4)]
        self.bios_settings, self.graphics_adapter = Obj(), Obj()
        self.cpu, self.hwvirt, self.boot = {}, {}, {}
        self.controllers: list[Obj] = []
        self.attached: dict[tuple[str, int, int], str] = {}
        self.shares: list[tuple] = []
        self.extra: dict[str, str] = {}
        self.props: dict[str, str] = {}
        self.locked = False
        self.saved = 0

    def lock_machine(self, session: "Session", lock: int) -> None:
        if self.locked and int(lock) == 2:
            raise FakeError(0x80BB0007, "already locked")
        if int(lock) == 2 and self.state == 5:
            raise FakeError(0x80BB0007, f"The machine '{self.name}' is already locked for a session")
        self.locked = int(lock) == 2
        session.machine, session.console, session._m = self, Console(self), self

    def save_settings(self) -> None:
        self.saved += 1

    def set_cpu_property(self, p: int, v: bool) -> None:
        self.cpu[int(p)] = v

    def set_hw_virt_ex_property(self, p: int, v: bool) -> None:
        self.hwvirt[int(p)] = v

    def set_boot_order(self, pos: int, dev: int) -> None:
        self.boot[pos] = int(dev)

    def get_serial_port(self, slot: int) -> Obj:
        return self.ports[slot]

    def get_network_adapter(self, slot: int) -> Obj:
        return self.adapters[slot]

    def add_storage_controller(self, name: str, bus: int) -> Obj:
        c = Obj(name=name, bus=int(bus))
        self.controllers.append(c)
        return c

    def attach_device(self, ctl: str, port: int, dev: int, kind: int, medium: Obj) -> None:
        self.attached[(ctl, port, dev)] = medium.location

    def create_shared_folder(self, name: str, path: str, writable: bool, automount: bool, point: str) -> None:
        self.shares.append((name, path, writable, automount))

    def set_extra_data(self, k: str, v: str) -> None:
        self.extra[k] = v

    def set_guest_property_value(self, k: str, v: str) -> None:
        self.props[k] = v

    def get_guest_property_value(self, k: str) -> str:
        return self.props.get(k, "")

    def launch_vm_process(self, session: "Session", ui: str, env: list) -> Progress:
        assert isinstance(env, list)
        self.state, self.ui = 5, ui
        # what Guest Additions would publish
        self.props.update({"/VirtualBox/GuestInfo/Net/Count": "1", "/VirtualBox/GuestInfo/Net/0/MAC": self.adapters[1].mac_address,
                           "/VirtualBox/GuestInfo/Net/0/V4/IP": "192.168.56.101"})  # fmt: skip
        return Progress()

    def unregister(self, mode: int) -> list:
        assert int(mode) == 3
        vbox.machines.pop(self.name)
        return list(self.attached.values())

    def delete_config(self, media: list) -> Progress:
        self.deleted = media
        return Progress()


class Console:
    def __init__(self, m: Machine) -> None:
        self.m = m

    def power_down(self) -> Progress:
        self.m.state = 1
        return Progress()

    def power_button(self) -> None:
        self.m.state = 1  # an obedient guest

    def pause(self) -> None:
        self.m.state = 6

    def resume(self) -> None:
        self.m.state = 5


class Session:
    def unlock_machine(self) -> None:
        if getattr(self, "_m", None) is not None:
            self._m.locked = False


class HostIf(Obj):
    def enable_static_ip_config(self, ip: str, mask: str) -> None:
        if not ip.startswith("192.168.5") and not ip.startswith("192.168.6"):
            raise FakeError(0x80070005, "Access denied")
        self.ip_address, self.network_mask = ip, mask


class FakeVirtualBox:
    version = "6.1.50"

    def __init__(self) -> None:
        self.machines: dict[str, Machine] = {}
        self.dhcp_servers: list[Obj] = []
        self.ifs: list[HostIf] = []
        self.host = Obj(find_host_network_interfaces_of_type=lambda t: list(self.ifs),
                        create_host_only_network_interface=self._create_if,
                        find_host_network_interface_by_name=lambda n: next(i for i in self.ifs if i.name == n))  # fmt: skip

    def _create_if(self) -> tuple[Progress, HostIf]:
        i = HostIf(name=f"vboxnet{len(self.ifs)}", ip_address="192.168.56.1", network_mask="255.255.255.0",
                   dhcp_enabled=False, status="Up", network_name=f"HostInterfaceNetworking-vboxnet{len(self.ifs)}")  # fmt: skip
        self.ifs.append(i)
        return Progress(), i  # pyvbox's order: progress first

    def compose_machine_filename(self, name: str, group: str, flags: str, base: str) -> str:
        return f"{base}/{name}/{name}.vbox"

    def create_machine(self, settings: str, name: str, groups: list, ostype: str, flags: str) -> Machine:
        m = Machine(name, settings)
        m.ostype = ostype
        return m

    def register_machine(self, m: Machine) -> None:
        self.machines[m.name] = m

    def find_machine(self, name: str) -> Machine:
        if name not in self.machines:
            raise FakeError(0x80BB0001, f"Could not find a registered machine named '{name}'")
        return self.machines[name]

    def open_medium(self, path: str, dev: int, access: int, force: bool) -> Obj:
        if not Path(path).is_file():
            raise FakeError(0x80BB0004, f"Could not find file for the medium '{path}'")
        return Obj(location=path)

    def create_dhcp_server(self, name: str) -> Obj:
        s = Obj(network_name=name, enabled=False)
        s.set_configuration = lambda ip, mask, lo, hi: s.__dict__.update(ip_address=ip, network_mask=mask, lower_ip=lo, upper_ip=hi)
        self.dhcp_servers.append(s)
        return s

    def find_dhcp_server_by_network_name(self, name: str) -> Obj:
        return next(s for s in self.dhcp_servers if s.network_name == name)


vbox: FakeVirtualBox


def test_driver_lifecycle_through_the_api_backend(fake_vbox: FakeVBox, tmp_path: Path) -> None:
    global vbox
    vbox = FakeVirtualBox()
    module = types.SimpleNamespace(VirtualBox=lambda: vbox, Session=Session, library=_lib())
    backend = ApiBackend(module, cli=CliBackend())  # disk tools: the stand-in VBoxManage
    assert backend.version() == (6, 1, 50)
    boot = make_raw_image(tmp_path / "boot.img")
    d = VirtualBoxDriver("api", tmp_path / "store" / "machines" / "api", backend=backend, platform="linux")
    d.set_config_from_flags({"virtualbox_boot_image": str(boot), "virtualbox_no_vtx_check": True,
                             "virtualbox_share_folder": f"{tmp_path}:shared", "virtualbox_memory": 3072})  # fmt: skip
    d.ip_timeout = 3.0
    d.machine_dir.mkdir(parents=True)
    d.pre_create_check()
    d.create()

    m = vbox.machines["api"]
    assert m.memory_size == 3072 and m.cpu_count == 2 and m.ostype == "Debian_64"
    assert int(m.firmware_type) == 1 and m.bios_settings.acpi_enabled and m.bios_settings.ioapic_enabled
    assert int(m.bios_settings.boot_menu_mode) == 0 and m.bios_settings.logo_display_time == 0
    assert m.cpu == {1: True} and m.hwvirt == {1: True, 3: True, 5: True, 2: True}
    assert m.boot == {1: 3, 2: 0, 3: 0, 4: 0}
    assert int(m.graphics_adapter.graphics_controller_type) == 2
    assert (m.ports[0].enabled, m.ports[0].io_base, m.ports[0].irq, int(m.ports[0].host_mode)) == (True, 0x3F8, 4, 3)
    assert m.ports[0].path == str(d.machine_dir / "console.log")
    nat, ho = m.adapters[0], m.adapters[1]
    assert nat.enabled and int(nat.attachment_type) == 1 and int(nat.adapter_type) == 6 and nat.cable_connected
    assert nat.nat_engine.dns_proxy is True and nat.nat_engine.dns_use_host_resolver is False
    assert ho.enabled and int(ho.attachment_type) == 4 and ho.host_only_interface == "vboxnet0"
    assert int(ho.adapter_type) == 6 and int(ho.promisc_mode_policy) == 1
    assert sorted(r.split(",")[0] for r in nat.nat_engine.redirects) == ["engine", "ssh"]
    assert f"ssh,1,127.0.0.1,{d.ssh_port},,22" in nat.nat_engine.redirects
    assert [(c.name, c.bus, int(c.controller_type), c.use_host_io_cache) for c in m.controllers] == [("IDE", 1, 5, True)]
    assert m.attached == {("IDE", 0, 0): str(d.disk_path), ("IDE", 0, 1): str(d.data_disk_path), ("IDE", 1, 0): str(d.seed_path)}
    assert m.shares == [("shared", str(tmp_path), True, True)]
    assert m.extra["VBoxInternal/Devices/piix3ide/0/Config/PrimarySlave/SerialNumber"] == "skiff-data-1"
    assert m.ui == "headless" and not m.locked
    assert [(s.network_name, s.ip_address, s.lower_ip, s.enabled) for s in vbox.dhcp_servers] == [
        ("HostInterfaceNetworking-vboxnet0", "192.168.56.100", "192.168.56.101", True)]
    assert backend.nat_rules("api", 1)["engine"].host_port == d.engine_host_port

    assert d.state() == State.RUNNING and d.ip() == "192.168.56.101"
    d.stop()
    assert d.state() == State.STOPPED
    d.start()  # reuses vboxnet0 and the DHCP server; rules replaced, not duplicated
    assert len(vbox.ifs) == 1 and len(vbox.dhcp_servers) == 1
    assert len(nat.nat_engine.redirects) == 2
    d.kill()
    d.remove()
    assert "api" not in vbox.machines and d.state() == State.ERROR
    # the disk tools went through VBoxManage (the stand-in), in this backend too
    assert {c[0] for c in fake_vbox.calls()} >= {"convertfromraw", "createmedium", "closemedium"}


def test_api_errors_keep_their_meaning(fake_vbox: FakeVBox, tmp_path: Path) -> None:
    global vbox
    vbox = FakeVirtualBox()
    module = types.SimpleNamespace(VirtualBox=lambda: vbox, Session=Session, library=_lib())
    b = ApiBackend(module, cli=CliBackend())
    assert b.vm_info("nope") is None
    name = b.create_host_only_if()
    with pytest.raises(Exception) as ei:
        b.config_host_only_if(name, "10.0.0.1", "255.0.0.0")
    assert getattr(ei.value, "access_denied", False)
    b.create_vm("x", tmp_path)
    b.delete_nat_rule("x", 1, "never-added")  # missing rule: not an error
    with pytest.raises(DriverError, match="does not know the modifyvm option --usb"):
        b.modify_vm("x", [("memory", "512"), ("usb", "on")])
    x = vbox.machines["x"]
    assert x.saved == 1 and not x.locked  # only create_vm saved: a failing option saves nothing, unlocks
    vbox.version = "7.1.4"
    with pytest.raises(ApiUnavailable, match="6.1 API"):
        ApiBackend(module)
