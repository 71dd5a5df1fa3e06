"""A throw-away Debian host with a real sshd, for end-to-end tests of the `generic` driver and SSH code.

There is no spare Debian host on the test machines, so this makes one from the machine's own root:
- a network namespace (ours) joined to the host by a veth pair with addresses in 10.x we pick;
- a private mount + PID namespace holding a copy-on-write view of `/` (overlayfs: lower = `/`,
  upper/work on a tmpfs), with /proc (new), /sys and /dev bound, fresh /run and /tmp, and
  /var/lib/skiff bound to a plain folder (the engine's overlay mounts need a non-overlay upper);
- `/usr/sbin/sshd -D` chrooted into that view, as PID 1 of the PID namespace, listening on the
  namespace's address, accepting only a key made for this host.
Whatever runs inside (skiffd and its bridges, iptables rules, mounts, processes) stays in those
namespaces. `close()` kills the PID namespace's init (the kernel then kills everything in it, and the
mount namespace with its overlay disappears), deletes the netns (which deletes the veth pair) and the
temp folder. Needs root, `ip`, `nsenter`, `unshare`, `sshd`, `ssh-keygen` and overlayfs.

    with SSHHost.start() as h:            # or the `ssh_host` pytest fixture in conftest.py
        h.ip, h.port, h.user, h.key_path  # what `machine create -d generic` needs
        h.exec(["cat", "/etc/os-release"])   # run inside the host without SSH (nsenter), for checks
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

SSHD_CONFIG = """\
Port {port}
ListenAddress 0.0.0.0
HostKey /etc/ssh/skiff_test_host_key
PidFile none
UsePAM no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AuthorizedKeysFile .ssh/authorized_keys
StrictModes no
UseDNS no
PrintMotd no
Subsystem sftp internal-sftp
AcceptEnv LANG LC_*
"""

SETUP_SH = """\
set -e
T="$1"; R="$T/root"
mount -t tmpfs -o mode=0755 skiff-sshhost "$T/cow"
mkdir -p "$T/cow/upper" "$T/cow/work"
mount -t overlay skiff-sshhost -o "lowerdir=/,upperdir=$T/cow/upper,workdir=$T/cow/work" "$R"
mount -t proc proc "$R/proc"
mount --rbind /sys "$R/sys"
mount --rbind /dev "$R/dev"
mount -t tmpfs -o mode=0755 tmpfs "$R/run"
mount -t tmpfs -o mode=1777 tmpfs "$R/tmp"
# the engine's data root on a real disk folder, as on a VM (overlayfs cannot be an overlay's upper layer)
mkdir -p "$T/data-root" "$R/var/lib/skiff"
mount --bind "$T/data-root" "$R/var/lib/skiff"
mkdir -p "$R/run/sshd" "$R/root/.ssh" "$R/run/lock"
chmod 0755 "$R/run/sshd"
cp "$T/client_key.pub" "$R/root/.ssh/authorized_keys"
chmod 0700 "$R/root/.ssh"; chmod 0600 "$R/root/.ssh/authorized_keys"
cp "$T/host_key" "$R/etc/ssh/skiff_test_host_key"; chmod 0600 "$R/etc/ssh/skiff_test_host_key"
cp "$T/sshd_config" "$R/etc/ssh/skiff_test_sshd_config"
echo skiff-sshhost > "$R/etc/hostname"; hostname skiff-sshhost
exec chroot "$R" /usr/sbin/sshd -D -e -f /etc/ssh/skiff_test_sshd_config
"""


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def missing_requirements() -> str | None:
    """Why this cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (network and mount namespaces)"
    for tool in ("ip", "nsenter", "unshare", "ssh-keygen", "chroot"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    if not os.path.exists("/usr/sbin/sshd"):
        return "needs openssh-server (/usr/sbin/sshd)"
    with contextlib.suppress(OSError):
        if "overlay" not in Path("/proc/filesystems").read_text():
            with contextlib.suppress(Exception):
                _run(["modprobe", "overlay"])
            if "overlay" not in Path("/proc/filesystems").read_text():
                return "needs overlayfs"
    return None


def _die_with_parent() -> None:
    """If the test process dies hard, unshare gets SIGKILL; its --kill-child then ends the namespace."""
    import ctypes
    import signal

    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _free_subnet() -> int:
    used = _run(["ip", "-4", "-o", "addr"]).stdout
    for _ in range(200):
        x = random.randint(1, 254)
        if f"10.231.{x}." not in used:
            return x
    raise RuntimeError("no free 10.231.x.0/30 subnet")


@dataclass
class SSHHost:
    ip: str
    port: int
    user: str
    key_path: Path
    host_ip: str
    netns: str
    workdir: Path
    proc: subprocess.Popen | None = None
    veth_host: str = ""
    _closed: bool = field(default=False, repr=False)
    _extra_links: list[str] = field(default_factory=list, repr=False)

    @classmethod
    def start(cls, port: int = 22, timeout: float = 20.0) -> "SSHHost":
        why = missing_requirements()
        if why:
            raise RuntimeError(f"SSHHost {why}")
        tag = f"{os.getpid() % 10000:04d}{random.randint(0, 0xFFF):03x}"
        work = Path(tempfile.mkdtemp(prefix="skiff-sshhost-"))
        os.chmod(work, 0o755)
        (work / "root").mkdir()
        (work / "cow").mkdir()
        x = _free_subnet()
        h = cls(ip=f"10.231.{x}.2", port=port, user="root", key_path=work / "client_key",
                host_ip=f"10.231.{x}.1", netns=f"skiff-ssh-{tag}", workdir=work, veth_host=f"sks{tag}")
        try:
            h._setup(timeout)
        except BaseException:
            h.close()
            raise
        return h

    def _setup(self, timeout: float) -> None:
        w = self.workdir
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "skiff-test-host", "-f", str(w / "host_key")])
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "skiff-test-client", "-f", str(w / "client_key")])
        (w / "sshd_config").write_text(SSHD_CONFIG.format(port=self.port, ip=self.ip))
        (w / "setup.sh").write_text(SETUP_SH)
        _run(["ip", "netns", "add", self.netns])
        ns = f"/run/netns/{self.netns}"
        peer = ("skg" + self.veth_host[3:])[:15]
        _run(["ip", "link", "add", self.veth_host, "type", "veth", "peer", "name", peer])
        _run(["ip", "link", "set", peer, "netns", self.netns])
        _run(["ip", "addr", "add", f"{self.host_ip}/30", "dev", self.veth_host])
        _run(["ip", "link", "set", self.veth_host, "up"])
        for args in (["ip", "link", "set", "lo", "up"], ["ip", "addr", "add", f"{self.ip}/30", "dev", peer],
                     ["ip", "link", "set", peer, "up"]):
            # no default route on purpose: the host reaches only its own veth peer, never beyond
            _run(["nsenter", f"--net={ns}", *args])
        log = open(w / "sshd.log", "wb")
        self.proc = subprocess.Popen(
            ["nsenter", f"--net={ns}", "unshare", "--mount", "--pid", "--uts", "--fork", "--propagation", "private",
             "--kill-child", "sh", str(w / "setup.sh"), str(w)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd host failed to start: {(w / 'sshd.log').read_text()[-2000:]}")
            try:
                with socket.create_connection((self.ip, self.port), timeout=1.0) as s:
                    s.settimeout(2.0)
                    if s.recv(4).startswith(b"SSH-"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"sshd did not answer on {self.ip}:{self.port}: {(w / 'sshd.log').read_text()[-2000:]}")
            time.sleep(0.1)

    def add_address(self) -> str:
        """Give the host a second address (another veth pair in a new 10.231.y.0/30): an "IP change"."""
        y = _free_subnet()
        tag = f"{random.randint(0, 0xFFFF):04x}"
        hside, gside = f"sks{tag}x", f"skg{tag}x"
        _run(["ip", "link", "add", hside, "type", "veth", "peer", "name", gside])
        _run(["ip", "link", "set", gside, "netns", self.netns])
        _run(["ip", "addr", "add", f"10.231.{y}.1/30", "dev", hside])
        _run(["ip", "link", "set", hside, "up"])
        ns = f"/run/netns/{self.netns}"
        _run(["nsenter", f"--net={ns}", "ip", "addr", "add", f"10.231.{y}.2/30", "dev", gside])
        _run(["nsenter", f"--net={ns}", "ip", "link", "set", gside, "up"])
        self._extra_links.append(hside)
        return f"10.231.{y}.2"

    def netns_cmd(self, args: list[str]) -> list[str]:
        """argv that runs `args` in the host's network namespace only (e.g. a registry it can reach)."""
        return ["nsenter", f"--net=/run/netns/{self.netns}", *args]

    def init_pid(self) -> int:
        """The host PID of the PID namespace's init (sshd)."""
        assert self.proc is not None
        kids = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        if not kids:
            raise RuntimeError("sshd host is not running")
        return int(kids[0])

    def exec(self, cmd: list[str], check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a command inside the host (its mounts, root, network and PIDs), without SSH."""
        pid = self.init_pid()
        return subprocess.run(["nsenter", "-t", str(pid), "-m", "-n", "-p", "-r", "-w", *cmd],
                              check=check, capture_output=True, text=True, timeout=timeout)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(Exception):
                os.kill(self.init_pid(), 9)  # init of our PID namespace: the kernel kills the rest
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, 9)
                self.proc.wait(5)
        for link in [self.veth_host, *self._extra_links]:
            subprocess.run(["ip", "link", "del", link], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "SSHHost":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
