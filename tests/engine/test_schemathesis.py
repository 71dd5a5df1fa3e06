"""schemathesis over the Engine API v1.50 spec against a real skiffd in its own network namespace.

Two runs, seeded and bounded in time: one with generated ids and names (mostly the 404 paths and the
validation of bodies and queries), one where they name a real container, image, volume and network. Passes when no response is a 5xx other than those dockerd itself gives (a registry
it cannot reach, cluster volumes without a swarm), no handler raised a Python exception, and the engine stays
alive and consistent: the real docker CLI still lists everything, also after a restart (nothing unreadable was
stored). The swarm and plugin families are left out here: test_schemathesis_swarm.py fuzzes them with the node
in a swarm, test_validate.py checks their answers outside one.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.engine.conftest import _start
from tests.engine.harness import REPO, VENV_BIN, NetNS, Skiffd, busybox_rootfs_layer, tempdir

pytestmark = pytest.mark.slow

SPEC = REPO / "docs/reference/docker-engine-api-v1.50.yaml"
PORT = 2375
SEED = int(os.environ.get("SKIFF_SCHEMATHESIS_SEED", "20261205"))  # another seed explores further
MAX_TIME = 100  # seconds of generation per run; each test takes a little more

# 5xx a dockerd gives as well: (method, path pattern, status, a fragment of the message).
ALLOWED_5XX = [
    # Registries are unreachable from the test's namespace.
    ("POST", r"/auth", 500, "registry-1.docker.io"),
    ("GET", r"/distribution/.+/json", 500, ""),
    ("POST", r"/images/create", 500, ""),
    ("POST", r"/images/.+/push", 500, ""),
    # Cluster volumes need a swarm.
    ("POST", r"/volumes/create", 503, "cluster volumes"),
    ("PUT", r"/volumes/[^/]+", 503, "swarm is not enabled"),
    # So do overlay networks (the schema offers any driver name); dockerd 20.10 says the same.
    ("POST", r"/networks/create", 503, "not a swarm manager"),
]


def tcp_daemon(prefix: str) -> Iterator[Skiffd]:
    """A skiffd on 127.0.0.1:PORT in a namespace of its own (schemathesis speaks TCP), removed afterwards."""
    ns = NetNS(prefix)
    try:
        yield from _start(ns, tempdir(f"skiffd-{prefix}-"), ["-H", f"tcp://127.0.0.1:{PORT}"])
    finally:
        ns.remove()


@pytest.fixture()
def daemon() -> Iterator[Skiffd]:
    yield from tcp_daemon("st")


def _server_errors(report: Path) -> list[tuple[str, str, int, str]]:
    """(method, path, status, body) of every response schemathesis flagged as a server error."""
    out = []
    for line in report.read_text().splitlines():
        fin = json.loads(line).get("ScenarioFinished")
        if not fin:
            continue
        rec = fin["recorder"]
        for case_id, checks in (rec.get("checks") or {}).items():
            if not any(c["name"] == "not_a_server_error" and c["status"] == "failure" for c in checks):
                continue
            inter = (rec.get("interactions") or {}).get(case_id) or {}
            req, resp = inter.get("request") or {}, inter.get("response") or {}
            body = base64.b64decode((resp.get("content") or {}).get("$base64") or b"").decode(errors="replace")
            path = urlsplit(req.get("uri") or "").path.removeprefix("/v1.50")
            out.append((req.get("method") or "", path, int(resp.get("status_code") or 0), body))
    return out


def allowed(rules: list[tuple[str, str, int, str]], method: str, path: str, status: int, body: str) -> bool:
    """Whether a flagged response is one of `rules`' (method, path pattern, status, message fragment)."""
    return any(method == m and re.fullmatch(p, path) and status == s and frag in body
               for m, p, s, frag in rules)


