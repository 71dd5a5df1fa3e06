"""Helpers for the image tests, run inside the test's network namespace:
* a counting, optionally throttling TCP proxy in front of the registry
  (`python images_fixtures.py proxy LISTEN_PORT TARGET_PORT BYTES_PER_S LOG`), which logs each HTTP request
  line it forwards (`GET /v2/test/busybox/blobs/sha256:…`);
* a scripted fake registry (`python images_fixtures.py fake PORT SPEC.json LOG`) serving exactly the
  manifests and blobs a test crafts (malformed, hostile, mismatched), with bearer or basic auth, redirects
  to another port, and a connection cut halfway through a blob (to prove Range resumes);
* test images with big random layers.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import sys
import tarfile
import base64
import hashlib
import json
import threading
from pathlib import Path

_REQ = re.compile(rb"(GET|HEAD|POST|PUT|PATCH|DELETE) (/\S*) HTTP/1\.[01]\r\n")


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rate: int, log: "io.TextIOBase | None") -> None:
    tail = b""
    try:
        while True:
            data = await reader.read(65536 if rate <= 0 else max(1024, min(65536, rate // 20)))
            if not data:
                break
            if log is not None:
                buf = tail + data
                for m in _REQ.finditer(buf):
                    log.write(f"{m.group(1).decode()} {m.group(2).decode()}\n")
                    log.flush()
                cut = buf.rfind(b"\r\n")
                tail = buf[cut + 2:][-4096:] if cut >= 0 else buf[-4096:]
            writer.write(data)
            await writer.drain()
            if rate > 0:
                await asyncio.sleep(len(data) / rate)
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def _serve(listen: int, target: int, rate: int, logpath: str) -> None:
    log = open(logpath, "a")

    async def handle(cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            cw.close()
            return
        await asyncio.gather(_pump(cr, uw, 0, log), _pump(ur, cw, rate, None))

    srv = await asyncio.start_server(handle, "127.0.0.1", listen)
    async with srv:
        await srv.serve_forever()


class RegistryProxy:
    """`127.0.0.1:<port>` in the namespace, forwarding to the registry; `rate` bytes/s downstream (0 = no limit)."""

    def __init__(self, ns, workdir: Path, port: int, target: int = 5000, rate: int = 0) -> None:
        import subprocess

        from tests.engine.harness import wait_for

        self.ns = ns
        self.port = port
        self.addr = f"127.0.0.1:{port}"
        self.logfile = workdir / f"proxy-{port}.log"
        self.logfile.write_text("")
        self.proc = subprocess.Popen(ns.cmd([sys.executable, __file__, "proxy", str(port), str(target), str(rate), str(self.logfile)]),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: ns.run(["curl", "-sf", f"http://{self.addr}/v2/"]).returncode == 0, what="registry proxy")

    def requests(self) -> list[str]:
        return [l for l in self.logfile.read_text().splitlines() if l]

    def blob_gets(self) -> list[str]:
        return [l for l in self.requests() if l.startswith("GET ") and "/blobs/" in l]

    def clear(self) -> None:
        self.logfile.write_text("")

    def stop(self) -> None:
        from tests.engine.harness import stop_pid

        stop_pid(self.proc)


class Dockerd:
    """Debian's dockerd (20.10) inside `ns` with its own data root: the reference to compare against.

    Image tests need no container networking, so it runs without a bridge and without iptables: the
    shared test namespace keeps no docker0 and no rules that other tests would trip over."""

    def __init__(self, ns, workdir: Path) -> None:
        import subprocess

        from tests.engine.harness import wait_for

        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.sock = str(workdir / "docker.sock")
        self.host = f"unix://{self.sock}"
        self.log = open(workdir / "dockerd.log", "wb")
        self.proc = subprocess.Popen(
            ns.cmd(["dockerd", "--host", self.host, "--data-root", str(workdir / "data"), "--exec-root", str(workdir / "exec"),
                    "--pidfile", str(workdir / "docker.pid"), "--bridge", "none", "--iptables=false",
                    "--ip-masq=false"]),
            stdout=self.log, stderr=self.log, start_new_session=True)
        wait_for(lambda: subprocess.run(["docker", "-H", self.host, "version"], capture_output=True).returncode == 0,
                 timeout=60, what="dockerd")

    def docker(self, *args: str, check: bool = True):
        import subprocess

        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env.update(DOCKER_HOST=self.host, DOCKER_CONFIG=str(self.workdir / "cfg"), DOCKER_CLI_HINTS="false")
        r = subprocess.run(["docker", *args], env=env, capture_output=True, text=True, timeout=120)
        if check and r.returncode != 0:
            raise AssertionError(f"dockerd: docker {' '.join(args)} failed: {r.stderr}")
        return r

    def stop(self) -> None:
        from tests.engine.harness import rmtree, stop_pid

        stop_pid(self.proc, timeout=30)
        self.log.close()
        rmtree(self.workdir)


def random_layer(size: int, name: str = "data/random.bin", seed: bytes | None = None) -> bytes:
    """A layer holding one file of incompressible bytes (so transfers take real time)."""
    data = os.urandom(size) if seed is None else (seed * (size // len(seed) + 1))[:size]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        d = tarfile.TarInfo("data")
        d.type, d.mode, d.mtime = tarfile.DIRTYPE, 0o755, 1700000000
        tf.addfile(d)
        ti = tarfile.TarInfo(name)
        ti.size, ti.mode, ti.mtime = len(data), 0o644, 1700000000
        tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def push_random_image(reg, workdir: Path, name: str, sizes: list[int]) -> str:
    """Push busybox + random layers of the given sizes as `name`; returns the full reference."""
    from tests.engine.harness import ImageSpec, busybox_rootfs_layer, write_docker_archive

    layers = [busybox_rootfs_layer()] + [random_layer(s, f"data/r{i}.bin") for i, s in enumerate(sizes)]
    arc = write_docker_archive(ImageSpec(layers), workdir / (name.replace("/", "_").replace(":", "_") + ".tar"), name)
    reg.push_archive(arc, name)
    arc.unlink()
    return f"{reg.addr}/{name}"


# ---------------------------------------------------------------------------------------------
# A scripted registry
# ---------------------------------------------------------------------------------------------


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class FakeRegistry:
    """Serves `routes` {path: (status, headers, body)} on 127.0.0.1:`port` in `ns`.

    auth: None, ("bearer", user, password) — token from /token, Basic-authenticated when user is set —
    or ("basic", user, password). `cut_once`: paths whose first GET sends half the body then drops the
    connection. `redirect`: path → port of this server's twin (a "CDN") that serves the same routes
    without auth. Requests are logged as JSON lines {method, path, auth, range, port}.
    """

    def __init__(self, ns, workdir: Path, port: int, routes: dict[str, tuple[int, dict[str, str], bytes]],
                 auth: tuple[str, str, str] | None = None, cut_once: list[str] | None = None,
                 redirect: dict[str, int] | None = None, cdn_port: int | None = None, host: str = "127.0.0.1") -> None:
        import subprocess

        from tests.engine.harness import wait_for

        self.ns, self.port = ns, port
        self.addr = f"{host}:{port}"
        spec = {"routes": {k: [st, h, base64.b64encode(b).decode()] for k, (st, h, b) in routes.items()},
                "auth": list(auth) if auth else None, "cut_once": cut_once or [], "redirect": redirect or {},
                "cdn_port": cdn_port, "host": host}
        self.specfile = workdir / f"fake-{port}.json"
        self.specfile.write_text(json.dumps(spec))
        self.logfile = workdir / f"fake-{port}.log"
        self.logfile.write_text("")
        self.proc = subprocess.Popen(ns.cmd([sys.executable, __file__, "fake", str(port), str(self.specfile), str(self.logfile)]),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: ns.run(["curl", "-s", "-o", "/dev/null", f"http://{self.addr}/ping"]).returncode == 0, what="fake registry")

    def log(self) -> list[dict]:
        return [json.loads(l) for l in self.logfile.read_text().splitlines() if l]

    def stop(self) -> None:
        from tests.engine.harness import stop_pid

        stop_pid(self.proc)


def image_routes(repo: str, tag: str, layers: list[bytes], config: dict | None = None, *, compress: bool = True,
                 manifest_override: bytes | None = None, serve_config: bytes | None = None,
                 serve_layers: list[bytes] | None = None) -> tuple[dict, str]:
    """Routes serving one schema-2 image (layers gzipped unless `compress` is false); returns (routes,
    manifest digest). `serve_config`/`serve_layers` replace what is served under the honest digests."""
    import gzip

    blobs = [gzip.compress(l, mtime=0) if compress else l for l in layers]
    cfg = config or {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                     "rootfs": {"type": "layers", "diff_ids": [sha(l) for l in layers]},
                     "history": [{"created_by": f"layer {i}"} for i in range(len(layers))]}
    cb = json.dumps(cfg).encode()
    manifest = manifest_override if manifest_override is not None else json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(cb), "digest": sha(cb)},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": len(b), "digest": sha(b)}
                   for b in blobs],
    }).encode()
    mt = "application/vnd.docker.distribution.manifest.v2+json"
    routes: dict[str, tuple[int, dict[str, str], bytes]] = {
        f"/v2/{repo}/manifests/{tag}": (200, {"Content-Type": mt}, manifest),
        f"/v2/{repo}/manifests/{sha(manifest)}": (200, {"Content-Type": mt}, manifest),
        f"/v2/{repo}/blobs/{sha(cb)}": (200, {}, serve_config if serve_config is not None else cb),
    }
    for i, b in enumerate(blobs):
        routes[f"/v2/{repo}/blobs/{sha(b)}"] = (200, {}, serve_layers[i] if serve_layers is not None else b)
    return routes, sha(manifest)


def _fake_main(port: int, specfile: str, logpath: str) -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    spec = json.loads(Path(specfile).read_text())
    routes = {k: (v[0], v[1], base64.b64decode(v[2])) for k, v in spec["routes"].items()}
    auth = spec["auth"]
    cut = set(spec["cut_once"])
    lock = threading.Lock()
    log = open(logpath, "a")
    token = "tok-" + hashlib.sha256(os.urandom(8)).hexdigest()[:16]

    def make(p: int, with_auth: bool):
        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a) -> None:
                pass

            def _send(self, status: int, headers: dict[str, str], body: bytes, head: bool = False) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _authorized(self) -> bool:
                if not with_auth or auth is None:
                    return True
                kind, user, pw = auth
                got = self.headers.get("Authorization", "")
                if kind == "basic":
                    return got == "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()
                return got == f"Bearer {token}"

            def _challenge(self) -> None:
                kind = auth[0]
                if kind == "basic":
                    h = {"WWW-Authenticate": 'Basic realm="fake"'}
                else:
                    h = {"WWW-Authenticate": f'Bearer realm="http://127.0.0.1:{port}/token",service="fake-registry"'}
                body = json.dumps({"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}).encode()
                self._send(401, {"Content-Type": "application/json", **h}, body)

            def do_HEAD(self) -> None:
                self.do_GET(head=True)

            def do_GET(self, head: bool = False) -> None:
                path = self.path.split("?", 1)[0]
                with lock:
                    log.write(json.dumps({"method": self.command, "path": self.path, "auth": self.headers.get("Authorization", ""),
                                          "range": self.headers.get("Range", ""), "port": p}) + "\n")
                    log.flush()
                if path == "/ping":
                    return self._send(200, {}, b"ok", head)
                if path == "/token" and with_auth:
                    _, user, pw = auth
                    if user and self.headers.get("Authorization") != "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode():
                        return self._send(401, {"Content-Type": "application/json"}, b'{"details":"incorrect username or password"}', head)
                    return self._send(200, {"Content-Type": "application/json"}, json.dumps({"token": token, "expires_in": 300}).encode(), head)
                if not self._authorized():
                    return self._challenge()
                if path == "/v2/":
                    return self._send(200, {"Content-Type": "application/json"}, b"{}", head)
                if with_auth and path in spec["redirect"] and spec.get("cdn_port"):
                    return self._send(307, {"Location": f"http://127.0.0.1:{spec['cdn_port']}{self.path}"}, b"", head)
                if path not in routes:
                    code = "MANIFEST_UNKNOWN" if "/manifests/" in path else "BLOB_UNKNOWN"
                    return self._send(404, {"Content-Type": "application/json"},
                                      json.dumps({"errors": [{"code": code, "message": code.lower().replace("_", " ")}]}).encode(), head)
                status, headers, body = routes[path]
                rng = self.headers.get("Range", "")
                if rng.startswith("bytes=") and status == 200:
                    start = int(rng[6:].split("-")[0])
                    part = body[start:]
                    return self._send(206, {**headers, "Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}"}, part, head)
                with lock:
                    do_cut = path in cut and not head
                    cut.discard(path)
                if do_cut:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                return self._send(status, headers, body, head)

        return H

    servers = [ThreadingHTTPServer((spec.get("host") or "127.0.0.1", port), make(port, True))]
    if spec.get("cdn_port"):
        servers.append(ThreadingHTTPServer(("127.0.0.1", spec["cdn_port"]), make(spec["cdn_port"], False)))
    for s in servers[1:]:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    servers[0].serve_forever()


if __name__ == "__main__":
    try:
        if sys.argv[1] == "proxy":
            asyncio.run(_serve(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]))
        elif sys.argv[1] == "fake":
            _fake_main(int(sys.argv[2]), sys.argv[3], sys.argv[4])
    except KeyboardInterrupt:
        pass
