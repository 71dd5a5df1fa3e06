"""The `qemu` driver: a local VM under QEMU (KVM, HVF, WHPX or TCG) with user-mode networking.

The guest is the host's native architecture by default (aarch64 on Apple silicon), with the best
accelerator the host has: machine/drivers/accel.py decides binary, machine type, CPU, firmware.

Files in the machine folder:
    id_rsa, id_rsa.pub   the SSH key the seed installs for user `docker`
    disk.qcow2           root disk: a qcow2 overlay whose backing file is the cached boot image
    data.qcow2           the data disk (`--qemu-disk-size`, sparse), mounted at /var/lib/skiff:
                         `upgrade` swaps the root overlay and keeps this, like boot2docker's disk
    seed.iso             NoCloud seed (SSH key, hostname, data disk, shared folder)
    qemu.pid qmp.sock    written by QEMU; QEMU removes both on a clean exit, so a pidfile whose
                         process is gone means the VM died (state Error, console.log says why)
    qmp-portfwd.sock     a second QMP socket for the port forwarder (QEMU serves one client per socket)
    console.log          the serial console
    portfwd.json/.pid/.log   the published-port forwarder (machine/portfwd.py)

Networking is QEMU's user-mode stack: SSH and the engine are host forwards on 127.0.0.1, so a VPN
or a changed host IP never matters and `DOCKER_HOST` is tcp://127.0.0.1:PORT. QEMU runs with
-daemonize, in its own session, so the VM outlives the `machine` command that started it.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from skiffbox.machine.drivers import accel as accelmod
from skiffbox.machine.drivers.accel import ACCELS, AccelError, Plan
from skiffbox.machine.drivers.base import CreateFlag, Driver, DriverError, PortForward, State
from skiffbox.machine.qmp import QMPClient, QMPError

DEFAULT_MEMORY = 2048
DEFAULT_CPUS = 2
DEFAULT_DISK_MB = 20000
ROOT_MIN_BYTES = 10 << 30  # root overlay size: room for the engine's venv and logs
# TCG on a busy host can take minutes (seconds with KVM); SKIFF_QEMU_BOOT_TIMEOUT overrides
BOOT_TIMEOUT = float(os.environ.get("SKIFF_QEMU_BOOT_TIMEOUT", "900"))
STOP_TIMEOUT = 90.0  # ACPI shutdown; a loaded TCG guest can take a minute
SHARE_TAG = "home0"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def ssh_banner(host: str, port: int, timeout: float = 3.0) -> bool:
    """True when an SSH server answers. A bare TCP connect is not enough: QEMU's user-mode
    forward accepts connections before the guest listens, then drops them."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            return s.recv(4).startswith(b"SSH-")
    except OSError:
        return False


