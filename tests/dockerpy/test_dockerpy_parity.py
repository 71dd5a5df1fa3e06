"""docker-py 7.0.0's integration suite against dockerd and skiffd on this machine: every test that passes on
dockerd passes on skiffd, except the gaps listed in KNOWN_GAPS (each with its reason; the README's table).

Both daemons run at the same time, each in its own network namespace (tests/dockerpy/suite.py); about six
minutes here. `python -m tests.dockerpy.run_suite` runs the same by hand and prints the whole table.
"""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.dockerpy import suite

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3000)]

# (node id prefix, text in the failure or "" for any, why): the README's docker-py table says the same.
_I = "tests/integration/"
KNOWN_GAPS: list[tuple[str, str, str]] = [
    # Both tests read the logs of `ls -a` right after start, without waiting for it: the container is still running
    # when they miss. dockerd loses the same race (a start-then-logs loop here: dockerd 4 of 300, skiffd 9 of 300;
    # skiffd's start answers in 100 ms where dockerd's takes 250).
    (_I + "api_build_test.py::BuildTest::test_build_in_context_abs_dockerfile", "== 4",
     "the test reads the logs right after start without waiting for `ls` to finish (dockerd loses it too)"),
    (_I + "api_build_test.py::BuildTest::test_build_out_of_context_dockerfile", "== 3",
     "the test reads the logs right after start without waiting for `ls` to finish (dockerd loses it too)"),
]


def known_gap(node: str, detail: str) -> str | None:
    for prefix, text, why in KNOWN_GAPS:
        if node.startswith(prefix) and text in detail:
            return why
    return None


@pytest.mark.skipif(shutil.which("dockerd") is None, reason="Debian's docker.io is not installed")
def test_skiffd_passes_what_dockerd_passes() -> None:
    sdist = suite.fetch_sdist()
    python = suite.suite_python(sdist)
    work = suite.new_workdir()
    try:
        with ThreadPoolExecutor(2) as pool:
            runs = {k: pool.submit(suite.run_suite, k, sdist, python, work / k, total_timeout=1800)
                    for k in suite.DAEMONS}
            results = {k: f.result() for k, f in runs.items()}
        print(suite.table(results))
        assert suite.counts(results["dockerd"])["passed"] > 300, "the dockerd baseline did not run"
        gap = suite.diff(results["dockerd"], results["skiffd"])
        unexplained = {n: results["skiffd"].get(n, suite.Outcome("missing")).detail for n in gap
                       if known_gap(n, results["skiffd"].get(n, suite.Outcome("missing")).detail) is None}
        assert not unexplained, "pass on dockerd, not on skiffd:\n" + "\n".join(f"{n}: {d}" for n, d in unexplained.items())
    finally:
        suite.cleanup_workdir(work)
