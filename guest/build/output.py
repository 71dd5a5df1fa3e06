"""The build's JSON message stream, as the docker CLI and docker-py read it (moby streamformatter):
`{"stream": "…"}` lines, pull progress, `{"aux": {"ID": …}}`, and `{"errorDetail": …, "error": …}`.

With `q=1` step output is held back and only the image ID is sent; if the build fails, what was held
back is sent before the error, so the failing step's output is still seen (as Docker does).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any


class Output:
    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._held: list[bytes] = []

    def _put(self, obj: dict[str, Any], hold: bool) -> None:
        data = json.dumps(obj, ensure_ascii=False).encode() + b"\r\n"
        if hold and self.quiet:
            self._held.append(data)
        else:
            self.queue.put_nowait(data)

    def stream(self, text: str) -> None:
        self._put({"stream": text}, hold=True)

    def raw(self, msg: dict[str, Any]) -> None:
        """A message from elsewhere (pull progress), passed through."""
        self._put(msg, hold=True)

    def aux(self, obj: dict[str, Any]) -> None:
        self._put({"aux": obj}, hold=False)

    def result(self, text: str) -> None:
        """Always shown (the image ID in quiet mode)."""
        self._put({"stream": text}, hold=False)

    def error(self, message: str, code: int | None = None) -> None:
        for data in self._held:
            self.queue.put_nowait(data)
        self._held.clear()
        detail: dict[str, Any] = {"message": message}
        if code is not None:
            detail = {"code": code, "message": message}
        self._put({"errorDetail": detail, "error": message}, hold=False)

    def close(self) -> None:
        self.queue.put_nowait(None)
