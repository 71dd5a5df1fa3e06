"""End to end, as a user: `machine upgrade` moves a qemu machine to a newer boot image (issue #6).

The boot image is a URL on a real HTTP server on 127.0.0.1 (serving the image `machine image build`
makes), as a user's `--qemu-boot-image https://…/latest.qcow2` would be. The machine gets engine
data (a pulled image and a named volume with a file) on its data disk; then a "newer image" with a
marker file in its root filesystem replaces the file at the same URL, and `machine upgrade` must
rebuild the root disk on it, keep the data disk, and bring the engine back. A second `upgrade`, with
nothing new at the URL, must not reboot the VM.

Two VM boots (create, upgrade) under TCG: minutes.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from skiffbox.machine.drivers.qemu import free_port, ssh_banner
from tests.qemu.httpserver import FileServer
from tests.qemu.netcheck import assert_no_listener
from tests.qemu.hostreg import host_registry

NAME = "up1"
MACHINE = str(Path(sys.executable).with_name("machine"))
IMAGE_PATH = "/skiff/latest.qcow2"  # where the "latest" image lives on the server
SUMS_PATH = "/skiff/SHA256SUMS"
MARKER = "/etc/skiff-upgrade-marker"  # only in the newer image
ROOT_NOTE = "/etc/skiff-old-root-note"  # written into the first root disk at run time
ROOTFS_OFFSET = 65 << 20  # the built image's ext4 partition starts after 1 MiB + the 64 MiB boot partition


class _Server:
    """python's http.server on a free 127.0.0.1 port, in a thread; records the paths it served."""

    def __init__(self, root: Path) -> None:
        served = self.served = []  # type: list[str]

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                served.append(self.path)
                super().do_GET()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        if self.thread.is_alive():
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join(10)



@dataclass
class Ctx:
    work: Path
    env: dict[str, str]
    server: _Server
    www: Path
    registry_port: int
    docker_env: dict[str, str] = field(default_factory=dict)
    seen: dict[str, str] = field(default_factory=dict)  # facts one step hands to the next

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}{IMAGE_PATH}"

    @property
    def busybox(self) -> str:
        return f"10.0.2.2:{self.registry_port}/test/busybox:latest"

    @property
    def mdir(self) -> Path:
        return self.work / "store" / "machines" / NAME

    def machine(self, *args: str, check: bool = True, timeout: float = 1800) -> subprocess.CompletedProcess:
        r = subprocess.run([MACHINE, *args], env=self.env, capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
        if check and r.returncode != 0:
            raise AssertionError(f"machine {' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
        return r

    def docker(self, *args: str, timeout: float = 600) -> str:
        r = subprocess.run(["docker", *args], env={**self.env, **self.docker_env}, capture_output=True,
                           text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
        return r.stdout

    def ssh(self, command: str) -> str:
        return self.machine("ssh", NAME, command).stdout

    def inspect(self) -> dict:
        return json.loads(self.machine("inspect", NAME).stdout)

    def qemu_pid(self) -> int:
        return int((self.mdir / "qemu.pid").read_text())


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _backing_file(disk: Path) -> str:
    # -U: the running QEMU holds the image's write lock
    out = subprocess.run(["qemu-img", "info", "-U", "--output=json", str(disk)], capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out)["backing-filename"]


def _publish_sums(www: Path) -> str:
    image = www / IMAGE_PATH.lstrip("/")
    digest = _sha256(image)
    (image.parent / "SHA256SUMS").write_text(f"{digest}  {image.name}\n")
    return digest


def make_newer_image(src: Path, dest: Path, marker_text: str) -> None:
    """A copy of `src` with MARKER added to its root filesystem (no mounts: debugfs at the
    partition's offset in a sparse raw copy), written as a new qcow2."""
    raw = dest.with_suffix(".raw")
    note = dest.with_suffix(".marker")
    try:
        subprocess.run(["qemu-img", "convert", "-O", "raw", str(src), str(raw)], check=True, capture_output=True)
        note.write_text(marker_text)
        r = subprocess.run(["debugfs", "-w", "-R", f"write {note} {MARKER}", f"{raw}?offset={ROOTFS_OFFSET}"],
                           capture_output=True, text=True)
        check = subprocess.run(["debugfs", "-R", f"cat {MARKER}", f"{raw}?offset={ROOTFS_OFFSET}"],
                               capture_output=True, text=True)
        assert check.stdout == marker_text, (r.stdout, r.stderr, check.stderr)
        subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(dest)], check=True, capture_output=True)
    finally:
        raw.unlink(missing_ok=True)
        note.unlink(missing_ok=True)


# ---- the checksum list beside an image URL (fast: no VM) -------------------------------------------
def _qcow2(path: Path, size: str) -> bytes:
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), size], check=True)
    return path.read_bytes()


