"""The quickstart's steps, shell and launchers, on real stores, certificates and shells.

The machine steps use the `none` driver (an engine at a URL, nothing to boot): create-if-missing,
certificates re-issued when the address changes, proxy settings into the engine config, named failures.
The VM paths (start a stopped machine, provision, the engine answering) are in test_tmux_qemu.py.
"""

from __future__ import annotations

import configparser
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from skiffbox.machine import quickstart as qs
from skiffbox.machine.certs import server_cert_sans
from skiffbox.machine.host import Host
from skiffbox.machine.provision import engine_config
from skiffbox.machine.store import Store
from tests.quickstart.conftest import MACHINE, clean_env


def _qs(store: Store, environ: dict[str, str], msgs: list[str] | None = None, **kw) -> qs.Quickstart:
    env = {"MACHINE_DRIVER": "none", "NONE_URL": "tcp://127.0.0.1:2399", **environ}
    return qs.Quickstart(store, "default", environ=env, progress=(msgs.append if msgs is not None else lambda m: None),
                         **kw)


# ---- platform defaults ----------------------------------------------------------------------------
@pytest.mark.parametrize("plat, driver", [("darwin", "virtualbox"), ("win32", "virtualbox"), ("linux", "qemu")])
def test_default_driver_per_platform(plat: str, driver: str) -> None:
    assert qs.default_driver(plat) == driver
    assert qs.Quickstart(Store("/nonexistent"), environ={}, platform=plat).driver == driver


def test_apple_silicon_gets_qemu() -> None:
    assert qs.default_driver("darwin", "arm64") == "qemu"
    assert qs.default_driver("darwin", "x86_64") == "virtualbox"
    assert qs.default_driver("win32", "ARM64") == "virtualbox"


def test_toolbox_sizes_and_driver_env_overrides() -> None:
    f = qs.toolbox_flags("qemu", {})
    assert f["qemu_memory"] == 2048 and f["qemu_disk_size"] == 204800
    assert f["qemu_cpu_count"] >= 1  # the driver's own default
    f = qs.toolbox_flags("qemu", {"QEMU_MEMORY": "4096", "QEMU_BOOT_IMAGE": "build"})
    assert f["qemu_memory"] == 4096 and f["qemu_boot_image"] == "build"
    v = qs.toolbox_flags("virtualbox", {})
    assert v["virtualbox_memory"] == 2048 and v["virtualbox_disk_size"] == 204800


def test_proxy_env_reads_either_case() -> None:
    assert qs.proxy_env({}) == []
    assert qs.proxy_env({"http_proxy": "http://a:1", "HTTPS_PROXY": "http://b:2", "no_proxy": "x,y"}) == [
        "HTTP_PROXY=http://a:1", "HTTPS_PROXY=http://b:2", "NO_PROXY=x,y"]
    assert qs.proxy_env({"HTTP_PROXY": "http://U:1", "http_proxy": "http://l:1"}) == ["HTTP_PROXY=http://U:1"]


# ---- the machine steps ----------------------------------------------------------------------------
def test_creates_when_missing_then_reuses(store: Store) -> None:
    msgs: list[str] = []
    q = _qs(store, {}, msgs)
    host = q.run()
    assert q.created and store.exists("default")
    assert [m for m in msgs if m.startswith("==> ")] == [f"==> {s.name}" for s in qs.STEPS[:-1]]
    assert (host.dir / "server.pem").is_file()
    again = _qs(store, {})
    h2 = again.run()
    assert not again.created and not again.reprovisioned and not again.started
    assert h2.url() == host.url() == "tcp://127.0.0.1:2399"


