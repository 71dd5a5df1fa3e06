"""Fixtures for the quickstart tests: an isolated store, and a real terminal driven by tmux."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from skiffbox.machine.store import Store
from tests.qemu.conftest import built_image, image_cache  # noqa: F401  (the shared, cached guest image)

MACHINE = str(Path(sys.executable).with_name("machine"))


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    root = tmp_path / "store"
    monkeypatch.setenv("MACHINE_STORAGE_PATH", str(root))
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    return Store(root)


class Tmux:
    """One tmux server on a private socket, one window: what a person sees in a terminal."""

    def __init__(self, cmd: list[str], env: dict[str, str], cwd: Path) -> None:
        self.sock = f"skiff-qs-{uuid.uuid4().hex[:8]}"
        subprocess.run(["tmux", "-L", self.sock, "-f", "/dev/null", "new-session", "-d", "-s", "qs",
                        "-x", "160", "-y", "60", *cmd], env=env, cwd=cwd, check=True)
        # keep the pane after the command exits, to read why it ended
        subprocess.run(["tmux", "-L", self.sock, "set-option", "-g", "remain-on-exit", "on"], check=False)
        out = subprocess.run(["tmux", "-L", self.sock, "display-message", "-p", "#{pid} #{socket_path}"],
                             capture_output=True, text=True).stdout.split(maxsplit=1)
        self.server_pid = int(out[0]) if out and out[0].isdigit() else 0
        self.socket_path = Path(out[1].strip()) if len(out) > 1 else None

    def screen(self) -> str:
        r = subprocess.run(["tmux", "-L", self.sock, "capture-pane", "-p", "-J", "-S", "-3000", "-t", "qs"],
                           capture_output=True, text=True)
        return r.stdout

    def type(self, line: str) -> None:
        subprocess.run(["tmux", "-L", self.sock, "send-keys", "-t", "qs", "-l", line], check=True)
        subprocess.run(["tmux", "-L", self.sock, "send-keys", "-t", "qs", "Enter"], check=True)

    def wait_for(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            s = self.screen()
            if text in s:
                return s
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} did not appear within {timeout:.0f} s; the terminal shows:\n{s}")
            time.sleep(0.5)

    def pane_dead(self) -> bool:
        r = subprocess.run(["tmux", "-L", self.sock, "display-message", "-p", "-t", "qs", "#{pane_dead}"],
                           capture_output=True, text=True)
        return r.stdout.strip() == "1"

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.sock, "kill-server"], capture_output=True, check=False)
        if self.server_pid:
            for _ in range(50):
                if not Path(f"/proc/{self.server_pid}").exists():
                    break
                time.sleep(0.1)
        if self.socket_path is not None:  # kill-server leaves the socket file behind
            self.socket_path.unlink(missing_ok=True)


@pytest.fixture
def tmux_factory() -> Iterator:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is needed for the terminal tests")
    made: list[Tmux] = []

    def make(cmd: list[str], env: dict[str, str], cwd: Path) -> Tmux:
        t = Tmux(cmd, env, cwd)
        made.append(t)
        return t

    yield make
    for t in made:
        t.close()


def clean_env(home: Path, store_root: Path, **extra: str) -> dict[str, str]:
    """A person's environment: their own HOME and shell, no DOCKER_* left from elsewhere."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DOCKER_", "PYTEST_", "TMUX")) and k.lower() not in
           ("http_proxy", "https_proxy", "no_proxy", "all_proxy")}
    env.update({"HOME": str(home), "SHELL": "/bin/bash", "MACHINE_STORAGE_PATH": str(store_root),
                "TERM": "xterm-256color", "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}"})
    env.update(extra)
    return env
