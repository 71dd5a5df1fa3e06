"""The small helpers that had been copied and drifted, now with one implementation each."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from skiffbox.cli.skiffclient import formatting
from skiffbox.guest.containers import etcfiles, views
from skiffbox.guest.network import dns
from skiffbox.guest.util.atomicfile import atomic_write as guest_atomic_write
from skiffbox.guest.util.atomicfile import atomic_write_json
from skiffbox.guest.util.humanize import human_duration
from skiffbox.machine.store import atomic_write as host_atomic_write
from skiffbox.guest.util.resolvconf import is_loopback, parse_resolv

H, D, W, M, Y = 3600, 86400, 7 * 86400, 30 * 86400, 365 * 86400

# go-units' own TestHumanDuration table (docker/go-units duration_test.go), in seconds.
GO_UNITS = [
    (0.45, "Less than a second"), (1, "1 second"), (45, "45 seconds"), (59, "59 seconds"), (60, "About a minute"),
    (180, "3 minutes"), (35 * 60 + 40, "35 minutes"), (59 * 60, "59 minutes"), (H, "About an hour"),
    (H + 29 * 60, "About an hour"), (H + 31 * 60, "2 hours"), (3 * H, "3 hours"), (3 * H + 29 * 60, "3 hours"),
    (3 * H + 31 * 60, "4 hours"), (4 * H, "4 hours"), (24 * H, "24 hours"), (D + 12 * H, "36 hours"),
    (2 * D, "2 days"), (13 * D + 5 * H, "13 days"), (2 * W, "2 weeks"), (2 * W + 4 * D, "2 weeks"),
    (4 * W + 3 * D, "4 weeks"), (M, "4 weeks"), (M + 2 * W, "6 weeks"), (2 * M, "2 months"),
    (3 * M + W, "3 months"), (13 * M, "13 months"), (24 * M, "24 months"), (24 * M + 2 * W, "2 years"),
    (3 * Y + 2 * M, "3 years"),
]


@pytest.mark.parametrize("secs,want", GO_UNITS + [(9000, "3 hours"), (1.5 * H, "2 hours"), (-5, "Less than a second")])
def test_human_duration_is_go_units(secs: float, want: str) -> None:
    """Hours round half up like Go's int(h + 0.5): 9,000 s is "3 hours" (Python's round() said "2 hours")."""
    assert human_duration(secs) == want


def test_engine_and_client_share_one_human_duration() -> None:
    assert views.human_duration is human_duration and formatting.human_duration is human_duration
    assert formatting.since(1000.0, now=1000.0 + 9000) == "3 hours ago"


RESOLV = """# written by the host
; old-style comment
nameserver 10.0.0.2   # the site resolver
nameserver 127.0.0.53;systemd-resolved
nameserver fe80::1%eth0
domain first.example
search corp.example lab.example # trailing words are a comment
options ndots:2
options timeout:1 ; rotate
nameserver
"""


def test_resolv_conf_parser_strips_comments_anywhere() -> None:
    ns, search, opts = parse_resolv(RESOLV)
    assert ns == ["10.0.0.2", "127.0.0.53", "fe80::1%eth0"]
    assert search == ["corp.example", "lab.example"]  # the last search/domain line wins
    assert opts == ["ndots:2", "timeout:1"]


def test_is_loopback() -> None:
    assert [is_loopback(a) for a in ("127.0.0.53", "127.1.2.3", "::1", "::1%lo", "10.0.0.2", "fe80::1%eth0",
                                     "resolver.example")] == [True, True, True, True, False, False, False]


def test_container_and_network_resolv_use_the_one_parser() -> None:
    """A container's resolv.conf from a network service's text keeps the servers but not the comments, the same
    as the network side reads the host's file."""
    text = etcfiles.resolv_text({}, "bridge", provided=RESOLV)
    assert text == ("nameserver 10.0.0.2\nnameserver 127.0.0.53\nnameserver fe80::1%eth0\n"
                    "search corp.example lab.example\noptions ndots:2 timeout:1\n")
    assert etcfiles.parse_resolv is parse_resolv and dns.parse_resolv is parse_resolv


