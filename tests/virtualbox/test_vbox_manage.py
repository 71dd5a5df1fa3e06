"""The VBoxManage runner and parsers: discovery, version, retries, error detection, output shapes."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from skiffbox.machine.drivers.base import DriverError
from skiffbox.machine.drivers.vbox_manage import (
    CliBackend,
    DhcpServer,
    HostOnlyIf,
    VBoxManage,
    VBoxManageError,
    VBoxManageMissing,
    allowed_hostonly_ranges,
    candidate_paths,
    find_vboxmanage,
    hostonly_ip_allowed,
    netmask_ok,
    networks_conf_help,
    parse_blocks,
    parse_forwardings,
    parse_list_vms,
    parse_machinereadable,
    parse_version,
)
from tests.virtualbox.conftest import FAKE_BIN, FakeVBox


# ---- parsers on captured shapes (vboxmanage.md) --------------------------------------------------
def test_parse_version_shapes() -> None:
    assert parse_version("7.1.4r165100\n") == (7, 1, 4)
    assert parse_version("6.1.38_Ubuntur153438\n") == (6, 1, 38)
    assert parse_version("7.0.14_Debianr161095") == (7, 0, 14)
    warn = (
        "WARNING: The vboxdrv kernel module is not loaded. Either there is no module\n"
        "         available for the current kernel (6.1.0) or it failed to load.\n"
        "6.1.50r161033\n"
    )
    assert parse_version(warn) == (6, 1, 50)
    with pytest.raises(DriverError):
        parse_version("WARNING: something\n")


def test_parse_machinereadable_quoting() -> None:
    text = "\n".join(
        [
            'name="default"',
            "memory=2048",
            'CfgFile="C:\\\\Users\\\\omkar\\\\.minikube\\\\machines\\\\minikube\\\\minikube.vbox"',
            'SharedFolderPathMachineMapping1="\\\\\\\\?\\\\c:\\\\Users"',
            '"SATA-0-0"="/Users/u/.docker/machine/machines/default/boot2docker.iso"',
            '"SATA-ImageUUID-0-0"="5a0b9b4f-0000"',
            'description="say \\"hi\\""',
            'VideoMode="1024,768,32"@0,0 1',
            "VRDEClients==0",
            'VMState="aborted-saved"',
            "",
            "garbage line without equals",
        ]
    )
    info = parse_machinereadable(text)
    assert info["name"] == "default"
    assert info["memory"] == "2048"
    assert info["CfgFile"] == r"C:\Users\omkar\.minikube\machines\minikube\minikube.vbox"
    assert info["SharedFolderPathMachineMapping1"] == r"\\?\c:\Users"
    assert info["SATA-0-0"].endswith("boot2docker.iso")
    assert info["SATA-ImageUUID-0-0"] == "5a0b9b4f-0000"
    assert info["description"] == 'say "hi"'
    assert info["VideoMode"] == "1024,768,32"
    assert info["VRDEClients"] == "=0"
    assert info["VMState"] == "aborted-saved"


def test_parse_forwardings_belong_to_their_nic() -> None:
    text = "\n".join(
        [
            'natnet1="nat"', 'macaddress1="080027E1A2B3"', 'nic1="nat"', 'tcpWndRcv="64"',
            'Forwarding(0)="ssh,tcp,127.0.0.1,52765,,22"',
            'Forwarding(1)="engine,tcp,127.0.0.1,52766,,2376"',
            'hostonlyadapter2="vboxnet0"', 'macaddress2="080027C4D5E6"', 'nic2="hostonly"',
            'natnet3="nat"', 'macaddress3="080027000003"', 'nic3="nat"',
            'Forwarding(0)="other,tcp,,2222,,22"',
        ]
    )  # fmt: skip
    rules1 = parse_forwardings(text, 1)
    assert set(rules1) == {"ssh", "engine"}
    assert rules1["ssh"].host_port == 52765 and rules1["ssh"].guest_port == 22
    assert rules1["engine"].host_ip == "127.0.0.1" and rules1["engine"].guest_ip == ""
    assert rules1["engine"].spec() == "engine,tcp,127.0.0.1,52766,,2376"
    assert set(parse_forwardings(text, 3)) == {"other"}
    assert parse_forwardings(text, 2) == {}


def test_parse_blocks_hostonlyifs_hostonlynets_dhcpservers() -> None:
    ifs = (
        "Name:            vboxnet0\nGUID:            786f6276-656e-4074-8000-0a0027000000\n"
        "DHCP:            Disabled\nIPAddress:       192.168.56.1\nNetworkMask:     255.255.255.0\n"
        "IPV6Address:     \nIPV6NetworkMaskPrefixLength: 64\nHardwareAddress: 0a:00:27:00:00:00\n"
        "MediumType:      Ethernet\nWireless:        No\nStatus:          Up\n"
        "VBoxNetworkName: HostInterfaceNetworking-vboxnet0\n\n"
        "Name:            VirtualBox Host-Only Ethernet Adapter #2\nGUID:            x\n"
        "DHCP:            Enabled\nIPAddress:       192.168.57.1\nNetworkMask:     0f000000\n\n"
    )
    parsed = [HostOnlyIf.from_block(b) for b in parse_blocks(ifs, "Name")]
    assert [h.name for h in parsed] == ["vboxnet0", "VirtualBox Host-Only Ethernet Adapter #2"]
    assert parsed[0].ip == "192.168.56.1" and not parsed[0].dhcp
    assert parsed[0].network_name == "HostInterfaceNetworking-vboxnet0"
    assert parsed[1].network_name == "HostInterfaceNetworking-VirtualBox Host-Only Ethernet Adapter #2"
    assert netmask_ok(parsed[1].netmask, "255.255.255.0")  # docker-machine's "buggy netmask"
    assert not netmask_ok("255.255.0.0", "255.255.255.0")

    nets = (
        "Name:            vagrantnet-vbox1\nGUID:            a1b2\n\nState:           Enabled\n"
        "NetworkMask:     255.255.255.0\nLowerIP:         192.168.56.1\nUpperIP:         192.168.56.254\n"
        "VBoxNetworkName: hostonly-vagrantnet-vbox1\n\n"
    )
    (b,) = parse_blocks(nets, "Name")
    assert b["State"] == "Enabled" and b["LowerIP"] == "192.168.56.1"

    dhcp61 = (
        "NetworkName:    HostInterfaceNetworking-vboxnet0\nDhcpd IP:       192.168.56.100\n"
        "LowerIPAddress: 192.168.56.101\nUpperIPAddress: 192.168.56.254\nNetworkMask:    255.255.255.0\n"
        "Enabled:        Yes\nGlobal Configuration:\n    minLeaseTime:     default\n"
        "    Forced options:   None\n        1/legacy: 255.255.255.0\nGroups:               None\n"
        "Individual Configs:   None\n\n"
    )
    dhcp60 = (
        "NetworkName:    HostInterfaceNetworking-vboxnet1\nIP:             192.168.99.6\n"
        "NetworkMask:    255.255.255.0\nlowerIPAddress: 192.168.99.100\nupperIPAddress: 192.168.99.254\n"
        "Enabled:        No\n\n"
    )
    srvs = [DhcpServer.from_block(b) for b in parse_blocks(dhcp61 + dhcp60, "NetworkName")]
    assert srvs[0] == DhcpServer("HostInterfaceNetworking-vboxnet0", "192.168.56.100", "255.255.255.0",
                                 "192.168.56.101", "192.168.56.254", True)  # fmt: skip
    assert srvs[1].ip == "192.168.99.6" and srvs[1].lower_ip == "192.168.99.100" and not srvs[1].enabled


def test_parse_list_vms() -> None:
    out = '"default" {0c9e1c3a-3b4c-4d2e-9a53-6d5c2f4b1a11}\n"<inaccessible>" {959ed640-39bd-4f79-a5d7-33dd9aeb1a6d}\n'
    assert parse_list_vms(out) == [
        ("default", "0c9e1c3a-3b4c-4d2e-9a53-6d5c2f4b1a11"),
        ("<inaccessible>", "959ed640-39bd-4f79-a5d7-33dd9aeb1a6d"),
    ]


# ---- discovery -------------------------------------------------------------------------------------
def _exe(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\necho 7.1.4r165100\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_find_on_path_first(tmp_path: Path) -> None:
    on_path = _exe(tmp_path / "bin" / "VBoxManage")
    other = _exe(tmp_path / "vbox" / "VBoxManage")
    env = {"PATH": str(on_path.parent), "VBOX_INSTALL_PATH": str(other.parent)}
    assert find_vboxmanage(env, "linux") == str(on_path)


def test_find_via_install_path_env(tmp_path: Path) -> None:
    exe = _exe(tmp_path / "Oracle" / "VirtualBox" / "VBoxManage")
    # The MSI's value ends with a separator; it must still resolve.
    env = {"PATH": str(tmp_path / "empty"), "VBOX_MSI_INSTALL_PATH": str(exe.parent) + os.sep}
    assert find_vboxmanage(env, "linux") == str(exe)


def test_find_missing_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(VBoxManageMissing, match="VBOX_INSTALL_PATH"):
        find_vboxmanage({"PATH": str(tmp_path)}, "linux", which=lambda n: None)


def test_candidate_paths_per_platform() -> None:
    win = candidate_paths(
        {"VBOX_INSTALL_PATH": r"D:\VBox\;E:\Old", "VBOX_MSI_INSTALL_PATH": "C:\\Program Files\\Oracle\\VirtualBox\\"},
        "win32",
    )
    assert win[0].startswith(r"D:\VBox") and win[0].endswith("VBoxManage.exe")
    assert win[1].startswith(r"E:\Old")
    assert any(p.endswith(r"Oracle\VirtualBox\VBoxManage.exe") for p in win)
    mac = candidate_paths({}, "darwin")
    assert mac[0] == "/Applications/VirtualBox.app/Contents/MacOS/VBoxManage"
    linux = candidate_paths({}, "linux")
    assert "/usr/bin/VBoxManage" in linux and any("/mnt/c/" in p for p in linux)


# ---- the runner against the stand-in ----------------------------------------------------------------
def test_version_and_min_version(fake_vbox: FakeVBox) -> None:
    vbm = VBoxManage()
    assert vbm.path == str(FAKE_BIN)
    assert vbm.version() == (7, 1, 4)
    fake_vbox.configure(version="6.1.50r161033")
    assert VBoxManage().version() == (6, 1, 50)


def test_error_parsing_vm_not_found(fake_vbox: FakeVBox) -> None:
    with pytest.raises(VBoxManageError) as ei:
        VBoxManage().run("showvminfo", "nope", "--machinereadable")
    e = ei.value
    assert e.returncode == 1
    assert e.vm_not_found
    assert e.code == "VBOX_E_OBJECT_NOT_FOUND" and e.hresult == 0x80BB0001
    assert e.message == "Could not find a registered machine named 'nope'"
    assert CliBackend().vm_info("nope") is None


def test_retries_object_not_ready(fake_vbox: FakeVBox) -> None:
    VBoxManage().run("createvm", "--name", "r", "--basefolder", str(fake_vbox.state_dir / "m"), "--register")
    fake_vbox.configure(not_ready={"showvminfo": 3})
    fake_vbox.clear_calls()
    t0 = time.monotonic()
    info = CliBackend(VBoxManage(retry_delay=0.05)).vm_info("r")
    assert info is not None and info["VMState"] == "poweroff"
    assert len(fake_vbox.calls()) == 4  # three transient failures, then success
    assert time.monotonic() - t0 >= 0.15
    # More failures than retries: the error surfaces, with its code.
    fake_vbox.configure(not_ready={"showvminfo": 10})
    with pytest.raises(VBoxManageError) as ei:
        VBoxManage(retries=2, retry_delay=0.01).run("showvminfo", "r", "--machinereadable")
    assert ei.value.not_ready and ei.value.code == "E_ACCESSDENIED"


def test_error_on_stderr_with_exit_zero_is_failure(fake_vbox: FakeVBox) -> None:
    """modifyvm --nic9 prints `error: Invalid NIC number 9` but exits 0 (vboxmanage.md §2.2)."""
    vbm = VBoxManage()
    vbm.run("createvm", "--name", "q", "--basefolder", str(fake_vbox.state_dir / "m"), "--register")
    raw = fake_vbox.run("modifyvm", "q", "--nic9", "nat")
    assert raw.returncode == 0 and "error: Invalid NIC number 9" in raw.stderr
    with pytest.raises(VBoxManageError) as ei:
        vbm.run("modifyvm", "q", "--nic9", "nat")
    assert ei.value.returncode == 0 and ei.value.message == "Invalid NIC number 9"


def test_warning_lines_on_stdout_are_dropped(fake_vbox: FakeVBox, tmp_path: Path) -> None:
    """The Linux wrapper prints a WARNING on stdout before real output when vboxdrv is missing."""
    wrapper = tmp_path / "wrap" / "VBoxManage"
    wrapper.parent.mkdir()
    wrapper.write_text(
        "#!/bin/sh\n"
        "echo 'WARNING: The vboxdrv kernel module is not loaded. Either there is no module'\n"
        "echo 'Warning: program compiled against libxml 212 using older 209'\n"
        f'exec "{FAKE_BIN}" "$@"\n'
    )
    wrapper.chmod(0o755)
    vbm = VBoxManage(str(wrapper))
    assert vbm.version() == (7, 1, 4)
    vbm.run("hostonlyif", "create")
    ifs = CliBackend(vbm).host_only_ifs()
    assert [h.name for h in ifs] == ["vboxnet0"]


def test_exit_126_means_broken_install(tmp_path: Path) -> None:
    exe = tmp_path / "VBoxManage"
    exe.write_text("#!/bin/sh\nexit 126\n")
    exe.chmod(0o755)
    with pytest.raises(VBoxManageMissing, match="damaged"):
        VBoxManage(str(exe)).run("--version")


def test_access_denied_is_recognised(fake_vbox: FakeVBox) -> None:
    b = CliBackend()
    name = b.create_host_only_if()
    with pytest.raises(VBoxManageError) as ei:
        b.config_host_only_if(name, "192.168.99.1", "255.255.255.0")
    assert ei.value.access_denied
    assert ei.value.message.startswith("Code E_ACCESSDENIED (0x80070005) - Access denied")
    b.config_host_only_if(name, "192.168.59.1", "255.255.255.0")  # inside 192.168.56.0/21
    fake_vbox.allow_networks("192.168.99.0/24")
    b.config_host_only_if(name, "192.168.99.1", "255.255.255.0")
    assert b.host_only_ifs()[0].ip == "192.168.99.1"


# ---- host-only policy (our copy of VirtualBox's networks.conf rule) ---------------------------------
def test_networks_conf_rules(tmp_path: Path) -> None:
    conf = tmp_path / "networks.conf"
    assert hostonly_ip_allowed("192.168.56.1", conf)
    assert hostonly_ip_allowed("192.168.63.254", conf)
    assert not hostonly_ip_allowed("192.168.64.1", conf)
    assert not hostonly_ip_allowed("192.168.99.1", conf)
    conf.write_text("# comment\n* 10.0.0.0/8 192.168.0.0/16\n* 2001::/64\n")
    assert [str(n) for n in allowed_hostonly_ranges(conf)] == ["10.0.0.0/8", "192.168.0.0/16", "2001::/64"]
    assert hostonly_ip_allowed("192.168.99.1", conf)
    assert not hostonly_ip_allowed("172.16.0.1", conf)
    msg = networks_conf_help("192.168.99.1", conf)
    assert "192.168.56.0/21" in msg and str(conf) in msg and "* 192.168.99.0/24" in msg
