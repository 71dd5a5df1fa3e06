"""`machine ssh` through the system ssh client (docker-machine's default) and through paramiko
(`--native-ssh`, and the fallback without an `ssh` on PATH), against a real sshd (sshhost.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from skiffbox.cli.machine import ssh_args
from skiffbox.machine import ssh_system
from skiffbox.machine.drivers.base import SSHEndpoint

VENV_BIN = Path(sys.executable).parent
NAME = "sshm"


def test_ssh_args_drop_the_double_dash() -> None:
    assert ssh_args(["m", "--", "uname", "-a"]) == ("m", ["uname", "-a"])
    assert ssh_args(["m", "uname", "-a"]) == ("m", ["uname", "-a"])
    assert ssh_args(["--", "m", "ls", "--", "x"]) == ("m", ["ls", "--", "x"])  # only ours is dropped
    assert ssh_args([]) == ("default", [])


def test_argv_is_docker_machines(tmp_path: Path) -> None:
    key = tmp_path / "id_rsa"
    key.write_text("k")
    key.chmod(0o600)
    a = ssh_system.argv("/usr/bin/ssh", SSHEndpoint("127.0.0.1", 2222, "docker", key), ["uname", "-a"])
    assert a[:3] == ["/usr/bin/ssh", "-F", "/dev/null"]
    opts = {a[i + 1] for i, w in enumerate(a) if w == "-o"}
    assert {"StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null", "LogLevel=quiet", "ConnectionAttempts=3",
            "PasswordAuthentication=no", "IdentitiesOnly=yes", "ControlMaster=no"} <= opts
    assert a[a.index("-i") + 1] == str(key) and a[a.index("-p") + 1] == "2222"
    assert a[-3:] == ["docker@127.0.0.1", "uname", "-a"]
    key.chmod(0o644)
    with pytest.raises(ssh_system.KeyPermissionError, match="chmod 600"):
        ssh_system.argv("ssh", SSHEndpoint("h", 22, "u", key), [])
    assert ssh_system.argv("ssh", SSHEndpoint("h", 22, "u", key), [], platform="win32")[-1] == "u@h"


@pytest.fixture(scope="module")
def store(ssh_host, tmp_path_factory) -> Path:
    """A generic machine record for the real sshd (what `create -d generic` leaves, without provisioning)."""
    root = tmp_path_factory.mktemp("ssh-clients") / "store"
    d = root / "machines" / NAME
    d.mkdir(parents=True)
    shutil.copyfile(ssh_host.key_path, d / "id_rsa")
    os.chmod(d / "id_rsa", 0o600)
    (d / "config.json").write_text(json.dumps({
        "ConfigVersion": 3, "DriverName": "generic", "Name": NAME,
        "Driver": {"MachineName": NAME, "IPAddress": ssh_host.ip, "SSHUser": ssh_host.user,
                   "SSHPort": ssh_host.port, "SSHKeyPath": str(d / "id_rsa")},
        "HostOptions": {}, "Skiff": {"State": "ok"}}))
    return root


def machine(store: Path, *args: str, path: str | None = None, input: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, MACHINE_STORAGE_PATH=str(store))
    env.pop("MACHINE_NATIVE_SSH", None)
    if path is not None:
        env["PATH"] = path
    return subprocess.run([str(VENV_BIN / "machine"), *args], env=env, capture_output=True, text=True,
                          input=input, timeout=120)


# (global flags, PATH): the system client, paramiko forced, and paramiko because no ssh is on PATH
CLIENTS = {"system": ([], None), "native-ssh": (["--native-ssh"], None), "no-ssh-on-path": ([], "/nonexistent")}


@pytest.mark.parametrize("client", list(CLIENTS))
def test_command_exit_code_and_double_dash(store: Path, ssh_host, client: str) -> None:
    if client == "system" and shutil.which("ssh") is None:
        pytest.skip("no ssh client installed")
    flags, path = CLIENTS[client]
    r = machine(store, *flags, "ssh", NAME, "--", "uname", "-a", path=path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Linux skiff-sshhost ")
    r = machine(store, *flags, "ssh", NAME, "uname", "-n", path=path)
    assert r.stdout == "skiff-sshhost\n"
    assert machine(store, *flags, "ssh", NAME, "--", "exit 7", path=path).returncode == 7
    r = machine(store, *flags, "ssh", NAME, "cat", input="through stdin\n", path=path)
    assert r.stdout == "through stdin\n"
    r = machine(store, *flags, "ssh", NAME, "echo out; echo err >&2", path=path)
    assert (r.stdout, r.stderr) == ("out\n", "err\n")


def test_the_system_client_is_what_runs(store: Path, tmp_path: Path) -> None:
    """An `ssh` first on PATH that records its argv, then runs the real one: used by default, not with
    --native-ssh."""
    real = shutil.which("ssh")
    if real is None:
        pytest.skip("no ssh client installed")
    bindir, record = tmp_path / "bin", tmp_path / "argv"
    bindir.mkdir()
    (bindir / "ssh").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}\nexec {real} "$@"\n')
    (bindir / "ssh").chmod(0o755)
    path = f"{bindir}:{os.environ['PATH']}"
    r = machine(store, "ssh", NAME, "--", "exit 3", path=path)
    assert r.returncode == 3
    words = record.read_text().splitlines()
    assert words[:2] == ["-F", "/dev/null"] and words[-1] == "exit 3" and "--" not in words
    record.unlink()
    assert machine(store, "--native-ssh", "ssh", NAME, "exit 4", path=path).returncode == 4
    assert not record.exists()
