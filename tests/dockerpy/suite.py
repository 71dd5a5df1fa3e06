"""docker-py 7.0.0's own integration suite (tests/integration in its sdist), run against skiffd and against
Debian's dockerd on this machine, each daemon in its own network namespace with its own data root.

Docker Hub is out of reach, so the images the suite names (alpine:3.10, alpine:latest, busybox:latest,
hello-world:latest) are stand-ins made from Debian's busybox-static, pushed with skopeo to a Debian
docker-registry inside each namespace, which both daemons use as their `registry-mirrors` entry: a pull of
`alpine:3.10` goes to the mirror and is recorded under its Docker Hub name, as it would be with the real Hub.

The suite itself runs inside the daemon's namespace too (nsenter), so its tests that reach published ports
or serve files to the daemon on 127.0.0.1 talk to their own daemon. HOME, DOCKER_CONFIG and the temp dir
point into the run's work folder: `docker context` tests and credential files never touch the machine's.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.engine.harness import (
    ImageSpec,
    NetNS,
    Registry,
    Skiffd,
    busybox_rootfs_layer,
    layer_from_files,
    processes_naming,
    rmtree,
    stop_pid,
    tempdir,
    wait_for,
    write_docker_archive,
)

VERSION = "7.0.0"
API_VERSION = "1.41"  # what docker-py's own Makefile tests with (TEST_API_VERSION), and dockerd 20.10's maximum
CACHE = Path(os.environ.get("SKIFF_DOCKERPY_CACHE", "/var/tmp/skiff-dockerpy-cache"))
MIRROR = "127.0.0.1:5000"
DAEMONS = ("dockerd", "skiffd")

# ---------------------------------------------------------------------------------------------
# The sdist, fetched at run time from the package index (cached between runs)
# ---------------------------------------------------------------------------------------------


def fetch_sdist(cache: Path = CACHE, version: str = VERSION) -> Path:
    """The unpacked sdist of docker `version` (pip download, once per machine)."""
    root = cache / f"docker-{version}"
    if (root / "tests" / "integration" / "conftest.py").exists():
        return root
    cache.mkdir(parents=True, exist_ok=True)
    r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-d", str(cache),
                        f"docker=={version}"], capture_output=True, text=True, timeout=300)
    archive = cache / f"docker-{version}.tar.gz"
    if r.returncode != 0 or not archive.exists():
        raise RuntimeError(f"could not download the docker {version} sdist from the package index "
                           f"(pip download --no-binary :all: docker=={version}):\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    tmp = cache / f".unpack-{os.getpid()}"
    rmtree(tmp)
    with tarfile.open(archive) as tf:
        tf.extractall(tmp, filter="data")
    os.replace(tmp / f"docker-{version}", root)
    rmtree(tmp)
    return root


def suite_python(sdist: Path, cache: Path = CACHE) -> Path:
    """A venv with exactly what docker-py's own CI pins (requirements.txt, pytest 7.4.2): docker 7.0.0 does not
    work with requests >= 2.32 (fixed in 7.1), which the project's own venv has."""
    venv = cache / f"venv-docker-{sdist.name.rsplit('-', 1)[1]}"
    py = venv / "bin" / "python"
    if (venv / ".complete").exists():
        return py
    rmtree(venv)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", "-r", str(sdist / "requirements.txt"),
                        "pytest==7.4.2", "pytest-timeout==2.1.0"], capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"could not install docker-py's test requirements into {venv}:\n{r.stderr[-3000:]}")
    (venv / ".complete").touch()
    return py


# ---------------------------------------------------------------------------------------------
# Stand-in images for the Docker Hub names the suite uses
# ---------------------------------------------------------------------------------------------


def push_standins(reg: Registry, workdir: Path) -> None:
    """busybox, alpine (3.10 and latest) and hello-world under their Hub paths (library/…) in `reg`.
    They share the busybox layer but differ in config, so each has its own image ID as on the Hub."""
    work = workdir / "standins"
    work.mkdir(parents=True, exist_ok=True)
    base = busybox_rootfs_layer()
    alpine_release = layer_from_files({"etc/alpine-release": b"3.10.9\n"}, dirs=["etc"])
    images = {
        "library/busybox:latest": ImageSpec([base], cmd=["sh"]),
        "library/alpine:3.10": ImageSpec([base, alpine_release], cmd=["/bin/sh"]),
        "library/alpine:latest": ImageSpec([base, alpine_release], cmd=["/bin/sh"], labels={"stand-in": "alpine"}),
        "library/hello-world:latest": ImageSpec([base], cmd=["echo", "Hello from Docker!"]),
    }
    for ref, spec in images.items():
        arc = write_docker_archive(spec, work / (ref.replace("/", "_").replace(":", "_") + ".tar"), ref)
        reg.push_archive(arc, ref)


