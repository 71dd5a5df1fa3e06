"""registry-mirrors: Docker Hub pulls go to the mirrors first (in order), falling back to the next one on
failure, and the image is recorded under its docker.io name. The real Docker Hub is unreachable from the
test namespace, so a pull of `busybox` that works proves the mirror served it."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.engine.harness import NetNS, Registry, TestImages, rmtree, tempdir
from tests.engine.registry_net_fixtures import ExtraRegistry, skiffd_with, start_fails

MIRROR = "127.0.0.1:5001"
DEAD = "http://127.0.0.1:5009"  # nothing listens there


@pytest.fixture(scope="module")
def mirror(netns: NetNS, registry: Registry, images: TestImages) -> Iterator[ExtraRegistry]:
    """A second registry holding the test busybox as `library/busybox` and `someone/tools` (Hub names)."""
    d = tempdir("skiff-mirror-")
    reg = ExtraRegistry(netns, d, MIRROR)
    try:
        reg.copy_from(images.busybox, "library/busybox:latest")
        reg.copy_from(images.busybox, "someone/tools:1.0")
        yield reg
    finally:
        reg.stop()
        rmtree(d)


def _tags(d) -> set[str]:
    return set(d.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split())


def test_pull_short_name_through_mirror(netns: NetNS, mirror: ExtraRegistry) -> None:
    with skiffd_with(netns, ["--registry-mirror", f"http://{MIRROR}"]) as d:
        r = d.docker("pull", "busybox")
        assert "Pulling from library/busybox" in r.stdout
        assert "Status: Downloaded newer image for busybox:latest" in r.stdout
        assert "busybox:latest" in _tags(d)
        assert d.docker("run", "--rm", "busybox", "echo", "hi").stdout == "hi\n"
        # The record is the docker.io name: every spelling of it finds the same image.
        ids = {d.docker("image", "inspect", "-f", "{{.Id}}", n).stdout.strip()
               for n in ("busybox", "library/busybox", "docker.io/library/busybox:latest")}
        assert len(ids) == 1
        info = d.client().info()
        assert info["RegistryConfig"]["Mirrors"] == [f"http://{MIRROR}/"]
        assert info["RegistryConfig"]["IndexConfigs"]["docker.io"]["Mirrors"] == [f"http://{MIRROR}/"]


def test_pull_user_repo_and_full_name_with_docker_py(netns: NetNS, mirror: ExtraRegistry) -> None:
    with skiffd_with(netns, daemon_json={"registry-mirrors": [f"http://{MIRROR}/"]}) as d:
        c = d.client()
        img = c.images.pull("someone/tools", tag="1.0")
        assert "someone/tools:1.0" in img.tags
        d.docker("pull", "docker.io/library/busybox:latest")
        assert "busybox:latest" in _tags(d)


def test_dead_first_mirror_falls_back_to_the_next(netns: NetNS, mirror: ExtraRegistry) -> None:
    with skiffd_with(netns, ["--registry-mirror", DEAD, "--registry-mirror", f"http://{MIRROR}"]) as d:
        d.docker("pull", "library/busybox")
        assert "busybox:latest" in _tags(d)
        assert "mirror http://127.0.0.1:5009/ failed" in d.log_tail(20000)


def test_all_tags_and_distribution_through_the_mirror(netns: NetNS, mirror: ExtraRegistry) -> None:
    """`pull --all-tags`' tag list and /distribution/…/json go to the mirrors first too (moby's endpoint lookup;
    Docker Hub is out of reach here), the dead first mirror skipped."""
    with skiffd_with(netns, ["--registry-mirror", DEAD, "--registry-mirror", f"http://{MIRROR}"]) as d:
        d.docker("pull", "--all-tags", "someone/tools")
        assert "someone/tools:1.0" in _tags(d)
        data = d.client().api.inspect_distribution("busybox:latest")
        assert data["Descriptor"]["digest"].startswith("sha256:")
        assert {"architecture": "amd64", "os": "linux"}.items() <= data["Platforms"][0].items()


def test_mirror_without_the_image_falls_back(netns: NetNS, mirror: ExtraRegistry, registry: Registry) -> None:
    """A mirror answering 404 (the fixture registry has no library/busybox) is skipped too."""
    with skiffd_with(netns, ["--registry-mirror", f"http://{registry.addr}", "--registry-mirror", f"http://{MIRROR}"]) as d:
        d.docker("pull", "busybox")
        assert "busybox:latest" in _tags(d)


def test_mirrors_only_for_docker_hub(netns: NetNS, mirror: ExtraRegistry, images: TestImages) -> None:
    """Other registries never go to a mirror: with only a dead mirror, a pull from the fixture registry works,
    and a mirror's content is not served for another registry's name."""
    with skiffd_with(netns, ["--registry-mirror", f"http://{MIRROR}"]) as d:
        d.docker("pull", images.busybox)
        r = d.docker("pull", "127.0.0.1:5000/library/busybox", check=False)
        assert r.returncode != 0 and "not found" in r.stderr


def test_no_mirror_reports_docker_hub(netns: NetNS) -> None:
    with skiffd_with(netns, ["--registry-mirror", DEAD]) as d:
        r = d.docker("pull", "busybox", check=False, timeout=180)
        assert r.returncode != 0
        # The last endpoint's error, as dockerd reports it; no traceback.
        assert "registry-1.docker.io" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr and "Traceback" not in d.log_tail(20000)
        assert "busybox:latest" not in _tags(d)


@pytest.mark.parametrize("bad, why", [
    ("127.0.0.1:5001", "no scheme specified"),
    ("ftp://127.0.0.1:5001", "unsupported scheme"),
    ("https://mirror.example/?a=b", "query or fragment"),
    ("https://user:secret@mirror.example", "username/password not allowed"),
])
def test_invalid_mirror_refused_at_start(netns: NetNS, bad: str, why: str) -> None:
    out = start_fails(netns, ["--registry-mirror", bad])
    assert f"invalid mirror: {why}" in out
    assert "secret" not in out and "Traceback" not in out
    out = start_fails(netns, [], daemon_json={"registry-mirrors": [bad]})
    assert f"invalid mirror: {why}" in out


def test_mirror_with_path_accepted(netns: NetNS) -> None:
    """Current dockerd accepts a path (the API is then under it) and normalises with a trailing slash."""
    with skiffd_with(netns, daemon_json={"registry-mirrors": ["https://mirror.example/hub", "http://m2.example:5000"]}) as d:
        info = json.loads(d.docker("info", "--format", "{{json .RegistryConfig}}").stdout)
        assert info["Mirrors"] == ["https://mirror.example/hub/", "http://m2.example:5000/"]


def test_mirror_under_a_path(netns: NetNS, mirror: ExtraRegistry) -> None:
    """A mirror served under a path (distribution's `http.prefix`, as behind a reverse proxy): the API is
    asked for at <mirror>/hub/v2/."""
    d0 = tempdir("skiff-mirror-prefix-")
    reg = ExtraRegistry(netns, d0, "127.0.0.1:5004", prefix="/hub/", storage=mirror.dir / "data")
    try:
        with skiffd_with(netns, ["--registry-mirror", "http://127.0.0.1:5004/hub"]) as d:
            d.docker("pull", "busybox")
            assert "busybox:latest" in _tags(d)
    finally:
        reg.stop()
        rmtree(d0)
