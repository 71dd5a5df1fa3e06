"""Fixtures for the VirtualBox driver's tests: the stand-in VBoxManage with its own state dir.

No real VirtualBox runs in these tests (there is none on our Linux machines); `FakeVBox` is the
test fixture `fake_vboxmanage/VBoxManage`, which checks syntax, keeps state and simulates failures.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

FAKE_DIR = Path(__file__).parent / "fake_vboxmanage"
FAKE_BIN = FAKE_DIR / "VBoxManage"


@dataclass
class FakeVBox:
    """Handle on one stand-in instance: its binary, state dir and the environment that selects it."""

    state_dir: Path
    env: dict[str, str]

    @property
    def path(self) -> str:
        return str(FAKE_BIN)

    def configure(self, **cfg: Any) -> None:
        current = self.config()
        current.update(cfg)
        (self.state_dir / "config.json").write_text(json.dumps(current))

    def config(self) -> dict[str, Any]:
        p = self.state_dir / "config.json"
        return json.loads(p.read_text()) if p.exists() else {}

    def state(self) -> dict[str, Any]:
        p = self.state_dir / "state.json"
        return json.loads(p.read_text()) if p.exists() else {}

    def calls(self) -> list[list[str]]:
        p = self.state_dir / "calls.jsonl"
        if not p.exists():
            return []
        return [json.loads(line)["argv"] for line in p.read_text().splitlines()]

    def clear_calls(self) -> None:
        (self.state_dir / "calls.jsonl").unlink(missing_ok=True)

    def run(self, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.path, *args], env=self.env, capture_output=True, text=input is None, input=input
        )

    def vm(self, name: str) -> dict[str, Any]:
        return next(v for v in self.state()["vms"].values() if v["name"] == name)

    def kill_qemus(self) -> None:
        """QEMU processes the stand-in's QEMU mode started (by their pidfiles), never others."""
        for pidfile in self.state_dir.glob("qemu-*.pid"):
            try:
                pid = int(pidfile.read_text())
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except (OSError, ValueError):
                continue
            if str(pidfile).encode() in cmdline:  # still the QEMU we started
                os.kill(pid, signal.SIGKILL)

    def allow_networks(self, *cidrs: str) -> None:
        """Write the stand-in's copy of /etc/vbox/networks.conf."""
        (self.state_dir / "networks.conf").write_text("* " + " ".join(cidrs) + "\n")


@pytest.fixture
def fake_vbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeVBox]:
    state = tmp_path / "vbox-state"
    state.mkdir()
    monkeypatch.setenv("FAKE_VBOX_STATE", str(state))
    # Only the stand-in: PATH lookup finds it first; VBOX_INSTALL_PATH points at it too.
    monkeypatch.setenv("PATH", f"{FAKE_DIR}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("VBOX_INSTALL_PATH", str(FAKE_DIR))
    fake = FakeVBox(state, dict(os.environ))
    yield fake
    fake.kill_qemus()
