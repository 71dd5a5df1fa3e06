"""vagrant/: Debian's real `vagrant` validates the Vagrantfile (VirtualBox itself cannot run here, so
`--ignore-provider`; `vagrant up` is for contributors on macOS/Windows)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

VAGRANT_DIR = Path(__file__).resolve().parents[2] / "vagrant"

pytestmark = pytest.mark.skipif(
    shutil.which("vagrant") is None, reason="vagrant not installed (Debian: apt-get install --no-install-recommends vagrant)"
)


def _vagrant(args: list[str], cwd: Path, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    e = dict(os.environ)
    e.update(
        VAGRANT_HOME=str(tmp_path / "vagrant-home"),
        VAGRANT_DOTFILE_PATH=str(tmp_path / "dotfile"),  # keep .vagrant/ out of the repository
        VAGRANT_CHECKPOINT_DISABLE="1",
        **env,
    )
    return subprocess.run(["vagrant", *args], cwd=cwd, env=e, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("sync", ["rsync", "virtualbox"])
def test_vagrantfile_validates(tmp_path: Path, sync: str) -> None:
    r = _vagrant(["validate", "--ignore-provider"], VAGRANT_DIR, tmp_path, SKIFF_SYNC=sync)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Vagrantfile validated successfully." in r.stdout
    assert not (VAGRANT_DIR / ".vagrant").exists()


def test_validation_catches_a_broken_vagrantfile(tmp_path: Path) -> None:
    """The check has teeth: a provisioner script that does not exist is reported."""
    work = tmp_path / "copy"
    work.mkdir()
    shutil.copy(VAGRANT_DIR / "provision.sh", work)
    text = (VAGRANT_DIR / "Vagrantfile").read_text()
    assert 'path: "provision.sh", args: ["tests"]' in text
    (work / "Vagrantfile").write_text(text.replace('path: "provision.sh", args: ["tests"]', 'path: "nope.sh", args: ["tests"]'))
    r = _vagrant(["validate", "--ignore-provider"], work, tmp_path)
    assert r.returncode != 0
    assert "nope.sh" in r.stdout + r.stderr


def test_vagrantfile_shape() -> None:
    text = (VAGRANT_DIR / "Vagrantfile").read_text()
    assert 'config.vm.box = "debian/bookworm64"' in text  # Debian 12
    assert 'config.vm.provider "virtualbox"' in text
    script = VAGRANT_DIR / "provision.sh"
    assert os.access(script, os.X_OK)
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    r = subprocess.run(["bash", str(script), "bogus"], capture_output=True, text=True)
    assert r.returncode == 2 and "usage: provision.sh setup|tests" in r.stderr
    # It drives the repository's own setup script, which must exist.
    assert (VAGRANT_DIR.parent / "scripts" / "setup.sh").is_file()
