"""Image references parsed and normalised the way Docker does (distribution/reference).

`busybox` → `docker.io/library/busybox:latest`; `localhost:5000/a/b@sha256:…`; familiar forms for display
(`docker.io/library/busybox:latest` → `busybox:latest`). Error texts are Docker's, because clients show them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from skiffbox.guest.errors import InvalidParameter

DEFAULT_DOMAIN = "docker.io"
LEGACY_DOMAIN = "index.docker.io"
HUB_ENDPOINT = "registry-1.docker.io"
OFFICIAL_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEP = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEP}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_REFERENCE = re.compile(rf"^({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?$")
_TAG_RE = re.compile(rf"^{_TAG}$")
_ID_RE = re.compile(r"^[a-f0-9]{64}$")
_SHA256_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
_DOMAIN_RE = re.compile(rf"^{_DOMAIN}$")


class ReferenceError_(InvalidParameter):
    """An invalid reference: 400 with Docker's message."""


@dataclass(frozen=True)
class Reference:
    domain: str  # "docker.io", "127.0.0.1:5000"
    path: str  # "library/busybox", "test/busybox"
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """Fully qualified repository name: docker.io/library/busybox."""
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        s = self.name
        if self.tag:
            s += f":{self.tag}"
        if self.digest:
            s += f"@{self.digest}"
        return s

    @property
    def familiar_name(self) -> str:
        if self.domain == DEFAULT_DOMAIN:
            return self.path[len(OFFICIAL_PREFIX):] if self.path.startswith(OFFICIAL_PREFIX) and self.path.count("/") == 1 else self.path
        return self.name

    def familiar(self) -> str:
        s = self.familiar_name
        if self.tag:
            s += f":{self.tag}"
        if self.digest:
            s += f"@{self.digest}"
        return s

    def with_tag(self, tag: str) -> "Reference":
        return Reference(self.domain, self.path, tag, None)

    def with_digest(self, digest: str) -> "Reference":
        return Reference(self.domain, self.path, None, digest)

    def tag_or_latest(self) -> "Reference":
        """TagNameOnly: a bare name gets `latest`; digests stay as they are."""
        if self.tag is None and self.digest is None:
            return Reference(self.domain, self.path, DEFAULT_TAG, None)
        return self

    @property
    def tag_or_digest(self) -> str:
        return self.digest or self.tag or DEFAULT_TAG

    @property
    def endpoint_host(self) -> str:
        return HUB_ENDPOINT if self.domain == DEFAULT_DOMAIN else self.domain


def _split_domain(name: str) -> tuple[str, str]:
    i = name.find("/")
    first = name[:i] if i >= 0 else ""
    if i == -1 or (not any(c in first for c in ".:") and first != "localhost" and first.lower() == first):
        domain, rest = DEFAULT_DOMAIN, name
    else:
        domain, rest = first, name[i + 1:]
    if domain == LEGACY_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in rest:
        rest = OFFICIAL_PREFIX + rest
    return domain, rest


def _parse(s: str) -> tuple[str, str | None, str | None]:
    m = _REFERENCE.match(s)
    if not m:
        if s == "":
            raise ReferenceError_("invalid reference format: repository name must have at least one component")
        if _REFERENCE.match(s.lower()):
            raise ReferenceError_("invalid reference format: repository name must be lowercase")
        raise ReferenceError_("invalid reference format")
    name, tag, digest = m.group(1), m.group(2), m.group(3)
    if len(name) > NAME_TOTAL_MAX:
        raise ReferenceError_(f"invalid reference format: repository name must not be more than {NAME_TOTAL_MAX} characters")
    if digest and not digest.startswith("sha256:"):
        raise ReferenceError_("invalid reference format: unsupported digest algorithm")
    if digest and len(digest) != 71:
        raise ReferenceError_("invalid reference format: invalid checksum digest length")
    return name, tag, digest


def parse_normalized(s: str) -> Reference:
    """ParseNormalizedNamed: a name with optional tag and digest, domain and `library/` filled in."""
    if _ID_RE.match(s):
        raise ReferenceError_(f"invalid repository name ({s}), cannot specify 64-byte hexadecimal strings")
    domain, rest = _split_domain(s)
    remote = rest.split("@", 1)[0].split(":", 1)[0]
    if remote.lower() != remote:
        raise ReferenceError_(f"invalid reference format: repository name ({remote}) must be lowercase")
    name, tag, digest = _parse(f"{domain}/{rest}")
    d, _, p = name.partition("/")
    return Reference(d, p, tag, digest)


def parse_tagged(s: str) -> Reference:
    """A reference with `latest` added when it has neither tag nor digest (what pull and tag use)."""
    return parse_normalized(s).tag_or_latest()


def validate_tag(tag: str) -> None:
    if not _TAG_RE.match(tag):
        raise ReferenceError_("invalid tag format")


def is_domain(s: str) -> bool:
    """A registry host as references spell it: `host`, `host:port`, `[v6]:port`."""
    return bool(_DOMAIN_RE.match(s))


def is_full_id(s: str) -> bool:
    return bool(_SHA256_RE.match(s) or _ID_RE.match(s))


def is_digest(s: str) -> bool:
    return bool(_SHA256_RE.match(s))


def split_repo_tag(repo: str, tag: str | None) -> Reference:
    """The API's `fromImage`/`repo` + `tag` pair (a digest may arrive in `tag`) as one reference."""
    ref = parse_normalized(repo)
    if tag:
        if tag.startswith("sha256:"):
            if not is_digest(tag):
                raise ReferenceError_("invalid reference format: invalid checksum digest length")
            return Reference(ref.domain, ref.path, None, tag)
        validate_tag(tag)
        return Reference(ref.domain, ref.path, tag, None)
    return ref
