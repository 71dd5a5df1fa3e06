"""Engine test fixtures: one network namespace + registry + test images per session, and a fresh
skiffd per test module (or per test where a test needs a clean engine)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine.harness import NetNS, Registry, Skiffd, TestImages, push_test_images, rmtree, tempdir




@pytest.fixture(scope="session")
def netns() -> Iterator[NetNS]:
    ns = NetNS()
    yield ns
    ns.remove()


@pytest.fixture(scope="session")
def session_dir() -> Iterator[Path]:
    d = tempdir("skiff-test-")
    yield d
    rmtree(d)


@pytest.fixture(scope="session")
def registry(netns: NetNS, session_dir: Path) -> Iterator[Registry]:
    reg = Registry(netns, session_dir)
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def images(registry: Registry, session_dir: Path) -> TestImages:
    return push_test_images(registry, session_dir)


def _start(netns: NetNS, d: Path, extra: list[str] | None = None) -> Iterator[Skiffd]:
    try:
        daemon = Skiffd(netns, d, extra)
    except BaseException:
        rmtree(d)
        raise
    try:
        yield daemon
    finally:
        leftover = daemon.close()
        rmtree(d)
        assert not leftover, f"skiffd's containers left these behind: {leftover}"


@pytest.fixture(scope="module")
def skiffd(netns: NetNS) -> Iterator[Skiffd]:
    yield from _start(netns, tempdir("skiffd-"))


@pytest.fixture()
def fresh_skiffd(netns: NetNS) -> Iterator[Skiffd]:
    yield from _start(netns, tempdir("skiffd-"))
