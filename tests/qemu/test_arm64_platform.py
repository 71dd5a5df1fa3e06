"""Foreign-platform containers: a clear error unless binfmt emulation is installed (the engine
option `emulation=true` makes provisioning install qemu-user-static in the guest)."""

from __future__ import annotations

from pathlib import Path

import pytest

from skiffbox.guest.errors import InvalidParameter
from skiffbox.guest.images.platforms import Platform, check_runnable, emulated, normalize, parse


ARM64 = Platform("linux", "arm64", "v8")
AMD64 = Platform("linux", "amd64")


def test_native_and_compatible_platforms_run(tmp_path: Path) -> None:
    check_runnable(normalize("linux", "aarch64"), ARM64, tmp_path)
    check_runnable(Platform("linux", "arm", "v7"), ARM64, tmp_path)  # arm64 runs 32-bit arm
    check_runnable(Platform("linux", "386"), AMD64, tmp_path)
    check_runnable(Platform("linux", ""), ARM64, tmp_path)  # an image that does not say its arch
    check_runnable(Platform("linux", "amd64", "v3"), AMD64, tmp_path)


def test_foreign_platform_without_emulation_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameter) as e:
        check_runnable(parse("linux/amd64") or AMD64, ARM64, tmp_path)
    msg = str(e.value)
    assert "image platform linux/amd64 cannot run on this linux/arm64/v8 engine" in msg
    assert "--engine-opt emulation=true" in msg and "--platform linux/arm64" in msg
    with pytest.raises(InvalidParameter, match="linux/arm64/v8 cannot run on this linux/amd64"):
        check_runnable(ARM64, AMD64, tmp_path)
    with pytest.raises(InvalidParameter, match="operating system 'windows'"):
        check_runnable(Platform("windows", "amd64"), AMD64, tmp_path)


def test_a_registered_qemu_handler_allows_it(tmp_path: Path) -> None:
    handler = tmp_path / "qemu-x86_64"
    handler.write_text("disabled\ninterpreter /usr/libexec/qemu-binfmt/x86_64-binfmt-P\nflags: PF\n")
    assert not emulated("amd64", tmp_path)
    with pytest.raises(InvalidParameter):
        check_runnable(AMD64, ARM64, tmp_path)
    handler.write_text("enabled\ninterpreter /usr/libexec/qemu-binfmt/x86_64-binfmt-P\nflags: PF\n")
    assert emulated("amd64", tmp_path)
    check_runnable(AMD64, ARM64, tmp_path)
    assert not emulated("mips", tmp_path)


def test_emulation_engine_option_installs_qemu_user_static() -> None:
    from skiffbox.machine.provision import EMULATION_PACKAGES, GUEST_PACKAGES, INSTALL_SH, _fill, engine_config

    cfg = engine_config({"ArbitraryFlags": ["emulation=true"]}, "qemu")
    assert cfg["emulation"] is True
    script = _fill(INSTALL_SH, GUEST_PACKAGES + EMULATION_PACKAGES)
    assert 'PKGS="' + " ".join(GUEST_PACKAGES) + " qemu-user-static binfmt-support" + '"' in script
    assert "qemu-user-static" not in _fill(INSTALL_SH)
