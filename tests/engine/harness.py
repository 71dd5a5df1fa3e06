"""Real parts for engine tests: a network namespace, Debian's docker-registry in it, test images made
from busybox-static and pushed with skopeo, and skiffd started as a real process in that namespace.

Everything that could touch networking runs inside the namespace this module creates, so bridges and
firewall rules never reach the machine's own network. The docker CLI and docker-py reach skiffd over
its unix socket, which works across network namespaces.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(os.environ.get("SKIFF_VENV_BIN", str(Path(os.sys.executable).parent)))
BUSYBOX = "/bin/busybox"


# ---------------------------------------------------------------------------------------------
# Network namespace
# ---------------------------------------------------------------------------------------------


class NetNS:
    def __init__(self, prefix: str = "skt") -> None:
        self.name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"], check=True)
        self.path = f"/run/netns/{self.name}"

    def cmd(self, args: list[str]) -> list[str]:
        return ["nsenter", f"--net={self.path}", *args]

    def run(self, args: list[str], **kw) -> subprocess.CompletedProcess:
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        return subprocess.run(self.cmd(args), **kw)

    def remove(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], check=False)


def free_port_in(ns: NetNS) -> int:
    # Ports inside a fresh namespace are all free; pick from a range unlikely to clash with our own use.
    return 5000


def wait_for(pred, timeout: float = 20.0, interval: float = 0.05, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if pred():
                return
        except Exception:
            pass
        time.sleep(interval)
    raise TimeoutError(f"timed out waiting for {what}")


def processes_naming(folder: Path) -> list[int]:
    """Processes whose command line names a path under `folder`."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (str(folder) + "/").encode() in (d / "cmdline").read_bytes():
                    out.append(int(d.name))
            except OSError:
                pass
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:200]
    except OSError:
        return "(gone)"


