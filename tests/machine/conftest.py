"""Fixtures for the `machine` host tool's tests: an isolated store per test."""

from __future__ import annotations

from pathlib import Path

import pytest

from machine.store import Store


@pytest.fixture
def store_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "machine-store"
    monkeypatch.setenv("MACHINE_STORAGE_PATH", str(root))
    return root


@pytest.fixture
def store(store_root: Path) -> Store:
    return Store(store_root)
