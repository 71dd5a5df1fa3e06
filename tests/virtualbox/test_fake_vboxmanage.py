"""The stand-in itself: it must reject what VBoxManage rejects and print what it prints
(/work/shared/reference/vboxmanage.md), or the driver tests built on it prove nothing."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.virtualbox.conftest import FakeVBox


def _vm(fake: FakeVBox, name: str = "t") -> None:
    r = fake.run("createvm", "--name", name, "--basefolder", str(fake.state_dir / "m"), "--register")
    assert r.returncode == 0, r.stderr


def test_syntax_error_shape_and_exit_codes(fake_vbox: FakeVBox) -> None:
    _vm(fake_vbox)
    r = fake_vbox.run("storagectl", "t", "--name", "S", "--add", "sata", "--bogus", "x")
    assert r.returncode == 2
    lines = r.stderr.splitlines()
    assert lines[0] == "Oracle VirtualBox Command Line Management Interface Version 7.1.4"
    assert lines[1].startswith("Copyright (C) 2005-2024 Oracle")
    assert "VBoxManage: error: Unknown option: --bogus" in lines
    # modifyvm reports syntax errors with RTEXITCODE_FAILURE (1).
    r = fake_vbox.run("modifyvm", "t", "--bogus", "1")
    assert r.returncode == 1 and "Unknown option: --bogus" in r.stderr
    r = fake_vbox.run("-q", "modifyvm", "t", "--bogus", "1")
    assert not r.stderr.startswith("Oracle")  # -q drops the logo
    r = fake_vbox.run("list")
    assert r.returncode == 2 and 'Missing subcommand for "list" command.' in r.stderr
    r = fake_vbox.run("list", "foo")
    assert r.returncode == 2 and 'Unknown subcommand "foo".' in r.stderr
    r = fake_vbox.run("createvm", "--basefolder", "/tmp")
    assert r.returncode == 2 and "Parameter --name is required" in r.stderr
    assert fake_vbox.run().returncode == 1  # no arguments: usage, exit 1


def test_option_value_forms_and_onoff(fake_vbox: FakeVBox) -> None:
    _vm(fake_vbox)
    for form in (["--memory", "1024"], ["--memory=1536"], ["--memory:2048"]):
        assert fake_vbox.run("modifyvm", "t", *form).returncode == 0
    assert fake_vbox.vm("t")["settings"]["memory"] == 2048
    r = fake_vbox.run("modifyvm", "t", "--acpi", "true")
    assert r.returncode == 1 and "Unknown option: true" in r.stderr
    assert fake_vbox.run("modifyvm", "t", "--acpi", "OFF").returncode == 0


def test_spellings_by_version(fake_vbox: FakeVBox) -> None:
    _vm(fake_vbox)
    # 7.1 knows soup, dashed and --x86-* names.
    for opt in ("--nestedpaging", "--nested-paging", "--x86-nested-paging"):
        assert fake_vbox.run("modifyvm", "t", opt, "on").returncode == 0, opt
    fake_vbox.configure(version="7.0.14r161095")
    assert fake_vbox.run("modifyvm", "t", "--nested-paging", "on").returncode == 0
    assert fake_vbox.run("modifyvm", "t", "--x86-nested-paging", "on").returncode == 1
    fake_vbox.configure(version="6.1.50r161033")
    r = fake_vbox.run("modifyvm", "t", "--nested-paging", "on")
    assert r.returncode == 1 and "Unknown option: --nested-paging" in r.stderr
    assert "Oracle VM VirtualBox Command Line" in r.stderr
    assert fake_vbox.run("modifyvm", "t", "--nestedpaging", "on", "--nictype1", "virtio").returncode == 0
    # 6.1's machine-readable output has no 7.x keys.
    info = fake_vbox.run("showvminfo", "t", "--machinereadable").stdout
    assert "encryption=" not in info and "platformArchitecture=" not in info


def test_modifyvm_is_all_or_nothing(fake_vbox: FakeVBox) -> None:
    _vm(fake_vbox)
    r = fake_vbox.run("modifyvm", "t", "--memory", "4096", "--nic1", "nat", "--natpf1", "a,icmp,,1,,2")
    assert r.returncode == 1 and "Invalid proto 'a,icmp,,1,,2' specfied for NIC 1" in r.stderr
    vm = fake_vbox.vm("t")
    assert vm["settings"]["memory"] == 128 and vm["nics"]["1"]["type"] == "none"


def test_natpf_rules(fake_vbox: FakeVBox) -> None:
    _vm(fake_vbox)
    assert fake_vbox.run("modifyvm", "t", "--nic1", "nat").returncode == 0
    assert fake_vbox.run("modifyvm", "t", "--natpf1", "ssh,tcp,127.0.0.1,2222,,22").returncode == 0
    r = fake_vbox.run("modifyvm", "t", "--natpf1", "ssh,tcp,127.0.0.1,2223,,22")
    assert r.returncode == 1 and "A NAT rule of this name already exists" in r.stderr
    r = fake_vbox.run("modifyvm", "t", "--natpf1", "x,tcp,127.0.0.1,2222,,23")
    assert "A NAT rule for this host port and this host IP already exists" in r.stderr
    r = fake_vbox.run("modifyvm", "t", "--natpf1", "x,tcp,2222,23")
    assert r.returncode == 2 and "Missing or invalid argument to '--natpf'" in r.stderr
    assert fake_vbox.run("modifyvm", "t", "--natpf1", ",tcp,,8080,,80").returncode == 0
    info = fake_vbox.run("showvminfo", "t", "--machinereadable").stdout
    assert 'Forwarding(1)="tcp_8080_80,tcp,,8080,,80"' in info
    r = fake_vbox.run("modifyvm", "t", "--natpf1", "delete", "nope")
    assert r.returncode == 1 and "Code NS_ERROR_INVALID_ARG (0x80070057)" in r.stderr
    assert fake_vbox.run("modifyvm", "t", "--natpf1", "delete", "ssh").returncode == 0


def test_write_lock_and_not_running(fake_vbox: FakeVBox) -> None:
    _vm(fake_vbox)
    r = fake_vbox.run("controlvm", "t", "poweroff")
    assert r.returncode == 1 and r.stderr.strip() == "VBoxManage: error: Machine 't' is not currently running."
    assert fake_vbox.run("startvm", "t", "--type", "headless").stdout.splitlines() == [
        'Waiting for VM "t" to power on...',
        'VM "t" has been successfully started.',
    ]
    r = fake_vbox.run("modifyvm", "t", "--memory", "512")
    assert r.returncode == 1 and "is already locked for a session (or being unlocked)" in r.stderr
    r = fake_vbox.run("startvm", "t")
    assert "is already locked by a session (or being locked or unlocked)" in r.stderr
    r = fake_vbox.run("unregistervm", "t", "--delete")
    assert "Cannot unregister the machine 't' while it is locked" in r.stderr
    assert fake_vbox.run("list", "runningvms").stdout.startswith('"t" {')
    r = fake_vbox.run("controlvm", "t", "poweroff")
    assert r.returncode == 0 and r.stderr.startswith("0%...10%") and r.stdout == ""


def test_hostonly_and_dhcp(fake_vbox: FakeVBox) -> None:
    r = fake_vbox.run("hostonlyif", "create")
    assert r.stdout == "Interface 'vboxnet0' was successfully created\n"
    assert fake_vbox.run("hostonlyif", "create").stdout == "Interface 'vboxnet1' was successfully created\n"
    r = fake_vbox.run("hostonlyif", "ipconfig", "vboxnet9", "--ip", "192.168.56.1")
    assert "The host network interface named 'vboxnet9' could not be found" in r.stderr
    r = fake_vbox.run("hostonlyif", "ipconfig", "vboxnet1", "--dhcp", "--ip", "192.168.57.1")
    assert r.returncode == 2 and "You can not use --dhcp" in r.stderr
    r = fake_vbox.run("hostonlyif", "ipconfig", "vboxnet1", "--ip", "10.0.0.1")
    assert r.returncode == 1 and r.stderr.splitlines() == [
        "VBoxManage: error: Code E_ACCESSDENIED (0x80070005) - Access denied (extended info not available)",
        'VBoxManage: error: Context: "EnableStaticIPConfig(Bstr(pszIp).raw(), Bstr(pszNetmask).raw())" at line 242 of file VBoxManageHostonly.cpp',
    ]
    fake_vbox.configure(version="6.1.26r145957")  # before the range policy
    assert fake_vbox.run("hostonlyif", "ipconfig", "vboxnet1", "--ip", "10.0.0.1").returncode == 0
    args = ["--netname", "HostInterfaceNetworking-vboxnet0", "--ip", "192.168.56.100", "--netmask",
            "255.255.255.0", "--lowerip", "192.168.56.101", "--upperip", "192.168.56.254", "--enable"]  # fmt: skip
    assert fake_vbox.run("dhcpserver", "add", *args).returncode == 0
    assert "DHCP server already exists" in fake_vbox.run("dhcpserver", "add", *args).stderr
    assert fake_vbox.run("dhcpserver", "modify", *args).returncode == 0
    out = fake_vbox.run("list", "dhcpservers").stdout
    assert "Dhcpd IP:       192.168.56.100\n" in out and "        1/legacy: 255.255.255.0\n" in out
    r = fake_vbox.run("dhcpserver", "remove", "--netname", "nope")
    assert "Failed to find DHCP server for network 'nope'" in r.stderr


def test_hostonlyif_create_failure(fake_vbox: FakeVBox) -> None:
    fake_vbox.configure(hostonlyif_create="fail")
    r = fake_vbox.run("hostonlyif", "create")
    assert r.returncode == 1
    assert "Progress state: NS_ERROR_FAILURE" in r.stderr
    assert "failed to open /dev/vboxnetctl" in r.stderr


def test_macos7_has_hostonly_networks_only(fake_vbox: FakeVBox) -> None:
    fake_vbox.configure(host="darwin", version="7.0.14r161095")
    assert fake_vbox.run("list", "hostonlyifs").stdout == ""
    assert fake_vbox.run("hostonlyif", "create").returncode == 2
    r = fake_vbox.run("hostonlynet", "add", "--name", "n1", "--netmask", "255.255.255.0",
                      "--lower-ip", "192.168.56.1", "--upper-ip", "192.168.56.254", "--enable")  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = fake_vbox.run("list", "hostonlynets").stdout
    assert out.splitlines()[2] == "" and "LowerIP:         192.168.56.1" in out
    _vm(fake_vbox)
    assert fake_vbox.run("modifyvm", "t", "--nic2", "hostonly", "--hostonlyadapter2", "vboxnet0").returncode == 0
    r = fake_vbox.run("startvm", "t", "--type", "headless")
    assert r.returncode == 1 and "Host-only adapters are no longer supported!" in r.stderr


def test_vtx_failure_writes_vbox_log(fake_vbox: FakeVBox) -> None:
    _vm(fake_vbox)
    fake_vbox.configure(vtx="disabled")
    r = fake_vbox.run("startvm", "t", "--type", "headless")
    assert r.returncode == 1
    assert r.stdout == 'Waiting for VM "t" to power on...\n'
    assert "VT-x is disabled in the BIOS for all CPU modes (VERR_VMX_MSR_ALL_VMX_DISABLED)" in r.stderr
    log = fake_vbox.run("showvminfo", "t", "--log", "0").stdout
    assert "Power up failed (vrc=VERR_VMX_MSR_ALL_VMX_DISABLED" in log
    assert json.loads((fake_vbox.state_dir / "state.json").read_text())  # state still valid
    assert fake_vbox.vm("t")["state"] == "poweroff"


def test_media_are_real_files(fake_vbox: FakeVBox, tmp_path: Path) -> None:
    raw = tmp_path / "disk.raw"
    with open(raw, "wb") as f:
        f.write(b"\xeb\x63\x90" + b"\0" * 507 + b"\x55\xaa")
        f.truncate(64 << 20)
    vdi = tmp_path / "disk.vdi"
    r = fake_vbox.run("convertfromraw", str(raw), str(vdi), "--format", "VDI")
    assert r.returncode == 0, r.stderr
    assert f'Converting from raw image file="{raw}" to file="{vdi}"...' in r.stderr
    assert "Creating dynamic image with size 67108864 bytes (64MB)..." in r.stderr
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(vdi)], capture_output=True, check=True).stdout)
    assert info["format"] == "vdi" and info["virtual-size"] == 64 << 20
    assert subprocess.run(["qemu-img", "compare", "-f", "raw", "-F", "vdi", str(raw), str(vdi)]).returncode == 0
    r = fake_vbox.run("convertfromraw", str(raw), str(vdi))
    assert r.returncode == 1 and "VERR_ALREADY_EXISTS" in r.stderr
    # stdin form: exactly <bytes> must arrive.
    r = fake_vbox.run("convertfromraw", "stdin", str(tmp_path / "s.vmdk"), "1048576", "--format", "VMDK", input=b"x" * 1000)
    assert r.returncode == 1 and b"VERR_EOF" in r.stderr
    # resize grows a VDI; shrinking and VMDK are refused like VirtualBox does.
    assert fake_vbox.run("modifymedium", "disk", str(vdi), "--resize", "200000").returncode == 0
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(vdi)], capture_output=True, check=True).stdout)
    assert info["virtual-size"] == 200000 << 20
    r = fake_vbox.run("modifymedium", "disk", str(vdi), "--resize", "10")
    assert r.returncode == 1 and "Progress state: VBOX_E_NOT_SUPPORTED" in r.stderr
    r = fake_vbox.run("clonemedium", "disk", str(vdi), str(tmp_path / "c.vmdk"), "--format", "VMDK")
    assert r.returncode == 0 and r.stdout.startswith("Clone medium created in format 'VMDK'. UUID: ")
    r = fake_vbox.run("modifymedium", "disk", str(tmp_path / "c.vmdk"), "--resize", "300000")
    assert "is not yet supported for medium" in r.stderr
    r = fake_vbox.run("storageattach", "nope", "--storagectl", "x", "--medium", str(raw))
    assert "Could not find a registered machine named 'nope'" in r.stderr
    _vm(fake_vbox)
    fake_vbox.run("storagectl", "t", "--name", "IDE", "--add", "ide")
    r = fake_vbox.run("storageattach", "t", "--storagectl", "IDE", "--port", "0", "--device", "0", "--type", "hdd",
                      "--medium", str(tmp_path / "missing.vdi"))  # fmt: skip
    assert r.returncode == 1 and "(VERR_FILE_NOT_FOUND)" in r.stderr and "VBOX_E_FILE_ERROR" in r.stderr
    r = fake_vbox.run("storageattach", "t", "--storagectl", "IDE", "--port", "2", "--device", "0", "--type", "hdd",
                      "--medium", str(vdi))  # fmt: skip
    assert r.returncode == 1 and "out of range" in r.stderr  # IDE has 2 ports × 2 devices


@pytest.mark.parametrize("acpi", ["immediate", "1.5", "ignore"])
def test_acpi_power_button(fake_vbox: FakeVBox, acpi: str) -> None:
    _vm(fake_vbox)
    fake_vbox.configure(acpi=acpi)
    fake_vbox.run("startvm", "t", "--type", "headless")
    assert fake_vbox.run("controlvm", "t", "acpipowerbutton").returncode == 0

    def state() -> str:
        out = fake_vbox.run("showvminfo", "t", "--machinereadable").stdout
        return next(line for line in out.splitlines() if line.startswith("VMState="))

    if acpi == "immediate":
        assert state() == 'VMState="poweroff"'
    else:
        assert state() == 'VMState="running"'
        import time

        time.sleep(1.6)
        assert state() == ('VMState="poweroff"' if acpi != "ignore" else 'VMState="running"')
