"""Fixtures for the `machine` host tool's tests: an isolated store per test."""

from __future__ import annotations

from pathlib import Path

import pytest

from skiffbox.machine.store import Store


@pytest.fixture
def store_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "machine-store"
    monkeypatch.setenv("MACHINE_STORAGE_PATH", str(root))
    return root


@pytest.fixture
def store(store_root: Path) -> Store:
    return Store(store_root)


@pytest.fixture(scope="module")
def ssh_host():
    """A real sshd on a throw-away copy of this machine's root, in namespaces of its own (sshhost.py)."""
    from tests.machine.sshhost import SSHHost, missing_requirements

    why = missing_requirements()
    if why:
        pytest.skip(f"real sshd host unavailable: {why}")
    h = SSHHost.start()
    try:
        yield h
    finally:
        h.close()
