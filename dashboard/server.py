"""`machine dashboard`: serve the app on 127.0.0.1 at a random free port with a fresh token, print the URL,
open the browser. Nothing listens beyond loopback."""

from __future__ import annotations

import socket
import sys
import threading
from typing import TextIO

from skiffbox.dashboard.engines import LOCAL, EngineError, endpoint_for
from skiffbox.dashboard.security import new_token


class DashboardError(Exception):
    pass


def check_engine(engine: str) -> None:
    """Fail early with the client's own message for a machine that does not exist; a stopped machine or an
    absent local engine is fine (the page shows it and can start the machine)."""
    if engine == LOCAL:
        return
    from skiffbox.machine.store import Store

    if not Store().exists(engine):
        raise DashboardError(f'machine "{engine}" does not exist (see `machine ls`, or `machine create {engine}`)')
    try:
        endpoint_for(engine)
    except EngineError:
        pass


def serve(engine: str = LOCAL, open_browser: bool = True, out: TextIO = sys.stdout) -> None:
    """Serve until interrupted (Ctrl-C)."""
    import uvicorn

    from skiffbox.dashboard.app import build_app

    check_engine(engine)
    token = new_token()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/?token={token}"
    app = build_app(token, port, engine)
    config = uvicorn.Config(app, log_level="warning", ws="websockets-sansio", lifespan="off", access_log=False,
                            ws_ping_interval=20)
    server = uvicorn.Server(config)

    def announce() -> None:
        out.write(f"Dashboard for {'the local engine' if engine == LOCAL else 'machine ' + engine}: {url}\n"
                  "(the token in the URL is this launch's key; press Ctrl-C to stop)\n")
        out.flush()
        if open_browser:
            import webbrowser

            threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()

    # The socket listens before uvicorn runs: a browser that connects at once waits in the backlog.
    sock.listen(128)
    announce()
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
