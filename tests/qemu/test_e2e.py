"""End to end, as a user: `machine create -d qemu`, the real docker CLI, stop/start, rm.

One VM boot (create) and one restart (stop + start), on the image `machine image build` makes.
Container steps run as far as the engine goes: if it cannot run containers yet, they are skipped
with the engine's own error text (the VM, SSH, TLS engine endpoint and cleanup are still checked).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from skiffbox.machine.drivers.qemu import free_port, ssh_banner
from tests.qemu.netcheck import assert_no_listener
from tests.qemu.hostreg import host_registry

# a TCG boot on a busy host takes minutes: more than the suite's default per-test timeout
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]
NAME = "e2e"
MACHINE = str(Path(sys.executable).with_name("machine"))


@dataclass
class Ctx:
    work: Path
    env: dict[str, str]
    share: Path
    registry_port: int
    docker_env: dict[str, str] = field(default_factory=dict)
    skip_containers: str = ""

    def machine(self, *args: str, check: bool = True, timeout: float = 1800) -> subprocess.CompletedProcess:
        r = subprocess.run([MACHINE, *args], env=self.env, capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
        if check and r.returncode != 0:
            raise AssertionError(f"machine {' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
        return r

    def docker(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        r = subprocess.run(["docker", *args], env={**self.env, **self.docker_env}, capture_output=True,
                           text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if check and r.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
        return r

    @property
    def mdir(self) -> Path:
        return self.work / "store" / "machines" / NAME



@pytest.fixture(scope="module")
def ctx(built_image, image_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ctx]:
    from tests.engine import harness

    for tool in ("docker", "docker-registry", "skopeo"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is needed for the end-to-end test")
    work = tmp_path_factory.mktemp("e2e")
    share = work / "share"
    share.mkdir()
    (share / "index.html").write_text("served from a host folder\n")
    env = {**os.environ, "MACHINE_STORAGE_PATH": str(work / "store"), "SKIFF_IMAGE_CACHE": str(image_cache),
           "HOME": os.environ.get("HOME", "/root")}
    for var in ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_MACHINE_NAME"):
        env.pop(var, None)
    port = free_port()
    reg = host_registry(work / "reg", port)
    arc = harness.write_docker_archive(harness.ImageSpec([harness.busybox_rootfs_layer()]),
                                       work / "busybox.tar", "test/busybox:latest")
    reg.push_archive(arc, "test/busybox:latest")
    c = Ctx(work, env, share, port)
    try:
        yield c
    finally:
        c.machine("rm", "-f", "-y", NAME, check=False)
        reg.stop()


def _get(port: int, path: str = "/", timeout: float = 5.0) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        return r.read().decode()


def _wait_get(port: int, path: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return _get(port, path)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def test_create(ctx: Ctx) -> None:
    t0 = time.monotonic()
    ctx.machine("create", "-d", "qemu", "--qemu-boot-image", "build", "--qemu-memory", "2048",
                "--qemu-share-folder", str(ctx.share), "--qemu-disk-size", "40000",
                "--engine-insecure-registry", f"10.0.2.2:{ctx.registry_port}", NAME)
    print(f"machine create: {time.monotonic() - t0:.0f} s")
    assert ctx.machine("status", NAME).stdout.strip() == "Running"
    cfg = json.loads((ctx.mdir / "config.json").read_text())
    assert cfg["DriverName"] == "qemu" and cfg["Driver"]["Image"]["Kernel"]  # booted our kernel directly
    url = ctx.machine("url", NAME).stdout.strip()
    assert url.startswith("tcp://127.0.0.1:")
    assert ctx.machine("ip", NAME).stdout.strip() == "127.0.0.1"


def test_env_and_docker_cli(ctx: Ctx) -> None:
    out = ctx.machine("env", "--shell", "bash", NAME).stdout
    for line in out.splitlines():
        if line.startswith("export "):
            k, _, v = line[len("export "):].partition("=")
            ctx.docker_env[k] = shlex.split(v)[0]
    assert ctx.docker_env["DOCKER_HOST"].startswith("tcp://127.0.0.1:")
    assert ctx.docker_env["DOCKER_TLS_VERIFY"] == "1"
    v = ctx.docker("version", "--format", "{{json .Server}}")
    assert json.loads(v.stdout)  # the engine answered over mutual TLS through the forward
    r = ctx.docker("pull", f"10.0.2.2:{ctx.registry_port}/test/busybox:latest", check=False)
    if r.returncode != 0:
        ctx.skip_containers = f"docker pull: {(r.stderr or r.stdout).strip()[-400:]}"


def _need_containers(ctx: Ctx) -> None:
    if ctx.skip_containers:
        pytest.skip(f"the engine cannot do this yet: {ctx.skip_containers}")


def test_published_port_and_bind_mount(ctx: Ctx) -> None:
    _need_containers(ctx)
    ctx.docker_env.setdefault("E2E_PORT", str(free_port()))
    port = int(ctx.docker_env["E2E_PORT"])
    image = f"10.0.2.2:{ctx.registry_port}/test/busybox:latest"
    r = ctx.docker("run", "-d", "--name", "web", "--restart", "always", "-p", f"{port}:80",
                   "-v", f"{ctx.share}:/www:ro", image, "httpd", "-f", "-p", "80", "-h", "/www", check=False)
    if r.returncode != 0:
        ctx.skip_containers = f"docker run: {(r.stderr or r.stdout).strip()[-400:]}"
        _need_containers(ctx)
    # the forwarder follows the engine's events and adds 127.0.0.1:port on the host
    assert _wait_get(port, "/index.html", 120) == "served from a host folder\n"
    fwds = json.loads((ctx.mdir / "portfwd.json").read_text())["forwards"]
    assert {"host_ip": "127.0.0.1", "host_port": port, "guest_port": port, "proto": "tcp"} in fwds
    # what `inspect` reports for the driver (live from the forwarder)
    from skiffbox.machine.drivers.qemu import QemuDriver

    drv = QemuDriver(NAME, ctx.mdir)
    drv.load_config(json.loads((ctx.mdir / "config.json").read_text())["Driver"])
    assert f"127.0.0.1:{port}->{port}/tcp" in drv.to_config()["PortForwards"]


def test_host_ip_port_and_a_taken_port(ctx: Ctx) -> None:
    """`-p 127.0.0.1::80` answers on the host's 127.0.0.1 with the container's content (relayed to the guest's
    loopback); a host port taken by another program shows in `machine ls` ERRORS and `inspect`, and is forwarded
    once it frees."""
    import socket

    _need_containers(ctx)
    image = f"10.0.2.2:{ctx.registry_port}/test/busybox:latest"
    ctx.docker("run", "-d", "--name", "lo", "-p", "127.0.0.1::80", "-v", f"{ctx.share}:/www:ro", image,
               "httpd", "-f", "-p", "80", "-h", "/www")
    published = ctx.docker("port", "lo", "80/tcp").stdout.split()[0]
    assert published.startswith("127.0.0.1:")
    lo_port = int(published.rpartition(":")[2])
    assert _wait_get(lo_port, "/index.html", 120) == "served from a host folder\n"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        ctx.docker("run", "-d", "--name", "clash", "-p", f"{taken}:80", "-v", f"{ctx.share}:/www:ro", image,
                   "httpd", "-f", "-p", "80", "-h", "/www")
        want = f"container clash, port 80/tcp: not forwarded, host port 127.0.0.1:{taken} is taken by another program"
        deadline = time.monotonic() + 120
        while want not in (ls := ctx.machine("ls", "--format", "{{.Name}}|{{.Error}}").stdout):
            assert time.monotonic() < deadline, ls
            time.sleep(1)
        assert f"{NAME}|" in ls
        errs = json.loads(ctx.machine("inspect", "-f", "{{json .Driver.PortForwardErrors}}", NAME).stdout)
        assert any(e.startswith(want) for e in errs), errs
    # freed: the forwarder's retry forwards it and the error goes away
    assert _wait_get(taken, "/index.html", 60) == "served from a host folder\n"
    deadline = time.monotonic() + 30
    while "clash" in (ls := ctx.machine("ls", "--format", "{{.Error}}").stdout):
        assert time.monotonic() < deadline, ls
        time.sleep(1)
    ctx.docker("rm", "-f", "lo", "clash")
    deadline = time.monotonic() + 30  # the forwarder takes both away when it sees the containers go
    for port in (lo_port, taken):
        while True:
            try:
                assert_no_listener(port)
                break
            except AssertionError:
                assert time.monotonic() < deadline, f"127.0.0.1:{port} still forwarded after rm"
                time.sleep(0.5)


def test_stop_and_start(ctx: Ctx) -> None:
    """Stop and start clicked on the dashboard's machine page (Debian's headless chromium), the page showing
    Stopped and then Running: the same Host.stop/start as `machine stop/start` (whose command wiring the generic
    e2e runs), so the VM is rebooted once for both."""
    from selenium.webdriver.common.by import By

    from tests.dashboard.harness import chromium, serve
    from tests.dashboard.test_browser import click, css, text_in
    from tests.dashboard.test_machines_browser import job_outcome

    pid = int((ctx.mdir / "qemu.pid").read_text())
    row = f'#machines tr[data-name="{NAME}"]'
    env = {**ctx.env, "DOCKER_HOST": "unix:///nonexistent/skiff-dashboard-test.sock"}  # no local engine: only machines
    with serve([], env) as dash, chromium() as drv:
        drv.get(dash.url)
        drv.get(dash.base + "/#/machines")
        css(drv, row + '[data-state="Running"]', timeout=60)
        click(drv, row + ' button[data-action="stop"]')
        out = job_outcome(drv, f"Stop {NAME}", timeout=300)
        assert out.endswith("Done."), out
        css(drv, row + '[data-state="Stopped"] button[data-action="start"]', timeout=60)
        assert ctx.machine("status", NAME).stdout.strip() == "Stopped"
        assert not Path(f"/proc/{pid}").exists()
        t0 = time.monotonic()
        click(drv, row + ' button[data-action="start"]')
        out = job_outcome(drv, f"Start {NAME}", timeout=1200)
        print(f"machine start from the dashboard: {time.monotonic() - t0:.0f} s")
        assert out.endswith("Done."), out
        assert "Waiting for the engine to answer" in out, out  # certs current: /_ping over TLS, SSH as fallback
        css(drv, row + '[data-state="Running"]', timeout=60)
        text_in(drv, row, "tcp://127.0.0.1:")
        assert not drv.find_elements(By.CSS_SELECTOR, row + " td:nth-child(6):not(:empty)")  # no error shown
    assert ctx.machine("status", NAME).stdout.strip() == "Running"
    # the engine's bytecode was compiled at install, for the guest's Python, and is not rewritten on boot
    pyc = ctx.machine("ssh", NAME, "boot=$(( $(date +%s) - $(cut -d. -f1 /proc/uptime) )); "
                      "echo $(find /opt/skiff/venv -name '*.pyc' -path '*/guest/*' | wc -l) "
                      "$(find /opt/skiff/venv -name '*.pyc' -newermt @$boot | wc -l)").stdout.split()
    assert int(pyc[0]) > 20 and int(pyc[1]) == 0, pyc
    assert json.loads(ctx.docker("version", "--format", "{{json .Server}}").stdout)
    if ctx.skip_containers or "E2E_PORT" not in ctx.docker_env:
        _need_containers(ctx)
        pytest.skip("no container was started")
    port = int(ctx.docker_env["E2E_PORT"])
    # the container had --restart always: it is back, and so is its forward
    assert _wait_get(port, "/index.html", 180) == "served from a host folder\n"


def test_rm_leaves_nothing(ctx: Ctx) -> None:
    cfg = json.loads((ctx.mdir / "config.json").read_text())
    drv = cfg["Driver"]
    pid = int((ctx.mdir / "qemu.pid").read_text())
    fwd_pid = int((ctx.mdir / "portfwd.pid").read_text()) if (ctx.mdir / "portfwd.pid").exists() else None
    ctx.machine("rm", "-y", NAME)
    assert not ctx.mdir.exists()
    assert not Path(f"/proc/{pid}").exists()
    if fwd_pid:
        time.sleep(1)
        assert not Path(f"/proc/{fwd_pid}").exists()
    assert not ssh_banner("127.0.0.1", int(drv["SSHPort"]), 1)
    for p in [int(drv["SSHPort"]), int(drv["EnginePort"])] + (
            [int(ctx.docker_env["E2E_PORT"])] if "E2E_PORT" in ctx.docker_env else []):
        assert_no_listener(p)
