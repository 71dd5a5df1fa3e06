"""Fixtures for the dashboard's browser tests (tests/dashboard/harness.py has the parts): the engine harness's
namespace, registry, test images and skiffd (imported from tests/engine), the dashboard served for that skiffd,
the test's thread moved into the namespace, and headless chromium there."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.dashboard.harness import Dashboard, chromium, dashboard_for, thread_in_netns
from tests.engine.conftest import images, netns, registry, session_dir, skiffd  # noqa: F401  (fixtures)
from tests.engine.harness import NetNS, Skiffd

__all__ = ["Dashboard"]


@pytest.fixture(scope="module")
def dashboard(skiffd: Skiffd) -> Iterator[Dashboard]:
    with dashboard_for(skiffd) as d:
        yield d


@pytest.fixture(scope="module")
def in_netns(netns: NetNS) -> Iterator[None]:
    with thread_in_netns(netns):
        yield


@pytest.fixture(scope="module")
def browser(in_netns: None) -> Iterator[Any]:
    with chromium() as drv:
        yield drv
