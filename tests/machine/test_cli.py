"""The `machine` CLI as a process: ls columns/filters/format/timeout, env per shell, names, fast path."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

VENV_BIN = Path(sys.executable).parent


def machine(*args: str, env: dict[str, str] | None = None, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
    e.update(env or {})
    r = subprocess.run([str(VENV_BIN / "machine"), *args], env=e, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"machine {' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _fake_generic(store_root: Path, name: str, ssh_port: int) -> None:
    """A generic machine whose host is down (nothing listens on its SSH port): state Stopped."""
    d = store_root / "machines" / name
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({
        "ConfigVersion": 3, "DriverName": "generic", "Name": name,
        "Driver": {"MachineName": name, "IPAddress": "127.0.0.1", "SSHUser": "root", "SSHPort": ssh_port},
        "HostOptions": {"EngineOptions": {"Labels": ["tier=db"]}}, "Skiff": {"State": "ok"}}))


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory):
    """Three `none` machines and a stopped `generic` one, shared by the read-only tests of this module."""
    root = tmp_path_factory.mktemp("fleet") / "store"
    old = os.environ.get("MACHINE_STORAGE_PATH")
    os.environ["MACHINE_STORAGE_PATH"] = str(root)
    try:
        for n in ("n10", "n2", "n1"):
            machine("create", "-d", "none", "--url", f"tcp://127.0.0.1:{_closed_port()}", "--engine-label", f"idx={n}", n)
        _fake_generic(root, "g1", _closed_port())
        yield root
    finally:
        if old is None:
            os.environ.pop("MACHINE_STORAGE_PATH", None)
        else:
            os.environ["MACHINE_STORAGE_PATH"] = old


def test_invalid_names_are_refused(store_root: Path) -> None:
    for bad in ("bad_name", ".x", "a/b", "x" * 64):
        r = machine("create", "-d", "none", "--url", "tcp://127.0.0.1:1", bad, check=False)
        assert r.returncode == 1 and "Invalid machine name" in r.stderr, (bad, r.stderr)
    assert not (store_root / "machines").exists() or not any((store_root / "machines").iterdir())
    r = machine("env", "bad_name", check=False)
    assert r.returncode == 1 and "Invalid machine name" in r.stderr


def test_ls_columns_and_natural_order(fleet: Path) -> None:
    out = machine("ls", "-t", "5").stdout.splitlines()
    assert out[0].split() == ["NAME", "ACTIVE", "DRIVER", "STATE", "URL", "SWARM", "DOCKER", "ERRORS"]
    assert [ln.split()[0] for ln in out[1:]] == ["g1", "n1", "n2", "n10"]
    g1 = out[1].split()
    assert g1[1:4] == ["-", "generic", "Stopped"]
    n1 = out[2]
    assert "none" in n1 and "Running" in n1 and "Unknown" in n1 and "Unable to query docker version" in n1
    # columns are aligned: every row's DRIVER starts where the header's does
    col = out[0].index("DRIVER")
    assert all(ln[col - 1] == " " and ln[col] != " " for ln in out[1:])


@pytest.mark.parametrize("filters,expected", [
    (["driver=none"], ["n1", "n2", "n10"]),
    (["driver=GENERIC"], ["g1"]),
    (["name=^n1"], ["n1", "n10"]),
    (["name=2", "name=g"], ["g1", "n2"]),  # same key: OR
    (["state=Stopped"], ["g1"]),
    (["state=running"], ["n1", "n2", "n10"]),
    (["state=running", "driver=generic"], []),  # different keys: AND
    (["label=idx=n2"], ["n2"]),
    (["label=tier=db", "label=idx=n1"], ["g1", "n1"]),
    (["swarm=whatever"], []),
])
def test_ls_filters(fleet: Path, filters: list[str], expected: list[str]) -> None:
    args = [a for f in filters for a in ("--filter", f)]
    assert machine("ls", "-q", *args).stdout.split() == expected
    table = machine("ls", *args).stdout.splitlines()
    assert [ln.split()[0] for ln in table[1:]] == expected


def test_ls_bad_filter_and_template(fleet: Path) -> None:
    r = machine("ls", "--filter", "color=red", check=False)
    assert r.returncode == 1 and "Unsupported filter key" in r.stderr
    r = machine("ls", "--format", "{{range .X}}", check=False)
    assert r.returncode == 1 and "Template parsing error" in r.stderr


def test_ls_format(fleet: Path) -> None:
    out = machine("ls", "--filter", "driver=none", "--format", "{{.Name}} {{.State}} {{.DriverName}}").stdout
    assert out == "n1 Running none\nn2 Running none\nn10 Running none\n"
    out = machine("ls", "--filter", "name=n1$", "--format", "table {{.Name}}\\t{{.DriverName}}\\t{{.ResponseTime}}").stdout
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "DRIVER", "RESPONSE"]
    assert lines[1].split()[:2] == ["n1", "none"] and lines[1].split()[2].endswith("ms")


def test_ls_active_column_and_active_command(fleet: Path) -> None:
    url = machine("url", "n2").stdout.strip()
    out = machine("ls", "--format", "{{.Name}}{{.Active}}", env={"DOCKER_HOST": url}).stdout.split()
    assert out == ["g1-", "n1-", "n2*", "n10-"]
    assert machine("active", env={"DOCKER_HOST": url}).stdout == "n2\n"
    r = machine("active", check=False)
    assert r.returncode == 1 and "No active host found" in r.stderr


def test_ls_timeout_and_parallel_queries(store_root: Path) -> None:
    """Machines whose engine never answers show Timeout after --timeout, queried in parallel."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)  # accepts TCP (kernel backlog) but never speaks TLS
    port = lsock.getsockname()[1]
    try:
        for i in range(4):
            machine("create", "-d", "none", "--url", f"tcp://127.0.0.1:{port}", f"slow{i}")
        t0 = time.monotonic()
        machine("ls", "-t", "1", "--filter", "name=^none$")  # the same process, querying nothing
        base = time.monotonic() - t0
        t0 = time.monotonic()
        out = machine("ls", "-t", "1").stdout.splitlines()
        took = time.monotonic() - t0 - base
        assert [ln.split()[3] for ln in out[1:]] == ["Timeout"] * 4, out
        assert took < 3, f"4 machines with a 1 s timeout took {took:.1f} s more than none: not parallel"
    finally:
        lsock.close()


