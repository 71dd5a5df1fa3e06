"""`machine create` without internet: the download of the boot image fails (here: a URL on 127.0.0.1
where nothing listens) and the error says what works offline, with nothing left behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from skiffbox.machine.offline import OFFLINE_HINT, is_download_failure, with_offline_hint
from tests.machine.test_cli import _closed_port

VENV_BIN = Path(sys.executable).parent


def test_hint_text() -> None:
    assert "machine image build" in OFFLINE_HINT and "--qemu-boot-image build" in OFFLINE_HINT
    assert "10.0.2.2" in OFFLINE_HINT and "--engine-insecure-registry" in OFFLINE_HINT
    assert with_offline_hint("disk full") == "disk full"
    assert is_download_failure("download of https://cloud.debian.org/x.qcow2 failed: <urlopen error ...>")


@pytest.mark.skipif(not any((Path(d) / "qemu-img").exists() for d in os.environ.get("PATH", "").split(":")),
                    reason="qemu-img is not installed")
def test_create_that_cannot_download_says_what_works_offline(store_root: Path, tmp_path: Path) -> None:
    env = dict(os.environ, SKIFF_IMAGE_CACHE=str(tmp_path / "empty-cache"))
    url = f"http://127.0.0.1:{_closed_port()}/debian-12-generic-amd64.qcow2"
    r = subprocess.run([str(VENV_BIN / "machine"), "create", "-d", "qemu", "--qemu-boot-image", url, "off1"],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert f"download of {url} failed" in r.stderr and OFFLINE_HINT in r.stderr
    ls = subprocess.run([str(VENV_BIN / "machine"), "ls", "-q"], env=env, capture_output=True, text=True)
    assert "off1" not in ls.stdout
