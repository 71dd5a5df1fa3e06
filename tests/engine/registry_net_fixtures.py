"""Real parts for the proxy and mirror tests: more Debian docker-registry instances (any address, plain or
TLS), Debian's tinyproxy, a non-loopback address on the test namespace's `lo`, and skiffd instances
started with their own flags, daemon.json and environment. Everything runs inside the test namespace."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.engine.harness import VENV_BIN, NetNS, Skiffd, rmtree, stop_pid, tempdir, wait_for

PROXY_ENV = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy")


class ExtraRegistry:
    """docker-registry listening on `addr` inside `ns`, with its own storage; TLS with a self-signed
    certificate when `tls` is set."""

    def __init__(self, ns: NetNS, workdir: Path, addr: str, tls: bool = False, cert_ip: str = "127.0.0.1",
                 prefix: str = "", storage: Path | None = None) -> None:
        """`prefix`: serve the API under /prefix/v2/; `storage`: share another registry's storage (read)."""
        self.ns, self.addr, self.tls, self.prefix = ns, addr, tls, prefix.strip("/")
        self.dir = workdir / f"registry-{addr.replace(':', '_')}"
        self.dir.mkdir(parents=True)
        tls_cfg = ""
        if tls:
            cert, key = self.dir / "cert.pem", self.dir / "key.pem"
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=skiff-test",
                            "-addext", f"subjectAltName=IP:{cert_ip},IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                           check=True, capture_output=True)
            tls_cfg = f", tls: {{certificate: {cert}, key: {key}}}"
        cfg = self.dir / "config.yml"
        cfg.write_text("version: 0.1\nlog: {level: warn}\n"
                       f"storage: {{filesystem: {{rootdirectory: {storage or self.dir / 'data'}}}}}\n"
                       f"http: {{addr: '{addr}'{tls_cfg}{f', prefix: /{self.prefix}/' if self.prefix else ''}}}\n")
        self.log = open(self.dir / "registry.log", "wb")
        self.proc = subprocess.Popen(ns.cmd(["docker-registry", "serve", str(cfg)]), stdout=self.log, stderr=self.log)
        try:
            wait_for(lambda: self.ping(), what=f"registry on {addr}")
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.addr}"

    def ping(self) -> bool:
        r = self.ns.run(["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", f"{self.url}/{self.prefix + '/' if self.prefix else ''}v2/"])
        return r.stdout.strip() == "200"

    def copy_from(self, src: str, dest_repo: str) -> None:
        """Copy an image (docker://…) into this registry with skopeo."""
        r = self.ns.run(["skopeo", "copy", "-q", "--src-tls-verify=false", "--dest-tls-verify=false",
                         f"docker://{src}", f"docker://{self.addr}/{dest_repo}"])
        if r.returncode != 0:
            raise RuntimeError(f"skopeo copy {src} → {self.addr}/{dest_repo} failed: {r.stderr}")

    def stop(self) -> None:
        stop_pid(self.proc)
        self.log.close()


class TinyProxy:
    """Debian's tinyproxy on 127.0.0.1:`port` inside `ns`, foreground, with its own config and log."""

    def __init__(self, ns: NetNS, workdir: Path, port: int, basic_auth: tuple[str, str] | None = None) -> None:
        self.ns, self.port = ns, port
        self.dir = workdir / f"tinyproxy-{port}"
        self.dir.mkdir(parents=True)
        self.logfile = self.dir / "tinyproxy.log"
        conf = [f"Port {port}", "Listen 127.0.0.1", "Timeout 60", f'LogFile "{self.logfile}"', "LogLevel Info",
                "MaxClients 50"]  # no ConnectPort line: CONNECT to any port
        if basic_auth:
            conf.append(f"BasicAuth {basic_auth[0]} {basic_auth[1]}")
        (self.dir / "tinyproxy.conf").write_text("\n".join(conf) + "\n")
        self.out = open(self.dir / "stdout.log", "wb")
        self.proc = subprocess.Popen(ns.cmd(["tinyproxy", "-d", "-c", str(self.dir / "tinyproxy.conf")]),
                                     stdout=self.out, stderr=self.out)
        try:
            wait_for(lambda: "Accepting connections" in self.log(), what="tinyproxy")
        except BaseException:
            self.stop()
            raise

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")
        except OSError:
            return ""

    def requests(self) -> list[str]:
        """The request lines the proxy logged (`GET http://…`, `CONNECT host:port`)."""
        return [line.split("): ", 1)[1] for line in self.log().splitlines() if "Request (file descriptor" in line]

    def stop(self) -> None:
        stop_pid(self.proc)
        self.out.close()


def _mounts_under(path: Path) -> list[str]:
    with open("/proc/mounts") as f:
        return [line.split()[1] for line in f if line.split()[1].startswith(str(path))]


@contextlib.contextmanager
def extra_address(ns: NetNS, cidr: str) -> Iterator[str]:
    """A non-loopback address on the namespace's `lo` (loopback targets never go through a proxy)."""
    subprocess.run(ns.cmd(["ip", "addr", "add", cidr, "dev", "lo"]), check=True)
    try:
        yield cidr.split("/")[0]
    finally:
        subprocess.run(ns.cmd(["ip", "addr", "del", cidr, "dev", "lo"]), check=False)


@contextlib.contextmanager
def skiffd_with(ns: NetNS, args: list[str] | None = None, daemon_json: dict | None = None,
                env: dict[str, str] | None = None) -> Iterator[Skiffd]:
    """A skiffd of our own: extra flags, a daemon.json (--config-file) and proxy variables in its environment
    (the test process's own proxy variables are never passed on)."""
    d = tempdir("skiffd-net-")
    extra = list(args or [])
    if daemon_json is not None:
        (d / "daemon.json").write_text(json.dumps(daemon_json))
        extra += ["--config-file", str(d / "daemon.json")]
    saved = {k: os.environ.get(k) for k in PROXY_ENV}
    daemon: Skiffd | None = None
    try:
        for k in PROXY_ENV:
            os.environ.pop(k, None)
        os.environ.update(env or {})
        daemon = Skiffd(ns, d, extra)
    except BaseException:
        rmtree(d)
        raise
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    try:
        yield daemon
    finally:
        daemon.stop()
        leftover = _mounts_under(d)
        for m in sorted(leftover, reverse=True):
            subprocess.run(["umount", "-l", m], check=False)
        rmtree(d)
        assert not leftover, f"skiffd left mounts behind: {leftover}"


def start_fails(ns: NetNS, args: list[str], daemon_json: dict | None = None) -> str:
    """Run skiffd expecting it to refuse its configuration; returns its output."""
    d = tempdir("skiffd-bad-")
    try:
        extra = list(args)
        if daemon_json is not None:
            (d / "daemon.json").write_text(json.dumps(daemon_json))
            extra += ["--config-file", str(d / "daemon.json")]
        r = subprocess.run(ns.cmd([str(VENV_BIN / "skiffd"), "--data-root", str(d / "data"), "--exec-root",
                                   str(d / "run"), "-H", f"unix://{d / 'run' / 'skiff.sock'}", *extra]),
                           capture_output=True, text=True, timeout=60)
        assert r.returncode != 0, f"skiffd started with {extra}: {r.stdout}{r.stderr}"
        return r.stdout + r.stderr
    finally:
        rmtree(d)
