"""VirtualBox on a Windows host where Hyper-V is active (WSL2, Docker Desktop, VBS): 6.1.16+ and 7.x run
beside it through the Windows Hypervisor Platform, so create warns (saying what the user loses) and goes
on; older VirtualBox is refused with what to install. The Windows host is simulated (platform "win32",
the PowerShell query answered here); VirtualBox is the stand-in VBoxManage."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from skiffbox.machine.drivers import virtualbox
from skiffbox.machine.drivers.base import DriverError
from skiffbox.machine.drivers.virtualbox import hyperv_check
from tests.virtualbox.conftest import FakeVBox
from tests.virtualbox.test_driver import make_raw_image, new_driver


def windows(hypervisor: bool, firmware: bool = True):
    """Answers to the PowerShell queries the driver makes on Windows."""
    def run(cmd: list[str]) -> str:
        assert cmd[0] == "powershell"
        if "HypervisorPresent" in cmd[-1]:
            return "True\r\n" if hypervisor else "False\r\n"
        # Windows reports the firmware switch as off while Hyper-V owns VT-x
        return "False\r\n" if hypervisor or not firmware else "True\r\n"
    return run


def test_hyperv_check_by_version() -> None:
    hv = windows(True)
    for v in ((7, 1, 4), (7, 0, 0), (6, 1, 16), (6, 1, 50)):
        w = hyperv_check("win32", v, run=hv)
        assert w and "Windows Hypervisor Platform" in w and "slower" in w and "nested virtualisation" in w
        assert ".".join(map(str, v)) in w and "going on" in w
    with pytest.raises(DriverError) as e:
        hyperv_check("win32", (6, 1, 14), run=hv)
    msg = str(e.value)
    assert "VirtualBox 6.1.14 cannot run VMs beside it" in msg and "7.x" in msg and "breaks WSL2" in msg
    assert hyperv_check("win32", (6, 1, 14), run=windows(False)) is None
    assert hyperv_check("linux", (6, 1, 14), run=hv) is None
    assert hyperv_check("darwin", (7, 1, 4), run=hv) is None


@pytest.fixture
def win_host(monkeypatch: pytest.MonkeyPatch):
    def set_(hypervisor: bool, firmware: bool = True) -> None:
        monkeypatch.setattr(virtualbox, "_run_text", windows(hypervisor, firmware))
    return set_


def _driver(tmp_path: Path):
    tmp_path.mkdir(parents=True, exist_ok=True)
    return new_driver(tmp_path, platform="win32", virtualbox_no_vtx_check=False,
                      virtualbox_boot_image=str(make_raw_image(tmp_path / "boot.img")))


def test_create_warns_and_goes_on_with_virtualbox_7(fake_vbox: FakeVBox, tmp_path: Path, win_host, caplog) -> None:
    win_host(hypervisor=True)
    fake_vbox.configure(guest_additions=True)
    d = _driver(tmp_path)
    with caplog.at_level(logging.WARNING, logger=virtualbox.__name__):
        d.pre_create_check()
    warned = [r.getMessage() for r in caplog.records if "Hyper-V is active" in r.getMessage()]
    assert len(warned) == 1 and "VirtualBox 7.1.4 runs the VM beside it" in warned[0]
    d.create()
    assert d.state().value in ("Running", "Starting")
    d.remove()


def test_create_refuses_old_virtualbox_before_anything_is_made(fake_vbox: FakeVBox, tmp_path: Path, win_host) -> None:
    win_host(hypervisor=True)
    fake_vbox.configure(version="6.1.10r138449")
    d = _driver(tmp_path)
    with pytest.raises(DriverError, match="VirtualBox 6.1.10 cannot run VMs beside it"):
        d.pre_create_check()
    assert [c[0] for c in fake_vbox.calls()] == ["--version"]


def test_without_hyperv_nothing_is_said_and_the_firmware_switch_is_checked(fake_vbox: FakeVBox, tmp_path: Path,
                                                                           win_host, caplog) -> None:
    win_host(hypervisor=False)
    d = _driver(tmp_path)
    with caplog.at_level(logging.WARNING, logger=virtualbox.__name__):
        d.pre_create_check()
    assert not [r for r in caplog.records if "Hyper-V" in r.getMessage()]
    win_host(hypervisor=False, firmware=False)
    with pytest.raises(DriverError, match="disabled in this computer's firmware"):
        _driver(tmp_path / "again").pre_create_check()
