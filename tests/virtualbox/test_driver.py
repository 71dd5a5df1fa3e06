"""The VirtualBox driver's lifecycle against the stand-in VBoxManage (no real VirtualBox runs here).

What is real in these tests: every VBoxManage argument vector is checked by the stand-in against the
documented syntax; the boot image, the converted VDI, the data disk and the seed ISO are real files
(the stand-in writes VDIs with qemu-img, the tests read them back); ports are really free ports.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from skiffbox.machine.drivers.base import DriverError, State
from skiffbox.machine.drivers.vbox_manage import CliBackend, VBoxManage
from skiffbox.machine.drivers.virtualbox import DATA_DEVICE, VirtualBoxDriver
from skiffbox.machine.image.seed import read_seed_iso
from tests.virtualbox.conftest import FakeVBox

MB = 1 << 20


def make_raw_image(path: Path, size: int = 64 * MB) -> Path:
    """A small 'boot disk': an MBR boot signature and some data, sparse otherwise."""
    with open(path, "wb") as f:
        f.write(b"\xeb\x63\x90" + b"skiff-test-boot" + b"\0" * 492 + b"\x55\xaa")
        f.seek(5 * MB)
        f.write(os.urandom(4096))
        f.truncate(size)
    return path


@pytest.fixture
def boot_raw(tmp_path: Path) -> Path:
    return make_raw_image(tmp_path / "boot.img")


def new_driver(tmp_path: Path, name: str = "default", platform: str = "linux", **flags: Any) -> VirtualBoxDriver:
    store = tmp_path / "store"
    d = VirtualBoxDriver(name, store / "machines" / name, platform=platform)
    base = {"virtualbox_no_vtx_check": True, "virtualbox_share_folder": f"{tmp_path}:shared"}
    base.update(flags)
    d.set_config_from_flags(base)
    d.ip_timeout = 5.0
    d.stop_timeout = 3.0
    d.machine_dir.mkdir(parents=True, exist_ok=True)
    return d


def cmds(fake: FakeVBox) -> list[str]:
    return [c[0] if c[0] not in ("list", "hostonlyif", "dhcpserver", "guestproperty") else f"{c[0]} {c[1]}"
            for c in fake.calls()]  # fmt: skip


def test_full_lifecycle(fake_vbox: FakeVBox, tmp_path: Path, boot_raw: Path) -> None:
    fake_vbox.configure(guest_additions=True)
    d = new_driver(tmp_path, virtualbox_boot_image=str(boot_raw), virtualbox_memory=1024, virtualbox_cpu_count=1)
    d.pre_create_check()
    assert d.boot_image_path == str(boot_raw)
    t0 = time.monotonic()
    d.create()
    created_in = time.monotonic() - t0

    # -- what VirtualBox was told, in order (the docker-machine sequence, adapted)
    seq = cmds(fake_vbox)
    order = ["--version", "convertfromraw", "createmedium", "createvm", "modifyvm", "modifyvm", "storagectl",
             "storageattach", "storageattach", "storageattach", "setextradata", "setextradata",
             "guestproperty set", "guestproperty set", "sharedfolder", "setextradata", "showvminfo",
             "list hostonlyifs", "hostonlyif create", "hostonlyif ipconfig", "list dhcpservers",
             "dhcpserver add", "modifyvm", "modifyvm", "modifyvm", "modifyvm", "modifyvm", "startvm"]  # fmt: skip
    assert [c for c in seq if c != "showvminfo"][: len(order) - 1] == [c for c in order if c != "showvminfo"], seq
    calls = fake_vbox.calls()
    conv = next(c for c in calls if c[0] == "convertfromraw")
    assert conv == ["convertfromraw", str(boot_raw), str(d.disk_path), "--format", "VDI"]
    assert not any(c[:2] == ["convertfromraw", "stdin"] for c in calls)  # nothing streamed, no zero-fill
    assert ["storagectl", "default", "--name", "IDE", "--add", "ide", "--controller", "PIIX4", "--hostiocache", "on"] in calls
    assert ["hostonlyif", "ipconfig", "vboxnet0", "--ip", "192.168.56.1", "--netmask", "255.255.255.0"] in calls
    assert ["startvm", "default", "--type", "headless"] in calls

    # -- the real files: a VDI with the boot image's bytes, a dynamic data disk, a seed ISO
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(d.disk_path)],
                                     capture_output=True, check=True).stdout)  # fmt: skip
    assert info["format"] == "vdi"
    assert subprocess.run(["qemu-img", "compare", "-q", "-f", "raw", "-F", "vdi", str(boot_raw), str(d.disk_path)]).returncode == 0
    data = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(d.data_disk_path)],
                                     capture_output=True, check=True).stdout)  # fmt: skip
    assert data["format"] == "vdi" and data["virtual-size"] == 20000 * MB
    seed = read_seed_iso(d.seed_path)
    user = json.loads(seed["user-data"].decode().split("\n", 1)[1])
    assert user["users"][0]["name"] == "docker"
    assert user["users"][0]["ssh_authorized_keys"] == [Path(str(d.ssh_key_path()) + ".pub").read_text().strip()]
    assert user["fs_setup"][0]["device"] == DATA_DEVICE
    assert ["shared", "/shared", "vboxsf", "uid=1000,gid=1000,nofail", "0", "0"] in user["mounts"]
    assert json.loads(seed["meta-data"])["local-hostname"] == "default"

    # -- the VM as the stand-in keeps it
    vm = fake_vbox.vm("default")
    assert vm["state"] == "running"
    assert vm["settings"]["memory"] == 1024 and vm["settings"]["cpus"] == 1
    assert vm["settings"]["boot1"] == "disk" and vm["settings"]["uartmode1"] == ["file", str(d.machine_dir / "console.log")]
    assert [c["type"] for c in vm["controllers"]] == ["PIIX4"]
    assert {k: a["type"] for k, a in vm["attachments"].items()} == {"IDE-0-0": "hdd", "IDE-0-1": "hdd", "IDE-1-0": "dvddrive"}
    assert vm["extradata"]["VBoxInternal/Devices/piix3ide/0/Config/PrimarySlave/SerialNumber"] == "skiff-data-1"
    assert vm["nics"]["1"]["type"] == "nat" and vm["nics"]["1"]["nictype"] == "virtio"
    assert vm["nics"]["2"]["type"] == "hostonly" and vm["nics"]["2"]["hostonlyadapter"] == "vboxnet0"
    assert vm["nics"]["2"]["nictype"] == "virtio"
    rules = {r[0]: r for r in vm["nics"]["1"]["natpf"]}
    assert rules["ssh"][1:] == ["tcp", "127.0.0.1", d.ssh_port, "", 22]
    assert rules["engine"][1:] == ["tcp", "127.0.0.1", d.engine_host_port, "", 2376]
    assert vm["sharedfolders"] == [{"name": "shared", "hostpath": str(tmp_path), "automount": True, "readonly": False}]

    # -- addressing: engine and SSH through 127.0.0.1, `machine ip` is the host-only address
    assert d.state() == State.RUNNING
    assert d.ip() == "192.168.56.101"
    assert d.engine_endpoint() == ("127.0.0.1", d.engine_host_port)
    assert d.url() == f"tcp://127.0.0.1:{d.engine_host_port}"
    ep = d.ssh_endpoint()
    assert (ep.host, ep.port, ep.user, ep.key_path) == ("127.0.0.1", d.ssh_port, "docker", d.machine_dir / "id_rsa")
    assert d.extra_cert_sans() == ["192.168.56.101"]
    assert d.shared_folders() == [(str(tmp_path), "/shared")]
    assert created_in < 30

    # -- persistence: a fresh driver object from config.json sees the same machine
    cfg = json.loads(json.dumps(d.to_config()))
    again = VirtualBoxDriver("default", d.machine_dir, platform="linux")
    again.load_config(cfg)
    assert again.url() == d.url() and again.ip() == d.ip() and again.state() == State.RUNNING

    # -- stop (ACPI), start (network reused, ports kept), kill, restart
    ssh_port, engine_port = d.ssh_port, d.engine_host_port
    fake_vbox.clear_calls()
    d.stop()
    assert d.state() == State.STOPPED and d.ip_address == ""
    assert ["controlvm", "default", "acpipowerbutton"] in fake_vbox.calls()
    d.start()
    assert d.state() == State.RUNNING and d.ip() == "192.168.56.101"
    assert (d.ssh_port, d.engine_host_port) == (ssh_port, engine_port)
    assert not any(c[:2] == ["hostonlyif", "create"] or c[:2] == ["dhcpserver", "add"] for c in fake_vbox.calls())
    d.kill()
    assert d.state() == State.STOPPED
    d.start()
    d.restart()
    assert d.state() == State.RUNNING

    # -- remove: VM, disks and seed gone; nothing left registered
    d.remove()
    assert d.state() == State.ERROR
    st = fake_vbox.state()
    assert st["vms"] == {}
    assert not any(p.startswith(str(d.machine_dir)) for p in st["media"])
    assert not d.disk_path.exists() and not d.data_disk_path.exists() and not d.seed_path.exists()
    assert not (d.machine_dir / "default").exists()
    assert fake_vbox.run("list", "hostonlyifs").stdout.startswith("Name:            vboxnet0")  # shared, kept


def test_stop_is_bounded_when_guest_ignores_acpi(fake_vbox: FakeVBox, tmp_path: Path, boot_raw: Path) -> None:
    fake_vbox.configure(guest_additions=True, acpi="ignore")
    d = new_driver(tmp_path, virtualbox_boot_image=str(boot_raw))
    d.pre_create_check()
    d.create()
    d.stop_timeout = 2.0
    t0 = time.monotonic()
    d.stop()
    took = time.monotonic() - t0
    assert d.state() == State.STOPPED
    calls = fake_vbox.calls()
    assert ["controlvm", "default", "acpipowerbutton"] in calls and ["controlvm", "default", "poweroff"] in calls
    assert 2.0 <= took < 10.0
    d.remove()


def test_stop_waits_for_a_slow_guest(fake_vbox: FakeVBox, tmp_path: Path, boot_raw: Path) -> None:
    fake_vbox.configure(guest_additions=True, acpi="2")
    d = new_driver(tmp_path, virtualbox_boot_image=str(boot_raw))
    d.pre_create_check()
    d.create()
    d.stop_timeout = 20.0
    d.stop()
    assert d.state() == State.STOPPED
    assert ["controlvm", "default", "poweroff"] not in fake_vbox.calls()
    d.remove()


def test_existing_hostonly_adapter_and_dhcp_are_reused(fake_vbox: FakeVBox, tmp_path: Path, boot_raw: Path) -> None:
    fake_vbox.configure(guest_additions=True)
    # What a fresh VirtualBox install has: vboxnet0 at 192.168.56.1 with its default DHCP server.
    fake_vbox.run("hostonlyif", "create")
    fake_vbox.run("dhcpserver", "add", "--netname", "HostInterfaceNetworking-vboxnet0", "--ip", "192.168.56.100",
                  "--netmask", "255.255.255.0", "--lowerip", "192.168.56.101", "--upperip", "192.168.56.254", "--enable")  # fmt: skip
    fake_vbox.clear_calls()
    d = new_driver(tmp_path, virtualbox_boot_image=str(boot_raw))
    d.pre_create_check()
    d.create()
    calls = fake_vbox.calls()
    assert not any(c[0] in ("hostonlyif", "dhcpserver") for c in calls), calls
    assert d.hostonly_adapter == "vboxnet0" and d.ip() == "192.168.56.101"
    d.remove()


def test_disabled_dhcp_server_is_fixed_not_duplicated(fake_vbox: FakeVBox, tmp_path: Path, boot_raw: Path) -> None:
    fake_vbox.configure(guest_additions=True)
    fake_vbox.run("hostonlyif", "create")
    fake_vbox.run("dhcpserver", "add", "--netname", "HostInterfaceNetworking-vboxnet0", "--ip", "192.168.56.100",
                  "--netmask", "255.255.255.0", "--lowerip", "192.168.56.101", "--upperip", "192.168.56.254", "--disable")  # fmt: skip
    d = new_driver(tmp_path, virtualbox_boot_image=str(boot_raw))
    d.pre_create_check()
    d.create()
    assert any(c[:2] == ["dhcpserver", "modify"] for c in fake_vbox.calls())
    assert [s["enabled"] for s in fake_vbox.state()["dhcpservers"]] == [True]
    d.remove()


def test_hostonly_range_refused_before_anything_is_made(fake_vbox: FakeVBox, tmp_path: Path, boot_raw: Path) -> None:
    d = new_driver(tmp_path, virtualbox_boot_image=str(boot_raw), virtualbox_hostonly_cidr="192.168.99.1/24")
    d.networks_conf = tmp_path / "no-networks.conf"
    with pytest.raises(DriverError) as ei:
        d.pre_create_check()
    msg = str(ei.value)
    assert "192.168.56.0/21" in msg and "networks.conf" in msg and "* 192.168.99.0/24" in msg
    assert [c[0] for c in fake_vbox.calls()] == ["--version"]
    # Windows hosts have no range policy.
    w = new_driver(tmp_path, name="w", platform="win32", virtualbox_boot_image=str(boot_raw),
                   virtualbox_hostonly_cidr="192.168.99.1/24")  # fmt: skip
    w.pre_create_check()


def test_e_accessdenied_from_virtualbox_is_explained(fake_vbox: FakeVBox, tmp_path: Path, boot_raw: Path) -> None:
    """Our networks.conf allows the range but VirtualBox still refuses (e.g. VBoxSVC was not restarted
    after editing it): the stand-in answers E_ACCESSDENIED exactly as VBoxManage does."""
    allow = tmp_path / "networks.conf"
    allow.write_text("* 192.168.99.0/24\n")
    d = new_driver(tmp_path, virtualbox_boot_image=str(boot_raw), virtualbox_hostonly_cidr="192.168.99.1/24")
    d.networks_conf = allow
    d.pre_create_check()
    with pytest.raises(DriverError) as ei:
        d.create()
    msg = str(ei.value)
    assert "E_ACCESSDENIED" in msg and str(allow) in msg and "quit every VirtualBox program" in msg
    calls = fake_vbox.calls()
    assert ["hostonlyif", "ipconfig", "vboxnet0", "--ip", "192.168.99.1", "--netmask", "255.255.255.0"] in calls
    d.remove()
    assert fake_vbox.state()["vms"] == {}


def test_vtx_disabled_at_start_names_the_fix(fake_vbox: FakeVBox, tmp_path: Path, boot_raw: Path) -> None:
    fake_vbox.configure(vtx="disabled")
    d = new_driver(tmp_path, virtualbox_boot_image=str(boot_raw))
    d.pre_create_check()
    with pytest.raises(DriverError) as ei:
        d.create()
    msg = str(ei.value)
    assert "VT-x is disabled in the BIOS" in msg and "BIOS/UEFI setup" in msg and "--virtualbox-no-vtx-check" in msg
    assert d.state() == State.STOPPED
    d.remove()
    assert fake_vbox.state()["vms"] == {}


def test_transient_object_not_ready_is_retried(fake_vbox: FakeVBox, tmp_path: Path, boot_raw: Path) -> None:
    fake_vbox.configure(guest_additions=True, not_ready={"showvminfo": 2, "modifyvm": 1, "startvm": 1})
    d = new_driver(tmp_path, virtualbox_boot_image=str(boot_raw))
    d._backend = CliBackend(VBoxManage(retry_delay=0.01))
    d.pre_create_check()
    d.create()
    assert d.state() == State.RUNNING
    assert fake_vbox.config()["not_ready"] == {"showvminfo": 0, "modifyvm": 0, "startvm": 0}
    d.remove()


def test_half_created_machine_is_removed(fake_vbox: FakeVBox, tmp_path: Path, boot_raw: Path) -> None:
    fake_vbox.configure(not_ready={"createvm": 100})
    d = new_driver(tmp_path, virtualbox_boot_image=str(boot_raw))
    d._backend = CliBackend(VBoxManage(retry_delay=0.001))
    d.pre_create_check()
    with pytest.raises(DriverError):
        d.create()
    assert d.disk_path.exists() and d.data_disk_path.exists() and d.seed_path.exists()
    assert str(d.data_disk_path) in fake_vbox.state()["media"]  # createmedium registered it
    fake_vbox.configure(not_ready={})
    d.remove()
    assert not d.disk_path.exists() and not d.data_disk_path.exists() and not d.seed_path.exists()
    assert fake_vbox.state()["media"] == {}
    d.remove()  # idempotent


def test_qcow2_boot_image_is_cloned_and_released(fake_vbox: FakeVBox, tmp_path: Path, boot_raw: Path) -> None:
    fake_vbox.configure(guest_additions=True)
    q = tmp_path / "boot.qcow2"
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", "-c", str(boot_raw), str(q)], check=True)
    d = new_driver(tmp_path, virtualbox_boot_image=str(q))
    d.pre_create_check()
    d.create()
    calls = fake_vbox.calls()
    assert ["clonemedium", "disk", str(q), str(d.disk_path), "--format", "VDI"] in calls
    assert ["closemedium", "disk", str(q)] in calls
    assert str(q) not in fake_vbox.state()["media"]
    assert subprocess.run(["qemu-img", "compare", "-q", "-f", "raw", "-F", "vdi", str(boot_raw), str(d.disk_path)]).returncode == 0
    d.remove()


def test_big_data_disk_costs_nothing_up_front(fake_vbox: FakeVBox, tmp_path: Path, boot_raw: Path) -> None:
    fake_vbox.configure(guest_additions=True)
    d = new_driver(tmp_path, virtualbox_boot_image=str(boot_raw), virtualbox_disk_size=204800)
    d.pre_create_check()
    t0 = time.monotonic()
    d.create()
    assert time.monotonic() - t0 < 30
    create = next(c for c in fake_vbox.calls() if c[0] == "createmedium")
    assert create == ["createmedium", "disk", "--filename", str(d.data_disk_path), "--size", "204800",
                      "--format", "VDI", "--variant", "Standard"]  # fmt: skip
    assert d.data_disk_path.stat().st_blocks * 512 < 16 * MB
    d.remove()


def test_virtualbox_61_spellings(fake_vbox: FakeVBox, tmp_path: Path, boot_raw: Path) -> None:
    """6.1 rejects the 7.x dashed option names; the driver only uses spellings both accept."""
    fake_vbox.configure(guest_additions=True, version="6.1.50r161033")
    d = new_driver(tmp_path, virtualbox_boot_image=str(boot_raw))
    d.pre_create_check()
    d.create()
    assert d.state() == State.RUNNING
    d.remove()


def test_too_old_virtualbox_is_refused(fake_vbox: FakeVBox, tmp_path: Path, boot_raw: Path) -> None:
    fake_vbox.configure(version="5.2.44r139111")
    d = new_driver(tmp_path, virtualbox_boot_image=str(boot_raw))
    with pytest.raises(DriverError, match="too old"):
        d.pre_create_check()


def test_macos_virtualbox7_uses_hostonly_networks(fake_vbox: FakeVBox, tmp_path: Path, boot_raw: Path) -> None:
    fake_vbox.configure(guest_additions=True, host="darwin", version="7.0.14r161095")
    d = new_driver(tmp_path, platform="darwin", virtualbox_boot_image=str(boot_raw))
    d.pre_create_check()
    d.create()
    calls = fake_vbox.calls()
    assert ["hostonlynet", "add", "--name", "skiff-192.168.56.0", "--netmask", "255.255.255.0",
            "--lower-ip", "192.168.56.1", "--upper-ip", "192.168.56.254", "--enable"] in calls  # fmt: skip
    assert not any(c[0] == "hostonlyif" for c in calls)
    vm = fake_vbox.vm("default")
    assert vm["nics"]["2"]["type"] == "hostonlynet" and vm["nics"]["2"]["hostonlynet"] == "skiff-192.168.56.0"
    assert d.ip() == "192.168.56.2"
    d.stop()
    d.start()  # the network is found again, not re-added
    assert sum(c[:2] == ["hostonlynet", "add"] for c in fake_vbox.calls()) == 1
    d.remove()


def test_pause_and_resume(fake_vbox: FakeVBox, tmp_path: Path, boot_raw: Path) -> None:
    fake_vbox.configure(guest_additions=True)
    d = new_driver(tmp_path, virtualbox_boot_image=str(boot_raw))
    d.pre_create_check()
    d.create()
    fake_vbox.run("controlvm", "default", "pause")
    assert d.state() == State.PAUSED
    d.start()
    assert d.state() == State.RUNNING
    fake_vbox.run("controlvm", "default", "pause")
    d.stop()  # resumes first: a paused guest cannot see the power button
    assert d.state() == State.STOPPED
    d.remove()


def test_ip_needs_a_running_vm(fake_vbox: FakeVBox, tmp_path: Path, boot_raw: Path) -> None:
    fake_vbox.configure(guest_additions=True)
    d = new_driver(tmp_path, virtualbox_boot_image=str(boot_raw))
    d.pre_create_check()
    d.create()
    d.stop()
    with pytest.raises(DriverError, match="not running"):
        d.ip()
    d.remove()


def test_no_ip_without_guest_reports_console_log(fake_vbox: FakeVBox, tmp_path: Path, boot_raw: Path) -> None:
    """Without Guest Additions the IP comes over SSH; with no guest behind the forward, start()
    gives up after its bounded wait and says where the boot log is."""
    d = new_driver(tmp_path, virtualbox_boot_image=str(boot_raw))
    d.ip_timeout = 2.0
    d.pre_create_check()
    with pytest.raises(DriverError) as ei:
        d.create()
    assert "console.log" in str(ei.value) and "no host-only IP" in str(ei.value)
    d.remove()
