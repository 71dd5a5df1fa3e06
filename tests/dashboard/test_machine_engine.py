"""The dashboard for a machine in the store: `machine dashboard NAME` reaches that machine's engine over TCP with
mutual TLS (the store's client certificates, resolved as `skiff --machine NAME` resolves them), and the page's
calls and streams (run from the form, its logs over a websocket, remove) go there, not to the local engine."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from tests.client.test_tls_machine import TLSEngine, machine_store, tls_engine  # noqa: F401  (fixture)
from tests.dashboard.harness import Dashboard, dashboard_for
from tests.engine.harness import TestImages


def call(d: Dashboard, method: str, path: str, body: object = None) -> object:
    headers = {"Cookie": f"skiff_dashboard_{d.port}={d.token}", "X-Skiff-Token": d.token,
               "Content-Type": "application/json"}
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(d.base + path, data=data, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=30) as r:
        text = r.read().decode()
        return json.loads(text) if text.startswith(("{", "[")) else text


def test_dashboard_for_a_tls_machine(tls_engine: TLSEngine, images: TestImages, tmp_path: Path,  # noqa: F811
                                     in_netns: None) -> None:
    from websockets.sync.client import connect

    e = tls_engine
    root = tmp_path / "store"
    machine_store(e, root, "tlsbox")
    # The TLS skiffd also listens on its unix socket (the harness's DOCKER_HOST: the dashboard's local engine);
    # the engine URL the dashboard reports for the machine shows which of the two it reached.
    with dashboard_for(e.daemon, "tlsbox", root) as d:
        page = call(d, "GET", "/")
        assert '<meta name="skiff-engine" content="tlsbox">' in str(page)
        engines = call(d, "GET", "/api/engines")
        assert engines["default"] == "tlsbox" and [x["id"] for x in engines["engines"]] == ["_local", "tlsbox"]  # type: ignore[index]
        info = call(d, "GET", "/api/e/tlsbox/info")
        assert info["url"] == e.url and info["portHost"] == "127.0.0.1"  # type: ignore[index]
        out = call(d, "POST", "/api/e/tlsbox/containers",
                   {"image": images.busybox, "name": "viatls", "cmd": "sh -c 'echo via-tls; sleep 60'"})
        cid = out["Id"]  # type: ignore[index]
        got = ""
        with connect(f"ws://127.0.0.1:{d.port}/ws/e/tlsbox/containers/viatls/logs", origin=d.base,  # type: ignore[arg-type]
                     additional_headers={"Cookie": f"skiff_dashboard_{d.port}={d.token}"}, open_timeout=10) as ws:
            while "via-tls" not in got:
                got += json.loads(ws.recv(timeout=20))["t"]
        assert e.daemon.docker("inspect", "-f", "{{.Id}}", "viatls").stdout.strip() == cid
        call(d, "DELETE", "/api/e/tlsbox/containers/viatls?force=1")
        assert e.daemon.docker("ps", "-aq").stdout.strip() == ""
