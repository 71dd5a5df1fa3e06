"""The download cache against a real HTTP server on 127.0.0.1 (with Range support)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from skiffbox.machine.image.cache import ImageCache, parse_sums
from skiffbox.machine.image.errors import ImageError
from tests.qemu.httpserver import FileServer

BODY = os.urandom(3 * (1 << 20) + 12345)  # several chunks, not chunk-aligned
SHA256 = hashlib.sha256(BODY).hexdigest()
SHA512 = hashlib.sha512(BODY).hexdigest()


def test_download_verifies_and_reports_progress(file_server: FileServer, tmp_path: Path) -> None:
    file_server.files["/img/disk.qcow2"] = BODY
    seen: list[tuple[int, int | None]] = []
    cache = ImageCache(tmp_path, progress=lambda d, t: seen.append((d, t)))
    path = cache.fetch(file_server.base + "/img/disk.qcow2", checksum=f"sha256:{SHA256}")
    assert path.read_bytes() == BODY
    assert path.name == "disk.qcow2" and SHA256 in str(path)
    assert seen[0] == (0, len(BODY)) and seen[-1] == (len(BODY), len(BODY))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert not list((tmp_path / "downloads" / "partial").iterdir())


def test_cache_hit_makes_no_request(file_server: FileServer, tmp_path: Path) -> None:
    file_server.files["/disk.img"] = BODY
    url = file_server.base + "/disk.img"
    first = ImageCache(tmp_path).fetch(url, checksum=SHA256)
    n = len(file_server.requests)
    cache = ImageCache(tmp_path)
    assert cache.fetch(url, checksum=SHA256) == first
    assert cache.fetch(url) == first  # a known URL without a checksum is a hit too
    assert cache.cached(url) == first
    assert len(file_server.requests) == n and cache.requests == 0


def test_resume_after_cut_connection(file_server: FileServer, tmp_path: Path) -> None:
    file_server.files["/disk.img"] = BODY
    file_server.cut_after["/disk.img"] = 1_000_000
    path = ImageCache(tmp_path).fetch(file_server.base + "/disk.img", checksum=f"sha512:{SHA512}")
    assert path.read_bytes() == BODY
    ranges = [h.get("Range") for p, h in file_server.requests if p == "/disk.img"]
    assert ranges[0] is None
    assert ranges[1] == "bytes=1000000-"  # the second request resumed where the cut left off
    assert len(ranges) == 2


def test_resume_across_invocations(file_server: FileServer, tmp_path: Path) -> None:
    """A download cut with no retries left stays partial; the next `fetch` resumes it."""
    file_server.files["/disk.img"] = BODY
    file_server.cut_after["/disk.img"] = 2_000_000
    url = file_server.base + "/disk.img"
    with pytest.raises(ImageError, match="download of .* failed"):
        ImageCache(tmp_path).fetch(url, checksum=SHA256, retries=0)
    parts = list((tmp_path / "downloads" / "partial").glob("*.part"))
    assert len(parts) == 1 and parts[0].stat().st_size == 2_000_000
    seen: list[tuple[int, int | None]] = []
    path = ImageCache(tmp_path, progress=lambda d, t: seen.append((d, t))).fetch(url, checksum=SHA256)
    assert path.read_bytes() == BODY
    assert file_server.requests[-1][1].get("Range") == "bytes=2000000-"
    assert seen[0] == (2_000_000, len(BODY))  # progress starts at the resumed offset


def test_changed_file_on_server_restarts_instead_of_splicing(file_server: FileServer, tmp_path: Path) -> None:
    """If-Range: when the server's file changed, it sends 200 and we start over."""
    url = file_server.base + "/disk.img"
    file_server.files["/disk.img"] = os.urandom(len(BODY))
    file_server.cut_after["/disk.img"] = 500_000
    with pytest.raises(ImageError):
        ImageCache(tmp_path).fetch(url, checksum=SHA256, retries=0)
    file_server.files["/disk.img"] = BODY
    path = ImageCache(tmp_path).fetch(url, checksum=SHA256)
    assert path.read_bytes() == BODY
    last = file_server.requests[-1][1]
    assert last.get("Range") == "bytes=500000-" and last.get("If-Range")


def test_checksum_mismatch_is_refused_and_partial_dropped(file_server: FileServer, tmp_path: Path) -> None:
    file_server.files["/disk.img"] = BODY
    url = file_server.base + "/disk.img"
    wrong = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(ImageError, match="checksum mismatch"):
        ImageCache(tmp_path).fetch(url, checksum=f"sha256:{wrong}")
    downloads = tmp_path / "downloads"
    assert not list(downloads.glob("sha256-*"))
    assert not list((downloads / "partial").iterdir())
    assert ImageCache(tmp_path).cached(url) is None
    # a later fetch with the right checksum downloads the whole file afresh (no Range)
    path = ImageCache(tmp_path).fetch(url, checksum=SHA256)
    assert path.read_bytes() == BODY and file_server.requests[-1][1].get("Range") is None


def test_partial_for_other_checksum_is_not_resumed(file_server: FileServer, tmp_path: Path) -> None:
    file_server.files["/disk.img"] = BODY
    file_server.cut_after["/disk.img"] = 100_000
    url = file_server.base + "/disk.img"
    other = hashlib.sha256(b"x").hexdigest()
    with pytest.raises(ImageError):
        ImageCache(tmp_path).fetch(url, checksum=other, retries=0)
    ImageCache(tmp_path).fetch(url, checksum=SHA256)
    assert file_server.requests[-1][1].get("Range") is None


def test_checksum_from_sums_file_and_url_fragment(file_server: FileServer, tmp_path: Path) -> None:
    file_server.files["/latest/debian-12-genericcloud-amd64.qcow2"] = BODY
    file_server.files["/latest/SHA512SUMS"] = (
        f"{'0' * 128}  debian-12-genericcloud-amd64.raw\n"
        f"{SHA512}  debian-12-genericcloud-amd64.qcow2\n").encode()
    cache = ImageCache(tmp_path)
    url = file_server.base + "/latest/debian-12-genericcloud-amd64.qcow2"
    path = cache.fetch(url, checksums_url=file_server.base + "/latest/SHA512SUMS")
    assert f"sha512-{SHA512}" in str(path)
    # `upgrade` refreshes: the sums are read again; same content -> no image download
    n_img = sum(1 for p, _ in file_server.requests if p.endswith(".qcow2"))
    assert cache.fetch(url, checksums_url=file_server.base + "/latest/SHA512SUMS", refresh=True) == path
    assert sum(1 for p, _ in file_server.requests if p.endswith(".qcow2")) == n_img
    # pip-style fragment
    file_server.files["/b.img"] = BODY
    assert ImageCache(tmp_path).fetch(f"{file_server.base}/b.img#sha256={SHA256}").read_bytes() == BODY
    with pytest.raises(ImageError, match="does not list"):
        cache.fetch(file_server.base + "/b.img", checksums_url=file_server.base + "/latest/SHA512SUMS",
                    refresh=True)


def test_http_errors_are_reported(file_server: FileServer, tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="404"):
        ImageCache(tmp_path).fetch(file_server.base + "/missing.img", checksum=SHA256)


def test_parse_sums_forms() -> None:
    text = f"{SHA256} *a.img\n{'1' * 64}  b.img\n"
    assert parse_sums(text, "a.img", "sha256").hex == SHA256
    assert parse_sums(text, "c.img", "sha256") is None