def stop_pid(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------


class Registry:
    """Debian's docker-registry on 127.0.0.1 inside `ns`."""

    def __init__(self, ns: NetNS, workdir: Path, port: int = 5000) -> None:
        self.ns = ns
        self.port = port
        self.addr = f"127.0.0.1:{port}"
        self.dir = workdir / "registry"
        self.dir.mkdir(parents=True)
        cfg = self.dir / "config.yml"
        cfg.write_text(
            "version: 0.1\nlog: {level: warn}\n"
            f"storage: {{filesystem: {{rootdirectory: {self.dir / 'data'}}}, delete: {{enabled: true}}}}\n"
            f"http: {{addr: {self.addr}}}\n"
        )
        self.log = open(self.dir / "registry.log", "wb")
        self.proc = subprocess.Popen(ns.cmd(["docker-registry", "serve", str(cfg)]), stdout=self.log, stderr=self.log)
        wait_for(lambda: self.get("/v2/")[0] == 200, what="registry /v2/")

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        r = self.ns.run(["curl", "-s", "-o", "-", "-w", "\n%{http_code}", *sum((["-H", f"{k}: {v}"] for k, v in (headers or {}).items()), []),
                         f"http://{self.addr}{path}"], text=False)
        out = r.stdout
        body, _, code = out.rpartition(b"\n")
        return int(code or 0), body

    def put_manifest(self, repo: str, ref: str, body: bytes, media_type: str) -> None:
        r = self.ns.run(["curl", "-sf", "-X", "PUT", "-H", f"Content-Type: {media_type}", "--data-binary", "@-",
                         f"http://{self.addr}/v2/{repo}/manifests/{ref}"], input=body, text=False)
        if r.returncode != 0:
            raise RuntimeError(f"manifest PUT failed: {r.stderr!r}")

    def push_archive(self, archive: Path, ref: str, oci: bool = False) -> str:
        """Push a docker-archive tarball with skopeo (an independent, real client) and return the digest."""
        args = ["skopeo", "copy", "-q", "--dest-tls-verify=false"]
        if oci:
            args += ["--format", "oci"]
        digest_file = archive.with_suffix(".digest")
        args += ["--digestfile", str(digest_file), f"docker-archive:{archive}", f"docker://{self.addr}/{ref}"]
        r = self.ns.run(args)
        if r.returncode != 0:
            raise RuntimeError(f"skopeo push of {ref} failed: {r.stderr}")
        return digest_file.read_text().strip()

    def stop(self) -> None:
        stop_pid(self.proc)
        self.log.close()


# ---------------------------------------------------------------------------------------------
# Test images, built from Debian's busybox-static
# ---------------------------------------------------------------------------------------------


def _tar_add(tf: tarfile.TarFile, name: str, data: bytes | None = None, *, mode: int = 0o644, kind: bytes = tarfile.REGTYPE,
             linkname: str = "", mtime: int = 1700000000) -> None:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = mode
    ti.mtime = mtime
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    ti.linkname = linkname
    if data is not None and kind == tarfile.REGTYPE:
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    else:
        tf.addfile(ti)


def busybox_rootfs_layer() -> bytes:
    """A layer with /bin/busybox, its applet links, /etc/passwd and /etc/group."""
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for d in ("bin", "etc", "tmp", "root", "home", "var", "var/www", "usr", "usr/bin", "dev", "proc", "sys"):
            _tar_add(tf, d, kind=tarfile.DIRTYPE, mode=0o1777 if d == "tmp" else 0o755)
        _tar_add(tf, "bin/busybox", Path(BUSYBOX).read_bytes(), mode=0o755)
        for a in sorted(set(applets)):
            if a != "busybox":
                _tar_add(tf, f"bin/{a}", kind=tarfile.SYMTYPE, linkname="busybox", mode=0o777)
        _tar_add(tf, "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n"
                                   b"www:x:33:33:www:/var/www:/bin/sh\n")
        _tar_add(tf, "etc/group", b"root:x:0:\nnogroup:x:65534:\nwww:x:33:\n")
    return buf.getvalue()


def layer_from_files(files: dict[str, bytes | None], dirs: Iterable[str] = (), whiteouts: Iterable[str] = (),
                     opaque: Iterable[str] = ()) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for d in dirs:
            _tar_add(tf, d, kind=tarfile.DIRTYPE, mode=0o755)
        for d in opaque:
            _tar_add(tf, f"{d}/.wh..wh..opq", b"")
        for w in whiteouts:
            head, _, base = w.rpartition("/")
            _tar_add(tf, f"{head + '/' if head else ''}.wh.{base}", b"")
        for name, data in files.items():
            _tar_add(tf, name, data or b"")
    return buf.getvalue()


@dataclass
class ImageSpec:
    layers: list[bytes]
    cmd: list[str] = field(default_factory=lambda: ["sh"])
    env: list[str] = field(default_factory=lambda: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"])
    arch: str = "amd64"
    labels: dict[str, str] = field(default_factory=dict)
    extra_config: dict = field(default_factory=dict)


def write_docker_archive(spec: ImageSpec, dest: Path, repotag: str) -> Path:
    """A `docker save`-style archive (gzip-free layers), which skopeo pushes as schema 2 or OCI."""
    diff_ids = ["sha256:" + hashlib.sha256(l).hexdigest() for l in spec.layers]
    config = {
        "architecture": spec.arch,
        "os": "linux",
        "created": "2026-11-01T00:00:00Z",
        "config": {"Cmd": spec.cmd, "Env": spec.env, "Labels": spec.labels or None, **spec.extra_config},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "2026-11-01T00:00:00Z", "created_by": f"test layer {i}"} for i in range(len(spec.layers))],
    }
    cfg_bytes = json.dumps(config).encode()
    cfg_name = hashlib.sha256(cfg_bytes).hexdigest() + ".json"
    with tarfile.open(dest, "w") as tf:
        names = []
        for l in spec.layers:
            n = f"{hashlib.sha256(l).hexdigest()}/layer.tar"
            names.append(n)
            _tar_add(tf, n, l)
        _tar_add(tf, cfg_name, cfg_bytes)
        _tar_add(tf, "manifest.json", json.dumps([{"Config": cfg_name, "RepoTags": [repotag], "Layers": names}]).encode())
    return dest


