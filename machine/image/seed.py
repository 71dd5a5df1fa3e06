"""The NoCloud seed ISO (volume label `cidata`) that tells a fresh guest who it is.

It carries the SSH key, the hostname, the data disk to format and mount, and the shared folders.
The documents are JSON, which is also YAML: cloud-init on the official Debian cloud image reads
them as cloud-config, and our own image's first-boot script (machine/image/firstboot.py) reads
them with `json`. Only keys both understand are written, plus `packages` (cloud-init only: the
cloud image lacks the engine's runtime packages, our built image has them).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skiffbox.machine.image.errors import ImageError
from skiffbox.machine.store import atomic_file

SEED_LABEL = "cidata"
DATA_LABEL = "skiff-data"
DATA_MOUNT_OPTS = ("defaults,nofail,x-systemd.device-timeout=900s,"
                   "x-systemd.before=skiffd.service,x-systemd.required-by=skiffd.service")
NINEP_OPTS = "trans=virtio,version=9p2000.L,msize=262144,cache=mmap,nofail"
# what the engine needs in the guest (also in build.PACKAGES); cloud-init installs them on first boot
RUNTIME_PACKAGES = ["python3", "python3-venv", "python3-h11", "runc", "crun", "conmon", "netavark",
                    "aardvark-dns", "dnsmasq-base", "iptables", "catatonit", "sudo"]


@dataclass
class Share:
    """A host folder exported by the hypervisor under `tag`, mounted at `guest_path`."""

    tag: str
    guest_path: str
    fstype: str = "9p"
    options: str = NINEP_OPTS


@dataclass
class SeedConfig:
    instance_id: str
    hostname: str
    user: str
    ssh_public_key: str
    data_device: str | None = None  # e.g. /dev/disk/by-id/virtio-skiff-data
    data_mount: str = "/var/lib/skiff"  # the engine's --data-root
    shares: list[Share] = field(default_factory=list)
    packages: list[str] = field(default_factory=lambda: list(RUNTIME_PACKAGES))


def meta_data(cfg: SeedConfig) -> dict[str, Any]:
    return {"instance-id": cfg.instance_id, "local-hostname": cfg.hostname}


def user_data(cfg: SeedConfig) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "hostname": cfg.hostname,
        "preserve_hostname": False,
        "users": [{
            "name": cfg.user,
            "shell": "/bin/bash",
            "groups": ["sudo"],
            "sudo": "ALL=(ALL) NOPASSWD:ALL",
            "lock_passwd": True,
            "ssh_authorized_keys": [cfg.ssh_public_key.strip()],
        }],
        "ssh_pwauth": False,
        "mounts": [],
    }
    if cfg.data_device:
        doc["fs_setup"] = [{"label": DATA_LABEL, "filesystem": "ext4", "device": cfg.data_device,
                            "partition": "none", "overwrite": False}]
        # `nofail`: a slow udev (TCG on a busy host takes minutes) must never drop the boot into
        # emergency mode; instead the engine requires the mount and waits for it, so its writes
        # never land on the root disk under the mount point.
        doc["mounts"].append([f"LABEL={DATA_LABEL}", cfg.data_mount, "ext4", DATA_MOUNT_OPTS, "0", "2"])
    for share in cfg.shares:
        doc["mounts"].append([share.tag, share.guest_path, share.fstype, share.options, "0", "0"])
    if cfg.packages:
        doc["packages"] = cfg.packages
    return doc


def render(cfg: SeedConfig) -> dict[str, bytes]:
    """The seed's files, as they go on the ISO."""
    return {
        "meta-data": (json.dumps(meta_data(cfg), indent=2) + "\n").encode(),
        "user-data": ("#cloud-config\n" + json.dumps(user_data(cfg), indent=2) + "\n").encode(),
    }


def write_seed_iso(path: Path, cfg: SeedConfig) -> Path:
    """Write the seed as an ISO 9660 image with Rock Ridge and Joliet names (what NoCloud reads)."""
    try:
        import pycdlib
    except ImportError as e:  # a default dependency of skiffbox
        raise ImageError("pycdlib is needed to write the seed ISO and is missing from this installation: "
                         "pip install --force-reinstall skiffbox") from e
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident=SEED_LABEL)
    for name, data in render(cfg).items():
        iso_name = "/" + name.replace("-", "").upper() + ".;1"
        iso.add_fp(io.BytesIO(data), len(data), iso_name, rr_name=name, joliet_path="/" + name)
    path = Path(path)
    with atomic_file(path) as f:
        iso.write_fp(f)
    iso.close()
    return path


def read_seed_iso(path: Path) -> dict[str, bytes]:
    """Read the files back by their Rock Ridge names (tests, `machine inspect`)."""
    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    out: dict[str, bytes] = {}
    try:
        for name in ("meta-data", "user-data"):
            buf = io.BytesIO()
            iso.get_file_from_iso_fp(buf, rr_path="/" + name)
            out[name] = buf.getvalue()
    finally:
        iso.close()
    return out
