"""End to end with a real sshd host: `machine create -d generic`, the real docker CLI over mutual TLS,
ssh, scp, certificate re-issue, regenerate-certs, provision/upgrade, rm.

The host is a copy-on-write view of this machine's root in namespaces of its own (sshhost.py); skiffd
is installed into it from a wheel over SSH exactly as on a VM.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

VENV_BIN = Path(sys.executable).parent
NAME = "gen1"


def _machine_env(store_root: Path, docker_cfg: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env.update(MACHINE_STORAGE_PATH=str(store_root), DOCKER_CONFIG=str(docker_cfg),
               PATH=f"{VENV_BIN}:{env.get('PATH', '/usr/bin:/bin')}", SHELL="/bin/bash")
    return env


class Ctx:
    def __init__(self, root: Path, host) -> None:
        self.root = root / "store"
        self.work = root
        self.host = host
        (root / "docker-config").mkdir(exist_ok=True)
        self.env = _machine_env(self.root, root / "docker-config")

    def machine(self, *args: str, check: bool = True, input: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
        r = subprocess.run([str(VENV_BIN / "machine"), *args], env=self.env, capture_output=True, text=True,
                           input=input, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"machine {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        return r

    def docker(self, script: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run docker commands in bash after `eval "$(machine env NAME)"`, as a user would."""
        r = subprocess.run(["bash", "-c", f'set -e; eval "$(machine env {NAME})"; {script}'], env=self.env,
                           capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"docker script failed ({r.returncode}): {script}\n{r.stdout}\n{r.stderr}")
        return r

    @property
    def mdir(self) -> Path:
        return self.root / "machines" / NAME


@pytest.fixture(scope="module")
def ctx(ssh_host, tmp_path_factory):
    if shutil.which("docker") is None:
        pytest.skip("the docker CLI is not installed")
    c = Ctx(tmp_path_factory.mktemp("e2e-generic"), ssh_host)
    yield c
    if c.mdir.exists():
        c.machine("rm", "-f", NAME, check=False)


def test_create_generic(ctx: Ctx) -> None:
    h = ctx.host
    r = ctx.machine("create", "-d", "generic", "--generic-ip-address", h.ip, "--generic-ssh-user", h.user,
                    "--generic-ssh-key", str(h.key_path), "--engine-insecure-registry", "127.0.0.1:5000",
                    "--engine-label", "purpose=e2e", NAME)
    assert "The engine is up and running!" in r.stderr
    cfg = json.loads((ctx.mdir / "config.json").read_text())
    assert cfg["DriverName"] == "generic" and cfg["Driver"]["IPAddress"] == h.ip
    assert cfg["Skiff"]["State"] == "ok"
    for key in ("id_rsa", "server-key.pem", "key.pem"):
        assert (ctx.mdir / key).stat().st_mode & 0o077 == 0, f"{key} must be private"
    # the engine's config on the host carries the engine options
    daemon = json.loads(h.exec(["cat", "/etc/skiff/daemon.json"]).stdout)
    assert daemon["tlsverify"] is True and "127.0.0.1:5000" in daemon["insecure-registries"]
    assert "purpose=e2e" in daemon["labels"] and "provider=generic" in daemon["labels"]


def test_ls_inspect_ip_url_status(ctx: Ctx) -> None:
    h = ctx.host
    out = ctx.machine("ls").stdout.splitlines()
    assert out[0].split() == ["NAME", "ACTIVE", "DRIVER", "STATE", "URL", "SWARM", "DOCKER", "ERRORS"]
    row = out[1].split()
    assert row[:5] == [NAME, "-", "generic", "Running", f"tcp://{h.ip}:2376"]
    assert row[5].startswith("v")
    assert ctx.machine("ip", NAME).stdout == f"{h.ip}\n"
    assert ctx.machine("url", NAME).stdout == f"tcp://{h.ip}:2376\n"
    assert ctx.machine("status", NAME).stdout == "Running\n"
    assert ctx.machine("version", NAME).stdout.strip()  # the engine's version
    assert ctx.machine("version").stdout.startswith("machine version ")
    assert ctx.machine("inspect", "-f", "{{.Driver.IPAddress}} {{.DriverName}}", NAME).stdout == f"{h.ip} generic\n"
    env = dict(ctx.env, DOCKER_HOST=f"tcp://{h.ip}:2376")
    r = subprocess.run([str(VENV_BIN / "machine"), "active"], env=env, capture_output=True, text=True)
    assert r.stdout == f"{NAME}\n"


