"""Helpers for the image tests: a counting, optionally throttling TCP proxy in front of the registry (run
inside the test's network namespace), and test images with big random layers.

Run as a script, this module is the proxy: `python images_fixtures.py LISTEN_PORT TARGET_PORT BYTES_PER_S LOG`.
It logs each HTTP request line it forwards (`GET /v2/test/busybox/blobs/sha256:…`), one per line.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import sys
import tarfile
import time
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
        self.proc = subprocess.Popen(ns.cmd([sys.executable, __file__, str(port), str(target), str(rate), str(self.logfile)]),
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


if __name__ == "__main__":
    listen, target, rate, logpath = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    try:
        asyncio.run(_serve(listen, target, rate, logpath))
    except KeyboardInterrupt:
        pass