def test_proxy_settings_reach_the_engine_config(store: Store) -> None:
    proxy = {"HTTP_PROXY": "http://proxy.corp:3128", "https_proxy": "http://proxy.corp:3129", "NO_PROXY": ".corp"}
    q = _qs(store, proxy)
    host = q.run()
    cfg = engine_config(host.config()["HostOptions"]["EngineOptions"], "none")
    assert cfg["proxies"] == {"http-proxy": "http://proxy.corp:3128", "https-proxy": "http://proxy.corp:3129",
                              "no-proxy": ".corp"}
    # same settings: nothing to do; changed settings: the engine config follows, other Env items stay
    same = _qs(store, proxy)
    same.run()
    assert not same.reprovisioned
    h = Host.load(store, "default")
    h.host_options["EngineOptions"]["Env"].append("TZ=UTC")
    h.save()
    q = _qs(store, {"HTTP_PROXY": "http://other:8080"})
    q.run()
    assert q.reprovisioned
    eo = Host.load(store, "default").config()["HostOptions"]["EngineOptions"]
    assert eo["Env"] == ["TZ=UTC", "HTTP_PROXY=http://other:8080"]
    assert engine_config(eo, "none")["proxies"] == {"http-proxy": "http://other:8080"}
    q = _qs(store, {})
    q.run()
    assert q.reprovisioned and "proxies" not in engine_config(
        Host.load(store, "default").config()["HostOptions"]["EngineOptions"], "none")
    q = _qs(store, {})
    q.run()
    assert not q.reprovisioned


def test_address_change_reissues_the_certificate(store: Store) -> None:
    host = _qs(store, {}).run()
    assert "127.0.0.2" not in server_cert_sans(host.dir / "server.pem")
    before = (host.dir / "server.pem").read_bytes()
    # the machine comes back at another address (as a DHCP lease change would do)
    cfg = store.load("default")
    cfg["Driver"]["URL"] = "tcp://127.0.0.2:2399"
    store.save("default", cfg)
    msgs: list[str] = []
    host = _qs(store, {}, msgs).run()
    assert host.url() == "tcp://127.0.0.2:2399"
    assert "127.0.0.2" in server_cert_sans(host.dir / "server.pem")
    assert (host.dir / "server.pem").read_bytes() != before
    assert any("re-issuing" in m for m in msgs)


def test_failing_step_is_named_with_its_recovery(store: Store) -> None:
    with pytest.raises(qs.StepFailed) as ei:
        qs.Quickstart(store, "default", environ={"MACHINE_DRIVER": "none"}, progress=lambda m: None).run()
    msg = str(ei.value)
    assert ei.value.step is qs.STEP_CREATE
    assert 'went wrong in step "Creating the machine"' in msg and "--url must look like" in msg
    assert "To recover:" in msg and "machine rm -f default" in msg
    assert not store.exists("default")  # create rolled back


def test_engine_step_failure_names_the_step(store: Store) -> None:
    """A managed machine whose engine does not answer: the engine step fails and says how to recover."""
    host = _qs(store, {}).run()
    host.driver.skip_provision = False  # as for a VM driver: the engine must answer /_ping
    q = _qs(store, {})
    with pytest.raises(qs.StepFailed) as ei:
        q._step(qs.STEP_ENGINE, lambda: host.wait_for_engine(timeout=1.0))
    assert 'step "Checking the engine"' in str(ei.value) and "machine provision default" in str(ei.value)


# ---- the shell ------------------------------------------------------------------------------------
def test_shell_environment(store: Store) -> None:
    host = _qs(store, {}).run()
    env = qs.shell_environ(host, {"PATH": "/bin", "ALL_PROXY": "http://x:1", "all_proxy": "socks5://y:2"})
    assert env["DOCKER_HOST"] == "tcp://127.0.0.1:2399" and env["DOCKER_TLS_VERIFY"] == "1"
    assert env["DOCKER_CERT_PATH"] == str(host.dir) and env["DOCKER_MACHINE_NAME"] == "default"
    assert "ALL_PROXY" not in env and env["all_proxy"] == "socks5://y:2"  # Toolbox keeps SOCKS only
    assert "NO_PROXY" not in env and "no_proxy" not in env  # no proxy: nothing to bypass
    env = qs.shell_environ(host, {"HTTP_PROXY": "http://p:1", "no_proxy": "corp"})
    assert env["no_proxy"] == "corp,127.0.0.1"
    assert qs.shell_environ(host, {}, platform="win32")["COMPOSE_CONVERT_WINDOWS_PATHS"] == "true"


