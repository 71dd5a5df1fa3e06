"""A Distribution v2 / OCI registry client (blocking; the image service runs it in worker threads).

The operations pull and push need (manifests, tags, blobs, login), over registry_http.py's transport (HTTPS or
HTTP, proxies, mirrors, a connection pool) with registry_auth.py's credentials: whatever the registry asks for
in its 401 challenge; a later 401 (expired token, insufficient scope) fetches a new token once. Manifests are
asked for with every Accept type we handle; digests are verified; blob GETs follow redirects (without the
Authorization header when the host changes) and resume with Range after a broken connection.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import re
import ssl
import time
from typing import BinaryIO
from urllib.parse import urlencode, urljoin, urlsplit

from skiffbox.guest.errors import EngineError, InvalidParameter, SystemError_, Unauthorized
from skiffbox.guest.images.proxy import ProxyConnectError, ProxySettings
from skiffbox.guest.images.registry_auth import AuthConfig, RegistryAuth, parse_challenge
from skiffbox.guest.images.registry_http import MAX_MANIFEST, RegistryError, RegistryTransport, Resp, error_body, net_error

__all__ = ["MAX_MANIFEST", "AuthConfig", "BlobReader", "RegistryClient", "RegistryError", "Resp"]

log = logging.getLogger("skiffd.registry")

MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MT_DOCKER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MT_OCI_LAYER_GZ = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json", "application/vnd.docker.distribution.manifest.v1+prettyjws")
INDEX_TYPES = (MT_OCI_INDEX, MT_DOCKER_LIST)
MANIFEST_TYPES = (MT_OCI_MANIFEST, MT_DOCKER_MANIFEST)
ACCEPT = ", ".join([MT_OCI_INDEX, MT_DOCKER_LIST, MT_OCI_MANIFEST, MT_DOCKER_MANIFEST])


class RegistryClient:
    """One registry host, one repository (plus extra scopes, e.g. a mount source when pushing)."""

    def __init__(self, domain: str, repo: str, auth: AuthConfig | None = None, insecure: list[str] | None = None,
                 push: bool = False, endpoint: str | None = None, mirror: str | None = None,
                 proxies: ProxySettings | None = None) -> None:
        """`endpoint` is the host to talk to for `domain` (registry-1.docker.io for docker.io); `mirror` a
        validated mirror URL used instead of it; `proxies` default to the daemon's (its environment)."""
        self.domain = domain
        self.repo = repo
        self.http = RegistryTransport(endpoint or domain, list(insecure or []),
                                      proxies if proxies is not None else ProxySettings.from_env(), mirror)
        self.host = self.http.host
        self.auth = RegistryAuth(self.http, repo, auth, push)

    @property
    def scheme(self) -> str:
        """http, https, or https-insecure (TLS without verification), as picked for the host."""
        return self.http.scheme

    def base_url(self) -> str:
        return self.http.base_url()

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes | BinaryIO | None = None,
                extra_scopes: list[str] | None = None, follow: bool = True) -> Resp:
        """A registry request with auth (challenge on first 401, one retry) and redirects for GET/HEAD."""
        url = path if "://" in path else self.base_url() + path
        hdrs = dict(headers or {})
        retried = False
        https_proxy_error: str | None = None  # a proxy refusing the HTTPS attempt of an insecure registry
        while True:
            try:
                r = self.http.raw(method, url, {**hdrs, **self.auth.header(extra_scopes, force_new=retried)}, body)
            except ssl.SSLError as e:
                if self.http.can_fall_back():
                    self.http.scheme = "http"
                    url = self.http.as_http(url)
                    continue
                if "WRONG_VERSION_NUMBER" in str(e):
                    why = "http: server gave HTTP response to HTTPS client"
                elif isinstance(e, ssl.SSLCertVerificationError):  # Go: tls: failed to verify certificate: x509: …
                    why = f"tls: failed to verify certificate: {e.verify_message or e.reason}"
                else:
                    why = f"tls: {getattr(e, 'reason', None) or e}"
                raise SystemError_(f'{method.capitalize()} "{url}": {why}') from None
            except (OSError, http.client.HTTPException) as e:
                if self.http.can_fall_back():
                    if isinstance(e, ProxyConnectError):
                        https_proxy_error = net_error(method, url, self.host, e)
                    self.http.scheme = "http"
                    url = self.http.as_http(url)
                    continue
                # Plain HTTP failed too: the proxy's answer to the HTTPS attempt says more.
                raise SystemError_(https_proxy_error or net_error(method, url, self.host, e)) from None
            if r.status == 401 and not retried:
                challenge = r.header("WWW-Authenticate")
                r.read_all()
                if not challenge:
                    return r
                self.auth.challenge = parse_challenge(challenge)
                retried = True
                if hasattr(body, "seek"):
                    body.seek(0)  # type: ignore[union-attr]
                continue
            if follow and method in ("GET", "HEAD") and r.status in (301, 302, 303, 307, 308):
                loc = r.header("Location")
                r.read_all()
                return self._follow(method, urljoin(url, loc), hdrs)
            return r

    def _follow(self, method: str, url: str, headers: dict[str, str], hops: int = 0) -> Resp:
        """Redirects (CDNs, object stores): keep Authorization only on the registry's own host."""
        if hops > 5:
            raise SystemError_(f"registry {self.host}: too many redirects")
        same = urlsplit(url).netloc == self.host
        h = {**headers, **(self.auth.header(None) if same else {})}
        r = self.http.raw_other(method, url, h)
        if r.status in (301, 302, 303, 307, 308):
            loc = r.header("Location")
            r.read_all()
            return self._follow(method, urljoin(url, loc), headers, hops + 1)
        return r

    def _fail(self, r: Resp, what: str) -> RegistryError:
        try:
            body = r.read_all(1 << 20)
        except EngineError:
            body = b""
        code, msg = error_body(body)
        if not code:
            code = {401: "UNAUTHORIZED", 403: "DENIED", 404: "NOT_FOUND", 429: "TOOMANYREQUESTS"}.get(r.status, "UNKNOWN")
            if "html" in r.header("Content-Type"):
                msg = ""  # an error page (often the proxy's own): the status says more than its markup
            msg = msg or f"{what}: HTTP {r.status} {r.r.reason}".rstrip()
            if r.proxy is not None:
                msg += f" (through proxy {r.proxy.addr})"
        return RegistryError(r.status, code, msg)

    # -- operations ----
    def login(self) -> None:
        """`docker login`: GET /v2/ with the credentials (through the token server if there is one)."""
        try:
            r = self.request("GET", "/v2/")
        except RegistryError as e:
            raise Unauthorized(f"login attempt to {self.base_url()}/v2/ failed: unauthorized: {e.message}") from None
        r.read_all()
        if r.status == 401:
            raise Unauthorized(f"login attempt to {self.base_url()}/v2/ failed with status: 401 Unauthorized")
        if r.status != 200:
            raise SystemError_(f"login attempt to {self.base_url()}/v2/ failed with status: {r.status}")

    def get_manifest(self, ref: str) -> tuple[bytes, str, str]:
        """(bytes, media type, digest) of a tag or digest; the digest is checked against the bytes."""
        r = self.request("GET", f"/v2/{self.repo}/manifests/{ref}", {"Accept": ACCEPT})
        if r.status != 200:
            raise self._fail(r, "manifest")
        body = r.read_all(MAX_MANIFEST)
        mt = (r.header("Content-Type") or "").split(";")[0].strip()
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if ref.startswith("sha256:") and digest != ref:
            raise InvalidParameter(f"manifest verification failed for digest {ref}")
        hdr = r.header("Docker-Content-Digest")
        if hdr and hdr.startswith("sha256:") and hdr != digest:
            raise InvalidParameter(f"manifest verification failed for digest {hdr}")
        if not mt or mt in ("application/json", "text/plain"):
            try:
                mt = json.loads(body).get("mediaType") or mt
            except (ValueError, AttributeError):
                pass
        return body, mt, digest

    def list_tags(self) -> list[str]:
        """All tags of the repository (following `Link` pagination)."""
        tags: list[str] = []
        path = f"/v2/{self.repo}/tags/list?n=1000"
        for _ in range(100):
            r = self.request("GET", path)
            if r.status != 200:
                raise self._fail(r, "tags")
            tags += list(json.loads(r.read_all()).get("tags") or [])
            link = r.header("Link")
            m = re.match(r"<([^>]+)>", link or "")
            if not m:
                break
            path = m.group(1)
        return tags

    def head_manifest(self, ref: str) -> str | None:
        r = self.request("HEAD", f"/v2/{self.repo}/manifests/{ref}", {"Accept": ACCEPT})
        r.read_all()
        if r.status != 200:
            return None
        return r.header("Docker-Content-Digest") or None

    def open_blob(self, digest: str, offset: int = 0) -> tuple[Resp, int]:
        """A streaming GET of a blob from `offset`; returns the response and the blob's total size (or -1)."""
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        r = self.request("GET", f"/v2/{self.repo}/blobs/{digest}", headers)
        if r.status not in (200, 206):
            raise self._fail(r, f"blob {digest}")
        total = -1
        cr = r.header("Content-Range")
        if r.status == 206 and "/" in cr:
            try:
                total = int(cr.rsplit("/", 1)[1])
            except ValueError:
                pass
        elif r.header("Content-Length"):
            total = int(r.header("Content-Length")) + (offset if r.status == 206 else 0)
        if offset and r.status == 200:  # no Range support: skip what we already have
            left = offset
            while left:
                b = r.read(min(left, 1 << 20))
                if not b:
                    raise SystemError_(f"blob {digest} ended early")
                left -= len(b)
        return r, total

    def blob_exists(self, digest: str) -> int | None:
        r = self.request("HEAD", f"/v2/{self.repo}/blobs/{digest}")
        r.read_all()
        if r.status == 200:
            return int(r.header("Content-Length") or 0)
        if r.status == 404:
            return None
        raise RegistryError(r.status, "UNKNOWN", f"HEAD blob {digest}: HTTP {r.status}")

    def mount_blob(self, digest: str, from_repo: str) -> bool:
        q = urlencode({"mount": digest, "from": from_repo})
        r = self.request("POST", f"/v2/{self.repo}/blobs/uploads/?{q}", {"Content-Length": "0"}, b"",
                         extra_scopes=[f"repository:{from_repo}:pull"])
        r.read_all()
        if r.status == 201:
            return True
        if r.status == 202:  # mount refused, upload started: cancel it
            loc = r.header("Location")
            if loc:
                self.request("DELETE", urljoin(self.base_url() + "/", loc)).read_all()
            return False
        return False

    def upload_blob(self, digest: str, f: BinaryIO, size: int) -> None:
        r = self.request("POST", f"/v2/{self.repo}/blobs/uploads/", {"Content-Length": "0"}, b"")
        r.read_all()
        if r.status != 202:
            raise self._fail(r, "blob upload")
        loc = urljoin(self.base_url() + "/", r.header("Location"))
        sep = "&" if "?" in loc else "?"
        f.seek(0)
        r = self.request("PUT", f"{loc}{sep}digest={digest}",
                         {"Content-Type": "application/octet-stream", "Content-Length": str(size)}, f)
        if r.status != 201:
            raise self._fail(r, "blob upload")
        r.read_all()

    def put_manifest(self, ref: str, body: bytes, media_type: str) -> str:
        r = self.request("PUT", f"/v2/{self.repo}/manifests/{ref}", {"Content-Type": media_type}, body)
        if r.status not in (200, 201):
            raise self._fail(r, "manifest upload")
        r.read_all()
        return "sha256:" + hashlib.sha256(body).hexdigest()


class BlobReader:
    """A blob as one continuous stream; a broken connection is resumed with `Range` (a few times)."""

    def __init__(self, client: RegistryClient, digest: str, retries: int = 3) -> None:
        self.client = client
        self.digest = digest
        self.offset = 0
        self.retries = retries
        self.resp, self.total = client.open_blob(digest)

    def read(self, n: int = -1) -> bytes:
        while True:
            try:
                data = self.resp.read(n if n and n > 0 else 256 * 1024)
                if not data and self.total >= 0 and self.offset < self.total:
                    raise http.client.IncompleteRead(b"", self.total - self.offset)
                self.offset += len(data)
                return data
            except (OSError, http.client.HTTPException) as e:
                self.resp.close()
                if self.retries <= 0:
                    raise SystemError_(f"download of {self.digest} failed: {e}") from None
                self.retries -= 1
                log.info("resuming %s at %d after: %s", self.digest, self.offset, e)
                time.sleep(0.5)
                self.resp, _ = self.client.open_blob(self.digest, self.offset)

    def close(self) -> None:
        self.resp.close()
