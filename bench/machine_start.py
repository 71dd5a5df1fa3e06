"""Benchmark: `machine start` of a stopped qemu machine until its engine answers, against the
physical floor: the same image booted by plain QEMU (same CPUs, memory, accel, disks) until SSH
answers. Reported as a ratio; the target is at most 1.3×.

The two are interleaved run by run, so background load hits both alike. Everything made (the
machine, the plain VM's overlay) is removed at the end.

Usage (root on Linux, QEMU installed): python bench/machine_start.py [--runs 3] [--json out.json]
The guest image is built once (`machine image build`) into $SKIFF_IMAGE_CACHE or
/var/tmp/skiff-test-image-cache.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from machine.drivers.qemu import QemuDriver, free_port, ssh_banner  # noqa: E402
from machine.qmp import QMPClient  # noqa: E402

MACHINE = str(Path(sys.executable).with_name("machine"))
NAME = "bench"


def run_machine(env: dict[str, str], *args: str) -> float:
    t0 = time.monotonic()
    r = subprocess.run([MACHINE, *args], env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise SystemExit(f"machine {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}")
    return time.monotonic() - t0


def plain_boot(drv: QemuDriver, work: Path) -> float:
    """The floor: the machine's own QEMU command line on a throw-away overlay of its disks, from
    process start until sshd answers; then powered off."""
    import shutil

    ssh_port = free_port()
    plain = QemuDriver("plain", work / "plain")
    plain.load_config(drv.to_config())
    plain.machine_dir.mkdir(parents=True, exist_ok=True)
    for disk in ("disk.qcow2", "data.qcow2"):  # overlays: the machine's disks are not touched
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
                        str(drv.machine_dir / disk), str(plain.machine_dir / disk)], check=True)
    shutil.copy(drv.machine_dir / "seed.iso", plain.machine_dir / "seed.iso")
    plain.ssh_port, plain.engine_host_port = ssh_port, free_port()
    cmd = plain.qemu_command(drv.resolved_accel or drv.choose_accel())
    t0 = time.monotonic()
    subprocess.run(cmd, check=True, start_new_session=True)
    while not ssh_banner("127.0.0.1", ssh_port, 2.0):
        time.sleep(0.2)
    took = time.monotonic() - t0
    with QMPClient(plain.qmp_socket) as q:
        q.execute("quit")
    pid = plain._read_pid()
    if pid:
        plain._wait_exit(pid, 20)
    shutil.rmtree(plain.machine_dir, ignore_errors=True)
    return took


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--memory", type=int, default=2048)
    args = ap.parse_args()
    cache = os.environ.get("SKIFF_IMAGE_CACHE", "/var/tmp/skiff-test-image-cache")
    with tempfile.TemporaryDirectory(prefix="skiff-bench-start-") as tmp:
        work = Path(tmp)
        env = {**os.environ, "MACHINE_STORAGE_PATH": str(work / "store"), "SKIFF_IMAGE_CACHE": cache}
        print("creating the machine (builds the image the first time)...", file=sys.stderr)
        run_machine(env, "create", "-d", "qemu", "--qemu-boot-image", "build", "--qemu-memory", str(args.memory),
                    "--qemu-share-folder", "none", NAME)
        mdir = work / "store" / "machines" / NAME
        drv = QemuDriver(NAME, mdir)
        drv.load_config(json.loads((mdir / "config.json").read_text())["Driver"])
        starts: list[float] = []
        floors: list[float] = []
        try:
            for i in range(args.runs):
                run_machine(env, "stop", NAME)
                floors.append(plain_boot(drv, work))
                starts.append(run_machine(env, "start", NAME))
                print(f"run {i + 1}: machine start {starts[-1]:.1f} s, plain qemu to SSH {floors[-1]:.1f} s",
                      file=sys.stderr)
        finally:
            subprocess.run([MACHINE, "rm", "-f", "-y", NAME], env=env, capture_output=True)
    result = {
        "accel": drv.resolved_accel,
        "machine_start_s": starts, "plain_boot_to_ssh_s": floors,
        "median_start_s": statistics.median(starts), "median_floor_s": statistics.median(floors),
        # per run: the pair shares the host's load at that moment (this host is shared and noisy)
        "ratios": [s / f for s, f in zip(starts, floors)],
        "ratio": statistics.median(s / f for s, f in zip(starts, floors)), "target_ratio": 1.3,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
