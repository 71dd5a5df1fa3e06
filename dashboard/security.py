"""Who may drive the dashboard: only the browser tab opened with this launch's token.

- Every request carries the token: the first page load has it in the URL (`?token=`); the answer sets it as a
  cookie (HttpOnly, SameSite=Strict) and redirects to the same URL without it, so it leaves the address bar.
  Later requests, websockets included, must present that cookie.
- Host must be this server's own loopback address (a DNS-rebinding page has another Host) and an Origin, when
  sent, must be this server's own origin: no other site can read from or drive the dashboard, and
  websockets (which browsers open cross-origin freely) must carry our Origin.
- CSRF: a request that changes something (anything but GET/HEAD) must also carry `X-Skiff-Token`, a header
  a cross-site form or a "simple" cross-site fetch cannot send; the page gets the token in a <meta> tag.
"""

from __future__ import annotations

import hmac
import secrets
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, urlencode

from starlette.types import ASGIApp, Receive, Scope, Send

TOKEN_HEADER = "x-skiff-token"
SAFE_METHODS = ("GET", "HEAD")


def new_token() -> str:
    return secrets.token_urlsafe(32)


def cookie_name(port: int) -> str:
    # Cookies are per host, not per port: name the cookie by port so two dashboards do not overwrite each other's.
    return f"skiff_dashboard_{port}"


class Guard:
    """ASGI middleware enforcing the rules above for HTTP and websocket scopes alike."""

    def __init__(self, app: ASGIApp, token: str, port: int) -> None:
        self.app = app
        self.token = token
        self.port = port
        self.hosts = {f"127.0.0.1:{port}", f"localhost:{port}"}
        self.origins = {f"http://{h}" for h in self.hosts}
        self.cookie = cookie_name(port)

    def _ok(self, value: str | None) -> bool:
        return bool(value) and hmac.compare_digest(value.encode(), self.token.encode())  # type: ignore[union-attr]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        why = self._refusal(scope, headers)
        if why is None:
            await self.app(scope, receive, send)
            return
        if why == "redirect":
            await self._set_cookie_and_redirect(scope, send)
            return
        await self._refuse(scope, receive, send, why)

    def _refusal(self, scope: Scope, headers: dict[str, str]) -> str | None:
        if headers.get("host", "") not in self.hosts:
            return "wrong Host"
        origin = headers.get("origin")
        if scope["type"] == "websocket" and origin is None:
            return "a websocket needs an Origin"
        if origin is not None and origin not in self.origins:
            return "wrong Origin"
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        if scope["type"] == "http" and scope["method"] in SAFE_METHODS and self._ok(query.get("token")):
            return "redirect"
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(headers.get("cookie", ""))
        except Exception:
            return "bad cookie"
        got = jar.get(self.cookie)
        if not self._ok(got.value if got else None):
            return "no valid token (open the URL `machine dashboard` printed)"
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS and not self._ok(headers.get(TOKEN_HEADER)):
            return f"missing {TOKEN_HEADER} header"
        return None

    async def _set_cookie_and_redirect(self, scope: Scope, send: Send) -> None:
        rest = [(k, v) for k, v in parse_qsl(scope.get("query_string", b"").decode("latin-1")) if k != "token"]
        location = scope["path"] + ("?" + urlencode(rest) if rest else "")
        cookie = f"{self.cookie}={self.token}; Path=/; HttpOnly; SameSite=Strict"
        await send({"type": "http.response.start", "status": 303,
                    "headers": [(b"location", location.encode()), (b"set-cookie", cookie.encode()),
                                (b"cache-control", b"no-store"), (b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, why: str) -> None:
        body = f"403 Forbidden: {why}\n".encode()
        if scope["type"] == "websocket":
            # Before accept: uvicorn answers the handshake with 403 (websocket.http.response is not needed).
            await send({"type": "websocket.close", "code": 1008})
            return
        await send({"type": "http.response.start", "status": 403,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
