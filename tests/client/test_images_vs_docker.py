"""Image commands: skiff and the real docker CLI against one skiffd, compared output for output."""

from __future__ import annotations

import json
import re

import pytest

from tests.client.compare import Pair, normalize


def _pull_lines(text: str) -> list[str]:
    return text.splitlines()


def test_pull_output_and_status_like_docker(fresh_pair: Pair) -> None:
    p = fresh_pair
    ref = p.images.busybox.rsplit(":", 1)[0]  # no tag: both print "Using default tag: latest"
    s = p.skiff("pull", ref)
    assert s.returncode == 0, s
    assert p.docker("rmi", p.images.busybox).returncode == 0
    d = p.docker("pull", ref)
    assert d.returncode == 0, d
    assert _pull_lines(s.stdout) == _pull_lines(d.stdout)
    assert s.stdout.splitlines()[0] == "Using default tag: latest"
    assert s.stdout.splitlines()[-1] == p.images.busybox
    # Already there: "Image is up to date" in both, same text
    p.assert_same("pull", p.images.busybox)
    p.assert_same("pull", "-q", p.images.busybox)
    # by digest
    digest = p.images.digests["test/busybox:latest"]
    p.assert_same("pull", f"{ref}@{digest}")


def test_pull_errors_like_docker(pair: Pair) -> None:
    # unknown tag: an error the engine knows before streaming, or in the stream; both exit 1 with one message
    d, s = pair.assert_same("pull", f"{pair.images.registry}/test/busybox:nosuchtag")
    assert d.returncode == 1
    pair.assert_same("pull", f"{pair.images.registry}/test/nosuchrepo")
    pair.assert_same("pull", "-a", f"{pair.images.registry}/test/busybox:latest")  # tag with --all-tags


def test_images_listing_like_docker(pair: Pair) -> None:
    p = pair
    for ref in (p.images.busybox, p.images.multilayer, p.images.busybox_oci):
        assert p.docker("pull", "-q", ref).returncode == 0
    p.docker("tag", p.images.busybox, "extra/name:v1")
    try:
        for args in (["images"], ["images", "-a"], ["images", "--digests"], ["images", "-q"], ["images", "--no-trunc"],
                     ["images", "--format", "{{json .}}"], ["images", "--format", "table {{.Repository}}\t{{.ID}}"],
                     ["images", "--format", "{{.Repository}}:{{.Tag}} {{.Size}} {{.Digest}}"],
                     ["images", f"{p.images.registry}/test/busybox"], ["images", "--filter", "reference=extra/*"],
                     ["image", "ls", "--digests", "--format", "table {{.Repository}}\t{{.Tag}}"],
                     ["images", "-q", "--no-trunc", "--filter", "dangling=false"]):
            p.assert_same(*args, unordered=True)
        p.assert_same("image", "inspect", p.images.multilayer, times=False)
        p.assert_same("image", "inspect", "-f", "{{.Id}} {{json .RepoTags}} {{.Config.Cmd}}", p.images.busybox)
        p.assert_same("inspect", "--type", "image", p.images.busybox, times=False)
        p.assert_same("history", p.images.multilayer)
        p.assert_same("history", "--no-trunc", "-H=false", p.images.multilayer)
    finally:
        p.docker("rmi", "extra/name:v1")


def test_tag_and_rmi_like_docker(pair: Pair) -> None:
    p = pair
    assert p.docker("pull", "-q", p.images.busybox).returncode == 0
    d, s = p.docker("tag", p.images.busybox, "mine/a:1"), p.skiff("tag", p.images.busybox, "mine/b:1")
    assert d.returncode == s.returncode == 0 and d.stdout == s.stdout == ""
    listing = p.skiff("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    assert "mine/a:1" in listing and "mine/b:1" in listing
    d, s = p.docker("rmi", "mine/a:1"), p.skiff("rmi", "mine/b:1")
    assert (d.returncode, s.returncode) == (0, 0)
    assert d.stdout.replace("mine/a", "mine/X") == s.stdout.replace("mine/b", "mine/X")
    p.assert_same("rmi", "nosuch/image:1")
    p.assert_same("tag", "nosuch/image:1", "x:1")
    p.assert_same("rmi")


def _engine_can_push(p: Pair) -> bool:
    """Probe: pushing an image the engine does not have answers 404 "No such image" once push exists."""
    r = p.docker("push", "127.0.0.1:5000/nosuch/probe:1")
    return "No such image" in r.stderr or "does not exist" in r.stderr


def test_push_like_docker(pair: Pair) -> None:
    p = pair
    if not _engine_can_push(p):
        pytest.skip("engine has no image push yet (POST /images/{name}/push)")
    assert p.docker("pull", "-q", p.images.multilayer).returncode == 0
    a, b = f"{p.images.registry}/pushed/a:v1", f"{p.images.registry}/pushed/b:v1"
    p.docker("tag", p.images.multilayer, a)
    p.docker("tag", p.images.multilayer, b)
    d, s = p.docker("push", a), p.skiff("push", b)
    assert d.returncode == s.returncode == 0, (d, s)
    # Which blob is mounted from where, and in which order layers finish, is the engine's business (it pushes
    # layers concurrently): compare the set of lines with mount sources removed.
    def same(text: str, repo: str) -> list[str]:
        return sorted(re.sub(r"Mounted from \S+", "Mounted", normalize(text.replace(repo, "pushed/X"))).splitlines())

    assert same(d.stdout, "pushed/a") == same(s.stdout, "pushed/b")
    p.assert_same("push", "-q", b)
    tags = p.daemon.ns.run(["curl", "-s", f"http://{p.images.registry}/v2/pushed/b/tags/list"]).stdout
    assert json.loads(tags)["tags"] == ["v1"]
