"""schemathesis over the swarm's cluster endpoints (/swarm, /nodes, /secrets, /configs) and /plugins, with this
node in a swarm: no 5xx other than dockerd's own (a 503 for init/join when already in a swarm, a 500 "update out of
sequence"), 501s only where skiff says why (installing or running plugins), no Python exception, and the swarm as
the docker CLI shows it is the same after a restart. (test_schemathesis.py fuzzes the rest of the API, where these
paths answer as outside a swarm.)"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.engine.harness import VENV_BIN, Skiffd
from tests.engine.test_schemathesis import MAX_TIME, PORT, SEED, SPEC, _server_errors, allowed, tcp_daemon

pytestmark = pytest.mark.slow

ALLOWED_5XX = [
    ("POST", r"/swarm/(init|join)", 503, "already part of a swarm"),
    ("POST", r"/(swarm|nodes/[^/]+|secrets/[^/]+|configs/[^/]+)/update", 500, "update out of sequence"),
    ("POST", r"/plugins/.*", 501, "skiff does not"),
]


@pytest.fixture()
def daemon() -> Iterator[Skiffd]:
    yield from tcp_daemon("sss")


def _answered(report: Path) -> set[tuple[str, str, int]]:
    """(method, path, status) of every response in the run."""
    out = set()
    for line in report.read_text().splitlines():
        fin = json.loads(line).get("ScenarioFinished")
        for inter in ((fin or {}).get("recorder", {}).get("interactions") or {}).values():
            req, resp = inter.get("request") or {}, inter.get("response") or {}
            path = urlsplit(req.get("uri") or "").path.removeprefix("/v1.50")
            out.add((req.get("method") or "", path, int(resp.get("status_code") or 0)))
    return out


def _swarm_view(d: Skiffd) -> dict[str, Any]:
    def lines(*args: str) -> list[str]:
        return sorted(d.docker(*args).stdout.splitlines())

    info = json.loads(d.docker("info", "--format", "{{json .Swarm}}").stdout)
    return {"node": (info["NodeID"], info["LocalNodeState"], info["Cluster"]["ID"], info["Cluster"]["Version"]),
            "nodes": lines("node", "ls", "--format", "{{.ID}} {{.Hostname}} {{.Availability}}"),
            "secrets": lines("secret", "ls", "--format", "{{.ID}} {{.Name}}"),
            "configs": lines("config", "ls", "--format", "{{.ID}} {{.Name}}"),
            "networks": lines("network", "ls", "--no-trunc", "--format", "{{.ID}} {{.Name}} {{.Driver}} {{.Scope}}"),
            "plugins": lines("plugin", "ls", "--no-trunc", "--format", "{{.ID}} {{.Name}}")}


def test_schemathesis_finds_no_server_errors_in_a_swarm(daemon: Skiffd, tmp_path: Path) -> None:
    daemon.docker("swarm", "init", "--advertise-addr", "127.0.0.1")
    daemon.docker("secret", "create", "fuzz-secret", "-", input="s3cret")
    daemon.docker("config", "create", "fuzz-config", "-", input="conf")
    report = tmp_path / "report.ndjson"
    r = subprocess.run(daemon.ns.cmd([
        str(VENV_BIN / "schemathesis"), "run", str(SPEC), "--url", f"http://127.0.0.1:{PORT}/v1.50",
        "--seed", str(SEED), "--max-examples", "10", "--max-time", str(MAX_TIME), "--workers", "1", "--no-shrink",
        "--request-timeout", "20", "--checks", "not_a_server_error", "--suppress-health-check", "all",
        "--generation-database", "none",
        "--include-path-regex", "^/(swarm|nodes|secrets|configs|plugins)",
        "--exclude-path", "/swarm/leave",  # it ends the swarm the run is about; test_swarm_cluster.py covers it
        "--report", "ndjson", "--report-ndjson-path", str(report),
    ]), capture_output=True, text=True, timeout=MAX_TIME + 300, cwd=tmp_path)
    assert report.exists(), f"schemathesis did not run:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    answered = _answered(report)
    for method, path, status in [("POST", "/secrets/create", 201), ("POST", "/configs/create", 201),
                                 ("GET", "/nodes", 200), ("GET", "/swarm", 200)]:  # it got past the checks too
        assert (method, path, status) in answered, f"no {method} {path} answered {status}"
    bad = [e for e in _server_errors(report) if not allowed(ALLOWED_5XX, *e)]
    assert not bad, "5xx dockerd would not give:\n" + "\n".join(sorted({f"{m} {p} {s} {b[:300]}" for m, p, s, b in bad}))
    log = daemon.logfile.read_text()
    assert "Traceback" not in log, log[log.index("Traceback") - 300:][:4000]
    before = _swarm_view(daemon)
    assert before["node"][1] == "active"
    daemon.restart()
    assert _swarm_view(daemon) == before
