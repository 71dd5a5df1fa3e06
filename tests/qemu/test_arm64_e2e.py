"""End to end on an arm64 guest (emulated here with TCG: this host is x86_64 without usable KVM):
`machine create -d qemu --qemu-arch aarch64 --qemu-boot-image build` -> `docker run --rm busybox
uname -m` prints aarch64 -> a foreign platform gives a clear error -> `machine rm`.

The arm64 image is cross-built by `machine image build --arch aarch64` (binfmt + qemu-user-static);
the container image is Debian's busybox-static for arm64, fetched with apt into a private apt state
(the host's apt configuration is not touched) and pushed with skopeo to a registry on the host.
"""

from __future__ import annotations

import io
import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from skiffbox.machine.drivers.qemu import free_port
from tests.qemu.hostreg import host_registry

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]
NAME = "arm64e2e"
MACHINE = str(Path(sys.executable).with_name("machine"))


def _apt(state: Path, *args: str) -> None:
    """apt-get for arm64 with its own lists and cache under `state` (same sources as the host)."""
    opts = ["-o", f"Dir::State::Lists={state / 'lists'}", "-o", f"Dir::Cache={state / 'cache'}",
            "-o", "APT::Architecture=arm64", "-o", "APT::Architectures=arm64", "-o", "Debug::NoLocking=1",
            "-o", f"Dir::State::status={state / 'status'}", "-qq"]
    (state / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (state / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    (state / "status").touch()
    subprocess.run(["apt-get", *opts, *args], check=True, capture_output=True, text=True, cwd=state)


def arm64_busybox(cache: Path) -> Path:
    """/bin/busybox of Debian's busybox-static:arm64 (downloaded once into the image cache)."""
    out = cache / "arm64-busybox" / "busybox"
    if out.is_file():
        return out
    state = cache / "arm64-busybox" / "apt"
    state.mkdir(parents=True, exist_ok=True)
    _apt(state, "update")
    _apt(state, "download", "busybox-static:arm64")
    deb = next(state.glob("busybox-static_*_arm64.deb"))
    unpacked = state / "x"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], check=True)
    shutil.copy(unpacked / "bin" / "busybox", out)
    shutil.rmtree(unpacked)
    return out


def busybox_layer(busybox: Path) -> bytes:
    from tests.engine.harness import _tar_add

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for d in ("bin", "etc", "tmp", "root", "dev", "proc", "sys"):
            _tar_add(tf, d, kind=tarfile.DIRTYPE, mode=0o1777 if d == "tmp" else 0o755)
        _tar_add(tf, "bin/busybox", busybox.read_bytes(), mode=0o755)
        for a in ("sh", "uname", "echo", "cat", "ls"):
            _tar_add(tf, f"bin/{a}", kind=tarfile.SYMTYPE, linkname="busybox", mode=0o777)
        _tar_add(tf, "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
        _tar_add(tf, "etc/group", b"root:x:0:\n")
    return buf.getvalue()


@pytest.fixture(scope="module")
def arm64_image(image_cache: Path):
    from skiffbox.machine.image.build import build_image, built_image, check_host
    from skiffbox.machine.image.errors import ImageError

    if shutil.which("qemu-system-aarch64") is None:
        pytest.skip("qemu-system-arm is not installed")
    img = built_image(image_cache, "aarch64")
    if not img.exists():
        try:
            check_host("aarch64")
        except ImageError as e:
            pytest.skip(f"cannot build the arm64 image here: {e}")
    t0 = time.monotonic()
    img = build_image(image_cache, progress=lambda m: print(m, flush=True), arch="aarch64")
    print(f"arm64 image ready in {time.monotonic() - t0:.0f} s")
    return img


def test_arm64_machine_runs_arm64_containers(arm64_image, image_cache: Path,
                                             tmp_path_factory: pytest.TempPathFactory) -> None:
    from tests.engine import harness

    for tool in ("docker", "docker-registry", "skopeo", "dpkg-deb"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is needed for the arm64 end-to-end test")
    work = tmp_path_factory.mktemp("arm64")
    env = {**os.environ, "MACHINE_STORAGE_PATH": str(work / "store"), "SKIFF_IMAGE_CACHE": str(image_cache)}
    for var in ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_MACHINE_NAME"):
        env.pop(var, None)

    def machine(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run([MACHINE, *args], env=env, capture_output=True, text=True, timeout=3000,
                           stdin=subprocess.DEVNULL)
        if check and r.returncode != 0:
            raise AssertionError(f"machine {' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
        return r

    port = free_port()
    reg = host_registry(work / "reg", port)
    arc = harness.write_docker_archive(harness.ImageSpec([busybox_layer(arm64_busybox(image_cache))], arch="arm64"),
                                       work / "busybox.tar", "test/busybox-arm64:latest")
    reg.push_archive(arc, "test/busybox-arm64:latest")
    image = f"10.0.2.2:{port}/test/busybox-arm64:latest"
    amd = harness.write_docker_archive(harness.ImageSpec([harness.busybox_rootfs_layer()], arch="amd64"),
                                       work / "busybox-amd64.tar", "test/busybox-amd64:latest")
    reg.push_archive(amd, "test/busybox-amd64:latest")
    try:
        t0 = time.monotonic()
        r = machine("create", "-d", "qemu", "--qemu-arch", "aarch64", "--qemu-boot-image", "build",
                    "--qemu-share-folder", "none", "--engine-insecure-registry", f"10.0.2.2:{port}", NAME)
        print(f"arm64 machine create (TCG): {time.monotonic() - t0:.0f} s")
        assert "Using aarch64 guest, TCG software emulation (slow)" in r.stderr
        assert "Warning: no hardware acceleration" in r.stderr
        drv = json.loads(machine("inspect", NAME).stdout)["Driver"]
        assert (drv["Arch"], drv["ResolvedAccel"]) == ("aarch64", "tcg") and "TCG" in drv["AccelInfo"]
        denv = dict(env)
        for line in machine("env", "--shell", "bash", NAME).stdout.splitlines():
            if line.startswith("export "):
                k, _, v = line[len("export "):].partition("=")
                denv[k] = shlex.split(v)[0]

        def docker(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run(["docker", *args], env=denv, capture_output=True, text=True, timeout=900,
                                  stdin=subprocess.DEVNULL)

        info = json.loads(docker("version", "--format", "{{json .Server}}").stdout)
        assert info["Arch"] == "arm64", info
        t1 = time.monotonic()
        r = docker("run", "--rm", image, "uname", "-m")
        print(f"docker run (pull + run) on the arm64 guest: {time.monotonic() - t1:.0f} s")
        assert r.returncode == 0 and r.stdout.strip() == "aarch64", r.stderr
        # an amd64-only image on this arm64 guest without emulation: a clear error, not "exec format error"
        r = docker("run", "--rm", "--platform", "linux/amd64", f"10.0.2.2:{port}/test/busybox-amd64:latest",
                   "uname", "-m")
        assert r.returncode != 0 and "exec format error" not in r.stderr
        assert "image platform linux/amd64 cannot run on this linux/arm64/v8 engine" in r.stderr, r.stderr
        assert "--engine-opt emulation=true" in r.stderr
    finally:
        t2 = time.monotonic()
        machine("rm", "-f", "-y", NAME, check=False)
        print(f"machine rm: {time.monotonic() - t2:.0f} s")
        reg.stop()
    assert not (work / "store" / "machines" / NAME).exists()
