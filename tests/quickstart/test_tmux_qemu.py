"""The quickstart as a person uses it: a terminal (tmux), `machine quickstart`, then docker and skiff in
the shell it opens. From nothing (the platform's default driver, qemu here, creates `default`), then
again with the machine running (fast path), then after `machine stop` (the start path). One VM.

The registry with the test image runs on the host's 127.0.0.1; the guest reaches it as 10.0.2.2.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.qemu.hostreg import host_registry
from tests.quickstart.conftest import MACHINE, clean_env

# a VM create under TCG on a loaded 2-core machine takes well over the suite-wide 900 s
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2700)]

PROXY = "http://10.0.2.2:3128"



@pytest.fixture(scope="module")
def world(image_cache: Path, built_image, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    from skiffbox.machine.drivers.qemu import free_port
    from tests.engine import harness

    for tool in ("docker", "docker-registry", "skopeo"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is needed")
    work = tmp_path_factory.mktemp("qs")
    home = work / "home"
    home.mkdir()
    # Debian's /etc/profile resets PATH in a login shell: put the install on it the way a user's profile does
    (home / ".bash_profile").write_text(f'export PATH="{Path(MACHINE).parent}:$PATH"\n')
    port = free_port()
    reg = host_registry(work / "reg", port)
    arc = harness.write_docker_archive(harness.ImageSpec([harness.busybox_rootfs_layer()]),
                                       work / "busybox.tar", "test/busybox:latest")
    reg.push_archive(arc, "test/busybox:latest")
    # No MACHINE_DRIVER: the platform's default (qemu on Linux) must be picked. The driver's own
    # variables choose the offline-built image and no shared folder, as a user could.
    env = clean_env(home, work / "store", SKIFF_IMAGE_CACHE=str(image_cache), QEMU_BOOT_IMAGE="build",
                    QEMU_SHARE_FOLDER="none", HTTP_PROXY=PROXY, NO_PROXY="10.0.2.2")
    env.pop("MACHINE_DRIVER", None)
    w = {"work": work, "home": home, "env": env, "registry": f"10.0.2.2:{port}", "store": work / "store"}
    try:
        yield w
    finally:
        subprocess.run([MACHINE, "rm", "-f", "-y", "default"], env=env, capture_output=True, timeout=300)
        reg.stop()


def _quickstart(tmux_factory, world: dict, *extra: str):
    return tmux_factory([MACHINE, "quickstart", "--engine-insecure-registry", world["registry"], *extra],
                        world["env"], world["home"])


def _in_shell(t, command: str, marker: str, timeout: float) -> str:
    """Type a command; the marker's arithmetic only shows up once the shell has run it."""
    n = abs(hash(marker)) % 1000
    t.type(f"{command}; rc=$?; echo \"{marker}-$(({n}+1))-rc=$rc\"")
    screen = t.wait_for(f"{marker}-{n + 1}-rc=", timeout)
    return screen


def _rc(screen: str, marker: str) -> int:
    m = re.findall(rf"{marker}-\d+-rc=(\d+)", screen)
    return int(m[-1])


def test_from_nothing(tmux_factory, world: dict) -> None:
    t0 = time.monotonic()
    t = _quickstart(tmux_factory, world)
    screen = t.wait_for("docker is configured to use the default machine", 1500)
    print(f"quickstart from nothing: {time.monotonic() - t0:.0f} s")
    assert 'Creating "default" with the qemu driver' in screen
    cfg = json.loads((world["store"] / "machines" / "default" / "config.json").read_text())
    assert cfg["DriverName"] == "qemu"
    assert cfg["Driver"]["Memory"] == 2048 and cfg["Driver"]["DiskSize"] == 204800
    assert f"HTTP_PROXY={PROXY}" in cfg["HostOptions"]["EngineOptions"]["Env"]

    s = _in_shell(t, "shopt -q login_shell && echo LOGIN-yes; echo \"host=$DOCKER_HOST np=$NO_PROXY\"", "M1", 30)
    assert "LOGIN-yes" in s
    assert re.search(r"host=tcp://127\.0\.0\.1:\d+ np=10\.0\.2\.2,127\.0\.0\.1", s), s
    s = _in_shell(t, "docker version --format 'server={{.Server.Version}}'", "M2", 120)
    assert _rc(s, "M2") == 0 and "server=" in s
    s = _in_shell(t, "docker info --format 'proxy={{.HTTPProxy}}'", "M3", 120)
    assert f"proxy={PROXY}" in s  # the user's proxy reached the engine's config
    s = _in_shell(t, "skiff version", "M4", 120)
    assert _rc(s, "M4") == 0, s
    img = f"{world['registry']}/test/busybox"
    s = _in_shell(t, f"docker run --rm {img} echo hi-from-docker", "M5", 600)
    assert _rc(s, "M5") == 0 and "\nhi-from-docker" in s, s
    s = _in_shell(t, f"skiff run --rm {img} echo hi-from-skiff", "M6", 600)
    assert _rc(s, "M6") == 0 and "\nhi-from-skiff" in s, s
    t.type("exit")


def test_fast_path_when_running(tmux_factory, world: dict) -> None:
    t0 = time.monotonic()
    t = _quickstart(tmux_factory, world)
    screen = t.wait_for("docker is configured to use the default machine", 300)
    took = time.monotonic() - t0
    print(f"quickstart, machine running: {took:.1f} s")
    assert 'Creating "default"' not in screen and 'Starting "default"' not in screen
    assert "Provisioning" not in screen and "re-issuing" not in screen
    s = _in_shell(t, f"docker run --rm {world['registry']}/test/busybox echo hi-again", "F1", 300)
    assert _rc(s, "F1") == 0 and "\nhi-again" in s, s
    t.type("exit")


def test_start_path_when_stopped(tmux_factory, world: dict) -> None:
    """Stopped machine: the quickstart starts it (and re-checks certificates) before the shell."""
    subprocess.run([MACHINE, "stop", "default"], env=world["env"], check=True, capture_output=True, timeout=300)
    t = _quickstart(tmux_factory, world)
    screen = t.wait_for("docker is configured to use the default machine", 900)
    assert "==> Starting the machine" in screen and 'Starting "default"' in screen
    s = _in_shell(t, "docker version --format 'server={{.Server.Version}}'", "S1", 120)
    assert _rc(s, "S1") == 0, s
    t.type("exit")