@pytest.mark.parametrize("environ, plat, want", [
    ({"SHELL": "/bin/bash"}, "linux", ["/bin/bash", "--login"]),
    ({"SHELL": "/usr/bin/zsh"}, "darwin", ["/usr/bin/zsh", "--login"]),
    ({"SHELL": "/usr/bin/fish"}, "linux", ["/usr/bin/fish", "--login"]),
    ({"SHELL": "/bin/sh"}, "linux", ["/bin/sh", "-l"]),
    ({"SHELL": "/bin/tcsh"}, "linux", ["/bin/tcsh"]),
    ({"COMSPEC": r"C:\Windows\system32\cmd.exe"}, "win32", [r"C:\Windows\system32\cmd.exe", "/K"]),
])
def test_login_shell_argv(environ: dict[str, str], plat: str, want: list[str], monkeypatch) -> None:
    monkeypatch.delenv("PSModulePath", raising=False)
    assert qs.login_shell_argv(environ, plat) == want


def test_login_shell_argv_powershell() -> None:
    argv = qs.login_shell_argv({"SHELL": "pwsh"}, "linux")
    assert argv[1:] == ["-NoLogo", "-NoExit"]
    assert Path(argv[0]).name.lower().startswith(("pwsh", "powershell"))


def test_banner_names_machine_and_address(store: Store) -> None:
    b = qs.banner(_qs(store, {}).run())
    assert "docker is configured to use the default machine with IP 127.0.0.1" in b
    assert "tcp://127.0.0.1:2399" in b


def test_terminal_opens_a_login_shell_with_the_environment(store: Store, tmp_path: Path, tmux_factory) -> None:
    """`machine quickstart` in a real terminal: banner, then the user's bash as a login shell, env set."""
    home = tmp_path / "home"
    home.mkdir()
    env = clean_env(home, store.root, MACHINE_DRIVER="none", NONE_URL="tcp://127.0.0.1:2399",
                    HTTP_PROXY="http://proxy.corp:3128")
    t = tmux_factory([MACHINE, "quickstart"], env, home)
    t.wait_for("docker is configured to use the default machine with IP 127.0.0.1", 60)
    t.type('shopt -q login_shell && echo "LOGIN=$((40+2))"; echo "H=$DOCKER_HOST C=$DOCKER_CERT_PATH N=$NO_PROXY"')
    s = t.wait_for("LOGIN=42", 20)
    assert f"H=tcp://127.0.0.1:2399 C={store.root}/machines/default N=127.0.0.1" in s
    t.type("exit 7")
    for _ in range(50):
        if t.pane_dead():
            break
        time.sleep(0.1)
    assert t.pane_dead()  # the shell replaced quickstart: leaving it closes the terminal's program