SHELL_FIRST_LINE = {
    "bash": 'export DOCKER_TLS_VERIFY="1"', "zsh": 'export DOCKER_TLS_VERIFY="1"',
    "fish": 'set -gx DOCKER_TLS_VERIFY "1";', "powershell": '$Env:DOCKER_TLS_VERIFY = "1"',
    "cmd": "SET DOCKER_TLS_VERIFY=1", "tcsh": 'setenv DOCKER_TLS_VERIFY "1";', "emacs": '(setenv "DOCKER_TLS_VERIFY" "1")',
}


@pytest.mark.parametrize("shell", sorted(SHELL_FIRST_LINE))
def test_env_shells(fleet: Path, shell: str) -> None:
    out = machine("env", "--shell", shell, "n1").stdout.splitlines()
    assert out[0] == SHELL_FIRST_LINE[shell]
    assert any(str(fleet / "machines" / "n1") in ln for ln in out)
    assert "Run this command to configure your shell" in out[-2]


def test_env_autodetects_shell_and_evals_in_bash(fleet: Path) -> None:
    out = machine("env", "n1", env={"SHELL": "/usr/bin/fish"}).stdout
    assert out.startswith("set -gx ")
    r = subprocess.run(["bash", "-c", f'eval "$({VENV_BIN}/machine env n1)"; echo "$DOCKER_MACHINE_NAME|$DOCKER_CERT_PATH|$DOCKER_TLS_VERIFY"'],
                       env={**os.environ, "SHELL": "/bin/bash"}, capture_output=True, text=True)
    assert r.stdout.strip() == f"n1|{fleet / 'machines' / 'n1'}|1"
    for f in ("ca.pem", "cert.pem", "key.pem"):
        assert (fleet / "machines" / "n1" / f).is_file()


