"""A registry for the VM tests, run in the host's own network namespace: a guest under QEMU's user-mode network
reaches it at 10.0.2.2."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any


class HostNS:
    """The host's own namespace, shaped like tests.engine.harness.NetNS (what harness.Registry runs commands in)."""

    def cmd(self, args: list[str]) -> list[str]:
        return args

    def run(self, args: list[str], **kw: Any) -> subprocess.CompletedProcess:
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        return subprocess.run(args, **kw)


def host_registry(workdir: Path, port: int) -> Any:
    """Debian's docker-registry on 127.0.0.1:port of the host (not started yet: the caller starts and stops it)."""
    from tests.engine import harness

    return harness.Registry(HostNS(), workdir, port=port)  # type: ignore[arg-type]