def test_cli_failure_exit_code_and_message(store: Store) -> None:
    env = clean_env(Path("/tmp"), store.root, MACHINE_DRIVER="none")
    r = subprocess.run([MACHINE, "quickstart", "--no-shell"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert 'Looks like something went wrong in step "Creating the machine"' in r.stderr
    r = subprocess.run([MACHINE, "quickstart", "--no-shell"], env={**env, "NONE_URL": "tcp://127.0.0.1:2399"},
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert 'export DOCKER_HOST="tcp://127.0.0.1:2399"' in r.stdout


# ---- launchers ------------------------------------------------------------------------------------
def test_linux_desktop_launcher(store: Store, tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {"MACHINE_STORAGE_PATH": str(store.root)}
    path = qs.install_launcher("linux", [MACHINE], home, env)
    assert path == home / ".local" / "share" / "applications" / "skiff-quickstart.desktop"
    if shutil.which("desktop-file-validate"):
        r = subprocess.run(["desktop-file-validate", str(path)], capture_output=True, text=True)
        assert r.returncode == 0 and not r.stdout.strip(), r.stdout + r.stderr
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str  # type: ignore[assignment]
    entry.read(path)
    d = entry["Desktop Entry"]
    assert d["Type"] == "Application" and d["Terminal"] == "true"
    argv = shlex.split(d["Exec"])
    assert argv == [MACHINE, "--storage-path", str(store.root), "quickstart"]
    # what the desktop runs works: the same command line, asking for help
    r = subprocess.run([*argv, "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "quickstart" in r.stdout
    # XDG_DATA_HOME is honoured
    p2 = qs.install_launcher("linux", [MACHINE], home, {"XDG_DATA_HOME": str(tmp_path / "xdg")})
    assert p2 == tmp_path / "xdg" / "applications" / "skiff-quickstart.desktop"


def test_desktop_exec_quoting_survives_odd_paths(tmp_path: Path) -> None:
    text = qs.launcher_text("linux", ["/opt/my apps/$x/machine"], None)
    line = [ln for ln in text.splitlines() if ln.startswith("Exec=")][0]
    assert line == 'Exec="/opt/my apps/\\\\$x/machine" quickstart'
    p = tmp_path / "a.desktop"
    p.write_text(text)
    if shutil.which("desktop-file-validate"):
        r = subprocess.run(["desktop-file-validate", str(p)], capture_output=True, text=True)
        assert r.returncode == 0 and not r.stdout.strip(), r.stdout


def test_macos_command_launcher(tmp_path: Path, store: Store) -> None:
    path = qs.install_launcher("darwin", [MACHINE], tmp_path, {"MACHINE_STORAGE_PATH": str(store.root)})
    assert path == tmp_path / "Applications" / "Skiff Quickstart.command"
    text = path.read_text()
    assert text.startswith("#!/bin/bash\n")
    assert os.stat(path).st_mode & 0o111  # Finder opens it in Terminal only if executable
    assert f"exec {MACHINE} --storage-path {store.root} quickstart \"$@\"" in text
    # it is a bash script: run it here (passing --help through)
    r = subprocess.run(["bash", str(path), "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--install-launcher" in r.stdout, r.stdout + r.stderr


def test_windows_start_menu_launcher(tmp_path: Path) -> None:
    appdata = tmp_path / "AppData" / "Roaming"
    exe = r"C:\Program Files\Skiff\Scripts\machine.exe"
    path = qs.install_launcher("win32", [exe], tmp_path, {"APPDATA": str(appdata)})
    assert path == appdata / "Microsoft" / "Windows" / "Start Menu" / "Programs" / "Skiff Quickstart.cmd"
    raw = path.read_bytes()
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only: cmd.exe's line endings
    lines = raw.decode().split("\r\n")
    assert lines[0] == "@echo off"
    assert f'"{exe}" quickstart %*' in lines


def test_machine_argv_finds_the_console_script() -> None:
    argv = qs.machine_argv()
    assert Path(argv[0]).is_file()
    r = subprocess.run([*argv, "quickstart", "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--install-launcher" in r.stdout


def test_install_launcher_command(tmp_path: Path, store: Store) -> None:
    env = clean_env(tmp_path, store.root)
    env.pop("XDG_DATA_HOME", None)
    r = subprocess.run([MACHINE, "quickstart", "--install-launcher"], env=env, capture_output=True, text=True,
                       timeout=60)
    want = tmp_path / ".local" / "share" / "applications" / "skiff-quickstart.desktop"
    assert r.returncode == 0 and str(want) in r.stdout
    assert "Exec=" in want.read_text()
    assert not store.exists("default")  # installing touches no machine
