"""`docker build` end to end: the real docker CLI (DOCKER_BUILDKIT=0, classic /build) and docker-py
against a real skiffd, with RUN steps in real containers."""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import io
from pathlib import Path

import pytest

from tests.engine.harness import Skiffd, TestImages, tempdir


@pytest.fixture()
def ctxdir() -> Path:
    d = tempdir("skiff-buildctx-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def write(d: Path, files: dict[str, str | bytes]) -> None:
    for name, data in files.items():
        p = d / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)


def inspect(skiffd: Skiffd, ref: str) -> dict:
    return json.loads(skiffd.docker("image", "inspect", ref).stdout)[0]


def test_cli_build_config_copy_run(skiffd: Skiffd, images: TestImages, ctxdir: Path) -> None:
    write(ctxdir, {
        "Dockerfile": f"FROM {images.busybox}\nENV GREETING=hello\nCOPY a.txt /app/\nWORKDIR /app\n"
                      "RUN echo \"$GREETING from run\" > run.txt && echo to-stderr >&2\nCMD [\"cat\", \"a.txt\", \"run.txt\"]\n",
        "a.txt": "file a\n",
    })
    r = skiffd.docker("build", "-t", "bt:one", str(ctxdir))
    out = r.stdout
    assert "Step 1/6 : FROM" in out and "Step 6/6 : CMD" in out
    assert "to-stderr" in out + r.stderr
    assert "Successfully built" in out and "Successfully tagged bt:one" in out
    run = skiffd.docker("run", "--rm", "bt:one")
    assert run.stdout == "file a\nhello from run\n"
    cfg = inspect(skiffd, "bt:one")["Config"]
    assert cfg["WorkingDir"] == "/app" and "GREETING=hello" in cfg["Env"]
    hist = skiffd.docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", "bt:one").stdout.splitlines()
    assert hist[0] == '/bin/sh -c #(nop)  CMD ["cat" "a.txt" "run.txt"]'
    assert hist[1].startswith('/bin/sh -c echo "$GREETING from run"')
    assert hist[2] == "/bin/sh -c #(nop) WORKDIR /app"
    assert hist[3].startswith("/bin/sh -c #(nop) COPY file:") and hist[3].endswith(" in /app/ ")
    assert hist[4] == "/bin/sh -c #(nop)  ENV GREETING=hello"
