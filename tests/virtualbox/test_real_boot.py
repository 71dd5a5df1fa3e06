"""Where it can run for real, it does: the guest image, converted by the driver's own sequence, booted
with the hardware VirtualBox presents.

No VirtualBox runs here. The stand-in VBoxManage takes every call the driver makes (clonemedium of the
built image to a VDI, createmedium, the seed ISO, storage on an IDE PIIX4 controller, virtio NICs, NAT
forwards on 127.0.0.1, a host-only adapter with a DHCP server) and, in its QEMU mode, `startvm` boots
exactly those files under QEMU/TCG as an i440FX/PIIX machine: the VDI on IDE primary master, the data
disk as primary slave with the ATA model/serial our extradata sets, the seed ISO as secondary master,
virtio-net NICs with the VM's MACs, the NAT rules as host forwards, and the host-only network as a
restricted user-mode network whose DHCP hands out the DHCP server's range. The driver then finds the
host-only IP over SSH by the NIC's MAC, as it does with VirtualBox.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from skiffbox.machine.drivers.base import State
from skiffbox.machine.ssh import connect
from tests.qemu.conftest import built_image, image_cache  # noqa: F401  (the shared guest image fixtures)
from tests.virtualbox.conftest import FakeVBox
from tests.virtualbox.test_driver import new_driver

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(2700),  # may include building the shared image; TCG boot on a busy host
    pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="qemu-system-x86_64 not installed"),
]


def test_guest_image_boots_on_virtualbox_hardware(fake_vbox: FakeVBox, built_image, tmp_path: Path) -> None:  # noqa: F811
    fake_vbox.configure(qemu={"accel": "tcg"})
    d = new_driver(tmp_path, name="vboxreal", virtualbox_memory=1536)
    d.ip_timeout = 900.0  # TCG on a busy 2-core host
    d.stop_timeout = 120.0
    d.pre_create_check()
    assert d.boot_image_path == str(built_image.disk)  # the default: the image `machine image build` made
    try:
        d.create()
        assert d.state() == State.RUNNING
        assert d.ip() == "192.168.56.101"  # found over SSH by the host-only NIC's MAC
        with connect(d.ssh_endpoint(), timeout=30) as c:
            def sh(cmd: str) -> str:
                return c.run(cmd, check=True).stdout.strip()

            assert sh("hostname") == "vboxreal"
            # disks on the PIIX IDE controller, driven by ata_piix; the data disk found by its ATA identity
            assert "0000:00:01.1" in sh("ls /sys/bus/pci/drivers/ata_piix")  # the PIIX IDE function
            # (sda/sdb is the kernel's probe order, which varies under load: compare devices, not names)
            data = sh("readlink -f /dev/disk/by-id/ata-SKIFF-DATA_skiff-data-1")
            root = sh("readlink -f $(findmnt -no SOURCE /)")
            assert data.startswith("/dev/sd") and not root.startswith(data), (data, root)
            assert sh("findmnt -no SOURCE /var/lib/skiff") == data
            # both NICs are virtio-net; the host-only one has the address VirtualBox's DHCP would give
            mac2 = fake_vbox.vm("vboxreal")["nics"]["2"]["mac"].lower()
            ifaces = sh("for i in /sys/class/net/e*; do echo $(basename $i) $(cat $i/address) "
                        "$(basename $(readlink $i/device/driver)); done").splitlines()
            drivers = {line.split()[2] for line in ifaces}
            assert drivers == {"virtio_net"}, ifaces
            ho = next(line.split()[0] for line in ifaces if line.split()[1].replace(":", "") == mac2)
            assert "192.168.56.101/24" in sh(f"ip -o -4 addr show {ho}")
            # the kernel has what VirtualBox's shared folders need (they cannot mount without VirtualBox)
            assert "vboxsf.ko" in sh("/sbin/modinfo -n vboxsf")
            assert "vboxguest.ko" in sh("/sbin/modinfo -n vboxguest")
        d.stop()  # ACPI power button (QMP system_powerdown): the guest shuts down, QEMU exits
        assert d.state() == State.STOPPED
        assert ["controlvm", "vboxreal", "poweroff"] not in fake_vbox.calls()
    finally:
        console = d.machine_dir / "console.log"
        if console.exists():
            print(console.read_text(errors="replace")[-3000:])
        d.remove()
    assert fake_vbox.state()["vms"] == {}
