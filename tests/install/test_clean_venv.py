"""The wheel built from this repo, installed into a fresh venv with no extras, as a new user would:
`pip install skiffbox` gives working `machine`, `skiff` and `skiffd` with nothing configured, and
installs beside the unrelated index projects named `machine`, `guest` and `skiff` without either side
breaking. Dependencies come from the package index (or pip's cache), so this is marked slow."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
OTHERS = ("machine", "guest", "skiff")  # unrelated projects on the index with names near ours


def run(*cmd: str | Path, env: dict[str, str] | None = None, check: bool = True,
        timeout: float = 600) -> subprocess.CompletedProcess:
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} -> {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("install")
    # Build from a copy of the tracked files, so the build leaves nothing in the work tree.
    src = work / "src"
    files = run("git", "-C", REPO, "ls-files", "-z").stdout.split("\0")
    for f in filter(None, files):
        if (REPO / f).is_file():
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, src / f)
    wheels = work / "wheels"
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", wheels, src)
    (wheel,) = wheels.glob("skiffbox-*.whl")
    v = work / "venv"
    run(sys.executable, "-m", "venv", v)
    run(v / "bin" / "pip", "install", "-q", "--disable-pip-version-check", wheel)
    return v


def clean_env(v: Path, tmp: Path) -> dict[str, str]:
    """Nothing configured: no DOCKER_*/MACHINE_* variables, an empty home, only the venv on PATH first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "MACHINE_", "SKIFF_"))}
    env.update(HOME=str(tmp / "home"), PATH=f"{v / 'bin'}:/usr/bin:/bin", MACHINE_STORAGE_PATH=str(tmp / "store"))
    (tmp / "home").mkdir(exist_ok=True)
    return env


def no_traceback(r: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r.stderr


def test_no_extras_were_needed(venv: Path) -> None:
    names = {ln.split("==")[0].lower() for ln in run(venv / "bin" / "pip", "freeze").stdout.split()}
    assert "skiffbox" in names and "virtualbox" not in names and "pytest" not in names
    for mod in ("typer", "paramiko", "platformdirs", "cryptography", "h11"):
        assert mod in names, names
    run(venv / "bin" / "python", "-c", "import skiffbox.machine.host, skiffbox.guest.daemon, skiffbox.cli.skiff")


def test_entry_points_with_nothing_configured(venv: Path, tmp_path: Path) -> None:
    env = clean_env(venv, tmp_path)
    b = venv / "bin"
    r = run(b / "machine", "--help", env=env)
    assert "create" in r.stdout and "ssh" in r.stdout and "--native-ssh" in r.stdout
    r = run(b / "machine", "ls", env=env)
    assert r.stdout.split() == ["NAME", "ACTIVE", "DRIVER", "STATE", "URL", "SWARM", "DOCKER", "ERRORS"]
    no_traceback(r)
    r = run(b / "skiff", "--help", env=env)
    assert "Usage:" in r.stdout and "--machine" in r.stdout
    r = run(b / "skiff", "version", env=env, check=False)
    no_traceback(r)
    assert r.returncode == 1 and "Skiff Client" in r.stdout
    assert r.stderr.strip().startswith("Cannot connect to the Docker daemon at unix:///var/run/docker.sock")
    assert "machine env NAME" in r.stderr and "--machine NAME" in r.stderr
    r = run(b / "skiff", "--machine", "nosuch", "ps", env=env, check=False)
    no_traceback(r)
    assert r.returncode == 1 and "nosuch" in r.stderr
    r = run(b / "skiffd", "--help", env=env)
    no_traceback(r)


def test_a_missing_optional_package_is_one_line(venv: Path, tmp_path: Path) -> None:
    """pyvbox (the `virtualbox` extra) is not installed: asking for its backend says which extra."""
    env = clean_env(venv, tmp_path)
    env["SKIFF_VBOX_BACKEND"] = "api"
    code = ("from skiffbox.machine.drivers.virtualbox import select_backend\n"
            "from skiffbox.machine.drivers.base import DriverError\n"
            "try:\n    select_backend()\nexcept DriverError as e:\n    print(e)\n")
    r = run(venv / "bin" / "python", "-c", code, env=env)
    assert "pip install 'skiffbox[virtualbox]'" in r.stdout


def test_beside_the_unrelated_machine_guest_and_skiff_projects(venv: Path, tmp_path: Path) -> None:
    pip = venv / "bin" / "pip"
    installed = []
    for name in OTHERS:
        # `machine` 0.0.1 depends on pycrypto, which no longer builds: its own files still install without it.
        if run(pip, "install", "-q", name, check=False).returncode == 0 or \
                run(pip, "install", "-q", "--no-deps", name, check=False).returncode == 0:
            installed.append(name)
    if not installed:
        pytest.skip("none of the unrelated projects installs here")
    env = clean_env(venv, tmp_path)
    before = _their_files_intact(venv, installed)
    # Ours after theirs: every file of theirs as their RECORD has it (some are Python 2 code that no
    # Python 3 imports, so files, not imports, are what can be checked)...
    (wheel,) = (venv.parent / "wheels").glob("skiffbox-*.whl")
    run(pip, "install", "-q", "--force-reinstall", "--no-deps", wheel)
    assert _their_files_intact(venv, installed) == before
    # ...and ours still import and run, and `skiff`/`machine` on PATH are still ours.
    run(venv / "bin" / "python", "-c", "import skiffbox.machine.host, skiffbox.guest.daemon, skiffbox.cli.skiff")
    assert "Skiff version" in run(venv / "bin" / "skiff", "--version", env=env).stdout
    assert "NAME" in run(venv / "bin" / "machine", "ls", env=env).stdout


def _their_files_intact(venv: Path, dists: list[str]) -> int:
    """The number of hashed files of these distributions, all present with their RECORD's hash."""
    code = "\n".join([
        "import base64, hashlib, importlib.metadata as md",
        "n = 0",
        f"for d in {dists!r}:",
        "    for f in md.distribution(d).files or []:",
        "        if f.hash is None: continue",
        "        got = base64.urlsafe_b64encode(hashlib.new(f.hash.mode, f.read_binary()).digest()).rstrip(b'=').decode()",
        "        assert got == f.hash.value, (d, str(f))",
        "        assert 'skiffbox' not in str(f), (d, str(f))",
        "        n += 1",
        "print(n)",
    ])
    n = int(run(venv / "bin" / "python", "-c", code).stdout)
    assert n > 0
    return n
