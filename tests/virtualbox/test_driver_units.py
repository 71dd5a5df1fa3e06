"""The driver's pure helpers, on real inputs where this machine has them."""

from __future__ import annotations

import ipaddress
import re
import subprocess
from pathlib import Path

import pytest

from skiffbox.machine.drivers.base import DriverError
from skiffbox.machine.drivers.virtualbox import (
    HYPERV_FIX,
    default_share,
    dhcp_plan,
    explain_start_failure,
    host_virtualization_problem,
    image_kind,
    ip_for_mac,
    parse_share,
    qcow2_problem,
)


def test_ip_for_mac_on_this_hosts_real_ip_output() -> None:
    link = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    addr = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True, check=True).stdout
    pairs = re.findall(r"^\d+:\s+([^:@\s]+)[@:].*link/ether\s+([0-9a-f:]{17})", link, re.M)
    with_ip = {m.group(1): m.group(2) for m in re.finditer(r"^\d+:\s+(\S+)\s+inet\s+([0-9.]+)/", addr, re.M)}
    candidates = [(name, mac) for name, mac in pairs if name in with_ip]
    if not candidates:
        pytest.skip("no Ethernet interface with an IPv4 address on this machine")
    name, mac = candidates[0]
    assert ip_for_mac(link, addr, mac) == with_ip[name]
    assert ip_for_mac(link, addr, mac.upper().replace(":", "")) == with_ip[name]  # VirtualBox's spelling
    assert ip_for_mac(link, addr, "080027000000") is None


def test_ip_for_mac_guest_shapes() -> None:
    link = (
        "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\\"
        "    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00\n"
        "2: enp0s3: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc fq_codel state UP mode DEFAULT group default qlen 1000\\"
        "    link/ether 08:00:27:95:9e:2a brd ff:ff:ff:ff:ff:ff\n"
        "3: enp0s8: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc fq_codel state UP mode DEFAULT group default qlen 1000\\"
        "    link/ether 08:00:27:f2:3b:b8 brd ff:ff:ff:ff:ff:ff\n"
    )
    addr = (
        "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever\n"
        "2: enp0s3    inet 10.0.2.15/24 metric 1024 brd 10.0.2.255 scope global dynamic enp0s3\\       valid_lft 86000sec\n"
        "3: enp0s8    inet 192.168.56.101/24 metric 1024 brd 192.168.56.255 scope global dynamic enp0s8\\  valid_lft 500sec\n"
    )
    assert ip_for_mac(link, addr, "080027F23BB8") == "192.168.56.101"
    assert ip_for_mac(link, addr, "080027959E2A") == "10.0.2.15"


def test_dhcp_plan() -> None:
    p = dhcp_plan(ipaddress.IPv4Interface("192.168.56.1/24"))
    assert (p.ip, p.netmask, p.lower_ip, p.upper_ip, p.enabled) == (
        "192.168.56.100", "255.255.255.0", "192.168.56.101", "192.168.56.254", True)  # fmt: skip
    p = dhcp_plan(ipaddress.IPv4Interface("192.168.56.150/24"))  # the host inside the usual range
    assert (p.lower_ip, p.upper_ip) == ("192.168.56.101", "192.168.56.149")
    p = dhcp_plan(ipaddress.IPv4Interface("192.168.60.1/26"))
    net = ipaddress.ip_network("192.168.60.0/26")
    assert all(ipaddress.ip_address(a) in net for a in (p.ip, p.lower_ip, p.upper_ip))
    assert p.ip != "192.168.60.1" and ipaddress.ip_address(p.lower_ip) > ipaddress.ip_address("192.168.60.1")
    with pytest.raises(DriverError, match="too small"):
        dhcp_plan(ipaddress.IPv4Interface("192.168.56.1/30"))


