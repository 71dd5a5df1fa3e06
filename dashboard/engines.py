"""The engines the dashboard can show: the local one (DOCKER_HOST, else the default unix socket) and every
machine in the store, each reached through the project's engine client (skiffbox.client's APIClient/Transport;
endpoints resolved by skiff's configuration code, exactly as `skiff` and `skiff --machine NAME` resolve them)."""

from __future__ import annotations

import threading
from typing import Any

from skiffbox.client.api import APIClient
from skiffbox.cli.skiffclient.config import ConfigError, GlobalOptions, resolve_endpoint
from skiffbox.client.transport import Endpoint, Transport

LOCAL = "_local"  # not a valid machine name (store.validate_name), so it cannot clash with one


class EngineError(Exception):
    pass


def endpoint_for(engine: str) -> Endpoint:
    opts = GlobalOptions([], machine=None if engine == LOCAL else engine)
    try:
        return resolve_endpoint(opts)
    except ConfigError as e:
        raise EngineError(str(e)) from None


def local_url() -> str:
    try:
        return str(endpoint_for(LOCAL).url)
    except EngineError as e:
        return str(e)


def port_host(ep: Endpoint) -> str:
    """The host a browser on this computer opens a published port on: the engine's own address for a TCP
    engine (a machine's IP, or 127.0.0.1 where the driver forwards ports), loopback for a local socket."""
    return ep.address if ep.scheme == "tcp" else "127.0.0.1"


class Engines:
    """One client per engine, made on first use. A Transport keeps idle connections for reuse and is not
    meant for concurrent requests, so each call made from the thread pool takes its own client from
    `client()`; streams (events, logs, exec) use a dedicated client each as well."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._endpoints: dict[str, Endpoint] = {}
        self._pool: dict[str, list[APIClient]] = {}

    def endpoint(self, engine: str) -> Endpoint:
        with self._lock:
            ep = self._endpoints.get(engine)
        if ep is None:
            ep = endpoint_for(engine)
            with self._lock:
                self._endpoints[engine] = ep
        return ep

    def forget(self, engine: str) -> None:
        """Drop what is cached for an engine (a machine restarted with a new address or new certificates)."""
        with self._lock:
            self._endpoints.pop(engine, None)
            for c in self._pool.pop(engine, []):
                c.t.close()

    def client(self, engine: str) -> APIClient:
        with self._lock:
            pool = self._pool.get(engine)
            if pool:
                return pool.pop()
        # No timeout: streams (logs -f, events, exec) stay open for as long as the page shows them.
        return APIClient(Transport(self.endpoint(engine)))

    def release(self, engine: str, c: APIClient) -> None:
        with self._lock:
            pool = self._pool.setdefault(engine, [])
            if len(pool) < 8:
                pool.append(c)
                return
        c.t.close()

    def call(self, engine: str, fn: Any, *args: Any, **kw: Any) -> Any:
        """fn(client, *args) with a pooled client (blocking: run it in a worker thread)."""
        c = self.client(engine)
        ok = False
        try:
            out = fn(c, *args, **kw)
            ok = True
            return out
        finally:
            if ok:
                self.release(engine, c)
            else:
                c.t.close()

    def close(self) -> None:
        with self._lock:
            pools, self._pool = self._pool, {}
        for pool in pools.values():
            for c in pool:
                c.t.close()
