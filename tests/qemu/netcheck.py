"""Checks the VM tests share about host ports."""

from __future__ import annotations

import socket


def assert_no_listener(port: int) -> None:
    """Nothing listens on 127.0.0.1:port any more. SO_REUSEADDR: connections a forward closed may sit in TIME_WAIT
    on the port for a minute, which is no leftover; bind() with it still fails while a listener exists."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as e:
            raise AssertionError(f"127.0.0.1:{port} is still taken after rm: {e}") from None
