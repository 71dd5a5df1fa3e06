"""Benchmark: `machine start` of a stopped qemu machine until its engine answers, against the
physical floor: the same image booted by plain QEMU (same CPUs, memory, accel, disks) until SSH
answers. Reported as a ratio; the target is at most 1.3×.

The two are interleaved run by run, so background load hits both alike. Everything made (the
machine, the plain VM's overlay) is removed at the end.

Usage (root on Linux, QEMU installed): python bench/machine_start.py [--runs 3] [--split N] [--json out.json]
The guest image is built once (`machine image build`) into $SKIFF_IMAGE_CACHE or
/var/tmp/skiff-test-image-cache.

--split N adds N instrumented starts (after the ratio runs): where the time of ONE `machine -D start`
goes, on one clock, so the split holds whatever the load. The host side comes from the command's
`[debug] t=…` lines (machine/host.py:trace, CLOCK_MONOTONIC; the SSH banner is the driver's, as a
second banner probe would cost sshd a fork per try) and from probes this script runs in parallel
(QEMU's pidfile, the engine's /_ping); the guest side from its journal (sshd listening, skiffd exec'd
and ready, skiffd's own start-up split), placed on the host clock by aligning sshd's "Server
listening" with the banner the driver saw. Shares are of the floor's equivalent inside the same
start: command running → SSH banner.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from skiffbox.machine.drivers.qemu import BannerProbe, QemuDriver, free_port  # noqa: E402
from skiffbox.machine.qmp import QMPClient  # noqa: E402

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
    with BannerProbe("127.0.0.1", ssh_port) as probe:  # the driver's probe
        probe.wait(3600)
    took = time.monotonic() - t0
    with QMPClient(plain.qmp_socket) as q:
        q.execute("quit")
    pid = plain._read_pid()
    if pid:
        plain._wait_exit(pid, 20)
    shutil.rmtree(plain.machine_dir, ignore_errors=True)
    return took


def _journal(drv: QemuDriver) -> tuple[str, str, str]:
    """The guest's view of the boot: systemd-analyze, the critical chains, sshd's and skiffd's journal."""
    from skiffbox.machine.ssh import connect

    with connect(drv.ssh_endpoint(), timeout=30) as c:
        def run(cmd: str) -> str:
            r = c.run(cmd, sudo=True, check=False, timeout=120)
            return (r.stdout + r.stderr).strip()

        analyze = run("systemd-analyze 2>&1 | head -n 1")
        chain = run("systemd-analyze critical-chain --no-pager skiffd.service ssh.service 2>&1")
        journal = run("journalctl -b -o short-monotonic --no-pager -u ssh.service -u skiffd.service "
                      "-u network-online.target | grep -vE 'Accepted publickey|session (opened|closed)|"
                      "Received disconnect|Disconnected from user'")
    return analyze, chain, journal


_MONO = re.compile(r"^\[\s*([0-9.]+)\]")


def _guest_marks(journal: str) -> dict[str, float]:
    """Guest CLOCK_MONOTONIC of: sshd listening, skiffd exec'd (systemd's Started), skiffd ready."""
    marks: dict[str, float] = {}
    for line in journal.splitlines():
        m = _MONO.match(line)
        if not m:
            continue
        t = float(m.group(1))
        if "Server listening on" in line and "sshd" in line:
            marks.setdefault("sshd listening", t)
        elif "Started skiffd.service" in line:
            marks["skiffd exec'd"] = t
        elif "skiffd" in line and " ready (" in line:
            marks["skiffd ready (listening)"] = t
            mm = re.search(r"ready \(.*?\):? ?(.*)$", line)
            if mm:
                marks["_skiffd_detail"] = mm.group(1)  # type: ignore[assignment]
        elif "Reached target" in line and "etwork" in line:
            marks["network-online.target"] = t
        elif "sshd" in line and ("preauth" in line or "kex_exchange_identification" in line):
            marks["_probes"] = marks.get("_probes", 0) + 1  # type: ignore[assignment]
    return marks


