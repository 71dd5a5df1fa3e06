"""The `none` driver: an engine that already runs at a URL, with no SSH (docker-machine's `none`).

Useful to register an existing engine for `env`/`ls`, and for tests and benchmarks of the store and CLI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from skiffbox.machine.drivers.base import CreateFlag, Driver, DriverError, NotSupported, State


class NoneDriver(Driver):
    name = "none"
    skip_provision = True  # host.py: nothing to SSH into, the engine is someone else's

    def __init__(self, machine_name: str, machine_dir: Path) -> None:
        super().__init__(machine_name, machine_dir)
        self.engine_url = ""

    @classmethod
    def create_flags(cls) -> list[CreateFlag]:
        return [CreateFlag("url", "URL of the engine (tcp://HOST:PORT), required with --driver none", "", "NONE_URL")]

    def set_config_from_flags(self, flags: dict[str, Any]) -> None:
        self.engine_url = str(flags.get("url") or "")
        self._parse()

    def _parse(self) -> None:
        u = urlsplit(self.engine_url)
        if u.scheme != "tcp" or not u.hostname:
            raise DriverError(f"--url must look like tcp://HOST:PORT, got {self.engine_url!r}")
        self.ip_address = u.hostname
        self.engine_port = u.port or 2376

    def to_config(self) -> dict[str, Any]:
        d = super().to_config()
        d["URL"] = self.engine_url
        return d

    def load_config(self, data: dict[str, Any]) -> None:
        super().load_config(data)
        self.engine_url = data.get("URL", "")
        if self.engine_url:
            self._parse()

    def create(self) -> None:
        pass

    def start(self) -> None:
        pass

    def stop(self) -> None:
        raise NotSupported("the none driver does not manage a host")

    def kill(self) -> None:
        raise NotSupported("the none driver does not manage a host")

    def remove(self) -> None:
        pass

    def state(self) -> State:
        return State.RUNNING

    def ip(self) -> str:
        return self.ip_address

    def url(self) -> str:
        return self.engine_url
