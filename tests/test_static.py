"""Static checks as part of the suite, so CI fails on a type or lint error: mypy (configured in pyproject.toml:
strict on skiffbox.guest and skiffbox.machine, mypy's default checks elsewhere) over the plain source view
(mypy cannot follow the editable install's import hook), and `ruff check` over the whole repository."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from collections import Counter
from pathlib import Path

from tests.srcview import REPO, source_view

# mypy errors still allowed per file (path inside the source view), for modules being restructured while the
# checks were switched on. A file may only go down: new or moved code is checked in full. Empty it, don't grow it.
MYPY_BASELINE: dict[str, int] = {}

_ERROR = re.compile(r"^(?P<path>[^:\s]+\.pyi?):\d+(?::\d+)?: error: ")


def _mypy(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(REPO / "pyproject.toml"),
         "--cache-dir", str(REPO / "build" / "mypy_cache"), *args],
        cwd=cwd, capture_output=True, text=True, timeout=600)


def test_mypy() -> None:
    view = source_view()
    r = _mypy("-p", "skiffbox", cwd=view)
    assert r.returncode in (0, 1), f"mypy did not run:\n{r.stdout}\n{r.stderr}"
    errors = [(m["path"], ln) for ln in r.stdout.splitlines() if (m := _ERROR.match(ln))]
    assert r.returncode == 0 or errors, f"mypy failed without reporting an error:\n{r.stdout}\n{r.stderr}"
    per_file = Counter(path for path, _ in errors)
    over = {f for f, n in per_file.items() if n > MYPY_BASELINE.get(f, 0)}
    assert not over, ("mypy errors (fix them; `mypy -p skiffbox` in build/srcview shows the same):\n"
                      + "\n".join(ln for path, ln in errors if path in over))


def test_mypy_is_strict_on_guest_and_machine() -> None:
    """The per-module overrides spell out --strict (a `strict = true` there would switch it on globally), so they
    must name every flag today's mypy --strict enables; and strictness must bite on a deliberately untyped def."""
    help_text = subprocess.run([sys.executable, "-m", "mypy", "--help"], capture_output=True, text=True,
                               check=True).stdout
    block = re.search(r"--strict\s+Strict mode; enables the following flags:(.*?)\n  --", help_text, re.S)
    assert block, "mypy --help no longer lists what --strict enables"
    flags = re.findall(r"--([a-z-]+)", re.sub(r"-\s*\n\s*", "-", block[1]))
    assert flags
    conf = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["mypy"]
    strict = next(o for o in conf["overrides"] if "skiffbox.guest.*" in o["module"])
    assert {"skiffbox.machine.*", "skiffbox.client.*", "skiffbox.dashboard.*"} <= set(strict["module"])
    settings = {**conf, **strict}
    for flag in flags:
        key, want = flag.replace("-", "_"), True
        if key.startswith("no_"):
            key, want = key[3:], False
        assert settings.get(key) == want, f"pyproject.toml's mypy override lacks {key} = {str(want).lower()}"

    # A strict module with an untyped def fails, the same def in the client only under mypy's default checks.
    probe = REPO / "build" / "mypy_probe"
    for top in ("guest", "cli"):
        pkg = probe / "skiffbox" / top
        pkg.mkdir(parents=True, exist_ok=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "probe_untyped.py").write_text("def f(x):\n    return x\n")
    r = _mypy("-p", "skiffbox.guest.probe_untyped", "-p", "skiffbox.cli.probe_untyped", cwd=probe)
    assert "guest/probe_untyped.py:1: error: Function is missing a type annotation" in r.stdout, r.stdout
    assert "cli/probe_untyped.py" not in r.stdout, r.stdout


def test_ruff() -> None:
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", "."],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"ruff check found problems (fix them, or `ruff check --fix`):\n{r.stdout}{r.stderr}"


def test_ruff_lints_guest_build() -> None:
    """Older ruff excludes any folder named `build` by default; the config must not skip the Dockerfile builder."""
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "--show-files", "."],
                       cwd=REPO, capture_output=True, text=True, timeout=300, check=True)
    files = {Path(ln).resolve() for ln in r.stdout.splitlines()}
    assert (REPO / "guest" / "build" / "dockerfile.py").resolve() in files
    assert not any("srcview" in f.parts for f in files), "ruff must not lint the source view twice"