def test_url_image_is_verified_by_the_sums_beside_it_and_refreshed_cheaply(file_server: FileServer,
                                                                          tmp_path: Path) -> None:
    from skiffbox.machine.image import ImageError, resolve

    old, new = _qcow2(tmp_path / "a.qcow2", "64M"), _qcow2(tmp_path / "b.qcow2", "128M")
    url = file_server.base + "/img/latest.qcow2"
    sums = "/img/SHA256SUMS"

    def publish(body: bytes, digest: str | None = None) -> str:
        digest = digest or hashlib.sha256(body).hexdigest()
        file_server.files["/img/latest.qcow2"] = body
        file_server.files[sums] = f"{'0' * 64}  other.qcow2\n{digest} *latest.qcow2\n".encode()
        return hashlib.sha256(body).hexdigest()

    cache = tmp_path / "cache"
    digest_old = publish(old)
    first = resolve(url, cache, progress=lambda d, t: None)
    assert first.disk.parent.name == f"sha256-{digest_old}" and first.disk.read_bytes() == old
    assert [p for p, _ in file_server.requests] == [sums, "/img/latest.qcow2"]
    # `upgrade` of an unchanged image: one small request, no download
    file_server.requests.clear()
    assert resolve(url, cache, refresh=True, progress=lambda d, t: None).disk == first.disk
    assert [p for p, _ in file_server.requests] == [sums]
    # a newer image at the same URL: fetched and verified against the list
    digest_new = publish(new)
    second = resolve(url, cache, refresh=True, progress=lambda d, t: None)
    assert second.disk.parent.name == f"sha256-{digest_new}" and second.virtual_size == 128 << 20
    # a list that does not match what is served: nothing is kept
    publish(_qcow2(tmp_path / "c.qcow2", "32M"), digest="1" * 64)
    with pytest.raises(ImageError, match="checksum mismatch"):
        resolve(url, cache, refresh=True, progress=lambda d, t: None)
    assert sorted(p.name for p in (cache / "downloads").glob("sha256-*")) == sorted(
        [f"sha256-{digest_old}", f"sha256-{digest_new}"])


def test_url_image_without_sums_is_downloaded_and_hashed(file_server: FileServer, tmp_path: Path) -> None:
    from skiffbox.machine.image import resolve

    body = _qcow2(tmp_path / "a.qcow2", "64M")
    file_server.files["/latest.qcow2"] = body
    img = resolve(file_server.base + "/latest.qcow2", tmp_path / "cache", progress=lambda d, t: None)
    assert img.disk.parent.name == f"sha256-{hashlib.sha256(body).hexdigest()}"
    assert [p for p, _ in file_server.requests] == ["/SHA256SUMS", "/SHA512SUMS", "/latest.qcow2"]


