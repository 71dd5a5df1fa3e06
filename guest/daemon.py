"""`skiffd`: parse flags, open the engine, listen on unix and TLS sockets, shut down cleanly."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from urllib.parse import urlsplit

from skiffbox.guest import __version__
from skiffbox.guest.config import DaemonConfig, load_config

log = logging.getLogger("skiffd")


def since_exec() -> float:
    """Seconds since this process was exec'd (start-up cost, interpreter and imports included)."""
    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22: starttime
        return time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return -1.0


async def serve(cfg: DaemonConfig, ready: "asyncio.Event | None" = None) -> None:
    t0 = since_exec()
    from skiffbox.guest.api import build_app
    from skiffbox.guest.api.tls import server_tls_context
    from skiffbox.guest.engine import Engine

    engine = Engine(cfg)
    t1 = since_exec()
    await engine.start()
    t2 = since_exec()
    app = build_app(engine)
    ssl_ctx = None
    if cfg.tls:
        ssl_ctx = server_tls_context(cfg.tlscacert, cfg.tlscert or "", cfg.tlskey or "", cfg.tlsverify)
    for host in cfg.hosts:
        u = urlsplit(host if "://" in host else f"unix://{host}")
        if u.scheme == "unix":
            await app.listen_unix(u.path)
            log.info("API listening on %s", u.path)
        elif u.scheme in ("tcp", "https", "http"):
            if ssl_ctx is None and u.hostname not in ("127.0.0.1", "localhost", "::1"):
                log.warning("API listening on %s without TLS: anyone who can reach it is root here", host)
            await app.listen_tcp(u.hostname or "0.0.0.0", u.port or (2376 if ssl_ctx else 2375), ssl_ctx)
            log.info("API listening on %s%s", host, " (TLS)" if ssl_ctx else "")
        else:
            raise SystemExit(f"skiffd: unsupported host {host!r} (use unix:///path or tcp://ip:port)")
    if cfg.pidfile:
        cfg.pidfile.parent.mkdir(parents=True, exist_ok=True)
        cfg.pidfile.write_text(str(os.getpid()))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    # the start-up split (bench/machine_start.py --split reads it from the journal)
    log.info("skiffd %s ready (data root %s): %.2f s after exec (python start-up %.2f s, engine imports and "
             "init %.2f s, recovery %.2f s, API and listen %.2f s)", __version__, cfg.data_root, since_exec(),
             t0, t1 - t0, t2 - t1, since_exec() - t2)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await app.close()
        await engine.close()
        if cfg.pidfile:
            try:
                cfg.pidfile.unlink()
            except FileNotFoundError:
                pass
        for host in cfg.hosts:
            u = urlsplit(host if "://" in host else f"unix://{host}")
            if u.scheme == "unix":
                try:
                    os.unlink(u.path)
                except OSError:
                    pass


def main(argv: list[str] | None = None) -> None:
    cfg, args = load_config(argv)
    if args.version:
        print(f"skiffd version {__version__}")
        return
    logging.basicConfig(
        level=getattr(logging, cfg.log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        asyncio.run(serve(cfg))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
