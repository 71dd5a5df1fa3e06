"""Download boot images once, verify their checksum, resume cut downloads, report progress.

Layout under the cache root (the store's `cache/` folder, or $SKIFF_IMAGE_CACHE):

    downloads/<algo>-<hex>/<file>     verified images, addressed by content
    downloads/index.json              url -> {"digest", "file"}: a known URL is a hit with no request
    downloads/partial/<urlhash>.part  an unfinished download (+ .json: url, expected digest, validators)

A partial file is only resumed for the same URL and the same expected digest, and only appended to
when the server answers 206 with a Content-Range that starts where the file ends; a file whose
checksum does not match is deleted, never used. `refresh=True` (what `upgrade` does) re-reads the
checksum list (Debian's SHA512SUMS, or a SHA256SUMS/SHA512SUMS beside an image URL) so a moved
"latest" image is fetched, and an unchanged one is not downloaded again.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from skiffbox.machine.image.errors import ImageError
from skiffbox.machine.store import atomic_write, fsync_dir

# The official Debian 12 cloud images (have cloud-init, which reads our NoCloud seed). The arm64
# one boots through UEFI (GPT + ESP), which is what QEMU's `virt` with edk2 and VirtualBox 7.1 on
# Apple silicon expect. One SHA512SUMS lists both architectures.
DEBIAN_CLOUD_BASE = "https://cloud.debian.org/images/cloud/bookworm/latest/"
DEBIAN_CLOUD_SUMS = DEBIAN_CLOUD_BASE + "SHA512SUMS"
DEBIAN_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


def debian_cloud_url(arch: str = "x86_64") -> str:
    """The genericcloud image for a guest architecture (x86_64 | aarch64, or Debian's amd64 | arm64)."""
    deb = DEBIAN_ARCH.get(arch, arch)
    if deb not in DEBIAN_ARCH.values():
        raise ImageError(f"no Debian cloud image for architecture {arch!r} (have: x86_64, aarch64)")
    return f"{DEBIAN_CLOUD_BASE}debian-12-genericcloud-{deb}.qcow2"


DEBIAN_CLOUD_URL = debian_cloud_url("x86_64")

CHUNK = 1 << 20
ALGOS = ("sha256", "sha512")
USER_AGENT = "skiff-machine"

# progress(done_bytes, total_bytes_or_None); called at start (with resumed bytes), per chunk, at end
ProgressFn = Callable[[int, "int | None"], None]


def default_cache_dir(store_root: Path | None = None) -> Path:
    """$SKIFF_IMAGE_CACHE (lets tests share one built image), else the store's cache folder."""
    env = os.environ.get("SKIFF_IMAGE_CACHE")
    if env:
        return Path(env)
    if store_root is None:
        from skiffbox.machine.store import default_root

        store_root = default_root()
    return Path(store_root) / "cache"


@dataclass(frozen=True)
class Digest:
    algo: str
    hex: str

    @classmethod
    def parse(cls, text: str) -> Digest:
        algo, sep, hexd = text.partition(":")
        if not sep:  # a bare hex string: infer from its length
            hexd, algo = algo, {64: "sha256", 128: "sha512"}.get(len(algo), "")
        hexd = hexd.strip().lower()
        if algo not in ALGOS or not re.fullmatch(r"[0-9a-f]+", hexd) or \
                len(hexd) != hashlib.new(algo).digest_size * 2:
            raise ImageError(f"not a checksum: {text!r} (want sha256:HEX or sha512:HEX)")
        return cls(algo, hexd)

    def __str__(self) -> str:
        return f"{self.algo}:{self.hex}"


def split_url(url: str) -> tuple[str, Digest | None]:
    """`URL#sha256=HEX` (pip's convention) carries its checksum in the fragment."""
    base, _, frag = url.partition("#")
    for part in frag.split("&") if frag else []:
        key, _, value = part.partition("=")
        if key in ALGOS:
            return base, Digest(key, value.lower())
    return base, None


def parse_sums(text: str, filename: str, algo: str) -> Digest | None:
    """Find `filename` in a SHA256SUMS/SHA512SUMS file (`HEX  name` or `HEX *name`)."""
    for line in text.splitlines():
        parts = line.strip().split(None, 1)
        if len(parts) == 2 and parts[1].lstrip("*").strip() == filename:
            return Digest(algo, parts[0].lower())
    return None


class ImageCache:
    def __init__(self, root: Path, progress: ProgressFn | None = None, timeout: float = 30.0) -> None:
        self.root = Path(root) / "downloads"
        self.progress = progress
        self.timeout = timeout
        self.requests = 0  # HTTP requests made (tests check that a hit makes none)

    # ---- index -------------------------------------------------------------------------------
    @property
    def _index_path(self) -> Path:
        return self.root / "index.json"

    def _index(self) -> dict[str, dict[str, str]]:
        try:
            index: dict[str, dict[str, str]] = json.loads(self._index_path.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return index

    def _remember(self, url: str, digest: Digest, path: Path) -> None:
        index = self._index()
        index[url] = {"digest": str(digest), "file": str(path.relative_to(self.root))}
        atomic_write(self._index_path, json.dumps(index, indent=2))

    def path_for(self, digest: Digest, filename: str) -> Path:
        return self.root / f"{digest.algo}-{digest.hex}" / filename

    def cached(self, url: str) -> Path | None:
        """The verified file last fetched from `url`, if it is still there (no request)."""
        entry = self._index().get(split_url(url)[0])
        if entry and (self.root / entry["file"]).is_file():
            return self.root / entry["file"]
        return None

    # ---- fetch -------------------------------------------------------------------------------
    def fetch(self, url: str, checksum: str | None = None, checksums_url: str | None = None,
              refresh: bool = False, retries: int = 3, sums_beside: bool = False) -> Path:
        """Return a local verified copy of `url`, downloading only what is missing.

        `sums_beside`: with no checksum given, look for a SHA256SUMS/SHA512SUMS beside the file
        (how a moving "latest" image is published); one that lists the file verifies it, and
        makes a refresh of an unchanged image one small request instead of a whole download."""
        base, frag_digest = split_url(url)
        filename = Path(urllib.parse.urlparse(base).path).name or "image"
        expected = Digest.parse(checksum) if checksum else frag_digest
        if not refresh:
            entry = self._index().get(base)
            if entry and (self.root / entry["file"]).is_file() and (
                    expected is None or entry["digest"] == str(expected)):
                return self.root / entry["file"]
        if expected is None and checksums_url:
            algo = "sha256" if "256" in Path(urllib.parse.urlparse(checksums_url).path).name else "sha512"
            sums = self._get_text(checksums_url)
            expected = parse_sums(sums, filename, algo)
            if expected is None:
                raise ImageError(f"{checksums_url} does not list {filename}")
        elif expected is None and sums_beside:
            expected = self._sums_beside(base, filename)
        if expected is not None:
            hit = self.path_for(expected, filename)
            if hit.is_file():  # same content under another URL, or a refreshed 'latest' unchanged
                self._remember(base, expected, hit)
                return hit
        attempt = 0
        while True:
            try:
                path, digest = self._download(base, filename, expected)
                break
            except (OSError, http.client.HTTPException) as e:  # URLError is an OSError
                if isinstance(e, urllib.error.HTTPError) or attempt >= retries:
                    raise ImageError(f"download of {base} failed: {e}") from e
                attempt += 1
                time.sleep(min(0.5 * attempt, 2.0))
        self._remember(base, digest, path)
        return path

    def _open(self, url: str, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
        req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **(headers or {})})
        self.requests += 1
        resp: http.client.HTTPResponse = urllib.request.urlopen(req, timeout=self.timeout)
        return resp

    def _get_text(self, url: str) -> str:
        try:
            with self._open(url) as resp:
                return resp.read().decode()
        except urllib.error.URLError as e:
            raise ImageError(f"cannot read {url}: {e}") from e

    def _sums_beside(self, url: str, filename: str) -> Digest | None:
        """The digest a SHA256SUMS (else SHA512SUMS) next to `url` gives `filename`; None when
        neither exists or lists it (the image is then downloaded and only hashed)."""
        for algo in ("sha256", "sha512"):
            try:
                with self._open(urllib.parse.urljoin(url, f"{algo.upper()}SUMS")) as resp:
                    text = resp.read(1 << 20).decode(errors="replace")  # a checksum list is small
            except (OSError, http.client.HTTPException):
                continue  # none there (404), or the server fails: the download says so if it matters
            digest = parse_sums(text, filename, algo)
            if digest is not None:
                return Digest.parse(f"{digest.algo}:{digest.hex}")  # checks the hex is a real digest
        return None

    def _download(self, url: str, filename: str, expected: Digest | None) -> tuple[Path, Digest]:
        partial_dir = self.root / "partial"
        partial_dir.mkdir(parents=True, exist_ok=True)
        key = hashlib.sha256(url.encode()).hexdigest()[:24]
        part, meta_path = partial_dir / f"{key}.part", partial_dir / f"{key}.json"
        meta = {"url": url, "expected": str(expected) if expected else None}
        try:
            old = json.loads(meta_path.read_text())
        except (FileNotFoundError, ValueError):
            old = None
        if old is None or any(old.get(k) != v for k, v in meta.items()):
            part.unlink(missing_ok=True)  # a partial file of other content is never resumed
        offset = part.stat().st_size if part.exists() else 0
        headers: dict[str, str] = {}
        if offset and old:
            headers["Range"] = f"bytes={offset}-"
            # the server must still have the same file, else it answers 200 with the whole body
            if old.get("etag"):
                headers["If-Range"] = old["etag"]
            elif old.get("last_modified"):
                headers["If-Range"] = old["last_modified"]
        try:
            resp = self._open(url, headers)
        except urllib.error.HTTPError as e:
            if e.code == 416 and offset:  # nothing left to send: the partial file is whole
                resp = None
            else:
                raise
        total: int | None
        if resp is None:
            total = offset
        else:
            with resp:
                if resp.status == 206 and _range_start(resp.headers.get("Content-Range")) == offset:
                    mode = "ab"
                    total = _range_total(resp.headers.get("Content-Range"))
                else:
                    mode, offset = "wb", 0
                    length = resp.headers.get("Content-Length")
                    total = int(length) if length and length.isdigit() else None
                meta.update(etag=resp.headers.get("ETag"), last_modified=resp.headers.get("Last-Modified"))
                meta_path.write_text(json.dumps(meta))
                done = offset
                self._report(done, total)
                with open(part, mode) as out:
                    while True:
                        chunk = resp.read(CHUNK)
                        if not chunk:
                            break
                        out.write(chunk)
                        done += len(chunk)
                        self._report(done, total)
                    out.flush()
                    os.fsync(out.fileno())  # what is renamed into the cache below must survive a power loss
                if total is not None and done < total:
                    raise ConnectionError(f"connection closed after {done} of {total} bytes")
        algo = expected.algo if expected else "sha256"
        digest = Digest(algo, _hash_file(part, algo))
        if expected is not None and digest != expected:
            part.unlink(missing_ok=True)
            meta_path.unlink(missing_ok=True)
            raise ImageError(f"checksum mismatch for {url}: expected {expected}, got {digest}; "
                             "the download was discarded")
        final = self.path_for(digest, filename)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(part, final)
        fsync_dir(final.parent)
        meta_path.unlink(missing_ok=True)
        return final, digest

    def _report(self, done: int, total: int | None) -> None:
        if self.progress is not None:
            self.progress(done, total)

    def clear_partials(self) -> None:
        shutil.rmtree(self.root / "partial", ignore_errors=True)


def _range_start(content_range: str | None) -> int | None:
    m = re.match(r"bytes (\d+)-\d+/(\d+|\*)", content_range or "")
    return int(m.group(1)) if m else None


def _range_total(content_range: str | None) -> int | None:
    m = re.match(r"bytes \d+-\d+/(\d+)", content_range or "")
    return int(m.group(1)) if m else None


def _hash_file(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()
