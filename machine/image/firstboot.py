#!/usr/bin/python3
"""Guest side: apply the NoCloud seed (volume label `cidata`) at boot, without cloud-init.

This file is copied into the image built by `machine image build` as /usr/local/sbin/skiff-seed and
runs as a oneshot unit before sshd. It implements the small subset of cloud-config that
machine/image/seed.py writes (hostname, users, fs_setup, mounts), so the same seed works with
cloud-init on an official Debian cloud image and with this script on our own image. It is a few
hundred milliseconds of Python under TCG, where cloud-init costs seconds.

It runs on every boot and every step is idempotent: a new seed (e.g. after `upgrade`) simply
applies. It never imports anything from the host package (stdlib only, Python 3.11).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SEED_LABELS = ("cidata", "CIDATA")
FSTAB_BEGIN = "# BEGIN skiff-seed (managed, rewritten at boot)"
FSTAB_END = "# END skiff-seed"


def log(msg: str) -> None:
    print(f"skiff-seed: {msg}", flush=True)


def run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=check, text=True, capture_output=True)


def find_seed_device(timeout: float) -> Path | None:
    # udev makes the by-label link once the CD/disk is probed; wait a little for it.
    deadline = time.monotonic() + timeout
    while True:
        for label in SEED_LABELS:
            dev = Path("/dev/disk/by-label") / label
            if dev.exists():
                return dev
        if time.monotonic() > deadline:
            return None
        time.sleep(0.2)


def parse_doc(text: str) -> dict[str, Any]:
    """Seed documents are JSON (valid YAML, so cloud-init reads them too) after an optional
    `#cloud-config` first line."""
    lines = text.splitlines()
    if lines and lines[0].startswith("#"):
        lines = lines[1:]
    body = "\n".join(lines).strip()
    doc: dict[str, Any] = json.loads(body) if body else {}
    return doc


def read_seed(dev: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    with tempfile.TemporaryDirectory() as mnt:
        run("mount", "-o", "ro", str(dev), mnt)
        try:
            meta = parse_doc(Path(mnt, "meta-data").read_text())
            user_path = Path(mnt, "user-data")
            user = parse_doc(user_path.read_text()) if user_path.exists() else {}
        finally:
            run("umount", mnt, check=False)
    return meta, user


def set_hostname(name: str) -> None:
    if not name:
        return
    Path("/etc/hostname").write_text(name + "\n")
    hosts = Path("/etc/hosts")
    lines = [ln for ln in hosts.read_text().splitlines() if not ln.startswith("127.0.1.1")]
    lines.insert(1, f"127.0.1.1\t{name}")
    hosts.write_text("\n".join(lines) + "\n")
    run("hostname", name)


def ensure_user(spec: dict[str, Any]) -> None:
    name = spec["name"]
    if run("id", "-u", name, check=False).returncode != 0:
        cmd = ["useradd", "--create-home", "--shell", spec.get("shell", "/bin/bash")]
        groups = spec.get("groups")
        if groups:
            cmd += ["--groups", groups if isinstance(groups, str) else ",".join(groups)]
        run(*cmd, name)
    home = Path(run("getent", "passwd", name).stdout.split(":")[5])
    keys = spec.get("ssh_authorized_keys") or []
    ssh_dir = home / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    auth = ssh_dir / "authorized_keys"
    auth.write_text("".join(k.strip() + "\n" for k in keys))
    auth.chmod(0o600)
    run("chown", "-R", f"{name}:{name}", str(ssh_dir))
    sudo = spec.get("sudo")
    if sudo:
        rule = Path("/etc/sudoers.d") / f"90-skiff-{name}"
        rule.write_text(f"{name} {sudo}\n")
        rule.chmod(0o440)


def ensure_filesystem(spec: dict[str, Any], wait: float = 10.0) -> None:
    dev = spec["device"]
    deadline = time.monotonic() + wait
    while not os.path.exists(dev):
        if time.monotonic() > deadline:
            log(f"fs_setup: {dev} not present, skipped")
            return
        time.sleep(0.2)
    has_fs = run("blkid", "-o", "value", "-s", "TYPE", dev, check=False).stdout.strip()
    if has_fs and not spec.get("overwrite"):
        return
    fstype = spec.get("filesystem", "ext4")
    cmd = [f"mkfs.{fstype}", "-q"]
    if fstype.startswith("ext"):
        # no discard pass over a big sparse disk and no inode-table zeroing now: seconds under TCG
        cmd += ["-E", "nodiscard,lazy_itable_init=1,lazy_journal_init=1"]
    if spec.get("label"):
        cmd += ["-L", spec["label"]]
    run(*cmd, dev)
    log(f"fs_setup: made {fstype} on {dev}")


def write_mounts(mounts: list[list[str]]) -> list[str]:
    """Replace our block in /etc/fstab; return the mount points to mount now."""
    fstab = Path("/etc/fstab")
    kept: list[str] = []
    skipping = False
    for line in fstab.read_text().splitlines():
        if line == FSTAB_BEGIN:
            skipping = True
        elif line == FSTAB_END:
            skipping = False
        elif not skipping:
            kept.append(line)
    block = [FSTAB_BEGIN]
    points = []
    for m in mounts:
        # cloud-config's defaults for missing fields: options "defaults", dump 0, pass 0
        fields = list(m) + ["", "", "", "defaults", "0", "0"][len(m):]
        block.append("\t".join(str(f) for f in fields))
        points.append(str(fields[1]))
    block.append(FSTAB_END)
    fstab.write_text("\n".join(kept + block) + "\n")
    return points


def mount_now(point: str) -> None:
    Path(point).mkdir(parents=True, exist_ok=True)
    if run("mountpoint", "-q", point, check=False).returncode == 0:
        return
    res = run("mount", point, check=False)
    if res.returncode != 0:
        log(f"mount {point}: {res.stderr.strip()}")


def main() -> int:
    dev = find_seed_device(float(os.environ.get("SKIFF_SEED_WAIT", "15")))
    if dev is None:
        log("no cidata seed found; nothing to apply")
        return 0
    meta, user = read_seed(dev)
    set_hostname(user.get("hostname") or meta.get("local-hostname", ""))
    for spec in user.get("users", []):
        if isinstance(spec, dict):
            ensure_user(spec)
    for spec in user.get("fs_setup", []):
        ensure_filesystem(spec)
    for point in write_mounts(user.get("mounts", [])):
        mount_now(point)
    log(f"applied seed {meta.get('instance-id', '?')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