def _consistent(d: Skiffd) -> dict[str, Any]:
    """What the real docker CLI shows, in a stable form (Go prints a map's labels in random order)."""
    def lines(*args: str) -> list[str]:
        return sorted(d.docker(*args).stdout.splitlines())

    def inspect(kind: str, names: list[str], keep: Callable[[dict[str, Any]], Any]) -> list[Any]:
        return [keep(o) for o in json.loads(d.docker(kind, "inspect", *names).stdout)] if names else []

    ctrs, vols = lines("ps", "-aq", "--no-trunc"), lines("volume", "ls", "-q")
    return {
        "containers": inspect("container", ctrs, lambda o: (o["Id"], o["Name"], o["Config"]["Image"], o["Config"]["Cmd"],
                                                            o["Config"]["Labels"], o["Config"]["ExposedPorts"])),
        "images": lines("images", "--no-trunc", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}"),
        "networks": lines("network", "ls", "--no-trunc", "--format", "{{.ID}} {{.Name}} {{.Driver}}"),
        "volumes": inspect("volume", vols, lambda o: (o["Name"], o["Labels"], o["Options"])),
    }


# With real objects: every {id}/{name} is one that exists, so the handlers' own logic runs instead of a 404.
# Endpoints that stream for as long as the container lives (stats, logs, attach, wait) are left out: a client
# reading them never finishes (dockerd's too); their own tests cover them.
REAL_OBJECTS = r"""
[[operations]]
include-path-regex = "^/containers/\\{id\\}"
parameters = { "id" = "fuzz-target" }

[[operations]]
include-path-regex = "^/images/\\{name\\}"
parameters = { "name" = "ubuntu:latest" }

[[operations]]
include-path-regex = "^/volumes/\\{name\\}"
parameters = { "name" = "fuzzvol" }

[[operations]]
include-path-regex = "^/networks/\\{id\\}"
parameters = { "id" = "fuzznet" }
"""
_STREAMS = ["/containers/{id}/stats", "/containers/{id}/logs", "/containers/{id}/attach",
            "/containers/{id}/attach/ws", "/containers/{id}/wait"]


@pytest.mark.parametrize("ids", ["random", "real"])
def test_schemathesis_finds_no_server_errors(daemon: Skiffd, tmp_path: Path, ids: str) -> None:
    # The spec's examples create containers from "ubuntu": give them one, so create/start/exec get exercised.
    daemon.docker("import", "-", "ubuntu:latest", input=busybox_rootfs_layer(), text=False)
    config, extra = tmp_path / "schemathesis.toml", []
    config.write_text(REAL_OBJECTS if ids == "real" else "")
    if ids == "real":
        daemon.docker("run", "-d", "--name", "fuzz-target", "ubuntu:latest", "sleep", "100000")
        daemon.docker("volume", "create", "fuzzvol")
        daemon.docker("network", "create", "fuzznet")
        extra = [a for p in _STREAMS for a in ("--exclude-path", p)]
    report = tmp_path / "report.ndjson"
    r = subprocess.run(daemon.ns.cmd([
        str(VENV_BIN / "schemathesis"), "--config-file", str(config), "run", str(SPEC),
        "--url", f"http://127.0.0.1:{PORT}/v1.50",
        "--seed", str(SEED), "--max-examples", "5", "--max-time", str(MAX_TIME), "--workers", "1", "--no-shrink",
        "--request-timeout", "20", "--checks", "not_a_server_error", "--suppress-health-check", "all",
        "--generation-database", "none",
        "--exclude-path-regex", "^/(swarm|nodes|services|tasks|secrets|configs|plugins|session)",
        "--exclude-path", "/events",  # a stream without end; tests/engine/test_events_filters.py covers it
        "--exclude-path", "/images/load",  # a tar body schemathesis cannot make; test_images.py loads archives
        *extra, "--report", "ndjson", "--report-ndjson-path", str(report),
    ]), capture_output=True, text=True, timeout=MAX_TIME + 300, cwd=tmp_path)  # its cache stays out of the repo
    summary = r.stdout[-3000:]
    assert report.exists(), f"schemathesis did not run:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    assert "test cases" in r.stdout.lower() or "generated" in r.stdout, summary
    errors = _server_errors(report)
    bad = [e for e in errors if not allowed(ALLOWED_5XX, *e)]
    assert not bad, "5xx dockerd would not give:\n" + "\n".join(sorted({f"{m} {p} {s} {b[:300]}" for m, p, s, b in bad}))
    log = daemon.logfile.read_text()
    assert "Traceback" not in log, log[log.index("Traceback") - 300:][:4000]  # no handler bug, no lost task error
    # Alive and consistent, and everything stored reads back after a restart.
    before = _consistent(daemon)
    daemon.restart()
    assert _consistent(daemon) == before