# ---------------------------------------------------------------------------------------------
# The two daemons
# ---------------------------------------------------------------------------------------------


class Dockerd:
    """Debian's dockerd (docker.io) inside `ns`: its own data root, exec root (and so its own containerd),
    socket, cgroup parent and an empty daemon.json, so nothing of a system docker is shared or touched."""

    def __init__(self, ns: NetNS, workdir: Path, mirror: str) -> None:
        self.ns, self.workdir = ns, workdir
        self.sock = str(workdir / "docker.sock")
        self.host = f"unix://{self.sock}"
        self.logfile = workdir / "dockerd.log"
        self.cgroup_parent = f"skiff-dockerpy-{ns.name}"
        workdir.mkdir(parents=True, exist_ok=True)
        cfg = workdir / "daemon.json"
        cfg.write_text(json.dumps({"registry-mirrors": [f"http://{mirror}"]}))
        args = ["dockerd", "--host", self.host, "--data-root", str(workdir / "data"), "--exec-root", str(workdir / "exec"),
                "--pidfile", str(workdir / "dockerd.pid"), "--config-file", str(cfg), "--cgroup-parent", self.cgroup_parent]
        with open(self.logfile, "ab") as log:
            self.proc = subprocess.Popen(ns.cmd(args), stdout=log, stderr=log, start_new_session=True)
        try:
            wait_for(self._ping, timeout=60, what=f"dockerd on {self.sock} (log: {self.logfile})")
        except BaseException:
            self.stop()
            raise

    def _ping(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"dockerd exited with {self.proc.returncode}:\n{self.logfile.read_text()[-3000:]}")
        r = subprocess.run(["curl", "-sf", "--unix-socket", self.sock, "http://d/_ping"], capture_output=True, text=True)
        return r.stdout == "OK"

    def stop(self) -> None:
        # dockerd stops its containers and its containerd on SIGTERM
        stop_pid(self.proc, timeout=60)
        _remove_cgroups(self.cgroup_parent)


def _remove_cgroups(name: str) -> None:
    """Remove `name` (and children, deepest first) from every cgroup hierarchy: dockerd leaves them behind."""
    root = Path("/sys/fs/cgroup")
    for d in [root / name, *(top / name for top in root.iterdir() if top.is_dir())]:
        if d.is_dir():
            for sub in sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                sub.rmdir()
            d.rmdir()


@contextmanager
def daemon(kind: str, workdir: Path) -> Iterator[tuple[NetNS, str]]:
    """A namespace with a mirror registry holding the stand-ins and a `kind` daemon using it.
    Yields the namespace and the daemon's DOCKER_HOST."""
    ns = NetNS("skdpy")
    reg = d = None
    try:
        reg = Registry(ns, workdir, port=int(MIRROR.rsplit(":", 1)[1]))
        push_standins(reg, workdir)
        if kind == "dockerd":
            d = Dockerd(ns, workdir / "dockerd", MIRROR)
        else:
            d = Skiffd(ns, workdir / "skiffd", ["--registry-mirror", f"http://{MIRROR}"])
        yield ns, d.host
    finally:
        if d is not None:
            if kind == "skiffd":
                # skiffd's containers outlive it (conmon), as they should across a restart: remove what the
                # suite left running so the daemon tears down their mounts, netns files and cgroups.
                remove_containers(d.sock)
            d.stop()
        if reg is not None:
            reg.stop()
        ns.remove()
        strays = processes_naming(workdir)
        for pid in strays:  # started by this run's daemon (their command lines name its folders)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        left = [line.split()[1] for line in open("/proc/mounts") if line.split()[1].startswith(str(workdir) + "/")]
        for m in sorted(left, reverse=True):  # safety net; the caller reports them
            subprocess.run(["umount", "-l", m], check=False)
        if strays:  # reported rather than failed on: dockerd's leftovers land here too
            print(f"[{kind}] killed {len(strays)} processes left behind under {workdir}", file=sys.stderr)
        if left:
            raise RuntimeError(f"{kind} left {len(left)} mounts behind under {workdir} (unmounted): {left[:5]}")


def remove_containers(sock: str) -> None:
    def api(method: str, path: str) -> str:
        return subprocess.run(["curl", "-s", "-X", method, "--unix-socket", sock, f"http://d{path}"],
                              capture_output=True, text=True, timeout=120).stdout

    for c in json.loads(api("GET", "/containers/json?all=1") or "[]"):
        api("DELETE", f"/containers/{c['Id']}?force=1&v=1")


# ---------------------------------------------------------------------------------------------
# Running the suite and reading its results
# ---------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    status: str  # passed, failed, error, skipped
    detail: str = ""  # first line of the failure or skip reason


