from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.qemu.httpserver import FileServer


@pytest.fixture
def file_server() -> Iterator[FileServer]:
    srv = FileServer()
    yield srv
    srv.close()
