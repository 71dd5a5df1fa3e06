"""The qemu driver on a real VM booted from the image `machine image build` makes.

One boot, one stop/start cycle: everything that needs a running VM is checked on the same VM, in
order (TCG boots take tens of seconds, minutes on a busy host).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from skiffbox.machine.drivers.base import PortForward, State, driver_class
from skiffbox.machine.drivers.qemu import QemuDriver, free_port, ssh_banner
from skiffbox.machine.image.seed import read_seed_iso
from skiffbox.machine.portfwd import Forwarder, QMPBackend, Want, plan

# a TCG boot on a busy host takes minutes: more than the suite's default per-test timeout
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]


def _ssh(drv: QemuDriver):
    from skiffbox.machine.ssh import wait_for_ssh

    return wait_for_ssh(drv.ssh_endpoint(), timeout=120)


def _http_get(port: int, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=timeout) as r:
        return r.read()


@pytest.fixture(scope="module")
def vm(built_image, tmp_path_factory: pytest.TempPathFactory) -> Iterator[QemuDriver]:
    root = tmp_path_factory.mktemp("store")
    share = tmp_path_factory.mktemp("share")
    (share / "hello.txt").write_text("from the host\n")
    mdir = root / "machines" / "qtest"
    drv = driver_class("qemu")("qtest", mdir)
    assert isinstance(drv, QemuDriver)
    drv.set_config_from_flags({"qemu_memory": 1536, "qemu_cpu_count": 2, "qemu_disk_size": 50000,
                               "qemu_boot_image": "build", "qemu_share_folder": str(share)})
    drv.pre_create_check()
    t0 = time.monotonic()
    try:
        drv.create()
        print(f"create to SSH: {time.monotonic() - t0:.1f} s (accel {drv.resolved_accel})")
        yield drv
    finally:
        drv.remove()
        assert drv._read_pid() is None


def test_create_made_sparse_disks_and_a_seed(vm: QemuDriver) -> None:
    mdir = vm.machine_dir
    data = mdir / "data.qcow2"
    assert data.stat().st_size < 50 << 20  # 50 GB data disk: megabytes on the host
    root_info = json.loads(os.popen(f"qemu-img info -U --output=json {mdir / 'disk.qcow2'}").read())
    assert root_info["backing-filename"] == vm.image["Disk"]
    seed = read_seed_iso(mdir / "seed.iso")
    user = json.loads(seed["user-data"].decode().split("\n", 1)[1])
    assert user["hostname"] == "qtest"
    assert user["users"][0]["ssh_authorized_keys"][0] == (mdir / "id_rsa.pub").read_text().strip()
    cfg = vm.to_config()
    assert cfg["SSHPort"] and cfg["EnginePort"] and cfg["SSHPort"] != cfg["EnginePort"]
    assert vm.ip() == "127.0.0.1" and vm.url() == f"tcp://127.0.0.1:{cfg['EnginePort']}"


def test_running_vm_state_and_process(vm: QemuDriver) -> None:
    assert vm.state() == State.RUNNING
    pid = vm._read_pid()
    assert pid and str(vm.machine_dir).encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    # its own session: the VM outlives the command (and its process group) that started it
    assert os.getsid(pid) != os.getsid(0)
    # a driver rebuilt from the saved config sees the same VM
    again = QemuDriver("qtest", vm.machine_dir)
    again.load_config(json.loads(json.dumps(vm.to_config())))
    assert again.state() == State.RUNNING and again.engine_endpoint() == vm.engine_endpoint()


def test_guest_applied_the_seed(vm: QemuDriver) -> None:
    with _ssh(vm) as c:
        assert c.run("hostname").stdout.strip() == "qtest"
        # 9p passes the host's modes through: the pytest tree is root-only (0700), so read as root,
        # which is how the engine reads bind mounts
        assert c.run("sudo -n id -u").stdout.strip() == "0"
        mnt = c.run("findmnt -n -o FSTYPE,LABEL,SIZE --target /var/lib/skiff").stdout.split()
        assert mnt[:2] == ["ext4", "skiff-data"]
        share = vm.share_folder
        assert c.run(f"sudo -n cat {share}/hello.txt").stdout == "from the host\n"
        c.run(f"echo from the guest | sudo -n tee {share}/back.txt >/dev/null")
        for tool in ("runc", "crun", "conmon", "catatonit", "iptables"):
            c.run(f"sudo -n sh -c 'command -v {tool}'")  # root's PATH has the sbin dirs
        c.run("python3 -c 'import h11, venv'")
    assert (Path(vm.share_folder) / "back.txt").read_text() == "from the guest\n"


def test_port_forward_mechanism(vm: QemuDriver) -> None:
    """The forwarder's backend adds and removes a host forward to a guest port, live."""
    port = free_port()
    with _ssh(vm) as c:
        # a transient unit, so nothing of the server stays attached to the SSH session
        c.run(f"sudo -n systemd-run --unit=qtest-http --working-directory=/etc python3 -m http.server {port}",
              timeout=120)
        c.run(f"for i in $(seq 300); do ss -ltn | grep -q ':{port} ' && exit 0; sleep 0.5; done; exit 1",
              timeout=200)
    with pytest.raises(OSError):
        _http_get(port, 2)
    # the main QMP socket: the machine's own forwarder holds qmp-portfwd.sock (one client per socket)
    backend = QMPBackend(vm.qmp_socket)
    fwd = Forwarder(vm.machine_dir, backend, engine=None)  # type: ignore[arg-type]
    containers = [{"Id": "x", "Ports": [{"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": port, "Type": "tcp"}]}]
    fwd.apply(*plan(containers))
    assert b"hostname" in _http_get(port)
    assert PortForward("127.0.0.1", port, port, "tcp") in vm.port_forwards()
    # a host port that is taken is reported, not fatal
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        fwd.apply({**plan(containers)[0], f"tcp/127.0.0.1:{taken}": Want(PortForward("127.0.0.1", taken, taken))})
        state = json.loads((vm.machine_dir / "portfwd.json").read_text())
        assert f"tcp/127.0.0.1:{taken}" in state["errors"]
    fwd.apply({})
    with pytest.raises(OSError):
        _http_get(port, 2)
    assert vm.port_forwards() == []
    backend.client.close()


