"""VirtualBox on Apple silicon, against the stand-in VBoxManage with an Arm host (host_arch=arm):
7.1+ makes an arm64 VM (createvm --platform-architecture=arm, UEFI, VirtIO-SCSI, no x86-only
settings); older VirtualBox is refused with a pointer to the qemu driver."""

from __future__ import annotations

from pathlib import Path

import pytest

from skiffbox.machine.drivers.base import DriverError
from skiffbox.machine.drivers.virtualbox import VirtualBoxDriver, apple_silicon_problem
from tests.virtualbox.conftest import FakeVBox
from tests.virtualbox.test_driver import make_raw_image


def _mac_driver(tmp_path: Path, arch: str = "arm64") -> VirtualBoxDriver:
    d = VirtualBoxDriver("default", tmp_path / "store" / "machines" / "default", platform="darwin", host_arch=arch)
    d.set_config_from_flags({"virtualbox_no_share": True, "virtualbox_no_vtx_check": False,
                             "virtualbox_boot_image": str(make_raw_image(tmp_path / "boot.img"))})
    d.ip_timeout, d.stop_timeout = 5.0, 3.0
    d.machine_dir.mkdir(parents=True, exist_ok=True)
    return d


def test_apple_silicon_version_rule() -> None:
    assert apple_silicon_problem((7, 1, 0)) is None and apple_silicon_problem((7, 2, 4)) is None
    msg = apple_silicon_problem((7, 0, 20)) or ""
    assert "VirtualBox 7.0.20 cannot run VMs on Apple silicon" in msg and "7.1" in msg
    assert "machine create -d qemu" in msg


def test_old_virtualbox_on_apple_silicon_is_refused_before_anything_is_made(fake_vbox: FakeVBox, tmp_path: Path) -> None:
    fake_vbox.configure(version="7.0.20r163906", host="darwin", host_arch="arm")
    d = _mac_driver(tmp_path)
    with pytest.raises(DriverError, match="cannot run VMs on Apple silicon.*qemu driver"):
        d.pre_create_check()
    assert [c[0] for c in fake_vbox.calls()] == ["--version"]


def test_apple_silicon_gets_an_arm64_vm(fake_vbox: FakeVBox, tmp_path: Path) -> None:
    fake_vbox.configure(version="7.1.4r165100", host="darwin", host_arch="arm", guest_additions=True)
    d = _mac_driver(tmp_path)
    d.pre_create_check()
    d.create()
    calls = fake_vbox.calls()
    createvm = next(c for c in calls if c[0] == "createvm")
    assert "--platform-architecture=arm" in createvm
    vm = fake_vbox.vm("default")
    assert vm["platform"] == "arm" and vm["settings"]["firmware"] == "efi"
    assert vm["settings"]["ostype"] == "Debian_arm64"
    assert [c["bus"] for c in vm["controllers"]] == ["virtio-scsi"]
    info = fake_vbox.run("showvminfo", "default", "--machinereadable").stdout
    assert 'platformArchitecture="ARM"' in info and 'chipset="armv8virtual"' in info and 'firmware="EFI"' in info
    assert d.to_config()["Arch"] == "aarch64"
    assert (d.machine_dir / "seed.iso").exists()
    d.remove()


def test_the_stand_in_enforces_the_arm_platform(fake_vbox: FakeVBox, tmp_path: Path) -> None:
    """What would break an arm64 VM on real 7.1 breaks here too: x86-only settings, IDE, x86 VMs."""
    fake_vbox.configure(version="7.1.4r165100", host="darwin", host_arch="arm")
    r = fake_vbox.run("createvm", "--name", "a", "--basefolder", str(tmp_path), "--platform-architecture=arm", "--register")
    assert r.returncode == 0, r.stderr
    r = fake_vbox.run("modifyvm", "a", "--pae", "on")
    assert r.returncode == 1 and "only on the x86 platform" in r.stderr
    r = fake_vbox.run("storagectl", "a", "--name", "IDE", "--add", "ide")
    assert r.returncode == 1 and "VBOX_E_PLATFORM_ARCH_NOT_SUPPORTED" in r.stderr
    r = fake_vbox.run("createvm", "--name", "x", "--basefolder", str(tmp_path), "--ostype", "Debian_64", "--register")
    assert r.returncode == 0
    r = fake_vbox.run("startvm", "x", "--type", "headless")
    assert r.returncode == 1 and "platform architecture x86 is not supported on ARM" in r.stderr
    fake_vbox.configure(version="7.0.20r163906")
    r = fake_vbox.run("createvm", "--name", "b", "--basefolder", str(tmp_path), "--platform-architecture=arm")
    assert r.returncode == 2  # 7.0 does not know the option: a syntax error


def test_intel_mac_keeps_the_x86_vm(fake_vbox: FakeVBox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from skiffbox.machine.drivers import virtualbox

    monkeypatch.setattr(virtualbox, "_run_text", lambda cmd: "FPU VME VMX SSE")
    fake_vbox.configure(version="7.1.4r165100", host="darwin", guest_additions=True)
    d = _mac_driver(tmp_path, arch="x86_64")
    d.pre_create_check()
    d.create()
    createvm = next(c for c in fake_vbox.calls() if c[0] == "createvm")
    assert not any(a.startswith("--platform-architecture") for a in createvm)
    assert fake_vbox.vm("default")["settings"]["firmware"] == "bios" and d.to_config()["Arch"] == "x86_64"
    d.remove()
