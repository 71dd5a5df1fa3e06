"""Benchmark: image pull and `docker images`, skiffd vs dockerd (Debian's 20.10), plus skiffd's idle RSS.

Both daemons run on this machine inside one network namespace made for the benchmark (with Debian's
docker-registry on 127.0.0.1:5000 in it), each with its own data root, driven by the same docker CLI.

* pull   — `docker pull` of a ~50 MB image (busybox-static base, 1200 text-like files, one 18 MB binary)
           into an empty store; the image is removed (layers included) between runs. Runs alternate.
* images — `docker images` with 100 images loaded (CLI wall time), and the bare `GET /images/json`.
* rss    — skiffd's resident memory, idle, with those 101 images in its store.

Usage (root): python bench/images.py [--runs N] [--json results.json]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import io
import json
import os
import random
import socket
import statistics
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.engine.harness import (ImageSpec, NetNS, Registry, Skiffd, busybox_rootfs_layer, rmtree, tempdir,  # noqa: E402
                                  write_docker_archive)

# The dockerd baseline helper lives with the build benchmark: one implementation.
_spec = importlib.util.spec_from_file_location("bench_build", REPO / "bench" / "build.py")
_bb = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
_spec.loader.exec_module(_bb)  # type: ignore[union-attr]
Dockerd, docker = _bb.Dockerd, _bb.docker

WORDS = ("container image layer registry manifest digest overlay whiteout config history tag push pull "
         "network volume engine daemon socket stream progress blob chain platform index token").split()


def text_layer(files: int, size: int, seed: int = 7) -> bytes:
    rnd = random.Random(seed)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for d in ("app", "app/lib"):
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, 1700000000
            tf.addfile(ti)
        for i in range(files):
            words = []
            n = 0
            while n < size:
                w = rnd.choice(WORDS) + (str(rnd.randrange(1000)) if rnd.random() < 0.3 else "")
                words.append(w)
                n += len(w) + 1
            data = " ".join(words).encode()[:size]
            ti = tarfile.TarInfo(f"app/lib/mod{i:04d}.txt")
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 1700000000
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def binary_layer(size: int) -> bytes:
    buf = io.BytesIO()
    data = hashlib.shake_256(b"skiff-bench").digest(size)
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("app/blob.bin")
        ti.size, ti.mode, ti.mtime = len(data), 0o644, 1700000000
        tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def many_images_archive(path: Path, n: int) -> None:
    """A `docker save`-style archive with `n` small distinct images tagged bench/img:<i>."""
    base = busybox_rootfs_layer()
    base_id = hashlib.sha256(base).hexdigest()
    manifest = []
    with tarfile.open(path, "w") as tf:
        def add(name: str, data: bytes) -> None:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mtime = len(data), 0
            tf.addfile(ti, io.BytesIO(data))

        add(f"{base_id}/layer.tar", base)
        for i in range(n):
            lb = io.BytesIO()
            with tarfile.open(fileobj=lb, mode="w") as lt:
                d = f"image {i}\n".encode()
                ti = tarfile.TarInfo("etc/bench-id")
                ti.size, ti.mtime = len(d), 1700000000
                lt.addfile(ti, io.BytesIO(d))
            layer = lb.getvalue()
            lid = hashlib.sha256(layer).hexdigest()
            cfg = json.dumps({"architecture": "amd64", "os": "linux", "created": f"2026-11-01T00:{i // 60:02d}:{i % 60:02d}Z",
                              "config": {"Cmd": ["sh"], "Labels": {"bench.index": str(i)}},
                              "rootfs": {"type": "layers", "diff_ids": [f"sha256:{base_id}", f"sha256:{lid}"]},
                              "history": [{"created_by": "base"}, {"created_by": f"image {i}"}]}).encode()
            cid = hashlib.sha256(cfg).hexdigest()
            add(f"{lid}/layer.tar", layer)
            add(f"{cid}.json", cfg)
            manifest.append({"Config": f"{cid}.json", "RepoTags": [f"bench/img:{i}"], "Layers": [f"{base_id}/layer.tar", f"{lid}/layer.tar"]})
        add("manifest.json", json.dumps(manifest).encode())


def api_get(sock: str, path: str) -> float:
    t = time.perf_counter()
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    while s.recv(1 << 16):
        pass
    s.close()
    return time.perf_counter() - t


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def children_rss_kb(pid: int) -> int:
    total = rss_kb(pid)
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if f"PPid:\t{pid}\n" in (p / "status").read_text():
                    total += children_rss_kb(int(p.name))
            except OSError:
                pass
    return total


def cpu_s(pid: int) -> float:
    """CPU time (user+system, reaped children included) of a process and its live children, in seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in [pid] + _children(pid):
        try:
            f = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in f[11:15]) / tick
        except OSError:
            pass
    return total


