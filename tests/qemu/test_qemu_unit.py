"""Fast checks of the qemu driver and the port forwarder that need no VM."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from skiffbox.machine.drivers.base import DriverError, PortForward, State, driver_class
from skiffbox.machine.drivers.qemu import QemuDriver
from skiffbox.machine.portfwd import _write_state, current, plan


def _driver(tmp_path: Path, **flags) -> QemuDriver:
    d = driver_class("qemu")("m1", tmp_path / "machines" / "m1")
    assert isinstance(d, QemuDriver)
    d.set_config_from_flags(flags)
    return d


def test_flags_and_config_roundtrip(tmp_path: Path) -> None:
    names = {f.name for f in QemuDriver.create_flags()}
    assert {"qemu-memory", "qemu-cpu-count", "qemu-disk-size", "qemu-boot-image", "qemu-accel"} <= names
    d = _driver(tmp_path, qemu_memory=3072, qemu_cpu_count=3, qemu_disk_size=30000, qemu_boot_image="build",
                qemu_accel="TCG", qemu_share_folder=str(tmp_path))
    d.ssh_port, d.engine_host_port = 40022, 40376
    cfg = json.loads(json.dumps(d.to_config()))
    again = QemuDriver("m1", d.machine_dir)
    again.load_config(cfg)
    assert (again.memory, again.cpus, again.disk_size_mb, again.boot_image, again.accel) == (3072, 3, 30000, "build", "tcg")
    assert again.ssh_endpoint().port == 40022 and again.ssh_endpoint().host == "127.0.0.1"
    assert again.url() == "tcp://127.0.0.1:40376" and again.ssh_user == "docker"
    assert again.shared_folders() == [(str(tmp_path), str(tmp_path))]
    assert _driver(tmp_path, qemu_share_folder="none").shared_folders() == []


def test_pre_create_check_rejects_bad_flags(tmp_path: Path) -> None:
    with pytest.raises(DriverError, match="qemu-accel"):
        _driver(tmp_path, qemu_accel="xen").pre_create_check()
    with pytest.raises(DriverError, match="no such file"):
        _driver(tmp_path, qemu_boot_image=str(tmp_path / "nope.qcow2")).pre_create_check()
    with pytest.raises(DriverError, match="512"):
        _driver(tmp_path, qemu_memory=128).pre_create_check()


def test_qemu_command_line(tmp_path: Path) -> None:
    d = _driver(tmp_path, qemu_share_folder=str(tmp_path))
    d.ssh_port, d.engine_host_port = 40022, 40376
    d.image = {"Disk": "/img/disk.qcow2", "Format": "qcow2", "VirtualSize": 1, "Kernel": "/img/vmlinuz",
               "Initrd": "/img/initrd.img", "Cmdline": "root=LABEL=rootfs"}
    cmd = d.qemu_command("tcg")
    joined = " ".join(cmd)
    assert "hostfwd=tcp:127.0.0.1:40022-:22" in joined and "hostfwd=tcp:127.0.0.1:40376-:2376" in joined
    assert "-daemonize" in cmd and cmd[cmd.index("-accel") + 1] == "tcg" and cmd[cmd.index("-cpu") + 1] == "max"
    assert f"local,path={tmp_path},mount_tag=home0" in joined
    assert cmd[cmd.index("-kernel") + 1] == "/img/vmlinuz" and "bootindex" not in joined
    assert "serial=skiff-data" in joined and joined.count("-qmp") == 2
    d.image.update(Kernel="", Initrd="")  # a cloud image boots from its own disk
    cmd = d.qemu_command("kvm")
    assert "-kernel" not in cmd and "bootindex=0" in " ".join(cmd) and cmd[cmd.index("-cpu") + 1] == "host"


def test_accel_override_and_state_of_a_fresh_machine(tmp_path: Path) -> None:
    assert _driver(tmp_path, qemu_accel="tcg").choose_accel() == "tcg"
    d = _driver(tmp_path)
    assert d.state() == State.STOPPED and not d.died()
    d.machine_dir.mkdir(parents=True)
    d.pidfile.write_text("999999999")  # a pidfile whose process is gone: the VM died
    assert d.state() == State.ERROR and d.died()
    d.kill()  # clears it
    assert d.state() == State.STOPPED
    d.remove()  # works on a half-made machine


def test_plan_from_containers_json() -> None:
    containers = [
        {"Ports": [{"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
                   {"IP": "::", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
                   {"PrivatePort": 443, "Type": "tcp"},  # exposed, not published
                   {"IP": "0.0.0.0", "PrivatePort": 53, "PublicPort": 5353, "Type": "udp"}]},
        {"Ports": [{"IP": "10.0.2.15", "PrivatePort": 1, "PublicPort": 9000, "Type": "tcp"}]},  # not on all addrs
        {"Ports": None},
    ]
    wanted, refused = plan(containers)
    assert {k: w.pf for k, w in wanted.items()} == {"tcp/127.0.0.1:8080": PortForward("127.0.0.1", 8080, 8080, "tcp"),
                                                    "udp/127.0.0.1:5353": PortForward("127.0.0.1", 5353, 5353, "udp")}
    assert all(w.guest_ip == "" for w in wanted.values())  # QEMU forwards to the guest's user-net address
    assert list(refused) == ["tcp/10.0.2.15:9000"]


def test_state_file_roundtrip(tmp_path: Path) -> None:
    _write_state(tmp_path, [PortForward("127.0.0.1", 9, 9, "udp"), PortForward("127.0.0.1", 8, 8)], {"tcp/7": "busy"})
    assert current(tmp_path) == [PortForward("127.0.0.1", 8, 8, "tcp"), PortForward("127.0.0.1", 9, 9, "udp")]
    assert current(tmp_path / "missing") == []
    assert not list(tmp_path.glob("*.tmp"))


def test_image_commands_register_and_list(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from skiffbox.machine.image.cli import list_images, register_image_commands

    built = tmp_path / "images" / "debian-bookworm-skiff-abc"
    built.mkdir(parents=True)
    (built / "image.json").write_text(json.dumps({"kernel_version": "6.1.0-56-amd64", "built_at": "now"}))
    (built / "disk.qcow2").write_bytes(b"x" * 10)
    rows = list_images(tmp_path)
    assert [(r["Kind"], r["Name"], r["Size"]) for r in rows] == [("built", built.name, 10)]
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        pass

    register_image_commands(app)
    r = CliRunner().invoke(app, ["image", "ls", "-q", "--cache-dir", str(tmp_path)])
    assert r.exit_code == 0 and r.stdout.strip() == str(built)
    r = CliRunner().invoke(app, ["image", "--help"])
    assert "build" in r.stdout and "pull" in r.stdout


def test_upgrade_moves_a_stopped_machine_to_a_new_image_and_keeps_its_data(tmp_path: Path) -> None:
    import subprocess

    from skiffbox.machine.image import resolve

    imgs = {}
    for name in ("old", "new"):
        imgs[name] = tmp_path / f"{name}.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(imgs[name]), "64M"], check=True)
    d = _driver(tmp_path, qemu_boot_image=str(imgs["old"]), qemu_share_folder="none")
    d.machine_dir.mkdir(parents=True)
    d._make_ssh_key()
    d.image = resolve(str(imgs["old"]), tmp_path / "cache").to_config()
    d._make_root_disk()
    d._run(["qemu-img", "create", "-q", "-f", "qcow2", str(d.machine_dir / "data.qcow2"), "2G"])
    (d.machine_dir / "data.qcow2").touch()
    data_before = (d.machine_dir / "data.qcow2").read_bytes()
    d.instance_id = "i-old"
    d._write_seed()

    def backing() -> str:
        out = subprocess.run(["qemu-img", "info", "-U", "--output=json", str(d.machine_dir / "disk.qcow2")],
                             capture_output=True, text=True, check=True).stdout
        return json.loads(out)["backing-filename"]

    assert backing() == str(imgs["old"])
    assert d.upgrade() is False  # same image: nothing to do
    d.boot_image = str(imgs["new"])
    assert d.upgrade() is True
    assert backing() == str(imgs["new"]) and d.image["Disk"] == str(imgs["new"])
    assert d.instance_id != "i-old"  # a new seed instance: the guest applies it on boot
    assert (d.machine_dir / "data.qcow2").read_bytes() == data_before
    assert d.state() == State.STOPPED  # it was stopped, it stays stopped
    d.remove()


class _FakeForward:
    """A listener standing in for QEMU's SSH forward: `mode` "drop" accepts and closes at once (the
    guest does not listen yet), "slow" sends the banner `delay` s after accepting (sshd under load)."""

    def __init__(self, mode: str, delay: float = 0.0) -> None:
        import socket
        import threading

        self.mode, self.delay, self.accepted = mode, delay, 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns: list = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        import threading
        import time

        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            if self.mode == "drop":
                c.close()
                continue
            self.conns.append(c)

            def later(c=c) -> None:
                time.sleep(self.delay)
                try:
                    c.sendall(b"SSH-2.0-OpenSSH_9.2p1\r\n")
                except OSError:
                    pass

            threading.Thread(target=later, daemon=True).start()

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


def test_banner_probe_waits_for_a_slow_sshd_without_a_storm() -> None:
    """sshd slower than any short banner timeout: one probe's connections wait for it (no reconnects)."""
    import time

    from skiffbox.machine.drivers.qemu import BannerProbe

    fwd = _FakeForward("slow", delay=4.0)
    try:
        t0 = time.monotonic()
        with BannerProbe("127.0.0.1", fwd.port) as probe:
            assert probe.wait(15.0)
        assert 3.9 < time.monotonic() - t0 < 6.0
        assert fwd.accepted <= 3  # the old probe (3 s timeout, reconnect) never saw this banner at all
    finally:
        fwd.close()


def test_banner_probe_keeps_polling_while_the_forward_drops_connections() -> None:
    from skiffbox.machine.drivers.qemu import BannerProbe, free_port

    fwd = _FakeForward("drop")
    try:
        with BannerProbe("127.0.0.1", fwd.port, interval=0.1) as probe:
            assert not probe.wait(1.0)
        assert 5 <= fwd.accepted <= 12  # one fresh connection per interval, each dropped at once
    finally:
        fwd.close()
    with BannerProbe("127.0.0.1", free_port()) as probe:  # nothing listening: refused, False in time
        assert not probe.wait(0.5)
