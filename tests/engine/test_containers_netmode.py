"""Network-mode conflicts refused at create with dockerd's status (400) and words, through the real docker CLI
(`create` exits 1, `run` 125, "Error response from daemon: …"); and the combinations dockerd allows still work."""

from __future__ import annotations

import json
from collections.abc import Iterator

import docker
import pytest

from tests.engine.containers_fixtures import remove_all
from tests.engine.harness import Skiffd, TestImages

MAC = "92:d0:c6:0a:29:33"
LINKS_CONTAINER = ("conflicting options: container type network can't be used with links. This would result in "
                   "undefined behavior")
LINKS_HOST = "conflicting options: host type networking can't be used with links. This would result in undefined behavior"


@pytest.fixture(scope="module")
def d(skiffd: Skiffd, images: TestImages) -> Iterator[Skiffd]:
    skiffd.docker("pull", "-q", images.busybox)
    skiffd.docker("run", "-d", "--name", "base", images.busybox, "sleep", "1000")
    try:
        yield skiffd
    finally:
        remove_all(skiffd)


def names(d: Skiffd) -> list[str]:
    return sorted(d.docker("ps", "-a", "--format", "{{.Names}}").stdout.split())


@pytest.mark.parametrize("args, message", [
    (["--network", "container:base", "--hostname", "foo"], "conflicting options: hostname and the network mode"),
    (["--network", "container:base", "--dns", "1.1.1.1"], "conflicting options: dns and the network mode"),
    (["--network", "container:base", "--add-host", "a:1.2.3.4"],
     "conflicting options: custom host-to-IP mapping and the network mode"),
    (["--network", "container:base", "--link", "base:b"], LINKS_CONTAINER),
    (["--network", "container:base", "-p", "80"], "conflicting options: port publishing and the container type network mode"),
    (["--network", "container:base", "-p", "127.0.0.1:28585:80"],
     "conflicting options: port publishing and the container type network mode"),
    (["--network", "container:base", "-P"], "conflicting options: port publishing and the container type network mode"),
    (["--network", "container:base", "--expose", "90"],
     "conflicting options: port exposing and the container type network mode"),
    (["--network", "container:base", "--mac-address", MAC], "conflicting options: mac-address and the network mode"),
    (["--network", "host", "--mac-address", MAC], "conflicting options: mac-address and the network mode"),
    (["--network", "host", "--link", "base:b"], LINKS_HOST),
])
def test_conflicts_are_refused_at_create(d: Skiffd, images: TestImages, args: list[str], message: str) -> None:
    before = names(d)
    for verb, code in (("create", 1), ("run", 125)):  # the CLI's exit codes for a refused create
        r = d.docker(verb, *args, images.busybox, "true", check=False)
        assert r.returncode == code, (verb, r.stdout, r.stderr)
        assert f"Error response from daemon: {message}" in r.stderr, r.stderr
    assert names(d) == before  # nothing was created


def test_conflict_status_is_400(d: Skiffd, images: TestImages) -> None:
    api = d.client().api
    for host_config, message in (
            (api.create_host_config(network_mode="container:base", dns=["1.1.1.1"]),
             "conflicting options: dns and the network mode"),
            (api.create_host_config(network_mode="container:"),
             "Invalid network mode: invalid container format container:<name|id>")):
        with pytest.raises(docker.errors.APIError) as e:
            api.create_container(images.busybox, "true", host_config=host_config)
        assert e.value.status_code == 400 and e.value.explanation == message


def test_allowed_combinations(d: Skiffd, images: TestImages) -> None:
    bb = images.busybox
    base_hostname = d.docker("exec", "base", "hostname").stdout
    # dockerd lets --dns-search/--dns-option through with container:… (the other container's files are used).
    r = d.docker("run", "--rm", "--network", "container:base", "--dns-search", "x.example", "--dns-option", "ndots:2",
                 bb, "hostname")
    assert r.stdout == base_hostname
    # An image's EXPOSE is no conflict: only the request's own ports are.
    d.docker("commit", "--change", "EXPOSE 80", "base", "exposing:1")
    try:
        assert d.docker("run", "--rm", "--network", "container:base", "exposing:1", "hostname").stdout == base_hostname
    finally:
        d.docker("rmi", "exposing:1")
    # host: published ports are dropped with dockerd's warning; a hostname is fine.
    r = d.docker("run", "--rm", "--network", "host", "-p", "28686:80", "--hostname", "hostmode", bb, "hostname")
    assert r.stdout == "hostmode\n"
    assert "WARNING: Published ports are discarded when using host network mode" in r.stderr
    # bridge takes all of them.
    r = d.docker("run", "--rm", "--hostname", "br", "--dns", "1.1.1.1", "--add-host", "a:1.2.3.4", "--link", "base:b",
                 "-p", "28787:80", "--expose", "90", "--mac-address", "02:42:ac:11:00:99", bb, "sh", "-c",
                 "hostname; cat /sys/class/net/eth0/address; grep -c nameserver /etc/resolv.conf")
    assert r.stdout.split() == ["br", "02:42:ac:11:00:99", "1"], r.stderr
    # none takes a hostname, DNS options and extra hosts.
    r = d.docker("run", "--rm", "--network", "none", "--hostname", "nn", "--dns", "1.1.1.1", "--add-host", "a:1.2.3.4",
                 bb, "sh", "-c", "hostname; grep -c 1.2.3.4 /etc/hosts")
    assert r.stdout.split() == ["nn", "1"]
    assert names(d) == ["base"]
    ctr = json.loads(d.docker("inspect", "base").stdout)[0]
    assert ctr["State"]["Running"]
