"""`skiff` on Windows, with the platform simulated here: sys.platform "win32", no socket.AF_UNIX, no
termios/tty. Nothing configured means docker's npipe, which skiff cannot use: a clear message, exit 1,
no traceback; `-it` goes to line mode with a notice."""

from __future__ import annotations

import os
import socket
import sys
import threading

import pytest

from skiffbox.cli import skiff
from skiffbox.cli.skiffclient import config, streams
from skiffbox.client import transport
from skiffbox.cli.skiffclient.config import NOTHING_CONFIGURED, ConfigError, GlobalOptions, resolve_endpoint


@pytest.fixture
def windows(monkeypatch: pytest.MonkeyPatch):
    """A Windows host as skiff sees one: the platform name, no AF_UNIX, no termios/tty, no DOCKER_*."""
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.delattr(transport._socket, "AF_UNIX", raising=False)
    monkeypatch.setitem(sys.modules, "termios", None)  # `import termios` raises ImportError
    monkeypatch.setitem(sys.modules, "tty", None)
    for k in [k for k in os.environ if k.startswith("DOCKER_")]:
        monkeypatch.delenv(k)
    monkeypatch.setattr(config, "_cfg_cache", None)


def test_nothing_configured_names_machine_env(windows) -> None:
    assert config.default_host() == config.DEFAULT_NPIPE
    with pytest.raises(ConfigError) as e:
        resolve_endpoint(GlobalOptions(hosts=[]))
    assert str(e.value) == NOTHING_CONFIGURED
    assert "machine env NAME" in NOTHING_CONFIGURED and "--machine NAME" in NOTHING_CONFIGURED


@pytest.mark.parametrize("argv", [["ps"], ["version"], ["images", "-q"]])
def test_commands_with_nothing_configured_say_what_to_do(windows, argv, capsys) -> None:
    assert skiff.main(argv) == 1
    err = capsys.readouterr().err
    assert NOTHING_CONFIGURED in err and "Traceback" not in err


def test_an_explicit_npipe_host_is_refused_clearly(windows, monkeypatch, capsys) -> None:
    monkeypatch.setenv("DOCKER_HOST", "npipe:////./pipe/dockerDesktopLinuxEngine")
    assert skiff.main(["ps"]) == 1
    err = capsys.readouterr().err
    assert "named pipes" in err and "machine env NAME" in err


def test_a_unix_host_without_af_unix_is_an_error_not_a_traceback(windows, monkeypatch, capsys) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///var/run/docker.sock")
    assert skiff.main(["ps"]) == 1
    err = capsys.readouterr().err
    assert "no unix sockets" in err and "--machine NAME" in err


def test_help_and_version_work(windows, capsys) -> None:
    assert skiff.main(["--help"]) == 0
    assert skiff.main(["--version"]) == 0
    assert "Skiff version" in capsys.readouterr().out


def test_tcp_still_works_without_af_unix(windows, monkeypatch, capsys) -> None:
    """A plain TCP engine (what `machine env` points at, minus TLS here) answers `skiff version`."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    body = b'{"Version":"9.9.9","ApiVersion":"1.50","MinAPIVersion":"1.24","Os":"linux","Arch":"amd64"}'

    def serve() -> None:
        for _ in range(4):
            try:
                c, _ = srv.accept()
            except OSError:
                return
            with c:
                c.recv(65536)
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nApi-Version: 1.50\r\n"
                          b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{srv.getsockname()[1]}")
    try:
        skiff.main(["version", "--format", "{{.Server.Version}}"])
    finally:
        srv.close()
    assert "9.9.9" in capsys.readouterr().out


def test_it_falls_back_to_line_mode_with_a_notice(windows, monkeypatch, capfd) -> None:
    assert not streams.raw_mode_available()
    monkeypatch.setattr(streams, "stdin_is_tty", lambda: True)
    ours, engine = socket.socketpair()
    r, w = os.pipe()
    saved = os.dup(0)
    os.dup2(r, 0)
    os.close(r)
    try:
        os.write(w, b"typed line\n")
        os.close(w)
        got = bytearray()

        def container() -> None:  # echoes what it is sent until stdin's EOF, then ends the stream
            while data := engine.recv(4096):
                got.extend(data)
            engine.sendall(b"out")
            engine.close()

        threading.Thread(target=container, daemon=True).start()
        outcome = streams.stream(transport.Hijacked(transport._Conn(ours), ""), tty=True, stdin=True, detach_keys=b"")
    finally:
        os.dup2(saved, 0)
        os.close(saved)
    assert outcome == "eof"
    assert bytes(got) == b"typed line\n"
    cap = capfd.readouterr()
    assert streams.LINE_MODE_NOTICE in cap.err and cap.out == "out"


WINDOWS_IMPORTS = r"""
import sys, pkgutil, importlib
for posix_only in ("fcntl", "termios", "tty", "pwd", "grp", "resource"):
    sys.modules[posix_only] = None  # `import fcntl` raises ImportError, as on Windows
import skiffbox.machine, skiffbox.cli
failed = []
for pkg in (skiffbox.machine, skiffbox.cli):
    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        try:
            importlib.import_module(m.name)
        except ImportError as e:
            failed.append(f"{m.name}: {e}")
print("\n".join(failed))
"""


def test_host_modules_import_without_posix_only_modules() -> None:
    """Every module of the host tool and the client imports on Windows (no fcntl, termios, tty, pwd, grp,
    resource at module level): a driver or command that needs one imports it where it is used."""
    import subprocess

    r = subprocess.run([sys.executable, "-c", WINDOWS_IMPORTS], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "", r.stdout


def test_posix_default_socket_missing_adds_the_hint(monkeypatch, tmp_path, capsys) -> None:
    """Off Windows, nothing configured is docker's unix socket: docker's message, then what to run."""
    for k in [k for k in os.environ if k.startswith("DOCKER_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    monkeypatch.setattr(config, "_cfg_cache", None)
    monkeypatch.setattr(config, "DEFAULT_UNIX", f"unix://{tmp_path}/docker.sock")
    assert skiff.main(["ps"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [f"Cannot connect to the Docker daemon at unix://{tmp_path}/docker.sock. Is the docker daemon running?",
                   config.UNCONFIGURED_HINT]
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/docker.sock")  # named: docker's message alone
    assert skiff.main(["ps"]) == 1
    assert config.UNCONFIGURED_HINT not in capsys.readouterr().err


def test_context_ls_shows_the_npipe_as_the_default_endpoint(windows, monkeypatch, tmp_path, capsys) -> None:
    # docker on Windows lists npipe:////./pipe/docker_engine for the default context; a unix socket
    # there would point the user at something that cannot exist on their machine.
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    monkeypatch.setenv("MACHINE_STORAGE_PATH", str(tmp_path / "machines"))
    assert skiff.main(["context", "ls", "--format", "{{.Name}} {{.DockerEndpoint}}"]) == 0
    out = capsys.readouterr().out
    assert f"default {config.DEFAULT_NPIPE}" in out.splitlines()
