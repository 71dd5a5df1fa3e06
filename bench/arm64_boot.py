"""Benchmark: the arm64 guest's boot against the x86_64 guest's, both under TCG on this host.

Each run makes a fresh qemu machine's disks from the built image of that architecture (root
overlay, data disk, NoCloud seed: what `machine create` makes) and times the driver's `start()`
from QEMU's launch to the SSH banner: firmware (SeaBIOS + direct kernel boot for x86_64; edk2 UEFI
+ systemd-boot from the ESP for aarch64), kernel, first-boot seed, sshd. The architectures are
interleaved run by run so background load hits both alike. Everything made is removed.

Usage (root on Linux; qemu-system-x86 + qemu-system-arm + qemu-efi-aarch64; the images are built
once, the arm64 one through binfmt + qemu-user-static):
    python bench/arm64_boot.py [--runs 3] [--json out.json]

What this cannot measure here: the same boot with HVF on Apple silicon (and KVM on an arm64 Linux
host), which is the figure users on Macs get; see bench/README-arm64.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from skiffbox.machine.drivers.qemu import QemuDriver  # noqa: E402
from skiffbox.machine.image import resolve  # noqa: E402

ARCHES = ("x86_64", "aarch64")


def boot_once(arch: str, work: Path, cache: Path) -> tuple[float, str]:
    d = QemuDriver(f"bench-{arch}", work / arch)
    d.set_config_from_flags({"qemu_arch": arch, "qemu_share_folder": "none", "qemu_accel": "tcg"})
    d.pre_create_check()
    d.machine_dir.mkdir(parents=True, exist_ok=True)
    d._make_ssh_key()
    d.image = resolve("build", cache, arch=arch).to_config()
    d._make_root_disk()
    d._run(["qemu-img", "create", "-q", "-f", "qcow2", str(d.machine_dir / "data.qcow2"), "20000M"])
    d.instance_id = f"bench-{time.time_ns()}"
    d._write_seed()
    t0 = time.monotonic()
    try:
        d.start()  # returns once sshd's banner arrives (then starts the port forwarder)
        took = time.monotonic() - t0
    finally:
        d.kill()
        shutil.rmtree(d.machine_dir, ignore_errors=True)
    return took, d.accel_info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    cache = Path(os.environ.get("SKIFF_IMAGE_CACHE", "/var/tmp/skiff-test-image-cache"))  # the tests' cache
    for arch in ARCHES:  # build (or find) both images before timing anything
        resolve("build", cache, arch=arch, build_progress=lambda m: print(m, file=sys.stderr, flush=True))
    times: dict[str, list[float]] = {a: [] for a in ARCHES}
    info: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="arm64-bench-") as tmp:
        for run in range(args.runs):
            for arch in ARCHES:
                took, info[arch] = boot_once(arch, Path(tmp), cache)
                times[arch].append(took)
                print(f"run {run + 1}: {arch:8s} boot to SSH {took:6.1f} s  ({info[arch]})", flush=True)
    med = {a: statistics.median(t) for a, t in times.items()}
    ratio = med["aarch64"] / med["x86_64"]
    print(f"median boot to SSH: x86_64 {med['x86_64']:.1f} s, aarch64 {med['aarch64']:.1f} s; "
          f"aarch64/x86_64 = {ratio:.2f}x (both TCG; load average {os.getloadavg()[0]:.2f})")
    if args.json:
        args.json.write_text(json.dumps({"runs": times, "median": med, "ratio": ratio, "accel": info,
                                         "load_average": os.getloadavg()}, indent=2))


if __name__ == "__main__":
    main()
