"""A container's /etc/hosts in every network mode, through the real docker CLI, against what dockerd writes
(observed with Debian's dockerd 20.10 and the same CLI): `--add-host` entries listed once, `host-gateway`
resolved, the host's own file for `--network host` without `--add-host`, and the other container's file for
`--network container:x` (where `--add-host` is refused at create)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine.containers_fixtures import remove_all
from tests.engine.harness import Skiffd, TestImages

HEADER = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n"
          "ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")
ADD = ["--add-host", "a:1.2.3.4", "--add-host", "gw:host-gateway"]


@pytest.fixture
def bb(skiffd: Skiffd, images: TestImages) -> Iterator[str]:
    """busybox (pulled once; later pulls only check the tag), and no containers left after each test."""
    skiffd.docker("pull", "-q", images.busybox)
    yield images.busybox
    remove_all(skiffd)


def _gateway(d: Skiffd) -> str:
    return d.docker("network", "inspect", "-f", "{{(index .IPAM.Config 0).Gateway}}", "bridge").stdout.strip()


@pytest.mark.parametrize("mode", ["none", "host"])
def test_add_host_without_own_address(skiffd: Skiffd, bb: str, mode: str) -> None:
    out = skiffd.docker("run", "--rm", *ADD, "--network", mode, bb, "cat", "/etc/hosts").stdout
    assert out == HEADER + f"1.2.3.4\ta\n{_gateway(skiffd)}\tgw\n"


def test_add_host_bridge_once_then_own_address(skiffd: Skiffd, bb: str) -> None:
    out = skiffd.docker("run", "--rm", *ADD, "--hostname", "box1", bb, "cat", "/etc/hosts").stdout
    gw = _gateway(skiffd)
    assert re.fullmatch(re.escape(HEADER + f"1.2.3.4\ta\n{gw}\tgw\n") + r"172\.17\.\d+\.\d+\tbox1\n", out), out
    # A user network: the same entries, the own address on that network.
    skiffd.docker("network", "create", "--subnet", "10.212.0.0/24", "etcnet")
    try:
        out = skiffd.docker("run", "--rm", "--network", "etcnet", "--ip", "10.212.0.9", "--add-host", "a:1.2.3.4",
                            "--hostname", "box2", bb, "cat", "/etc/hosts").stdout
        assert out == HEADER + "1.2.3.4\ta\n10.212.0.9\tbox2\n"
    finally:
        remove_all(skiffd)
        skiffd.docker("network", "rm", "etcnet")


def test_host_mode_without_add_host_is_the_hosts_file(skiffd: Skiffd, bb: str) -> None:
    out = skiffd.docker("run", "--rm", "--network", "host", bb, "cat", "/etc/hosts").stdout
    assert out == Path("/etc/hosts").read_text()


def test_container_mode_shares_the_hosts_file(skiffd: Skiffd, bb: str) -> None:
    skiffd.docker("run", "-d", "--name", "base", "--hostname", "base1", "--add-host", "b:5.6.7.8", bb, "sleep", "60")
    own = skiffd.docker("exec", "base", "cat", "/etc/hosts").stdout
    assert re.fullmatch(re.escape(HEADER + "5.6.7.8\tb\n") + r"172\.17\.\d+\.\d+\tbase1\n", own), own
    out = skiffd.docker("run", "--rm", "--network", "container:base", bb, "cat", "/etc/hosts").stdout
    assert out == own
    r = skiffd.docker("run", "--rm", "--add-host", "a:1.2.3.4", "--network", "container:base", bb, "true", check=False)
    assert r.returncode == 125
    assert "conflicting options: custom host-to-IP mapping and the network mode" in r.stderr
