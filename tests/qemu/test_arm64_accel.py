"""The accelerator and architecture choice (machine/drivers/accel.py) with the host simulated:
macOS on Apple silicon and Intel, Windows with and without WHPX, Linux with and without a usable
/dev/kvm, arm64 Linux. No VM is started."""

from __future__ import annotations

from pathlib import Path

import pytest

from skiffbox.machine.drivers import accel
from skiffbox.machine.drivers.accel import AccelError, plan

FW = Path("/fw/edk2-aarch64-code.fd")


def _plan(os_name: str, machine: str, usable: set[str], **kw):
    asked: list[str] = []

    def probe(a: str) -> bool:
        asked.append(a)
        return a in usable

    p = plan(os_name=os_name, host_machine=machine, usable=probe, firmware=lambda arch: FW, **kw)
    return p, asked


def test_apple_silicon_runs_a_native_arm64_guest_with_hvf() -> None:
    p, asked = _plan("darwin", "arm64", {"hvf"}, qemu_version=(9, 1, 0))
    assert (p.arch, p.binary, p.accel, p.cpu) == ("aarch64", "qemu-system-aarch64", "hvf", "host")
    assert p.machine == "virt,highmem=on" and p.firmware == FW and not p.warnings and p.max_memory_mib == 0
    assert asked == ["hvf"] and "HVF" in p.describe()


def test_apple_silicon_with_old_qemu_gets_highmem_off_and_a_memory_cap() -> None:
    p, _ = _plan("darwin", "arm64", {"hvf"}, qemu_version=(6, 2, 0))
    assert p.machine == "virt,highmem=off" and p.max_memory_mib == 3072
    assert any("highmem=off" in w for w in p.warnings)


def test_apple_silicon_x86_guest_is_tcg_with_a_warning() -> None:
    p, asked = _plan("darwin", "arm64", {"hvf"}, want_arch="x86_64")
    assert (p.binary, p.accel, p.machine, p.cpu, p.firmware) == ("qemu-system-x86_64", "tcg", "q35", "max", None)
    assert asked == []  # HVF cannot run a foreign guest: not even probed
    assert p.warnings and "slow" in p.warnings[0] and "not this aarch64 host" in p.warnings[0]
    with pytest.raises(AccelError, match="cannot run an x86_64 guest"):
        _plan("darwin", "arm64", {"hvf"}, want_arch="x86_64", want_accel="hvf")


def test_intel_mac_uses_hvf_for_x86_64_and_tcg_without_it() -> None:
    p, _ = _plan("darwin", "x86_64", {"hvf"})
    assert (p.arch, p.accel, p.machine, p.cpu) == ("x86_64", "hvf", "q35", "host")
    p, _ = _plan("darwin", "x86_64", set())
    assert p.accel == "tcg" and "HVF is not usable" in p.warnings[0]


def test_windows_with_and_without_whpx() -> None:
    p, asked = _plan("win32", "AMD64", {"whpx"})
    assert (p.arch, p.accel, p.cpu, p.accel_arg) == ("x86_64", "whpx", "max", "whpx,kernel-irqchip=off")
    assert asked == ["whpx"] and not p.warnings
    p, _ = _plan("win32", "AMD64", set())
    assert p.accel == "tcg" and p.accel_arg == "tcg" and "WHPX is not usable" in p.warnings[0]
    with pytest.raises(AccelError, match="kvm is not available on win32"):
        _plan("win32", "AMD64", {"whpx"}, want_accel="kvm")


def test_linux_with_and_without_usable_kvm() -> None:
    p, _ = _plan("linux", "x86_64", {"kvm"})
    assert (p.accel, p.cpu, p.machine) == ("kvm", "host", "q35") and not p.warnings
    p, _ = _plan("linux", "x86_64", set())  # e.g. /dev/kvm that cannot run a stock kernel (kvm-pvm)
    assert (p.accel, p.cpu) == ("tcg", "max") and "KVM is not usable" in p.warnings[0]
    p, _ = _plan("linux", "aarch64", {"kvm"})  # arm64 server: GICv3-only hosts need gic-version=host
    assert (p.arch, p.accel, p.cpu, p.machine) == ("aarch64", "kvm", "host", "virt,highmem=on,gic-version=host")


