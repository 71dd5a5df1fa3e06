from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.qemu.httpserver import FileServer


@pytest.fixture
def file_server() -> Iterator[FileServer]:
    srv = FileServer()
    yield srv
    srv.close()


# ---- the guest image, built once per recipe and shared by every test run on this machine --------
TEST_IMAGE_CACHE = Path(os.environ.get("SKIFF_IMAGE_CACHE", "/var/tmp/skiff-test-image-cache"))


def _cannot_build() -> str | None:
    from skiffbox.machine.image.build import check_host
    from skiffbox.machine.image.errors import ImageError

    if shutil.which("qemu-system-x86_64") is None:
        return "qemu-system-x86_64 not installed"
    try:
        check_host()
    except ImageError as e:
        return str(e)
    return None


@pytest.fixture(scope="session")
def image_cache() -> Path:
    os.environ["SKIFF_IMAGE_CACHE"] = str(TEST_IMAGE_CACHE)  # drivers made by tests find the image here
    return TEST_IMAGE_CACHE


@pytest.fixture(scope="session")
def built_image(image_cache: Path):
    """The image `machine image build` makes (minutes the first time, then a cache hit)."""
    from skiffbox.machine.image.build import build_image, built_image as cached

    img = cached(image_cache)
    if not img.exists():
        reason = _cannot_build()
        if reason:
            pytest.skip(f"cannot build the guest image here: {reason}")
    return build_image(image_cache, progress=lambda m: print(m, flush=True))