@pytest.mark.parametrize("write", [guest_atomic_write, host_atomic_write], ids=["guest", "host"])
def test_atomic_write_replaces_durably(write, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "state.json"
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append("dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    write(p, b"old", 0o600)
    write(p, "new")
    assert p.read_text() == "new" and stat.S_IMODE(p.stat().st_mode) == 0o644
    assert synced == ["file", "dir", "file", "dir"]  # the data, then the rename
    assert [x.name for x in tmp_path.iterdir()] == ["state.json"]


@pytest.mark.parametrize("write", [guest_atomic_write, host_atomic_write], ids=["guest", "host"])
def test_atomic_write_failure_keeps_the_old_file_and_no_temp(write, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "state.json"
    write(p, b"old")

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space"):
        write(p, b"new content")
    monkeypatch.undo()
    assert p.read_bytes() == b"old"
    assert [x.name for x in tmp_path.iterdir()] == ["state.json"]


def test_guest_json_write_fails_before_touching_the_disk(tmp_path: Path) -> None:
    p = tmp_path / "container.json"
    atomic_write_json(p, {"State": "running"})
    with pytest.raises(TypeError):
        atomic_write_json(p, {"State": object()})
    assert json.loads(p.read_text()) == {"State": "running"}
    assert [x.name for x in tmp_path.iterdir()] == ["container.json"]


def test_guest_runtime_state_write_skips_the_fsyncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """durable=False (state under /run): still atomic and leaves no temp file, but no fsync of file or folder."""
    p = tmp_path / "ipam.json"
    guest_atomic_write(p, b"old")

    def no_fsync(fd: int) -> None:
        raise AssertionError("fsync called for runtime state")

    monkeypatch.setattr(os, "fsync", no_fsync)
    atomic_write_json(p, {"nets": {}}, 0o600, durable=False)
    assert json.loads(p.read_text()) == {"nets": {}} and stat.S_IMODE(p.stat().st_mode) == 0o600
    assert [x.name for x in tmp_path.iterdir()] == ["ipam.json"]


def test_engine_stores_use_the_one_atomic_write() -> None:
    from skiffbox.guest import engine
    from skiffbox.guest.build import cache as build_cache
    from skiffbox.guest.containers import store as containers_store
    from skiffbox.guest.images import store as images_store
    from skiffbox.guest.network import dnsmasq, endpoints, ipam
    from skiffbox.guest.network import store as network_store
    from skiffbox.guest.volumes import service as volumes_service

    for m in (containers_store, network_store, volumes_service, ipam, endpoints):
        assert m.atomic_write_json is atomic_write_json, m.__name__
    for m in (images_store, etcfiles, engine, dnsmasq, build_cache):
        assert m.atomic_write is guest_atomic_write, m.__name__


    from skiffbox.guest.images import blobs
    from skiffbox.guest.util import atomicfile

    assert blobs.durable_rename is atomicfile.durable_rename and images_store.durable_rename is atomicfile.durable_rename


def test_blobs_and_layers_are_durable_before_they_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A blob's data is fsynced before its rename into the store, an unpacked layer's whole tree (one syncfs of its
    filesystem) before its rename; then the folder that names it."""
    from skiffbox.guest.images.blobs import BlobStore
    from skiffbox.guest.util import atomicfile

    synced: list[str] = []
    real_fsync, real_syncfs = os.fsync, atomicfile._syncfs

    def fsync(fd: int) -> None:
        synced.append(("dir " if os.path.isdir(f"/proc/self/fd/{fd}") else "file ") + os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    def syncfs(fd: int) -> None:
        synced.append("syncfs " + os.readlink(f"/proc/self/fd/{fd}"))
        real_syncfs(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(atomicfile, "_syncfs", syncfs)
    store = BlobStore(tmp_path / "blobs")
    digest = store.put(b"layer data")
    assert synced == [f"file {store.tmp}/" + synced[0].rsplit("/", 1)[1], f"dir {store.dir}"]
    assert store.path(digest).read_bytes() == b"layer data" and list(store.tmp.iterdir()) == []
    synced.clear()
    unpacked = tmp_path / ".tmp-layer"
    (unpacked / "etc").mkdir(parents=True)
    (unpacked / "etc" / "hostname").write_text("x")
    atomicfile.durable_rename(unpacked, tmp_path / "layer")
    assert synced == [f"syncfs {unpacked}", f"dir {tmp_path}"]
    assert (tmp_path / "layer" / "etc" / "hostname").read_text() == "x" and not unpacked.exists()


def test_one_go_duration_parser_for_dockerfile_client_and_since() -> None:
    """HEALTHCHECK --interval, `skiff run --health-interval` and `since=1h30m` read Go durations the same way
    (Go's time.ParseDuration: several units, fractions, a sign; a bare number other than 0 is an error)."""
    from skiffbox.cli.skiffclient.commands import run
    from skiffbox.guest.build import instructions
    from skiffbox.guest.util.timefmt import parse_go_duration, parse_time

    assert run.parse_go_duration is parse_go_duration and instructions.parse_go_duration is parse_go_duration
    assert parse_go_duration("1h2m3.5s") == 3723_500_000_000 and parse_go_duration(".5ms") == 500_000
    assert parse_go_duration("-1.5h") == -5400 * 10**9 and parse_go_duration("0") == 0
    for bad in ("5", "", "1x", "1h 2m"):
        with pytest.raises(ValueError):
            parse_go_duration(bad)
    assert parse_time("1h30m", now=10_000.0) == 10_000.0 - 5400 and parse_time("10m", now=1000.0) == 400.0


# Go's own table for Duration.String (src/time/time_test.go, durationTests).
GO_DURATION_STRINGS = [
    ("0s", 0), ("1ns", 1), ("1.1µs", 1100), ("2.2ms", 2_200_000), ("3.3s", 3_300_000_000),
    ("4m5s", (4 * 60 + 5) * 10**9), ("4m5.001s", 4 * 60 * 10**9 + 5_001_000_000),
    ("5h6m7.001s", (5 * 3600 + 6 * 60) * 10**9 + 7_001_000_000), ("8m0.000000001s", 8 * 60 * 10**9 + 1),
    ("2562047h47m16.854775807s", (1 << 63) - 1), ("-2562047h47m16.854775808s", -(1 << 63)),
]


@pytest.mark.parametrize("want,ns", GO_DURATION_STRINGS)
def test_go_duration_string_is_gos(want: str, ns: int) -> None:
    from skiffbox.guest.util.humanize import go_duration
    from skiffbox.guest.util.timefmt import parse_go_duration

    assert go_duration(ns) == want
    if abs(ns) < 1 << 52:  # within float precision, the parser reads it back
        assert parse_go_duration(want) == ns


def test_one_go_duration_formatter_for_healthcheck_history_and_progress() -> None:
    from skiffbox.cli.skiffclient import progress
    from skiffbox.guest.build import values
    from skiffbox.guest.util.humanize import go_duration

    assert progress.go_duration is go_duration and values.go_duration is go_duration
    assert values.health_text({"Test": ["CMD", "true"], "Interval": 90_500_000_000, "Retries": 3}) == \
        '&{["CMD" "true"] "1m30.5s" "0s" "0s" "0s" \'\\x03\'}'
