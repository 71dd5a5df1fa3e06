"""schemathesis over /services and /tasks with this node in a swarm: no 5xx other than dockerd's own (a 500 "update
out of sequence"), no Python exception in the daemon, and the services as the docker CLI shows them are the same
after a restart. (test_schemathesis_swarm.py fuzzes the cluster's endpoints the same way.)"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine.harness import VENV_BIN, Skiffd
from tests.engine.test_schemathesis import MAX_TIME, PORT, SEED, SPEC, _server_errors, allowed, tcp_daemon
from tests.engine.test_schemathesis_swarm import _answered

pytestmark = pytest.mark.slow

ALLOWED_5XX = [("POST", r"/services/[^/]+/update", 500, "update out of sequence")]


@pytest.fixture()
def daemon() -> Iterator[Skiffd]:
    yield from tcp_daemon("ssv")


def _services(d: Skiffd) -> list[str]:
    return sorted(d.docker("service", "ls", "--format", "{{.ID}} {{.Name}} {{.Mode}}").stdout.splitlines())


def test_schemathesis_finds_no_server_errors_in_services(daemon: Skiffd, tmp_path: Path) -> None:
    daemon.docker("swarm", "init", "--advertise-addr", "127.0.0.1")
    daemon.docker("service", "create", "--detach", "--name", "fuzz-target", "--restart-condition", "none",
                  "busybox:latest", "true")  # a service to update and read (its image cannot be pulled here)
    report = tmp_path / "report.ndjson"
    r = subprocess.run(daemon.ns.cmd([
        str(VENV_BIN / "schemathesis"), "run", str(SPEC), "--url", f"http://127.0.0.1:{PORT}/v1.50",
        "--seed", str(SEED), "--max-examples", "10", "--max-time", str(MAX_TIME), "--workers", "1", "--no-shrink",
        "--request-timeout", "20", "--checks", "not_a_server_error", "--suppress-health-check", "all",
        "--generation-database", "none", "--include-path-regex", "^/(services|tasks)",
        "--report", "ndjson", "--report-ndjson-path", str(report),
    ]), capture_output=True, text=True, timeout=MAX_TIME + 300, cwd=tmp_path)
    assert report.exists(), f"schemathesis did not run:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    answered = _answered(report)
    # (generated specs are refused by the type checks or swarmkit's, as by dockerd: creates answer 400)
    for method, path, status in [("POST", "/services/create", 400), ("GET", "/services", 200),
                                 ("GET", "/tasks", 200)]:
        assert (method, path, status) in answered, f"no {method} {path} answered {status}"
    bad = [e for e in _server_errors(report) if not allowed(ALLOWED_5XX, *e)]
    assert not bad, "5xx dockerd would not give:\n" + "\n".join(sorted({f"{m} {p} {s} {b[:300]}" for m, p, s, b in bad}))
    log = daemon.logfile.read_text()
    assert "Traceback" not in log, log[log.index("Traceback") - 300:][:4000]
    # (the run may have removed fuzz-target: a DELETE with any unique prefix of its ID does, as on dockerd)
    daemon.docker("service", "create", "--detach", "--name", "after-fuzz", "--mode", "global", "busybox:latest", "true")
    before = _services(daemon)
    assert any(line.endswith("after-fuzz global") for line in before), before
    daemon.restart()
    assert _services(daemon) == before
    daemon.docker("swarm", "leave", "--force")
    assert daemon.docker("ps", "-aq").stdout.strip() == ""