def test_arm64_guest_on_x86_linux_is_tcg_with_fast_pointer_auth() -> None:
    p, asked = _plan("linux", "x86_64", {"kvm"}, want_arch="arm64", qemu_version=(7, 2, 22))
    assert (p.arch, p.binary, p.accel, p.cpu) == ("aarch64", "qemu-system-aarch64", "tcg", "max,pauth-impdef=on")
    assert p.firmware == FW and asked == []
    p, _ = _plan("linux", "x86_64", set(), want_arch="aarch64", qemu_version=(6, 2))
    assert p.cpu == "max"  # QEMU before 7.1 has no pauth-impdef


def test_forced_tcg_warns_and_bad_names_are_refused() -> None:
    p, asked = _plan("linux", "x86_64", {"kvm"}, want_accel="tcg")
    assert p.accel == "tcg" and asked == [] and p.warnings
    with pytest.raises(AccelError, match="--qemu-accel"):
        _plan("linux", "x86_64", set(), want_accel="xen")
    with pytest.raises(AccelError, match="unsupported architecture 'riscv64'"):
        _plan("linux", "x86_64", set(), want_arch="riscv64")


def test_missing_aarch64_firmware_says_what_to_install() -> None:
    with pytest.raises(AccelError, match="qemu-efi-aarch64"):
        plan(os_name="linux", host_machine="x86_64", usable=lambda a: False, want_arch="aarch64",
             firmware=lambda arch: None)


def test_firmware_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SKIFF_QEMU_FIRMWARE", raising=False)
    brew = tmp_path / "opt/homebrew"
    (brew / "bin").mkdir(parents=True)
    (brew / "share/qemu").mkdir(parents=True)
    qemu = brew / "bin/qemu-system-aarch64"
    qemu.write_text("")
    code = brew / "share/qemu/edk2-aarch64-code.fd"
    code.write_bytes(b"\0")
    cands = accel.firmware_candidates("aarch64", str(qemu))
    assert cands[0] == code and Path("/usr/share/AAVMF/AAVMF_CODE.fd") in cands
    assert accel.find_firmware("aarch64", str(qemu)) == code
    assert accel.find_firmware("aarch64", candidates=[tmp_path / "nope"]) is None
    assert accel.firmware_candidates("x86_64", str(qemu)) == []


def test_this_hosts_qemu_facts() -> None:
    """The probes against the real QEMU here (x86_64 host: aarch64 QEMU offers tcg only)."""
    import shutil

    path = shutil.which("qemu-system-aarch64")
    if path is None:
        pytest.skip("qemu-system-arm is not installed")
    assert accel.accel_listed(path, "tcg") and not accel.accel_listed(path, "whpx")
    assert accel.qemu_version(path) >= (7, 0)
    assert accel.find_firmware("aarch64", path) is not None


def test_driver_arm64_command_line_and_config(tmp_path: Path) -> None:
    """--qemu-arch aarch64 on this x86_64 host: qemu-system-aarch64, virt, UEFI pflash, TCG; the
    choice is saved for `inspect`."""
    import json
    import shutil

    from skiffbox.machine.drivers.base import DriverError, driver_class
    from skiffbox.machine.drivers.qemu import QemuDriver

    if shutil.which("qemu-system-aarch64") is None or accel.find_firmware("aarch64") is None:
        pytest.skip("qemu-system-arm / qemu-efi-aarch64 not installed")
    d = driver_class("qemu")("m1", tmp_path / "m1")
    assert isinstance(d, QemuDriver)
    d.set_config_from_flags({"qemu_arch": "arm64", "qemu_share_folder": "none"})
    d.pre_create_check()
    assert d.arch == "aarch64"
    d.ssh_port, d.engine_host_port = 40022, 40376
    d.image = {"Disk": "/img/disk.qcow2", "Format": "qcow2", "VirtualSize": 1, "Arch": "aarch64"}
    cmd = d.qemu_command()
    assert cmd[0] == "qemu-system-aarch64" and cmd[cmd.index("-machine") + 1] == "virt,highmem=on"
    assert cmd[cmd.index("-accel") + 1] == "tcg" and cmd[cmd.index("-cpu") + 1].startswith("max")
    assert any(a.startswith("if=pflash,format=raw,unit=0,readonly=on,file=") for a in cmd)
    assert "-kernel" not in cmd and "virtio-blk-pci,drive=root,bootindex=0" in cmd
    with pytest.raises(DriverError, match="cannot run an aarch64 guest"):
        d.qemu_command("kvm")
    d.resolved_accel, d.accel_info = "tcg", d.qemu_plan().describe()
    again = QemuDriver("m1", d.machine_dir)
    again.load_config(json.loads(json.dumps(d.to_config())))
    assert (again.arch, again.resolved_accel) == ("aarch64", "tcg") and "TCG" in again.accel_info
    old = QemuDriver("m0", tmp_path / "m0")
    old.load_config({"Accel": "auto"})  # saved before arm64 support: an x86_64 machine
    assert old.guest_arch() == "x86_64"
    with pytest.raises(DriverError, match="--qemu-arch"):
        bad = driver_class("qemu")("m2", tmp_path / "m2")
        bad.set_config_from_flags({"qemu_arch": "sparc"})
        bad.pre_create_check()