def split_run(env: dict[str, str], store: Path, drv: QemuDriver) -> dict:
    """One instrumented `machine -D start`; returns the phases on the host's monotonic clock."""
    from skiffbox.machine.host import Host
    from skiffbox.machine.store import Store

    run_machine(env, "stop", NAME)
    drv.load_config(json.loads((drv.machine_dir / "config.json").read_text())["Driver"])
    host = Host.load(Store(store), NAME)
    marks: dict[str, float] = {}
    lines: list[tuple[float, str]] = []
    t_spawn = time.monotonic()
    proc = subprocess.Popen([MACHINE, "-D", "start", NAME], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            now = time.monotonic()
            lines.append((now, line.rstrip()))
            m = re.match(r"\[debug\] t=([0-9.]+) (.*)", line.strip())
            if m:
                marks.setdefault("cmd: " + m.group(2), float(m.group(1)))
            elif "first progress line" not in marks:
                marks["first progress line"] = now

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    while proc.poll() is None:
        now = time.monotonic()
        if "QEMU pidfile" not in marks:
            if drv.pidfile.exists():
                marks["QEMU pidfile"] = now
        elif "engine /_ping (probe)" not in marks:
            if host.ping(2.0):
                marks["engine /_ping (probe)"] = time.monotonic()
        time.sleep(0.2)
    marks["command exit"] = time.monotonic()
    reader.join(5)
    if proc.returncode != 0:
        raise SystemExit("machine start failed:\n" + "\n".join(ln for _, ln in lines))
    drv.load_config(json.loads((drv.machine_dir / "config.json").read_text())["Driver"])  # ports may move
    analyze, chain, journal = _journal(drv)
    g = _guest_marks(journal)
    detail = g.pop("_skiffd_detail", "")
    dropped = int(g.pop("_probes", 0))
    banner = marks.get("cmd: driver started the VM (SSH answers)")  # no probe of our own: sshd pays for each
    if banner is not None:
        marks["SSH banner (driver)"] = banner
    if "sshd listening" in g and banner is not None:
        offset = banner - g["sshd listening"]  # guest monotonic → host monotonic (upper bound)
        for k, v in g.items():
            marks["guest: " + k] = v + offset
        marks["guest: kernel started (mapped)"] = offset
    start = marks.get("cmd: machine start: command running", marks.get("first progress line", t_spawn))
    floor = marks.get("SSH banner (driver)", marks["command exit"]) - start
    total = marks["command exit"] - t_spawn
    phases = sorted(((v - t_spawn, k) for k, v in marks.items()), key=lambda x: x[0])
    return {"total_s": total, "floor_equivalent_s": floor, "above_floor_s": total - floor,
            "ratio_to_floor_equivalent": total / floor if floor > 0 else None,
            "phases": [{"t_s": round(t, 3), "event": k, "share_of_floor": round(t / floor, 3) if floor > 0 else None}
                       for t, k in phases],
            "skiffd_startup": detail, "systemd_analyze": analyze, "critical_chain": chain,
            # sshd connections that ended before auth: each banner probe that got an answer costs one
            "sshd_preauth_disconnects": dropped, "guest_journal": journal.splitlines()[-40:],
            "progress_lines": [f"{t - t_spawn:7.2f} {ln}" for t, ln in lines]}


def print_split(sp: dict) -> None:
    print(f"\nsplit of one `machine start`: {sp['total_s']:.1f} s; floor equivalent (command running → SSH "
          f"banner) {sp['floor_equivalent_s']:.1f} s; above it {sp['above_floor_s']:.1f} s", file=sys.stderr)
    for p in sp["phases"]:
        print(f"  {p['t_s']:7.2f} s  {p['share_of_floor'] or 0:5.2f}×floor  {p['event']}", file=sys.stderr)
    print(f"  skiffd: {sp['skiffd_startup']}\n  sshd pre-auth disconnects: {sp['sshd_preauth_disconnects']}\n"
          f"  {sp['systemd_analyze']}\n" +
          "\n".join("  " + ln for ln in sp["critical_chain"].splitlines()), file=sys.stderr)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--memory", type=int, default=2048)
    ap.add_argument("--split", type=int, default=0, metavar="N", help="N instrumented starts after the runs")
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
        splits: list[dict] = []
        try:
            for i in range(args.runs):
                run_machine(env, "stop", NAME)
                floors.append(plain_boot(drv, work))
                starts.append(run_machine(env, "start", NAME))
                print(f"run {i + 1}: machine start {starts[-1]:.1f} s, plain qemu to SSH {floors[-1]:.1f} s",
                      file=sys.stderr)
            for _ in range(args.split):
                splits.append(split_run(env, work / "store", drv))
                print_split(splits[-1])
        finally:
            subprocess.run([MACHINE, "rm", "-f", "-y", NAME], env=env, capture_output=True)
    result: dict = {"accel": drv.resolved_accel, "load_average": os.getloadavg(), "target_ratio": 1.3}
    if starts:
        result.update({
            "machine_start_s": starts, "plain_boot_to_ssh_s": floors,
            "median_start_s": statistics.median(starts), "median_floor_s": statistics.median(floors),
            # per run: the pair shares the host's load at that moment (this host is shared and noisy)
            "ratios": [s / f for s, f in zip(starts, floors)],
            "ratio": statistics.median(s / f for s, f in zip(starts, floors)),
        })
    if splits:
        result["splits"] = splits
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
