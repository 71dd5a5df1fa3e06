"""Only the tab opened with this launch's token can drive the dashboard: requests without the token, from
another origin or host, state changes without the CSRF header, and websockets without the cookie or with a
foreign Origin are all refused; the same requests with the token pass."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from tests.dashboard.harness import Dashboard


def fetch(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> tuple[int, str, dict[str, str]]:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **kw):  # type: ignore[no-untyped-def]
            return None

    req = urllib.request.Request(url, method=method, headers=headers or {}, data=b"{}" if method == "POST" else None)
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(req, timeout=10) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers)


def cookie(d: Dashboard, token: str | None = None) -> dict[str, str]:
    return {"Cookie": f"skiff_dashboard_{d.port}={token or d.token}"}


def test_http_requests_need_the_token(dashboard: Dashboard, in_netns: None) -> None:
    d = dashboard
    assert fetch(d.base + "/")[0] == 403
    assert fetch(d.base + "/api/engines")[0] == 403
    assert fetch(d.base + "/?token=wrong")[0] == 403
    assert fetch(d.base + "/api/engines", headers=cookie(d, "x" * 43))[0] == 403
    # The URL's token sets the cookie and is dropped from the address.
    status, _, headers = fetch(d.url)
    assert status == 303 and headers["location"] == "/"
    assert f"skiff_dashboard_{d.port}={d.token}" in headers["set-cookie"]
    assert "HttpOnly" in headers["set-cookie"] and "SameSite=Strict" in headers["set-cookie"]
    status, body, _ = fetch(d.base + "/api/engines", headers=cookie(d))
    assert status == 200 and '"_local"' in body


def test_other_origins_and_hosts_are_refused(dashboard: Dashboard, in_netns: None) -> None:
    d = dashboard
    status, body, _ = fetch(d.base + "/api/engines", headers={**cookie(d), "Origin": "http://evil.example"})
    assert status == 403 and "Origin" in body
    # DNS rebinding: the right cookie jar would not even be sent, but a wrong Host is refused regardless.
    assert fetch(d.base + "/api/engines", headers={**cookie(d), "Host": f"evil.example:{d.port}"})[0] == 403
    assert fetch(d.base + "/api/engines", headers={**cookie(d), "Origin": d.base})[0] == 200


def test_changes_need_the_csrf_header(dashboard: Dashboard, in_netns: None) -> None:
    d = dashboard
    # What a cross-site form post would look like even if the browser sent the cookie: no custom header.
    status, body, _ = fetch(d.base + "/api/e/_local/images/pull", "POST", {**cookie(d), "Content-Type": "text/plain"})
    assert status == 403 and "x-skiff-token" in body
    status, body, _ = fetch(d.base + "/api/e/_local/images/pull", "POST",
                            {**cookie(d), "X-Skiff-Token": d.token, "Content-Type": "application/json"})
    assert status == 400 and "which image" in body  # past the guard: the (empty) request itself is judged


def test_websockets_need_the_cookie_and_our_origin(dashboard: Dashboard, in_netns: None) -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    d = dashboard
    ws_url = f"ws://127.0.0.1:{d.port}/ws/e/_local/events"
    for headers in ({"Origin": d.base}, {**cookie(d), "Origin": "http://evil.example"}, cookie(d)):
        with pytest.raises(InvalidStatus) as e:
            connect(ws_url, additional_headers={k: v for k, v in headers.items() if k != "Origin"},
                    origin=headers.get("Origin"), open_timeout=10)  # type: ignore[arg-type]
        assert e.value.response.status_code == 403, headers
    with connect(ws_url, additional_headers=cookie(d), origin=d.base, open_timeout=10) as ws:  # type: ignore[arg-type]
        ws.ping().wait(5)
