"""What to tell a user whose `machine create` could not download the boot image (no internet, or a
proxy in the way): the offline routes, and how a VM reaches a registry on this host."""

from __future__ import annotations

OFFLINE_HINT = """\
Without internet access:
- while online once, `machine image pull` fills the image cache; later creates use the cached image;
- or build the boot image here instead: `machine image build` (Linux, as root; `--mirror URL` for a Debian
  mirror on your network), then `machine create --qemu-boot-image build NAME` (VirtualBox uses a built
  image by itself);
- images for containers can come from a registry on this host: the VM reaches the host at 10.0.2.2
  (qemu's user networking) or at the host-only address (192.168.56.1 by default, VirtualBox); create the
  machine with `--engine-insecure-registry 10.0.2.2:5000` (or that address) to pull over plain HTTP.
See README "Mac and Windows first" (offline and air-gapped use)."""

# What machine/image/cache.py says when it cannot fetch (the drivers pass its text on).
_DOWNLOAD_FAILURES = ("download of ", "cannot read http", "cannot read ftp")


def is_download_failure(message: str) -> bool:
    return any(m in message for m in _DOWNLOAD_FAILURES)


def with_offline_hint(message: str) -> str:
    return f"{message}\n\n{OFFLINE_HINT}" if is_download_failure(message) else message