def run_suite(kind: str, sdist: Path, python: Path, workdir: Path, selection: list[str] | None = None,
              per_test_timeout: int = 180, total_timeout: float = 3600, extra: list[str] | None = None,
              progress=print) -> dict[str, Outcome]:
    """Run docker-py's integration tests (or `selection`: node ids relative to the sdist) with `python`
    (suite_python) against a fresh `kind` daemon; per-test outcomes by node id."""
    workdir.mkdir(parents=True, exist_ok=True)
    home = workdir / "home"
    (home / ".docker").mkdir(parents=True, exist_ok=True)
    tmp = workdir / "tmp"
    tmp.mkdir(exist_ok=True)
    junit = workdir / "junit.xml"
    with daemon(kind, workdir) as (ns, host):
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_") and k not in ("PYTHONPATH",)}
        env.update(DOCKER_HOST=host, DOCKER_TEST_API_VERSION=API_VERSION, HOME=str(home),
                   DOCKER_CONFIG=str(home / ".docker"), TMPDIR=str(tmp), PYTHONDONTWRITEBYTECODE="1")
        args = [str(python), "-m", "pytest", "-p", "no:cacheprovider", "-o", "addopts=", "-q", "-rN",
                f"--junitxml={junit}", f"--timeout={per_test_timeout}", "--timeout-method=thread",
                *(extra or []), *(selection or ["tests/integration"])]
        progress(f"[{kind}] running docker-py {VERSION} tests/integration ({len(selection) if selection else 'all'} selected)")
        t0 = time.monotonic()
        with open(workdir / "pytest.log", "wb") as log:
            # python -m puts the sdist first on sys.path: the suite tests its own docker package
            proc = subprocess.Popen(ns.cmd(args), cwd=sdist, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            try:
                proc.wait(total_timeout)
            except subprocess.TimeoutExpired:
                progress(f"[{kind}] suite still running after {total_timeout:.0f} s: stopped")
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        progress(f"[{kind}] done in {time.monotonic() - t0:.0f} s (log: {workdir / 'pytest.log'})")
    return read_junit(junit)


def read_junit(path: Path) -> dict[str, Outcome]:
    out: dict[str, Outcome] = {}
    if not path.exists():
        return out
    for case in ET.parse(path).getroot().iter("testcase"):
        classname = case.get("classname", "")
        # "tests.integration.api_container_test.CreateContainerTest" -> file path + class
        parts = classname.split(".")
        mod_end = next((i for i, p in enumerate(parts) if p.endswith("_test")), len(parts) - 1)
        node = "/".join(parts[: mod_end + 1]) + ".py" + "".join("::" + p for p in parts[mod_end + 1:]) + "::" + case.get("name", "")
        status, detail = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                status = {"failure": "failed", "error": "error", "skipped": "skipped"}[child.tag]
                detail = (child.get("message") or "").strip().splitlines()[0][:200] if child.get("message") else ""
                if status != "skipped":
                    break  # an error in teardown after a failure: the failure says more
        out[node] = Outcome(status, detail)
    return out


def counts(results: dict[str, Outcome]) -> dict[str, int]:
    c = {"passed": 0, "failed": 0, "error": 0, "skipped": 0}
    for o in results.values():
        c[o.status] += 1
    return c


def diff(base: dict[str, Outcome], other: dict[str, Outcome]) -> list[str]:
    """Node ids that pass on `base` (dockerd) but not on `other` (skiffd)."""
    return sorted(n for n, o in base.items() if o.status == "passed" and other.get(n, Outcome("missing")).status != "passed")


def table(results: dict[str, dict[str, Outcome]]) -> str:
    """A markdown table: one line per test that is not passed everywhere, with counts first."""
    kinds = list(results)
    lines = ["| | " + " | ".join(kinds) + " |", "|---|" + "---|" * len(kinds)]
    for s in ("passed", "failed", "error", "skipped"):
        lines.append(f"| {s} | " + " | ".join(str(counts(results[k])[s]) for k in kinds) + " |")
    lines += ["", "| test | " + " | ".join(kinds) + " |", "|---|" + "---|" * len(kinds)]
    nodes = sorted(set().union(*[set(r) for r in results.values()]))
    for n in nodes:
        st = [results[k].get(n, Outcome("missing")).status for k in kinds]
        if len(set(st)) > 1:
            lines.append(f"| {n.removeprefix('tests/integration/')} | " + " | ".join(st) + " |")
    return "\n".join(lines)


def save(results: dict[str, Outcome], path: Path) -> None:
    path.write_text(json.dumps({n: [o.status, o.detail] for n, o in sorted(results.items())}, indent=1))


def load(path: Path) -> dict[str, Outcome]:
    return {n: Outcome(*v) for n, v in json.loads(path.read_text()).items()}


def cleanup_workdir(workdir: Path) -> None:
    shutil.rmtree(workdir, ignore_errors=True)


def new_workdir() -> Path:
    return tempdir("skiff-dockerpy-")