class BannerProbe:
    """Waits for an SSH server's banner through a NAT forward without a probe storm.

    Before the guest listens, QEMU's forward accepts and then drops each connection at once: cheap.
    Once sshd listens, every connection costs the guest a forked (and, since OpenSSH 9, re-exec'd)
    sshd, which under TCG on a loaded host can take longer than any short banner timeout. A probe
    that gives up after a few seconds and reconnects then abandons sshd after sshd, trips its
    MaxStartups throttle and delays SSH by tens of seconds (seen here: 40 dropped connections).
    So connections are kept open, up to `patience` each, a new one every `interval` while fewer than
    `max_open` wait (well below sshd's MaxStartups of 10), and the first banner on any of them wins.
    `patience` is bounded too: before the guest's network is up, QEMU's slirp holds a connection
    with SYN retries backing off (3, 6, 12 s…), so a fresh one soon beats an old one."""

    def __init__(self, host: str, port: int, interval: float = 0.2, patience: float = 10.0,
                 max_open: int = 3) -> None:
        self.addr = (host, port)
        self.interval, self.patience, self.max_open = interval, patience, max_open
        self._sel = selectors.DefaultSelector()
        self._opened: dict[socket.socket, float] = {}
        self._next = 0.0

    def wait(self, timeout: float) -> bool:
        """True as soon as a banner arrives; False after `timeout` without one (keeps waiting sockets)."""
        end = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            for s, t in list(self._opened.items()):
                if now - t > self.patience:
                    self._drop(s)
            if len(self._opened) < self.max_open and now >= self._next:
                self._open()
                self._next = now + self.interval
            until = min(end, self._next if len(self._opened) < self.max_open else end)
            for key, _ in self._sel.select(max(0.0, until - time.monotonic())):
                s = key.fileobj  # type: ignore[assignment]
                try:
                    data = s.recv(4, socket.MSG_PEEK)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data.startswith(b"SSH-"):
                    return True
                if len(data) < 4 and b"SSH-".startswith(data) and data:
                    continue  # part of the banner: the rest follows
                self._drop(s)  # refused, dropped by the forward, or not SSH
            if time.monotonic() >= end:
                return False

    def _open(self) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.connect_ex(self.addr)  # in progress; a refusal shows up as readable with an error
        self._opened[s] = time.monotonic()
        self._sel.register(s, selectors.EVENT_READ)

    def _drop(self, s: socket.socket) -> None:
        self._sel.unregister(s)
        self._opened.pop(s, None)
        s.close()

    def close(self) -> None:
        for s in list(self._opened):
            self._drop(s)
        self._sel.close()

    def __enter__(self) -> "BannerProbe":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class QemuDriver(Driver):
    name = "qemu"

    def __init__(self, machine_name: str, machine_dir: Path) -> None:
        super().__init__(machine_name, machine_dir)
        self.ssh_user = "docker"
        self.ip_address = "127.0.0.1"
        self.memory = DEFAULT_MEMORY
        self.cpus = DEFAULT_CPUS
        self.disk_size_mb = DEFAULT_DISK_MB
        self.boot_image = ""
        self.accel = "auto"
        self.arch = ""  # guest architecture; "" = the host's (fixed at create)
        self.share_folder = str(Path.home())
        self.ssh_port = 0
        self.engine_host_port = 0
        self.image: dict[str, Any] = {}  # ResolvedImage.to_config()
        self.instance_id = ""
        self.resolved_accel = ""
        self.accel_info = ""  # Plan.describe() of the last start, for `inspect`

    # ---- flags and persistence -------------------------------------------------------------
    @classmethod
    def create_flags(cls) -> list[CreateFlag]:
        return [
            CreateFlag("qemu-memory", "Memory of the VM in MiB", DEFAULT_MEMORY, "QEMU_MEMORY", int),
            CreateFlag("qemu-cpu-count", "Number of virtual CPUs", DEFAULT_CPUS, "QEMU_CPU_COUNT", int),
            CreateFlag("qemu-disk-size", "Size of the data disk in MB (sparse: costs nothing at create)",
                       DEFAULT_DISK_MB, "QEMU_DISK_SIZE", int),
            CreateFlag("qemu-boot-image", "Boot image: 'debian' (the Debian 12 cloud image, downloaded), "
                       "'build' (made offline by `machine image build`), a URL or a file",
                       "", "QEMU_BOOT_IMAGE", str),
            CreateFlag("qemu-accel", "Acceleration: auto (the best this host has), kvm, hvf, whpx or tcg",
                       "auto", "QEMU_ACCEL", str),
            CreateFlag("qemu-arch", "Guest architecture: x86_64 or aarch64 (default: the host's; a "
                       "foreign one runs under slow TCG emulation)", "", "QEMU_ARCH", str),
            CreateFlag("qemu-share-folder", "Host folder shared into the VM at the same path "
                       "('none' to share nothing)", str(Path.home()), "QEMU_SHARE_FOLDER", str),
        ]

    def set_config_from_flags(self, flags: dict[str, Any]) -> None:
        def get(key: str, default: Any) -> Any:
            value = flags.get(key)
            return default if value is None or value == "" else value

        self.memory = int(get("qemu_memory", DEFAULT_MEMORY))
        self.cpus = int(get("qemu_cpu_count", DEFAULT_CPUS))
        self.disk_size_mb = int(get("qemu_disk_size", DEFAULT_DISK_MB))
        self.boot_image = str(get("qemu_boot_image", get("boot_image", "")))
        self.accel = str(get("qemu_accel", "auto")).lower()
        self.arch = str(get("qemu_arch", "")).strip()
        share = str(get("qemu_share_folder", str(Path.home())))
        self.share_folder = "" if share.lower() == "none" else str(Path(share).expanduser().resolve())

    def to_config(self) -> dict[str, Any]:
        return {
            **super().to_config(),
            "Memory": self.memory, "CPU": self.cpus, "DiskSize": self.disk_size_mb,
            "BootImage": self.boot_image, "Accel": self.accel, "ResolvedAccel": self.resolved_accel,
            "Arch": self.arch, "AccelInfo": self.accel_info,
            "ShareFolder": self.share_folder, "EnginePort": self.engine_host_port,
            "Image": self.image, "InstanceID": self.instance_id,
            # live, for `inspect` (docker's "127.0.0.1:8080->8080/tcp" notation)
            "PortForwards": [f"{p.host_ip}:{p.host_port}->{p.guest_port}/{p.proto}" for p in self.port_forwards()],
        }

    def load_config(self, data: dict[str, Any]) -> None:
        super().load_config(data)
        self.ip_address = data.get("IPAddress") or "127.0.0.1"
        self.memory = int(data.get("Memory", self.memory))
        self.cpus = int(data.get("CPU", self.cpus))
        self.disk_size_mb = int(data.get("DiskSize", self.disk_size_mb))
        self.boot_image = data.get("BootImage", "")
        self.accel = data.get("Accel", "auto")
        self.resolved_accel = data.get("ResolvedAccel", "")
        self.arch = data.get("Arch") or "x86_64"  # machines made before arm64 support are x86_64
        self.accel_info = data.get("AccelInfo", "")
        self.share_folder = data.get("ShareFolder", "")
        self.engine_host_port = int(data.get("EnginePort", 0))
        self.image = data.get("Image") or {}
        self.instance_id = data.get("InstanceID", "")

    # ---- paths -----------------------------------------------------------------------------
    def _p(self, name: str) -> Path:
        return self.machine_dir / name

    @property
    def pidfile(self) -> Path:
        return self._p("qemu.pid")

    @property
    def qmp_socket(self) -> Path:
        return self._p("qmp.sock")

    @property
    def portfwd_socket(self) -> Path:
        return self._p("qmp-portfwd.sock")

    def cache_dir(self) -> Path:
        from skiffbox.machine.image.cache import default_cache_dir

        # the store root is machines/NAME/../..; its cache/ holds images (or $SKIFF_IMAGE_CACHE)
        return default_cache_dir(self.machine_dir.parent.parent)

    # ---- checks ----------------------------------------------------------------------------
    def pre_create_check(self) -> None:
        if self.accel not in ACCELS:
            raise DriverError(f"--qemu-accel must be one of {', '.join(ACCELS)}, not {self.accel!r}")
        try:
            self.arch = accelmod.normalize_arch(self.arch or accelmod.host_machine())
        except AccelError as e:
            raise DriverError(f"--qemu-arch: {e}") from None
        for binary in (accelmod.binary_for(self.arch), "qemu-img"):
            if shutil.which(binary) is None:
                pkg = "qemu-system-x86" if self.arch == "x86_64" else "qemu-system-arm qemu-efi-aarch64"
                raise DriverError(f"{binary} not found: install QEMU (Debian/Ubuntu: apt-get install "
                                  f"{pkg} qemu-utils; macOS: brew install qemu)")
        if self.memory < 512:
            raise DriverError("--qemu-memory must be at least 512 (MiB)")
        if self.cpus < 1 or self.disk_size_mb < 1024:
            raise DriverError("--qemu-cpu-count must be >= 1 and --qemu-disk-size >= 1024 (MB)")
        if self.share_folder and not Path(self.share_folder).is_dir():
            raise DriverError(f"--qemu-share-folder {self.share_folder} is not a folder")
        spec = self.boot_image
        if spec and spec not in ("debian", "build") and not spec.startswith(("http://", "https://")) \
                and not Path(spec).expanduser().exists():
            raise DriverError(f"--qemu-boot-image {spec}: no such file")

    # ---- create ----------------------------------------------------------------------------
    def create(self) -> None:
        from skiffbox.machine.image import ImageError, resolve

        self.machine_dir.mkdir(parents=True, exist_ok=True)
        self._make_ssh_key()
        try:
            img = resolve(self.boot_image, self.cache_dir(), arch=self.guest_arch())
        except ImageError as e:
            raise DriverError(str(e)) from None
        self.image = img.to_config()
        plan = self.qemu_plan()
        print(f"Using {plan.describe()} ({plan.binary} -accel {plan.accel})", file=sys.stderr, flush=True)
        for w in plan.warnings:
            print(f"Warning: {w}", file=sys.stderr, flush=True)
        self._make_root_disk()
        self._run(["qemu-img", "create", "-q", "-f", "qcow2", str(self._p("data.qcow2")),
                   f"{self.disk_size_mb}M"])
        self.instance_id = f"skiff-{uuid.uuid4()}"
        self._write_seed()
        self.ssh_port = free_port()
        self.engine_host_port = free_port()
        self.start()

    def _make_root_disk(self) -> None:
        from skiffbox.machine.image import ResolvedImage

        img = ResolvedImage.from_config(self.image)
        size = max(img.virtual_size, ROOT_MIN_BYTES)  # never smaller than the image: that truncates it
        disk = self._p("disk.qcow2")
        disk.unlink(missing_ok=True)
        self._run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", img.format, "-b", str(img.disk),
                   str(disk), str(size)])

    def _make_ssh_key(self) -> None:
        if not self.ssh_key_path().exists():
            from skiffbox.machine.certs import generate_ssh_key

            generate_ssh_key(self.ssh_key_path(), f"skiff-{self.machine_name}")

    def _write_seed(self) -> None:
        from skiffbox.machine.image import ResolvedImage
        from skiffbox.machine.image.seed import SeedConfig, Share, write_seed_iso

        img = ResolvedImage.from_config(self.image)
        shares = [Share(SHARE_TAG, self.share_folder)] if self.share_folder else []
        cfg = SeedConfig(
            instance_id=self.instance_id, hostname=self.machine_name, user=self.ssh_user,
            ssh_public_key=Path(str(self.ssh_key_path()) + ".pub").read_text(),
            data_device="/dev/disk/by-id/virtio-skiff-data", shares=shares,
        )
        if img.has_runtime:
            cfg.packages = []  # our built image has them; the cloud image gets them from cloud-init
        write_seed_iso(self._p("seed.iso"), cfg)

    # ---- acceleration ----------------------------------------------------------------------
    def guest_arch(self) -> str:
        return accelmod.normalize_arch(self.arch or accelmod.host_machine())

    def qemu_plan(self, accel: str | None = None) -> Plan:
        """Binary, machine type, CPU, firmware and accelerator for this machine on this host."""
        arch = self.guest_arch()
        binary = accelmod.binary_for(arch)
        path = shutil.which(binary)

        def usable(hw: str) -> bool:
            if hw == "kvm":
                return os.access("/dev/kvm", os.R_OK | os.W_OK) and self._kvm_works()
            if hw == "hvf":
                return accelmod.hvf_supported()
            return path is not None and accelmod.accel_listed(path, hw)

        try:
            plan = accelmod.plan(os_name=sys.platform, host_machine=accelmod.host_machine(), usable=usable,
                                 want_arch=arch, want_accel=accel or self.accel,
                                 qemu_version=accelmod.qemu_version(path or binary),
                                 firmware=lambda a: accelmod.find_firmware(a, path))
        except AccelError as e:
            raise DriverError(str(e)) from None
        if plan.max_memory_mib and self.memory > plan.max_memory_mib:
            raise DriverError(f"--qemu-memory {self.memory}: {plan.machine} with {plan.accel} allows at most "
                              f"{plan.max_memory_mib} MiB (a newer QEMU lifts this)")
        return plan

    def choose_accel(self) -> str:
        return self.qemu_plan().accel

    def _kvm_works(self) -> bool:
        """/dev/kvm can exist and still not run a stock kernel (e.g. kvm-pvm hosts, where the
        guest hangs once it leaves real mode). Boot the image's kernel under KVM until it panics
        for want of a root disk: that proves long mode works. The verdict is cached per host
        kernel, QEMU binary and guest kernel."""
        from skiffbox.machine.image import ResolvedImage

        kernel = ResolvedImage.from_config(self.image).kernel if self.image else None
        arch = self.guest_arch()
        qemu = shutil.which(accelmod.binary_for(arch)) or accelmod.binary_for(arch)
        if kernel is None or not kernel.exists() or arch != "x86_64":
            # no kernel to try (or an EFI-booted arm64 image): trust KVM unless QEMU refuses it outright
            probe = subprocess.run([qemu, "-accel", "kvm", "-cpu", "host", "-display", "none", "-S",
                                    "-machine", "none", "-qmp", "stdio"], input='{"execute":"qmp_capabilities"}\n'
                                   '{"execute":"quit"}\n', capture_output=True, text=True, timeout=20)
            return probe.returncode == 0
        key = f"{os.uname().release}|{qemu}|{os.stat(qemu).st_mtime_ns}|{kernel}"
        verdicts = self.cache_dir() / "kvm-probe.json"
        try:
            known = json.loads(verdicts.read_text())
        except (FileNotFoundError, ValueError):
            known = {}
        if key in known:
            return bool(known[key])
        try:
            proc = subprocess.run(
                [qemu, "-accel", "kvm", "-cpu", "host", "-m", "256", "-display", "none", "-no-reboot",
                 "-serial", "stdio", "-monitor", "none", "-kernel", str(kernel),
                 "-append", "console=ttyS0 panic=-1 root=/dev/nonexistent"],
                capture_output=True, timeout=30)
            ok = b"Kernel panic" in proc.stdout or b"VFS:" in proc.stdout
        except subprocess.TimeoutExpired:
            ok = False
        known[key] = ok
        verdicts.parent.mkdir(parents=True, exist_ok=True)
        verdicts.write_text(json.dumps(known, indent=1))
        return ok

    # ---- qemu command ----------------------------------------------------------------------
    def qemu_command(self, accel: str | Plan | None = None) -> list[str]:
        from skiffbox.machine.image import ResolvedImage

        img = ResolvedImage.from_config(self.image)
        plan = accel if isinstance(accel, Plan) else self.qemu_plan(accel)
        fwd = (f"hostfwd=tcp:127.0.0.1:{self.ssh_port}-:22,"
               f"hostfwd=tcp:127.0.0.1:{self.engine_host_port}-:{self.engine_port}")
        cmd = [
            plan.binary, "-name", f"skiff-{self.machine_name}",
            "-machine", plan.machine, "-accel", plan.accel_arg, "-cpu", plan.cpu, "-m", str(self.memory), "-smp", str(self.cpus),
            "-drive", f"file={self._p('disk.qcow2')},if=none,id=root,format=qcow2,discard=unmap",
            "-device", "virtio-blk-pci,drive=root" + ("" if img.kernel else ",bootindex=0"),
            "-drive", f"file={self._p('data.qcow2')},if=none,id=data,format=qcow2,discard=unmap",
            "-device", "virtio-blk-pci,drive=data,serial=skiff-data",
            "-drive", f"file={self._p('seed.iso')},if=none,id=seed,format=raw,readonly=on",
            "-device", "virtio-blk-pci,drive=seed",
            "-netdev", f"user,id=net0,{fwd}", "-device", "virtio-net-pci,netdev=net0",
            "-device", "virtio-rng-pci",
            "-qmp", f"unix:{self.qmp_socket},server=on,wait=off",
            "-qmp", f"unix:{self.portfwd_socket},server=on,wait=off",
            "-serial", f"file:{self._p('console.log')}", "-display", "none", "-monitor", "none",
            "-pidfile", str(self.pidfile), "-daemonize",
        ]
        if plan.firmware is not None:
            # read-only UEFI code; no vars store: the image boots the removable-media path
            # (EFI/BOOT/BOOTAA64.EFI), so nothing needs to persist in NVRAM
            cmd += ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={plan.firmware}"]
        if img.kernel and img.initrd:
            cmd += ["-kernel", str(img.kernel), "-initrd", str(img.initrd), "-append", img.cmdline or ""]
        if self.share_folder:
            cmd += ["-virtfs", f"local,path={self.share_folder},mount_tag={SHARE_TAG},"
                               f"security_model=none,id={SHARE_TAG}"]
        return cmd

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        if self._running_pid() is not None:
            return
        self._cleanup_runtime_files()
        if not self._p("disk.qcow2").exists():
            raise DriverError(f"{self._p('disk.qcow2')} is missing: remove and re-create the machine")
        if not self.ssh_port or not self.engine_host_port:
            self.ssh_port, self.engine_host_port = free_port(), free_port()
        plan = self.qemu_plan()
        self.resolved_accel, self.accel_info = plan.accel, plan.describe()
        for attempt in range(2):
            proc = subprocess.run(self.qemu_command(plan), capture_output=True, text=True,
                                  stdin=subprocess.DEVNULL, start_new_session=True)
            if proc.returncode == 0:
                break
            err = (proc.stderr or proc.stdout).strip()
            if attempt == 0 and "host forwarding rule" in err:
                # a forwarded port was taken since create: pick new ones (the store saves them)
                self.ssh_port, self.engine_host_port = free_port(), free_port()
                continue
            raise DriverError(f"QEMU failed to start the VM: {err}")
        self._wait_for_ssh(BOOT_TIMEOUT)
        self._start_portfwd()

    def _wait_for_ssh(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with BannerProbe("127.0.0.1", self.ssh_port) as probe:
            while not probe.wait(1.0):
                if self._running_pid() is None:
                    raise DriverError(f"the VM stopped while booting. {self.console_tail()}")
                if time.monotonic() > deadline:
                    raise DriverError(f"the VM did not answer SSH on 127.0.0.1:{self.ssh_port} within "
                                      f"{int(timeout)} s. {self.console_tail()}")

    def console_tail(self, lines: int = 15) -> str:
        try:
            text = self._p("console.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""
        tail = [ln for ln in text.replace("\r", "").splitlines() if ln.strip()][-lines:]
        return "Last console lines:\n" + "\n".join(tail) if tail else ""

    def stop(self) -> None:
        self._stop_portfwd()  # before QEMU goes: a quick `start` must not find the old one alive
        pid = self._running_pid()
        if pid is None:
            self._cleanup_runtime_files()
            return
        try:
            with QMPClient(self.qmp_socket) as q:
                q.execute("system_powerdown")  # ACPI power button: the guest shuts down cleanly
        except QMPError:
            pass
        if not self._wait_exit(pid, STOP_TIMEOUT):
            try:
                with QMPClient(self.qmp_socket) as q:
                    q.execute("quit")
            except QMPError:
                pass
            if not self._wait_exit(pid, 10):
                self._signal(pid, signal.SIGKILL)
                self._wait_exit(pid, 10)
        self._cleanup_runtime_files()

    def kill(self) -> None:
        self._stop_portfwd()
        pid = self._running_pid()
        if pid is not None:
            self._signal(pid, signal.SIGKILL)
            self._wait_exit(pid, 10)
        self._cleanup_runtime_files()

    def restart(self) -> None:
        self.stop()
        self.start()

    def remove(self) -> None:
        self.kill()
        for name in ("disk.qcow2", "data.qcow2", "seed.iso", "console.log", "portfwd.json", "portfwd.log",
                     "id_rsa", "id_rsa.pub"):
            self._p(name).unlink(missing_ok=True)

    def upgrade(self, refresh: bool = True) -> bool:
        """Move the machine to the newest image of its `--qemu-boot-image` (Toolbox's `upgrade`).

        The root overlay is rebuilt on the new image; the data disk (images, containers, volumes)
        is kept. Returns False when the image did not change. The caller re-provisions.
        """
        from skiffbox.machine.image import ImageError, resolve

        try:
            img = resolve(self.boot_image, self.cache_dir(), refresh=refresh, arch=self.guest_arch())
        except ImageError as e:
            raise DriverError(str(e)) from None
        if self.image and img.to_config()["Disk"] == self.image.get("Disk") and \
                self._p("disk.qcow2").exists():
            return False
        was_running = self._running_pid() is not None
        self.stop()
        self.image = img.to_config()
        self._make_root_disk()
        self.instance_id = f"skiff-{uuid.uuid4()}"
        self._write_seed()
        if was_running:
            self.start()
        return True

    # ---- state -----------------------------------------------------------------------------
    def _read_pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def _is_our_qemu(self, pid: int) -> bool:
        if not _pid_alive(pid):
            return False
        cmdline = Path(f"/proc/{pid}/cmdline")
        if cmdline.exists():  # guard against a recycled pid
            try:
                return str(self.machine_dir).encode() in cmdline.read_bytes()
            except OSError:
                return False
        return True

    def _running_pid(self) -> int | None:
        pid = self._read_pid()
        return pid if pid is not None and self._is_our_qemu(pid) else None

    def state(self) -> State:
        pid = self._read_pid()
        if pid is None:
            return State.STOPPED
        if not self._is_our_qemu(pid):
            return State.ERROR  # QEMU removes its pidfile on a clean exit: this one died
        try:
            with QMPClient(self.qmp_socket, timeout=3.0) as q:
                status = q.execute("query-status").get("status", "")
        except QMPError:
            return State.RUNNING if ssh_banner("127.0.0.1", self.ssh_port, 2.0) else State.ERROR
        return {
            "running": State.RUNNING, "paused": State.PAUSED, "suspended": State.PAUSED,
            "shutdown": State.STOPPING, "inmigrate": State.STARTING, "prelaunch": State.STARTING,
            "postmigrate": State.PAUSED, "save-vm": State.SAVED, "restore-vm": State.STARTING,
            "finish-migrate": State.PAUSED, "debug": State.PAUSED,
        }.get(status, State.ERROR)

    def died(self) -> bool:
        """The VM is not running and did not stop cleanly (killed, crashed)."""
        pid = self._read_pid()
        return pid is not None and not self._is_our_qemu(pid)

    def _wait_exit(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while _pid_alive(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)
        return True

    @staticmethod
    def _signal(pid: int, sig: int) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    def _cleanup_runtime_files(self) -> None:
        for name in ("qemu.pid", "qmp.sock", "qmp-portfwd.sock"):
            self._p(name).unlink(missing_ok=True)

    @staticmethod
    def _run(cmd: list[str]) -> None:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise DriverError(f"{cmd[0]} failed: {(proc.stderr or proc.stdout).strip()}")

    # ---- addressing ------------------------------------------------------------------------
    def ip(self) -> str:
        return "127.0.0.1"

    def ssh_hostname(self) -> str:
        return "127.0.0.1"

    def engine_endpoint(self) -> tuple[str, int]:
        return "127.0.0.1", self.engine_host_port

    def shared_folders(self) -> list[tuple[str, str]]:
        return [(self.share_folder, self.share_folder)] if self.share_folder else []

    # ---- published ports (machine/portfwd.py) ----------------------------------------------
    def _start_portfwd(self) -> None:
        from skiffbox.machine import portfwd

        portfwd.spawn(self.machine_dir, self.portfwd_socket, self.engine_host_port, self.ssh_endpoint())

    def _stop_portfwd(self) -> None:
        from skiffbox.machine import portfwd

        portfwd.stop(self.machine_dir)

    def port_forwards(self) -> list[PortForward]:
        from skiffbox.machine import portfwd

        if self._running_pid() is None:
            return []
        return portfwd.current(self.machine_dir)

    def port_forward_errors(self) -> list[str]:
        from skiffbox.machine import portfwd

        if self._running_pid() is None:
            return []
        return portfwd.errors(self.machine_dir)