@dataclass
class TestImages:
    __test__ = False  # a fixture value, not a test class
    registry: str
    busybox: str  # single layer, schema 2
    busybox_oci: str  # same content, OCI manifest
    multilayer: str  # busybox + a layer adding files
    whiteout: str  # deletes a file and makes a directory opaque
    multiarch: str  # an OCI index with amd64 and arm64 entries
    digests: dict[str, str] = field(default_factory=dict)


def push_test_images(reg: Registry, workdir: Path) -> TestImages:
    work = workdir / "images"
    work.mkdir(parents=True, exist_ok=True)
    base = busybox_rootfs_layer()
    a = reg.addr
    digests: dict[str, str] = {}

    def push(name: str, spec: ImageSpec, oci: bool = False) -> str:
        arc = write_docker_archive(spec, work / (name.replace("/", "_").replace(":", "_") + ".tar"), name)
        d = reg.push_archive(arc, name, oci=oci)
        digests[name] = d
        return f"{a}/{name}"

    bb = push("test/busybox:latest", ImageSpec([base]))
    bb_oci = push("test/busybox:oci", ImageSpec([base]), oci=True)
    extra = layer_from_files({"etc/skiff-layer2": b"second layer\n", "data/keep/a.txt": b"a\n", "data/keep/b.txt": b"b\n"},
                             dirs=["data", "data/keep"])
    ml = push("test/multilayer:latest", ImageSpec([base, extra], labels={"org.skiff.test": "multilayer"}))
    wh = layer_from_files({"data/keep/new.txt": b"new\n"}, whiteouts=["etc/skiff-layer2"], opaque=["data/keep"])
    wo = push("test/whiteout:latest", ImageSpec([base, extra, wh]))
    # Multi-platform: two images with different configs, joined by an OCI index put straight to the registry.
    arm_marker = layer_from_files({"etc/arch": b"arm64\n"}, dirs=["etc"])
    amd_marker = layer_from_files({"etc/arch": b"amd64\n"}, dirs=["etc"])
    push("test/multiarch:amd64", ImageSpec([base, amd_marker], arch="amd64"), oci=True)
    push("test/multiarch:arm64", ImageSpec([base, arm_marker], arch="arm64"), oci=True)
    entries = []
    for arch in ("arm64", "amd64"):
        code, body = reg.get(f"/v2/test/multiarch/manifests/{arch}", {"Accept": "application/vnd.oci.image.manifest.v1+json"})
        assert code == 200, body
        entries.append({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": "sha256:" + hashlib.sha256(body).hexdigest(),
            "size": len(body),
            "platform": {"architecture": arch, "os": "linux", **({"variant": "v8"} if arch == "arm64" else {})},
        })
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries}).encode()
    reg.put_manifest("test/multiarch", "latest", index, "application/vnd.oci.image.index.v1+json")
    digests["test/multiarch:latest"] = "sha256:" + hashlib.sha256(index).hexdigest()
    return TestImages(a, bb, bb_oci, ml, wo, f"{a}/test/multiarch:latest", digests)


# ---------------------------------------------------------------------------------------------
# skiffd
# ---------------------------------------------------------------------------------------------