def test_stop_start_restart_and_a_dead_vm(vm: QemuDriver) -> None:
    pid = vm._read_pid()
    t0 = time.monotonic()
    vm.stop()  # ACPI power button via QMP: the guest shuts down by itself
    took = time.monotonic() - t0
    assert vm.state() == State.STOPPED
    assert not vm.died()
    assert took < 85, f"guest ignored the ACPI power button ({took:.0f} s)"
    assert not Path(f"/proc/{pid}").exists()
    assert not ssh_banner("127.0.0.1", vm.ssh_port, 1)
    vm.start()
    assert vm.state() == State.RUNNING
    with _ssh(vm) as c:  # the data disk was kept and is mounted again from fstab
        assert c.run("findmnt -n -o LABEL --target /var/lib/skiff").stdout.strip() == "skiff-data"
    # a VM killed behind the driver's back is reported as dead, not as stopped
    os.kill(vm._read_pid(), signal.SIGKILL)
    time.sleep(0.5)
    assert vm.state() == State.ERROR and vm.died()
    vm.kill()
    assert vm.state() == State.STOPPED


def test_remove_leaves_nothing(vm: QemuDriver) -> None:
    ssh_port, engine_port = vm.ssh_port, vm.engine_host_port
    vm.remove()
    left = sorted(p.name for p in vm.machine_dir.iterdir())
    assert left == [], left
    assert vm._read_pid() is None
    assert not ssh_banner("127.0.0.1", ssh_port, 1)
    with socket.socket() as s:  # the forwarded ports are free again
        s.bind(("127.0.0.1", engine_port))
