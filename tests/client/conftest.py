"""Fixtures for the `skiff` client's tests: the engine harness's namespace, registry, test images and skiffd
(imported from tests/engine, not copied), plus `pair`, which runs the real docker CLI and skiff side by side
against the same skiffd so a test can compare their stdout, stderr and exit status."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.client.compare import Pair
from tests.engine.conftest import fresh_skiffd, images, netns, registry, session_dir, skiffd  # noqa: F401  (fixtures)
from tests.engine.harness import Skiffd, TestImages


@pytest.fixture(scope="module")
def pair(skiffd: Skiffd, images: TestImages) -> Iterator[Pair]:
    p = Pair(skiffd, images)
    yield p
    p.cleanup()


@pytest.fixture()
def fresh_pair(fresh_skiffd: Skiffd, images: TestImages) -> Iterator[Pair]:
    p = Pair(fresh_skiffd, images)
    yield p
    p.cleanup()
