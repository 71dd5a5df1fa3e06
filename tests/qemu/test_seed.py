"""The NoCloud seed: pycdlib writes it, isoinfo (genisoimage) and the guest-side parser read it."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from skiffbox.machine.image import firstboot
from skiffbox.machine.image.seed import SeedConfig, Share, read_seed_iso, render, write_seed_iso

CFG = SeedConfig(instance_id="i-123", hostname="e2e", user="docker",
                 ssh_public_key="ssh-ed25519 AAAAC3Nza test@host\n",
                 data_device="/dev/disk/by-id/virtio-skiff-data",
                 shares=[Share("home0", "/home/alice")])


def test_seed_documents_are_json_cloud_config() -> None:
    files = render(CFG)
    user = files["user-data"].decode()
    assert user.startswith("#cloud-config\n")
    doc = firstboot.parse_doc(user)  # what our first-boot script sees
    assert doc == json.loads(user.split("\n", 1)[1])
    assert doc["users"][0]["ssh_authorized_keys"] == ["ssh-ed25519 AAAAC3Nza test@host"]
    assert doc["users"][0]["sudo"] == "ALL=(ALL) NOPASSWD:ALL"
    assert doc["hostname"] == "e2e"
    assert ["home0", "/home/alice", "9p"] == doc["mounts"][1][:3]
    assert doc["mounts"][0][:2] == ["LABEL=skiff-data", "/var/lib/skiff"]
    assert doc["fs_setup"][0]["device"] == "/dev/disk/by-id/virtio-skiff-data"
    assert firstboot.parse_doc(files["meta-data"].decode()) == {"instance-id": "i-123", "local-hostname": "e2e"}


def test_seed_iso_roundtrip(tmp_path: Path) -> None:
    iso = write_seed_iso(tmp_path / "seed.iso", CFG)
    assert read_seed_iso(iso) == render(CFG)
    assert not (tmp_path / "seed.tmp").exists()


@pytest.mark.skipif(shutil.which("isoinfo") is None, reason="isoinfo (genisoimage) not installed")
def test_seed_iso_is_a_cidata_volume_for_other_tools(tmp_path: Path) -> None:
    iso = write_seed_iso(tmp_path / "seed.iso", CFG)
    info = subprocess.run(["isoinfo", "-d", "-i", str(iso)], capture_output=True, text=True, check=True).stdout
    assert "Volume id: cidata" in info
    assert "Rock Ridge signatures version 1 found" in info
    listing = subprocess.run(["isoinfo", "-R", "-f", "-i", str(iso)], capture_output=True, text=True,
                             check=True).stdout.split()
    assert sorted(listing) == ["/meta-data", "/user-data"]
    joliet = subprocess.run(["isoinfo", "-J", "-x", "/user-data", "-i", str(iso)], capture_output=True,
                            check=True).stdout
    assert joliet == render(CFG)["user-data"]


def test_firstboot_fstab_block_is_replaced_not_appended(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fstab = tmp_path / "fstab"
    fstab.write_text("LABEL=rootfs / ext4 rw 0 1\n")
    real_path = firstboot.Path
    monkeypatch.setattr(firstboot, "Path", lambda p, *a: real_path(str(fstab)) if p == "/etc/fstab" else real_path(p, *a))
    assert firstboot.write_mounts([["home0", "/home/a", "9p", "trans=virtio"]]) == ["/home/a"]
    assert firstboot.write_mounts([["LABEL=d", "/var/lib/skiff", "ext4"]]) == ["/var/lib/skiff"]
    lines = fstab.read_text().splitlines()
    assert lines[0] == "LABEL=rootfs / ext4 rw 0 1"
    assert lines[1:] == [firstboot.FSTAB_BEGIN, "LABEL=d\t/var/lib/skiff\text4\tdefaults\t0\t0", firstboot.FSTAB_END]
