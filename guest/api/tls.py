"""Server-side TLS for the API's TCP listener (dockerd's --tlsverify), over memory BIOs so that a hijacked
stream can half-close."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from skiffbox.guest.api.http import READ_SIZE
from skiffbox.guest.errors import InvalidParameter


class TLSStream:
    """Server-side TLS done by hand over a plain TCP stream, standing in for both reader and writer.

    Why not asyncio's SSL transport: it cannot half-close. The docker CLI sends close_notify as soon as
    stdin ends on a hijacked attach/exec stream (Go's CloseWrite) and keeps reading; asyncio then shuts
    the whole connection and the container's output is lost. Here close_notify is just EOF on the read
    side, and we go on writing until we are done.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ctx: ssl.SSLContext) -> None:
        self._reader = reader
        self._writer = writer
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._obj = ctx.wrap_bio(self._in, self._out, server_side=True)
        self._eof = False

    async def handshake(self, timeout: float = 30.0) -> None:
        async def run() -> None:
            while True:
                try:
                    self._obj.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    await self._flush()
                    data = await self._reader.read(READ_SIZE)
                    if not data:
                        raise ConnectionResetError("client closed during the TLS handshake")
                    self._in.write(data)
                except ssl.SSLError:
                    await self._flush()  # send the alert so the client learns why
                    raise
            await self._flush()

        await asyncio.wait_for(run(), timeout)

    async def _flush(self) -> None:
        data = self._out.read()
        if data:
            self._writer.write(data)
            await self._writer.drain()

    async def read(self, n: int = READ_SIZE) -> bytes:
        while not self._eof:
            try:
                return self._obj.read(n)
            except ssl.SSLWantReadError:
                await self._flush()  # e.g. TLS 1.3 key updates
                data = await self._reader.read(READ_SIZE)
                if not data:
                    self._eof = True
                    break
                self._in.write(data)
            except ssl.SSLZeroReturnError:  # close_notify: the client finished sending
                self._eof = True
        return b""

    def write(self, data: bytes) -> None:
        self._obj.write(data)
        out = self._out.read()
        if out:
            self._writer.write(out)

    async def drain(self) -> None:
        await self._writer.drain()

    def can_write_eof(self) -> bool:
        return False

    def write_eof(self) -> None:
        raise RuntimeError("TLS streams close whole")

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "ssl_object":
            return self._obj
        return self._writer.get_extra_info(name, default)

    def close(self) -> None:
        try:
            self._obj.unwrap()
        except ssl.SSLError:
            pass
        try:
            out = self._out.read()
            if out:
                self._writer.write(out)
        except Exception:
            pass
        self._writer.close()


def server_tls_context(cacert: str | None, cert: str, key: str, verify: bool) -> ssl.SSLContext:
    """Mutual TLS like dockerd's --tlsverify: clients must present a certificate signed by the CA."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    if verify:
        if not cacert:
            raise InvalidParameter("--tlsverify needs --tlscacert")
        ctx.load_verify_locations(cacert)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx
