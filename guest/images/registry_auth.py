"""Registry credentials and the tokens they buy.

`AuthConfig` is what the client sends (`X-Registry-Auth`, the body of POST /auth). `RegistryAuth` answers a
registry's 401 challenge the way it asks: Bearer tokens from the challenge's realm (anonymous, with Basic
credentials, an identity/refresh token, or a registry token as is), cached per scope until shortly before they
expire, or Basic credentials on every request.
"""

from __future__ import annotations

import base64
import json
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from skiffbox.guest.errors import InvalidParameter, SystemError_, Unauthorized
from skiffbox.guest.images.registry_http import RegistryError, RegistryTransport, error_body


@dataclass
class AuthConfig:
    username: str = ""
    password: str = ""
    identitytoken: str = ""
    registrytoken: str = ""
    serveraddress: str = ""

    @classmethod
    def from_header(cls, value: str | None) -> "AuthConfig | None":
        """X-Registry-Auth: base64url(JSON); the CLI sends `e30=` ({}) when it has no credentials."""
        if not value:
            return None
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            j = json.loads(raw or b"{}")
        except (ValueError, TypeError):
            try:
                j = json.loads(base64.b64decode(value + "=" * (-len(value) % 4)))
            except (ValueError, TypeError):
                raise InvalidParameter("invalid X-Registry-Auth header: not base64url-encoded JSON") from None
        return cls.from_dict(j)

    @classmethod
    def from_dict(cls, j: Any) -> "AuthConfig | None":
        if not isinstance(j, dict):
            return None
        a = cls(str(j.get("username") or ""), str(j.get("password") or ""), str(j.get("identitytoken") or ""),
                str(j.get("registrytoken") or ""), str(j.get("serveraddress") or ""))
        if j.get("auth") and not a.username:
            try:
                u, _, p = base64.b64decode(j["auth"]).decode().partition(":")
                a.username, a.password = u, p
            except (ValueError, UnicodeDecodeError):
                pass
        if not (a.username or a.identitytoken or a.registrytoken):
            return None
        return a

    def basic(self) -> str:
        """The Authorization value for HTTP Basic with the username and password."""
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="…",service="…"` -> ("bearer", {"realm": …, "service": …})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {k.lower(): v for k, v in re.findall(r'(\w+)="([^"]*)"', rest)}
    return scheme.lower(), params


@dataclass
class _Token:
    value: str
    expires: float


class RegistryAuth:
    """The Authorization header for one repository (pull, or pull and push) on one registry."""

    def __init__(self, transport: RegistryTransport, repo: str, auth: AuthConfig | None, push: bool) -> None:
        self.transport = transport
        self.repo = repo
        self.auth = auth
        self.push = push
        self.challenge: tuple[str, dict[str, str]] | None = None  # the registry's last 401 challenge
        self._tokens: dict[str, _Token] = {}

    def _scope(self, extra: list[str] | None) -> list[str]:
        scopes = [f"repository:{self.repo}:{'pull,push' if self.push else 'pull'}"] if self.repo else []
        return scopes + list(extra or [])

    def header(self, extra_scopes: list[str] | None, force_new: bool = False) -> dict[str, str]:
        if self.challenge is None:
            return {}
        kind, params = self.challenge
        if kind == "basic":
            return {"Authorization": self.auth.basic()} if self.auth and self.auth.username else {}
        if kind != "bearer":
            return {}
        if self.auth and self.auth.registrytoken:
            return {"Authorization": f"Bearer {self.auth.registrytoken}"}
        scopes = self._scope(extra_scopes)
        key = " ".join(scopes)
        t = self._tokens.get(key)
        if t is None or force_new or t.expires < time.time():
            t = self._fetch_token(params, scopes)
            self._tokens[key] = t
        return {"Authorization": f"Bearer {t.value}"}

    def _fetch_token(self, params: dict[str, str], scopes: list[str]) -> _Token:
        realm = params.get("realm")
        if not realm:
            raise Unauthorized(f"registry {self.transport.host} asked for a token without a realm")
        service = params.get("service", "")
        headers: dict[str, str] = {}
        if self.auth and self.auth.identitytoken:
            form = urlencode({"grant_type": "refresh_token", "refresh_token": self.auth.identitytoken,
                              "service": service, "scope": " ".join(scopes), "client_id": "docker"}).encode()
            r = self.transport.raw_other("POST", realm, {"Content-Type": "application/x-www-form-urlencoded"}, form)
        else:
            q: list[tuple[str, str]] = [("service", service)] if service else []
            q += [("scope", s) for s in scopes]
            if self.auth and self.auth.username:
                q += [("account", self.auth.username), ("client_id", "docker"), ("offline_token", "true")]
                headers["Authorization"] = self.auth.basic()
            sep = "&" if "?" in realm else "?"
            r = self.transport.raw_other("GET", realm + sep + urlencode(q), headers)
        body = r.read_all()
        if r.status != 200:
            code, msg = error_body(body)
            if r.status in (401, 403):
                # Not a 401 to the client: the docker CLI would then prompt for a password on stdin.
                try:
                    msg = json.loads(body).get("details") or msg
                except (ValueError, AttributeError):
                    pass
                raise RegistryError(r.status, "UNAUTHORIZED", msg or "authentication required")
            raise SystemError_(f"token server {realm} answered {r.status}: {msg}")
        try:
            j = json.loads(body)
        except ValueError:
            raise SystemError_(f"token server {realm} sent invalid JSON") from None
        value = j.get("token") or j.get("access_token")
        if not value:
            raise SystemError_(f"token server {realm} sent no token")
        ttl = int(j.get("expires_in") or 60)
        return _Token(value, time.time() + max(ttl - 5, 10))