def test_cloud_image_url_per_architecture() -> None:
    from skiffbox.machine.image.cache import DEBIAN_CLOUD_URL, debian_cloud_url
    from skiffbox.machine.image.errors import ImageError

    assert debian_cloud_url("x86_64") == DEBIAN_CLOUD_URL
    assert DEBIAN_CLOUD_URL.endswith("/bookworm/latest/debian-12-genericcloud-amd64.qcow2")
    assert debian_cloud_url("aarch64").endswith("/bookworm/latest/debian-12-genericcloud-arm64.qcow2")
    assert debian_cloud_url("arm64") == debian_cloud_url("aarch64")
    with pytest.raises(ImageError, match="riscv64"):
        debian_cloud_url("riscv64")


def test_debian_spec_fetches_the_guest_arch_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """resolve('debian', arch=aarch64) asks the cache for the arm64 URL (no network: fetch is caught)."""
    from skiffbox.machine import image
    from skiffbox.machine.image.cache import ImageCache

    asked: list[str] = []

    def fake_fetch(self, url, **kw):  # type: ignore[no-untyped-def]
        asked.append(url)
        raise image.ImageError("offline")

    monkeypatch.setattr(ImageCache, "fetch", fake_fetch)
    for arch in ("aarch64", "x86_64"):
        with pytest.raises(image.ImageError):
            image.resolve("debian", tmp_path, arch=arch)
    assert [u.rsplit("-", 1)[1] for u in asked] == ["arm64.qcow2", "amd64.qcow2"]


def test_image_recipes_are_keyed_by_architecture(tmp_path: Path) -> None:
    from skiffbox.machine.image.build import built_image, recipe, recipe_key, target

    x86, arm = built_image(tmp_path), built_image(tmp_path, "aarch64")
    assert x86.dir != arm.dir and "arm64" in arm.dir.name and recipe_key("x86_64") != recipe_key("aarch64")
    r = recipe("aarch64")
    assert "linux-image-arm64" in r["packages"] and "linux-image-amd64" not in r["packages"]
    assert "console=ttyAMA0" in r["cmdline"] and "syslinux" not in r and r["arch"] == "arm64"
    assert "ata_piix" not in r["files"]["etc/initramfs-tools/modules"]
    assert target("arm64") == target("aarch64")


def test_binfmt_status_reads_the_handler(tmp_path: Path) -> None:
    from skiffbox.machine.image.build import binfmt_status

    assert "not mounted" in binfmt_status("aarch64", tmp_path)
    (tmp_path / "register").write_text("")
    assert "no binfmt_misc handler" in binfmt_status("aarch64", tmp_path)
    h = tmp_path / "qemu-aarch64"
    h.write_text("enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: P\n")
    assert "F flag" in binfmt_status("aarch64", tmp_path)
    h.write_text("enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: PF\n")
    assert binfmt_status("aarch64", tmp_path) == ""
    h.write_text("disabled\nflags: PF\n")
    assert "disabled" in binfmt_status("aarch64", tmp_path)