def test_docker_cli_over_mutual_tls(ctx: Ctx) -> None:
    r = ctx.docker('echo "$DOCKER_HOST $DOCKER_TLS_VERIFY $DOCKER_MACHINE_NAME"; '
                   "docker version --format '{{.Server.Version}} {{.Server.Os}}'; "
                   "docker info --format '{{.Name}} {{json .Labels}}'")
    lines = r.stdout.splitlines()
    assert lines[0] == f"tcp://{ctx.host.ip}:2376 1 {NAME}"
    assert lines[1].endswith(" linux")
    assert "purpose=e2e" in lines[2]
    # `machine config` gives the same connection as flags
    flags = ctx.machine("config", NAME).stdout.split()
    r = subprocess.run(["docker", *flags, "version", "--format", "{{.Server.Version}}"], env=ctx.env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_clients_without_a_ca_signed_cert_are_refused(ctx: Ctx, tmp_path: Path) -> None:
    from skiffbox.machine import certs

    h = ctx.host
    # docker CLI that verifies the server but presents no client cert
    r = subprocess.run(["docker", "--tlsverify", "--tlscacert", str(ctx.mdir / "ca.pem"), "-H",
                        f"tcp://{h.ip}:2376", "version", "--format", "{{.Server.Version}}"],
                       env=ctx.env, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    # a client cert from another CA
    other = tmp_path / "other-ca"
    certs.ensure_ca_and_client(other)
    ctx_ssl = ssl.create_default_context(cafile=str(ctx.mdir / "ca.pem"))
    ctx_ssl.load_cert_chain(other / "cert.pem", other / "key.pem")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        with socket.create_connection((h.ip, 2376), timeout=10) as raw:
            with ctx_ssl.wrap_socket(raw, server_hostname=h.ip) as s:
                s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
                if not s.recv(100):
                    raise ConnectionError("closed")
    # while the machine's own client cert works
    good = ssl.create_default_context(cafile=str(ctx.mdir / "ca.pem"))
    good.load_cert_chain(ctx.mdir / "cert.pem", ctx.mdir / "key.pem")
    with socket.create_connection((h.ip, 2376), timeout=10) as raw, good.wrap_socket(raw, server_hostname=h.ip) as s:
        s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert b"200" in s.recv(100).split(b"\r\n")[0]


def test_docker_run(ctx: Ctx) -> None:
    """A container through the machine, with an image pulled from a registry only that host can reach."""
    from tests.engine import harness

    class _NS:  # the registry runs in the host's network namespace, on its 127.0.0.1
        def cmd(self, args: list[str]) -> list[str]:
            return ctx.host.netns_cmd(args)

        def run(self, args: list[str], **kw):
            kw.setdefault("capture_output", True)
            kw.setdefault("text", True)
            return subprocess.run(self.cmd(args), **kw)

    if shutil.which("docker-registry") is None or shutil.which("skopeo") is None:
        pytest.skip("docker-registry and skopeo are needed for the image")
    reg = harness.Registry(_NS(), ctx.work / "reg")  # type: ignore[arg-type]
    try:
        arc = harness.write_docker_archive(harness.ImageSpec([harness.busybox_rootfs_layer()]),
                                           ctx.work / "busybox.tar", "test/busybox:latest")
        reg.push_archive(arc, "test/busybox:latest")
        r = ctx.docker("docker run --rm 127.0.0.1:5000/test/busybox:latest echo hi", check=False, timeout=300)
        assert r.returncode == 0, f"docker run over mutual TLS failed: {(r.stderr or r.stdout).strip()}"
        assert r.stdout.strip().splitlines()[-1:] == ["hi"], f"stdout={r.stdout!r} stderr={r.stderr!r}"
    finally:
        reg.stop()


def test_ssh(ctx: Ctx) -> None:
    r = ctx.machine("ssh", NAME, "uname", "-a")
    assert r.stdout.startswith("Linux skiff-sshhost ")
    assert ctx.machine("ssh", NAME, "exit 7", check=False).returncode == 7
    assert ctx.machine("ssh", NAME, "cat", input="through stdin\n").stdout == "through stdin\n"
    r = ctx.machine("ssh", NAME, "echo out; echo err >&2")
    assert r.stdout == "out\n" and r.stderr == "err\n"


def test_ssh_interactive_terminal(ctx: Ctx, tmp_path: Path) -> None:
    """`machine ssh NAME` on a real terminal (tmux): a login shell, typed input, the exit code."""
    import time

    if shutil.which("tmux") is None:
        pytest.skip("tmux is needed to drive a terminal")
    sock = f"skiff-e2e-{os.getpid()}"
    rcfile = tmp_path / "rc"
    tmux = ["tmux", "-L", sock]
    cmd = f"{VENV_BIN / 'machine'} ssh {NAME}; echo $? > {rcfile}; sleep 60"
    subprocess.run([*tmux, "new-session", "-d", "-x", "120", "-y", "30", cmd], env=ctx.env, check=True)
    try:
        def screen() -> str:
            return subprocess.run([*tmux, "capture-pane", "-p"], capture_output=True, text=True).stdout

        def wait(pred, what: str) -> None:
            deadline = time.monotonic() + 30
            while not pred():
                assert time.monotonic() < deadline, f"timed out waiting for {what}; screen:\n{screen()}"
                time.sleep(0.2)

        wait(lambda: "#" in screen() or "$" in screen(), "a shell prompt")
        subprocess.run([*tmux, "send-keys", "echo $((6*7)) $(hostname)", "Enter"], check=True)
        wait(lambda: "42 skiff-sshhost" in screen(), "the command's output")
        subprocess.run([*tmux, "send-keys", "exit 3", "Enter"], check=True)
        wait(lambda: rcfile.exists() and rcfile.read_text().strip() != "", "the exit code")
        assert rcfile.read_text().strip() == "3"
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)


def test_scp(ctx: Ctx, tmp_path: Path) -> None:
    src = tmp_path / "tree"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("A\n")
    (src / "sub" / "b.bin").write_bytes(bytes(range(256)) * 1000)
    one = tmp_path / "one.txt"
    one.write_text("single\n")
    ctx.machine("scp", str(one), f"{NAME}:/root/one.txt")
    assert ctx.host.exec(["cat", "/root/one.txt"]).stdout == "single\n"
    assert ctx.machine("scp", str(src), f"{NAME}:/root/", check=False).returncode != 0  # a dir needs -r
    ctx.machine("scp", "-r", str(src), f"{NAME}:/root/")
    assert ctx.host.exec(["cat", "/root/tree/a.txt"]).stdout == "A\n"
    back = tmp_path / "back"
    back.mkdir()
    ctx.machine("scp", "-r", f"{NAME}:/root/tree", str(back))
    assert (back / "tree" / "sub" / "b.bin").read_bytes() == (src / "sub" / "b.bin").read_bytes()
    ctx.machine("scp", f"{NAME}:one.txt", str(back / "one-copy.txt"))  # relative to the remote home
    assert (back / "one-copy.txt").read_text() == "single\n"
    assert ctx.machine("scp", f"{NAME}:/nonexistent", str(back), check=False).returncode != 0
    # machine to machine goes through the host (scp -3); here both ends are the same machine
    ctx.machine("scp", "-r", f"{NAME}:/root/tree", f"root@{NAME}:/root/tree-copy")
    sums = ctx.host.exec(["sha256sum", "/root/tree/sub/b.bin", "/root/tree-copy/sub/b.bin"]).stdout.split()[::2]
    assert len(sums) == 2 and sums[0] == sums[1]


def _serial(pem: Path) -> int:
    from cryptography import x509

    return x509.load_pem_x509_certificate(pem.read_bytes()).serial_number


def test_regenerate_certs(ctx: Ctx) -> None:
    before = _serial(ctx.mdir / "server.pem")
    ctx.machine("regenerate-certs", "-f", NAME)
    assert _serial(ctx.mdir / "server.pem") != before
    remote = ctx.host.exec(["cat", "/etc/skiff/server.pem"]).stdout
    assert remote == (ctx.mdir / "server.pem").read_text()
    ctx.docker("docker version --format '{{.Server.Version}}' >/dev/null")


def test_ip_change_reissues_server_cert(ctx: Ctx) -> None:
    """docker-machine's most-reported pain: a new IP broke TLS until `regenerate-certs`. Here `env`
    notices, re-issues the cert, pushes it and restarts the engine by itself."""
    new_ip = ctx.host.add_address()
    cfg_path = ctx.mdir / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["Driver"]["IPAddress"] = new_ip  # what a driver records when the VM comes back with a new lease
    cfg_path.write_text(json.dumps(cfg))
    r = ctx.machine("env", NAME)
    assert f'DOCKER_HOST="tcp://{new_ip}:2376"' in r.stdout
    assert "re-issuing" in r.stderr
    from skiffbox.machine import certs

    assert new_ip in certs.server_cert_sans(ctx.mdir / "server.pem")
    r = ctx.docker("docker version --format '{{.Server.Version}}'")
    assert r.stdout.strip()
    # and the next `env` is fast again: nothing to re-issue
    assert "re-issuing" not in ctx.machine("env", NAME).stderr


def test_provision_is_idempotent_and_upgrade_reinstalls(ctx: Ctx) -> None:
    r = ctx.machine("provision", NAME)
    assert "already installed" not in r.stderr  # progress shows steps only
    log = ctx.host.exec(["sh", "-c", "/opt/skiff/venv/bin/pip list 2>/dev/null | grep -i skiff"]).stdout
    assert "skiff-guest" in log.lower() or "skiff_guest" in log.lower()
    ctx.machine("upgrade", NAME)
    ctx.docker("docker info --format '{{.Name}}' >/dev/null")


def test_restart_restarts_the_engine_not_the_host(ctx: Ctx) -> None:
    pid_before = ctx.host.exec(["cat", "/run/skiff/skiffd.pid"]).stdout.strip()
    r = ctx.machine("restart", NAME)
    assert "Restarted machines may have new IP addresses" in r.stderr
    assert ctx.host.exec(["cat", "/run/skiff/skiffd.pid"]).stdout.strip() != pid_before
    ctx.docker("docker version --format '{{.Server.Version}}' >/dev/null")
    assert "not stop" in ctx.machine("stop", NAME, check=False).stderr
    # a host that came back without its engine (no systemd there): `start` brings the engine up
    ctx.host.exec(["/etc/skiff/start.sh", "stop"])
    assert ctx.docker("docker version >/dev/null 2>&1", check=False).returncode != 0
    r = ctx.machine("start", NAME)
    # no answer over TLS within the grace period: start logs in over SSH and starts the engine
    assert "checking it over SSH" in r.stderr and "Starting the engine" in r.stderr, r.stderr
    ctx.docker("docker version --format '{{.Server.Version}}' >/dev/null")


def _ssh_logins(ctx: Ctx) -> int:
    return (ctx.host.workdir / "sshd.log").read_text(errors="replace").count("Accepted publickey")


def test_start_with_current_certs_and_a_running_engine_needs_no_ssh_login(ctx: Ctx) -> None:
    """`start` checks the engine's /_ping over mutual TLS; it logs in over SSH only when it must."""
    before = _ssh_logins(ctx)
    r = ctx.machine("start", NAME)
    assert "Starting the engine" not in r.stderr and "over SSH" not in r.stderr, r.stderr
    assert _ssh_logins(ctx) == before
    assert before > 0  # the count is real: create and the fallback above did log in
    ctx.docker("docker version --format '{{.Server.Version}}' >/dev/null")


def test_provision_without_a_mirror_says_so(ctx: Ctx) -> None:
    """A missing package on a host that cannot reach a Debian mirror: a clear error, nothing broken."""
    # only this host's copy-on-write view changes; without the cached .deb apt must download it
    ctx.host.exec(["sh", "-c", "dpkg -r --force-depends catatonit >/dev/null && rm -f /var/cache/apt/archives/catatonit_*"])
    r = ctx.machine("provision", NAME, check=False)
    assert r.returncode == 1
    assert "cannot reach a Debian mirror" in r.stderr and "catatonit" in r.stderr
    ctx.docker("docker version --format '{{.Server.Version}}' >/dev/null")  # the running engine is untouched


def test_rm(ctx: Ctx) -> None:
    r = ctx.machine("rm", NAME, input="n\n", check=False)
    assert r.returncode != 0 and ctx.mdir.exists()
    ctx.machine("rm", "-y", NAME)
    assert not ctx.mdir.exists()
    assert ctx.machine("ls", "-q").stdout == ""
    # the engine on that host was stopped
    assert ctx.host.exec(["/etc/skiff/start.sh", "status"], check=False).returncode != 0