def _children(pid: int) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if f"PPid:\t{pid}\n" in (p / "status").read_text():
                    out.append(int(p.name))
                    out += _children(int(p.name))
            except OSError:
                pass
    return out


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--list-runs", type=int, default=30)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    work = tempdir("skiff-bench-images-")
    ns = NetNS("skbi")
    reg = sk = dk = None
    results: dict = {}
    try:
        reg = Registry(ns, work)
        layers = [busybox_rootfs_layer(), text_layer(1200, 25_000), binary_layer(18 << 20)]
        size = sum(len(l) for l in layers)
        arc = write_docker_archive(ImageSpec(layers), work / "big.tar", "bench/big:v1")
        reg.push_archive(arc, "bench/big:v1")
        ref = f"{reg.addr}/bench/big:v1"
        sk = Skiffd(ns, work / "skiffd")
        dk = Dockerd(ns, work / "dockerd")
        cfg = work / "docker-config"
        cfg.mkdir()
        hosts = {"skiffd": sk.host, "dockerd": dk.host}

        pulls: dict[str, list[float]] = {"skiffd": [], "dockerd": []}
        cpus: dict[str, list[float]] = {"skiffd": [], "dockerd": []}
        pids = {"skiffd": sk.proc.pid, "dockerd": dk.proc.pid}  # type: ignore[union-attr]
        for i in range(args.runs + 1):
            for name, host in hosts.items():
                c0 = cpu_s(pids[name])
                t = time.perf_counter()
                docker(host, "pull", "-q", ref, config=cfg)
                dt = time.perf_counter() - t
                dc = cpu_s(pids[name]) - c0
                if i:  # the first round warms caches (page cache of the registry's blobs)
                    pulls[name].append(dt)
                    cpus[name].append(dc)
                docker(host, "rmi", ref, config=cfg)
        results["pull"] = {"uncompressed_bytes": size, **pulls}
        results["pull_cpu"] = cpus

        arc100 = work / "many.tar"
        many_images_archive(arc100, 100)
        for host in hosts.values():
            docker(host, "load", "-i", str(arc100), config=cfg)
            docker(host, "pull", "-q", ref, config=cfg)
        lists: dict[str, list[float]] = {"skiffd": [], "dockerd": []}
        apis: dict[str, list[float]] = {"skiffd": [], "dockerd": []}
        for _ in range(args.list_runs):
            for name, host in hosts.items():
                t = time.perf_counter()
                out = docker(host, "images", config=cfg).stdout
                lists[name].append(time.perf_counter() - t)
                assert len(out.splitlines()) == 102, out[:300]
                apis[name].append(api_get(host[len("unix://"):], "/v1.41/images/json"))
        results["images_cli"] = lists
        results["images_api"] = apis
        time.sleep(2)
        assert sk.proc is not None
        results["rss_kb"] = {"skiffd": rss_kb(sk.proc.pid), "dockerd+containerd": children_rss_kb(dk.proc.pid)}
    finally:
        for x in (sk, dk, reg):
            if x is not None:
                x.stop()
        ns.remove()
        rmtree(work)

    p, l, a = results["pull"], results["images_cli"], results["images_api"]
    print(f"image: {p['uncompressed_bytes'] / 1e6:.1f} MB uncompressed, {args.runs} pulls each; "
          f"`docker images` with 101 images, {args.list_runs} runs each (medians)")
    print(f"{'':24}{'skiffd':>10}{'dockerd':>10}{'ratio':>8}")
    rows = (("pull (s)", p), ("pull, daemon CPU (s)", results["pull_cpu"]), ("docker images (ms)", l),
            ("GET /images/json (ms)", a))
    for label, d in rows:
        k = 1 if label.startswith("pull") else 1000
        s, dd = med(d["skiffd"]) * k, med(d["dockerd"]) * k
        print(f"{label:24}{s:>10.3f}{dd:>10.3f}{s / dd:>8.2f}")
    print(f"load average during the run: {os.getloadavg()[0]:.1f}")
    print(f"idle RSS: skiffd {results['rss_kb']['skiffd'] / 1024:.1f} MiB, "
          f"dockerd+containerd {results['rss_kb']['dockerd+containerd'] / 1024:.1f} MiB")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