# ---- the machine, end to end -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ctx(built_image, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ctx]:
    from tests.engine import harness

    for tool in ("docker", "docker-registry", "skopeo", "debugfs"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is needed for the upgrade end-to-end test")
    work = tmp_path_factory.mktemp("upgrade")
    www = work / "www"
    (www / "skiff").mkdir(parents=True)
    # the first "latest" image is the built one, served as is (a symlink: no copy of 500 MB), with
    # a SHA256SUMS beside it as distributions publish a moving image
    (www / IMAGE_PATH.lstrip("/")).symlink_to(built_image.disk)
    _publish_sums(www)
    # downloads land in a cache of our own (removed at the end), never the shared test image cache
    env = {**os.environ, "MACHINE_STORAGE_PATH": str(work / "store"), "SKIFF_IMAGE_CACHE": str(work / "cache"),
           "HOME": os.environ.get("HOME", "/root")}
    for var in ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_MACHINE_NAME"):
        env.pop(var, None)
    server = _Server(www)
    reg = None
    try:
        port = free_port()
        reg = host_registry(work / "reg", port)
        arc = harness.write_docker_archive(harness.ImageSpec([harness.busybox_rootfs_layer()]),
                                           work / "busybox.tar", "test/busybox:latest")
        reg.push_archive(arc, "test/busybox:latest")
        c = Ctx(work, env, server, www, port)
        yield c
    finally:
        try:
            subprocess.run([MACHINE, "rm", "-f", "-y", NAME], env=env, capture_output=True, timeout=300,
                           stdin=subprocess.DEVNULL)
        finally:
            if reg is not None:
                reg.stop()
            server.close()
            shutil.rmtree(work, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_create_from_url(ctx: Ctx, built_image) -> None:
    ctx.machine("create", "-d", "qemu", "--qemu-boot-image", ctx.url, "--qemu-memory", "1024",
                "--qemu-share-folder", "none", "--engine-insecure-registry", f"10.0.2.2:{ctx.registry_port}", NAME)
    assert ctx.machine("status", NAME).stdout.strip() == "Running"
    image = ctx.inspect()["Driver"]["Image"]
    # the downloaded copy is cached by content: its folder names the digest of what was served
    assert image["Source"] == ctx.url
    assert Path(image["Disk"]).parent.name == f"sha256-{_sha256(built_image.disk)}"
    assert _backing_file(ctx.mdir / "disk.qcow2") == image["Disk"]
    assert IMAGE_PATH in ctx.server.served
    ctx.seen["disk"] = image["Disk"]


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_engine_data_on_the_data_disk(ctx: Ctx) -> None:
    for line in ctx.machine("env", "--shell", "bash", NAME).stdout.splitlines():
        if line.startswith("export "):
            k, _, v = line[len("export "):].partition("=")
            ctx.docker_env[k] = shlex.split(v)[0]
    assert ctx.docker_env["DOCKER_HOST"].startswith("tcp://127.0.0.1:")
    ctx.docker("pull", ctx.busybox)
    ctx.docker("volume", "create", "keep")
    ctx.docker("run", "--rm", "-v", "keep:/d", ctx.busybox, "sh", "-c", "echo kept across upgrade > /d/f")
    ctx.seen["image_id"] = ctx.docker("image", "inspect", "--format", "{{.Id}}", ctx.busybox).strip()
    # a file on the root disk: the upgrade must drop it with the old root
    ctx.ssh(f"echo old root | sudo tee {ROOT_NOTE} >/dev/null")
    assert ctx.ssh(f"cat {ROOT_NOTE}").strip() == "old root"
    assert ctx.ssh(f"test -e {MARKER} && echo yes || echo no").strip() == "no"


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_upgrade_moves_to_the_newer_image(ctx: Ctx, built_image) -> None:
    newer = ctx.work / "newer.qcow2"
    make_newer_image(built_image.disk, newer, "newer image\n")
    os.replace(newer, ctx.www / IMAGE_PATH.lstrip("/"))  # the same URL now serves the newer image
    new_digest = _publish_sums(ctx.www)
    old_pid, old_cfg = ctx.qemu_pid(), ctx.inspect()["Driver"]
    ctx.server.served.clear()

    r = ctx.machine("upgrade", NAME)
    assert "Moved to the newest boot image" in r.stderr, r.stderr
    assert "already runs the newest boot image" not in r.stderr
    assert ctx.server.served == [SUMS_PATH, IMAGE_PATH]  # it asked the server, not just its cache
    # the config points at the newer image, cached under its own digest; the root disk is built on it
    cfg = ctx.inspect()["Driver"]
    assert cfg["Image"]["Source"] == ctx.url
    assert cfg["Image"]["Disk"] != ctx.seen["disk"]
    assert Path(cfg["Image"]["Disk"]).parent.name == f"sha256-{new_digest}"
    assert cfg["InstanceID"] != old_cfg["InstanceID"]  # a new seed: the fresh root applies it
    assert _backing_file(ctx.mdir / "disk.qcow2") == cfg["Image"]["Disk"]
    assert ctx.machine("status", NAME).stdout.strip() == "Running"
    assert ctx.qemu_pid() != old_pid and not Path(f"/proc/{old_pid}").exists()  # rebooted on it
    # the guest runs the new root: the marker is there, the old root's file is gone
    assert ctx.ssh(f"cat {MARKER}") == "newer image\n"
    assert ctx.ssh(f"test -e {ROOT_NOTE} && echo yes || echo no").strip() == "no"
    # the data disk survived: the pulled image (no re-pull) and the volume's file
    assert json.loads(ctx.docker("version", "--format", "{{json .Server}}"))  # the engine answers over TLS
    assert ctx.docker("image", "inspect", "--format", "{{.Id}}", ctx.busybox).strip() == ctx.seen["image_id"]
    assert "keep" in ctx.docker("volume", "ls", "--format", "{{.Name}}").split()
    out = ctx.docker("run", "--rm", "--pull", "never", "-v", "keep:/d", ctx.busybox, "cat", "/d/f")
    assert out == "kept across upgrade\n"
    ctx.seen["disk"] = cfg["Image"]["Disk"]


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_upgrade_again_is_up_to_date(ctx: Ctx) -> None:
    pid = ctx.qemu_pid()
    boot_id = ctx.ssh("cat /proc/sys/kernel/random/boot_id").strip()
    ctx.server.served.clear()
    r = ctx.machine("upgrade", NAME)
    assert ctx.server.served == [SUMS_PATH]  # the checksum list says it is the image we have: no download
    assert f"{NAME} already runs the newest boot image" in r.stderr, r.stderr
    assert "Moved to the newest boot image" not in r.stderr
    assert ctx.inspect()["Driver"]["Image"]["Disk"] == ctx.seen["disk"]
    assert ctx.qemu_pid() == pid  # no reboot
    assert ctx.ssh("cat /proc/sys/kernel/random/boot_id").strip() == boot_id
    assert json.loads(ctx.docker("version", "--format", "{{json .Server}}"))


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_rm_leaves_nothing(ctx: Ctx) -> None:
    drv = ctx.inspect()["Driver"]
    pid = ctx.qemu_pid()
    fwd_pid = int((ctx.mdir / "portfwd.pid").read_text()) if (ctx.mdir / "portfwd.pid").exists() else None
    ctx.machine("rm", "-y", NAME)
    assert not ctx.mdir.exists()
    assert not Path(f"/proc/{pid}").exists()
    if fwd_pid:
        deadline = time.monotonic() + 10  # the forwarder exits on its own once QEMU's QMP socket goes
        while Path(f"/proc/{fwd_pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not Path(f"/proc/{fwd_pid}").exists()
    assert not ssh_banner("127.0.0.1", int(drv["SSHPort"]), 1)
    ctx.server.close()  # the server goes with the module fixture; check it stops and frees its port
    for p in (int(drv["SSHPort"]), int(drv["EnginePort"]), ctx.server.port):
        assert_no_listener(p)