def test_shares() -> None:
    assert default_share("darwin", {}) == ("/Users", "Users", "/Users")
    assert default_share("win32", {"SYSTEMDRIVE": "D:"}) == ("D:\\Users", "d/Users", "/d/Users")
    assert default_share("linux", {"HOME": "/home/alice"}) == ("/home/alice", "hosthome", "/home/alice")
    assert parse_share("/Users:Users") == ("/Users", "Users", "/Users")
    assert parse_share("C:\\Users:c/Users") == ("C:\\Users", "c/Users", "/c/Users")
    assert parse_share("D:\\work") == ("D:\\work", "work", "/work")
    assert parse_share("/srv/code") == ("/srv/code", "code", "/code")
    with pytest.raises(DriverError):
        parse_share("/srv:bad name")


def test_host_virtualization_checks(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor : 0\nflags : fpu vme sse2 vmx ept\n")
    assert host_virtualization_problem("linux", cpuinfo=cpuinfo) is None
    cpuinfo.write_text("processor : 0\nflags : fpu vme sse2\n")
    msg = host_virtualization_problem("linux", cpuinfo=cpuinfo)
    assert msg and "no vmx or svm" in msg and "BIOS/UEFI" in msg and "--virtualbox-no-vtx-check" in msg
    # This machine, for real: a VM without nested virtualisation has neither flag.
    real = Path("/proc/cpuinfo").read_text()
    flags = set(re.findall(r"^flags\s*:(.*)$", real, re.M)[0].split()) if "flags" in real else set()
    assert (host_virtualization_problem("linux") is None) == bool(flags & {"vmx", "svm"})
    # macOS: Apple silicon cannot run our x86_64 image; Intel Macs need VMX.
    assert host_virtualization_problem("darwin", machine="arm64") is None  # 7.1+ runs arm64 guests: see test_arm64.py
    assert host_virtualization_problem("darwin", machine="x86_64", run=lambda c: "FPU VME VMX SSE") is None
    assert "VT-x" in (host_virtualization_problem("darwin", machine="x86_64", run=lambda c: "FPU VME SSE") or "")

    # Windows: with Hyper-V active the firmware query reads False (tests/virtualbox/test_hyperv.py decides
    # that case from the VirtualBox version); without it, the firmware switch.
    def win(hv: str, fw: str):
        return lambda cmd: hv if "HypervisorPresent" in cmd[-1] else fw

    assert host_virtualization_problem("win32", run=win("True\r\n", "False")) is None
    assert "HypervisorPlatform" in HYPERV_FIX
    assert "firmware" in (host_virtualization_problem("win32", run=win("False", "False\r\n")) or "")
    assert host_virtualization_problem("win32", run=win("False", "True")) is None


def test_explain_start_failure() -> None:
    assert "BIOS/UEFI" in (explain_start_failure("VT-x is disabled in the BIOS for all CPU modes (VERR_VMX_MSR_ALL_VMX_DISABLED)") or "")
    assert explain_start_failure("Not in a hypervisor partition (HVP=0) (VERR_NEM_NOT_AVAILABLE).") == HYPERV_FIX
    assert "vboxconfig" in (explain_start_failure("Kernel driver not installed (rc=-1908) VERR_VM_DRIVER_NOT_INSTALLED") or "")
    assert explain_start_failure("something else entirely") is None


def test_image_kinds(tmp_path: Path) -> None:
    raw = tmp_path / "d.img"
    raw.write_bytes(b"\0" * 510 + b"\x55\xaa" + b"\0" * (1 << 20))
    assert image_kind(raw) == "raw"
    for fmt, kind in (("qcow2", "qcow2"), ("vdi", "vdi"), ("vmdk", "vmdk"), ("vpc", "vhd")):
        out = tmp_path / f"d.{fmt}"
        subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", fmt, str(raw), str(out)], check=True)
        assert image_kind(out) == kind, fmt
    assert qcow2_problem(tmp_path / "d.qcow2") is None
    # VirtualBox's QCOW backend refuses incompatible features (here: extended L2 entries, bit 4).
    ext = tmp_path / "ext.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", "extended_l2=on", str(ext), "64M"], check=True)
    assert "incompatible-feature bits 0x10" in (qcow2_problem(ext) or "")
    iso = tmp_path / "s.iso"
    data = bytearray(0x9000)
    data[0x8001:0x8006] = b"CD001"
    iso.write_bytes(bytes(data))
    assert image_kind(iso) == "iso"