class Skiffd:
    """A real skiffd process inside `ns`, with its own data root, reached over a unix socket."""

    def __init__(self, ns: NetNS, workdir: Path, extra_args: list[str] | None = None) -> None:
        self.ns = ns
        self.workdir = workdir
        self.data_root = workdir / "data"
        self.exec_root = workdir / "run"
        self.sock = str(self.exec_root / "skiff.sock")
        self.host = f"unix://{self.sock}"
        self.extra_args = extra_args or []
        self.docker_config = workdir / "docker-config"
        self.docker_config.mkdir(parents=True, exist_ok=True)
        self.logfile = workdir / "skiffd.log"
        # Its own cgroup parent (named for its folder, which is unique), so that what its containers leave is told
        # from other daemons' (close()) and its cleanup never touches theirs.
        self.cgroup_parent = f"skiff-test-{workdir.name[:40]}-{hashlib.sha256(str(workdir).encode()).hexdigest()[:8]}"
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        log = open(self.logfile, "ab")
        args = [str(VENV_BIN / "skiffd"), "--data-root", str(self.data_root), "--exec-root", str(self.exec_root),
                "-H", self.host, "--log-level", "debug", "--cgroup-parent", self.cgroup_parent, *self.extra_args]
        self.proc = subprocess.Popen(self.ns.cmd(args), stdout=log, stderr=log, start_new_session=True)
        log.close()
        wait_for(self._ping, timeout=30, what=f"skiffd on {self.sock} (log: {self.logfile})")

    def _ping(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"skiffd exited with {self.proc.returncode}:\n{self.logfile.read_text()[-3000:]}")
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(self.sock)
            s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.1 200")
        except OSError:
            return False
        finally:
            s.close()

    def stop(self) -> None:
        if self.proc is not None:
            stop_pid(self.proc, timeout=30)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def cgroup_leftovers(self, cid: str | None = None) -> list[str]:
        """The cgroup dirs of container `cid` (of any container: the daemon's parent, when None) still present."""
        rel = f"{self.cgroup_parent}/{cid}" if cid else self.cgroup_parent
        root = Path("/sys/fs/cgroup")
        return [str(h / rel) for h in [root, *root.iterdir()] if h.is_dir() and (h / rel).is_dir()]

    def close(self) -> list[str]:
        """Stop for good: remove the containers a test left (the daemon tears them down, as `docker rm -f`
        does), stop, and return what remains anyway: processes naming the daemon's folder (conmon, a runtime's
        init), cgroups under its parent, mounts under its folder (but for the data and exec roots themselves: a test
        may have mounted them). Each is also cleaned away (killed, removed,
        unmounted), so that one leak does not spill into the next test."""
        if self.proc is not None and self.proc.poll() is None:
            ids = self.docker("ps", "-aq", check=False).stdout.split()
            if ids:
                self.docker("rm", "-f", *ids, check=False, timeout=120)
        self.stop()
        left: list[str] = []
        cg_procs = {int(p) for d in self.cgroup_leftovers() for f in Path(d).rglob("cgroup.procs")
                    for p in f.read_text().split()}
        for pid in sorted(set(processes_naming(self.workdir)) | cg_procs):
            left.append(f"process {pid}: {_cmdline(pid)}")
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for d in self.cgroup_leftovers():
            subs = sorted((p for p in Path(d).rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
            left += [f"cgroup {p}" for p in subs]
            for p in [*subs, Path(d)]:
                for _ in range(100):  # the killed processes may take a moment to leave
                    try:
                        p.rmdir()
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        time.sleep(0.02)
        mounts = [m for m in (ln.split()[1] for ln in Path("/proc/mounts").read_text().splitlines())  # the roots
                  if m.startswith(str(self.workdir) + "/") and m not in (str(self.data_root), str(self.exec_root))]
        for m in sorted(mounts, reverse=True):
            subprocess.run(["umount", "-l", m], check=False)
        return left + [f"mount {m}" for m in mounts]

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env.update(DOCKER_HOST=self.host, DOCKER_CONFIG=str(self.docker_config), DOCKER_BUILDKIT="0", DOCKER_CLI_HINTS="false")
        return env

    def docker(self, *args: str, check: bool = True, input: str | bytes | None = None, timeout: float = 120,
               text: bool = True) -> subprocess.CompletedProcess:
        """Run the real docker CLI against this skiffd."""
        r = subprocess.run(["docker", *args], env=self.env(), capture_output=True, text=text, input=input, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed ({r.returncode}):\nstdout: {r.stdout}\nstderr: {r.stderr}")
        return r

    def client(self):
        import docker

        return docker.DockerClient(base_url=self.host, timeout=120)

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.logfile.read_text()[-n:]
        except OSError:
            return ""


def tempdir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix, dir=os.environ.get("SKIFF_TEST_TMP", "/var/tmp")))


def rmtree(p: Path) -> None:
    shutil.rmtree(p, ignore_errors=True)
