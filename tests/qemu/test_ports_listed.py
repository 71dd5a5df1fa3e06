"""`machine inspect` and `machine ls --format '{{.Ports}}'` show the container ports forwarded right now.

The VM is a real QEMU process started paused with no guest (`-machine none -S`): enough for the driver to
see its machine's QEMU running; the forwarder's state file is what portfwd.py writes while it follows the engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from skiffbox.machine import portfwd
from skiffbox.machine.drivers.base import PortForward

NAME = "ports"


@pytest.fixture()
def machine_dir(tmp_path: Path):
    store = tmp_path / "store"
    mdir = store / "machines" / NAME
    mdir.mkdir(parents=True)
    (mdir / "config.json").write_text(json.dumps({"ConfigVersion": 3, "Name": NAME, "DriverName": "qemu",
                                                  "Driver": {"MachineName": NAME}, "HostOptions": {}}))
    qemu = subprocess.Popen(["qemu-system-x86_64", "-machine", "none", "-nodefaults", "-display", "none", "-S",
                             "-pidfile", str(mdir / "qemu.pid")], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not (mdir / "qemu.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (mdir / "qemu.pid").exists(), "qemu did not start"
        yield store, mdir
    finally:
        qemu.kill()
        qemu.wait(10)


def _machine(store: Path, *args: str) -> str:
    env = {**os.environ, "MACHINE_STORAGE_PATH": str(store)}
    r = subprocess.run([sys.executable, "-m", "skiffbox.cli.machine", *args], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_inspect_and_ls_show_live_forwards(machine_dir) -> None:
    store, mdir = machine_dir
    assert json.loads(_machine(store, "inspect", NAME))["Driver"]["PortForwards"] == []
    portfwd._write_state(mdir, [PortForward("127.0.0.1", 8080, 80), PortForward("127.0.0.1", 5353, 53, "udp")], {})
    fwd = json.loads(_machine(store, "inspect", "-f", "{{json .Driver.PortForwards}}", NAME))
    assert fwd == ["127.0.0.1:8080->80/tcp", "127.0.0.1:5353->53/udp"] or \
        sorted(fwd) == sorted(["127.0.0.1:8080->80/tcp", "127.0.0.1:5353->53/udp"])
    out = _machine(store, "ls", "--format", "{{.Name}}|{{.Ports}}")
    assert out.strip().startswith(f"{NAME}|") and "127.0.0.1:8080->80/tcp" in out and "127.0.0.1:5353->53/udp" in out


def test_a_stopped_machine_lists_no_forwards(tmp_path: Path) -> None:
    store = tmp_path / "store"
    mdir = store / "machines" / NAME
    mdir.mkdir(parents=True)
    (mdir / "config.json").write_text(json.dumps({"ConfigVersion": 3, "Name": NAME, "DriverName": "qemu",
                                                  "Driver": {"MachineName": NAME}, "HostOptions": {}}))
    portfwd._write_state(mdir, [PortForward("127.0.0.1", 8080, 80)], {})  # stale file from a VM that is gone
    assert json.loads(_machine(store, "inspect", NAME))["Driver"]["PortForwards"] == []