def test_env_unset_no_proxy_and_errors(fleet: Path) -> None:
    out = machine("env", "-u", "--shell", "bash").stdout
    assert out.startswith("unset DOCKER_TLS_VERIFY\nunset DOCKER_HOST\n")
    assert machine("env", "-u", "n1", check=False).returncode == 1
    out = machine("env", "--no-proxy", "n1", env={"NO_PROXY": "example.com", "SHELL": "/bin/bash"}).stdout
    assert 'export NO_PROXY="example.com,127.0.0.1"' in out
    r = machine("env", "g1", check=False)
    assert r.returncode == 1 and "not running" in r.stderr and "machine start g1" in r.stderr
    r = machine("env", check=False)  # no name means "default", which does not exist
    assert r.returncode == 1 and '"default"' in r.stderr and "machine create default" in r.stderr


def test_fast_path_and_typer_agree(fleet: Path) -> None:
    cmds = [["env", "--shell", "fish", "n1"], ["ls", "-t", "5", "--filter", "driver=none", "--format", "{{.Name}} {{.URL}}"],
            ["ip", "n1", "n2"], ["url", "n10"], ["status", "g1"], ["config", "n1"], ["inspect", "n2"],
            ["inspect", "-f", "{{json .HostOptions.EngineOptions.Labels}}", "n2"], ["ls", "-q"]]
    for c in cmds:
        fast = machine(*c, check=False)
        slow = machine(*c, env={"MACHINE_NO_FAST_PATH": "1"}, check=False)
        assert (fast.returncode, fast.stdout) == (slow.returncode, slow.stdout), c
    assert machine("inspect", "-f", "{{json .HostOptions.EngineOptions.Labels}}", "n2").stdout == '["idx=n2"]\n'


def test_inspect_is_docker_machine_shaped(fleet: Path) -> None:
    cfg = json.loads(machine("inspect", "n1").stdout)
    assert cfg["ConfigVersion"] == 3 and cfg["Name"] == "n1" and cfg["DriverName"] == "none"
    auth = cfg["HostOptions"]["AuthOptions"]
    assert auth["CaCertPath"] == str(fleet / "certs" / "ca.pem")
    assert auth["ServerCertPath"] == str(fleet / "machines" / "n1" / "server.pem")
    assert cfg["Driver"]["IPAddress"] == "127.0.0.1"


def test_rm_and_global_storage_flag(store_root: Path, tmp_path: Path) -> None:
    for n in ("r1", "r2", "r3"):
        machine("create", "-d", "none", "--url", "tcp://127.0.0.1:9", n)
    other = tmp_path / "other-store"
    machine("-s", str(other), "create", "-d", "none", "--url", "tcp://127.0.0.1:9", "x1")
    assert machine("-s", str(other), "ls", "-q").stdout == "x1\n"
    assert "x1" not in machine("ls", "-q").stdout
    machine("rm", "-y", "r1", "r2")
    assert machine("ls", "-q").stdout == "r3\n"
    assert not (store_root / "machines" / "r1").exists()
    r = machine("rm", "-y", "nope", check=False)
    assert r.returncode == 1 and "does not exist" in r.stderr


def test_regenerate_client_certs_reissues_every_machine(store_root: Path) -> None:
    """A new CA (regenerate-certs --client-certs) invalidates every machine's server cert; each is
    re-issued from the new CA the next time it is used, without another regenerate-certs."""
    from skiffbox.machine import certs

    for n in ("c1", "c2"):
        machine("create", "-d", "none", "--url", "tcp://127.0.0.1:9", n)
    ca_before = (store_root / "certs" / "ca.pem").read_bytes()
    r = machine("regenerate-certs", "c1", check=False)  # asks first; no answer means no
    assert r.returncode == 1 and "Regenerate TLS machine certs?" in r.stderr
    machine("regenerate-certs", "-f", "--client-certs", "c1")
    ca = store_root / "certs" / "ca.pem"
    assert ca.read_bytes() != ca_before
    c2 = store_root / "machines" / "c2"
    assert not certs.cert_valid(c2 / "server.pem", ca)
    machine("env", "c2")
    assert certs.cert_valid(c2 / "server.pem", ca) and (c2 / "ca.pem").read_bytes() == ca.read_bytes()
    assert certs.cert_valid(c2 / "cert.pem", ca)
