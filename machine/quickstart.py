"""`machine quickstart`: Docker Toolbox's Quickstart Terminal, as named steps.

    ensure the machine exists (create it with the platform's driver and Toolbox's sizes)
    → make sure it runs → certificates match its address → the user's proxy settings reach the engine
    → the engine answers → banner → the user's login shell, with DOCKER_* set.

Each step has a name and a recovery hint: a failure says which step broke and what to do, like the
"Looks like something went wrong in step ..." trap of Toolbox's Windows start.sh.
Launchers (`--install-launcher`) are plain files: a `.command` on macOS, a Start-menu batch file on
Windows, a freedesktop `.desktop` entry on Linux.

API:
    default_driver(platform) -> str;  toolbox_flags(driver, environ) -> dict
    proxy_env(environ) -> list[str]   ("HTTP_PROXY=…" items for EngineOptions.Env)
    Quickstart(store, name, driver, environ, progress).run() -> Host    (the steps; raises StepFailed)
    env_pairs(host, environ) -> list[(var, value)];  shell_environ(host, environ) -> dict
    banner(host) -> str;  login_shell_argv(environ, platform) -> list[str];  exec_shell(argv, env, platform)
    install_launcher(platform, machine_argv, home, environ) -> Path;  machine_argv() -> list[str]
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TypeVar

from skiffbox.machine.drivers.base import State, driver_class
from skiffbox.machine.host import Host, Progress, create, stderr_progress
from skiffbox.machine.store import Store

_T = TypeVar("_T")

# Toolbox's macOS start.sh: `create -d virtualbox --virtualbox-memory 2048 --virtualbox-disk-size 204800`.
TOOLBOX_MEMORY_MB = 2048
TOOLBOX_DISK_MB = 204800
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
LAUNCHER_NAME = "Skiff Quickstart"


def default_driver(platform: str | None = None, machine: str | None = None) -> str:
    """qemu on Linux (KVM) and on Apple silicon (HVF, arm64 guests: VirtualBox there runs no x86_64 image);
    VirtualBox on Intel Macs and Windows (Toolbox's driver; it runs beside Hyper-V since 6.1.16)."""
    import platform as _platform

    plat = sys.platform if platform is None else platform
    if plat.startswith("linux"):
        return "qemu"
    if plat == "darwin" and (machine or _platform.machine()) == "arm64":
        return "qemu"
    return "virtualbox"


def toolbox_flags(driver: str, environ: Mapping[str, str]) -> dict[str, Any]:
    """The driver's create flags: each flag's own env var if set (e.g. QEMU_BOOT_IMAGE), else Toolbox's
    memory/disk sizes, else the driver's default."""
    flags: dict[str, Any] = {}
    sizes = {"memory": TOOLBOX_MEMORY_MB, "disk-size": TOOLBOX_DISK_MB}
    for f in driver_class(driver).create_flags():
        key = f.name.replace("-", "_")
        raw = environ.get(f.envvar) if f.envvar else None
        if raw not in (None, ""):
            flags[key] = (raw.lower() in ("1", "true", "yes")) if f.is_flag else f.type(raw)
            continue
        suffix = f.name.split("-", 1)[1] if "-" in f.name else f.name
        flags[key] = sizes.get(suffix, f.default)
    return flags


def proxy_env(environ: Mapping[str, str]) -> list[str]:
    """The user's proxy settings as engine env items (upper- or lowercase variables, uppercase wins)."""
    out = []
    for var in PROXY_VARS:
        value = environ.get(var) or environ.get(var.lower()) or ""
        if value:
            out.append(f"{var}={value}")
    return out


def _is_proxy_item(item: str) -> bool:
    return item.partition("=")[0].upper() in PROXY_VARS


# ---- steps --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    name: str
    recovery: str  # formatted with {name}


STEP_CREATE = Step("Creating the machine",
                   "fix the cause above, remove what is left with `machine rm -f {name}`, then run "
                   "`machine quickstart` again")
STEP_START = Step("Starting the machine",
                  "run `machine start {name}` to see the driver's full error; if the machine is broken, "
                  "`machine rm -f {name}` and run `machine quickstart` again to make a new one")
STEP_CERTS = Step("Checking the certificates",
                  "run `machine regenerate-certs -f {name}`")
STEP_PROXY = Step("Passing the proxy settings to the engine",
                  "check HTTP_PROXY/HTTPS_PROXY/NO_PROXY, then run `machine provision {name}`")
STEP_ENGINE = Step("Checking the engine",
                   "run `machine provision {name}` to reinstall and restart the engine, or `machine ssh {name}` "
                   "to look inside")
STEP_SHELL = Step("Opening the shell",
                  "set SHELL to a shell that exists, or run `eval \"$(machine env {name})\"` in your own shell")
STEPS = (STEP_CREATE, STEP_START, STEP_CERTS, STEP_PROXY, STEP_ENGINE, STEP_SHELL)


class StepFailed(Exception):
    def __init__(self, step: Step, machine: str, cause: BaseException | str) -> None:
        self.step, self.machine, self.cause = step, machine, cause
        text = str(cause) or type(cause).__name__
        super().__init__(f'Looks like something went wrong in step "{step.name}":\n{text}\n'
                         f"To recover: {step.recovery.format(name=machine)}")


class Quickstart:
    def __init__(self, store: Store, name: str = "default", driver: str | None = None,
                 environ: Mapping[str, str] | None = None, progress: Progress = stderr_progress,
                 platform: str | None = None, engine_options: Mapping[str, Any] | None = None) -> None:
        self.store, self.name = store, name
        self.engine_options = dict(engine_options or {})  # used only when the machine must be created
        self.environ = dict(os.environ if environ is None else environ)
        self.platform = sys.platform if platform is None else platform
        self.driver = driver or self.environ.get("MACHINE_DRIVER") or default_driver(self.platform)
        self.progress = progress
        self.created = False
        self.started = False
        self.reprovisioned = False

    def _step(self, step: Step, fn: Callable[[], _T]) -> _T:
        self.progress(f"==> {step.name}")
        try:
            return fn()
        except KeyboardInterrupt:
            raise
        except Exception as e:
            raise StepFailed(step, self.name, e) from e

    def run(self) -> Host:
        host = self._step(STEP_CREATE, self.ensure_machine)
        self._step(STEP_START, lambda: self.ensure_running(host))
        self._step(STEP_CERTS, lambda: host.ensure_server_cert(self.progress))
        self._step(STEP_PROXY, lambda: self.ensure_proxy(host))
        self._step(STEP_ENGINE, lambda: self.check_engine(host))
        return host

    def ensure_machine(self) -> Host:
        if self.store.exists(self.name):
            host = Host.load(self.store, self.name)
            if host.skiff.get("State") == "error":
                # a create that failed after the VM was made: finish it (provision) rather than fail
                self.progress(f'"{self.name}" exists but its engine is not ready ({host.skiff.get("Error")}); '
                              "provisioning it again")
                self.ensure_running(host)
                host.provision(self.progress)
            return host
        flags = toolbox_flags(self.driver, self.environ)
        sizes = [f"{v} MB {'memory' if k.endswith('_memory') else 'disk'}" for k, v in flags.items()
                 if k.endswith(("_memory", "_disk_size"))]
        self.progress(f'Creating "{self.name}" with the {self.driver} driver'
                      + (f" ({', '.join(sizes)})" if sizes else ""))
        engine = {**self.engine_options, "Env": proxy_env(self.environ)}
        host = create(self.store, self.name, self.driver, flags, engine, progress=self.progress)
        self.created = True
        return host

    def ensure_running(self, host: Host) -> None:
        if host.state() == State.RUNNING:
            return
        host.start(self.progress)  # start re-checks the certificates against the (maybe new) address
        self.started = True

    def ensure_proxy(self, host: Host) -> None:
        """Make the engine's proxy settings the user's: update EngineOptions.Env and re-provision (which
        rewrites daemon.json and restarts the engine) only when they differ."""
        eo = host.host_options.setdefault("EngineOptions", {})
        current = [e for e in (eo.get("Env") or []) if _is_proxy_item(e)]
        wanted = proxy_env(self.environ)
        if current == wanted:
            return
        self.progress(f"Engine proxy settings: {', '.join(wanted) or '(none)'}")
        eo["Env"] = [e for e in (eo.get("Env") or []) if not _is_proxy_item(e)] + wanted
        host.save()
        host.provision(self.progress)
        self.reprovisioned = True

    def check_engine(self, host: Host) -> None:
        if getattr(host.driver, "skip_provision", False):
            return  # an engine we do not manage: `env` works without it answering
        host.wait_for_engine(timeout=60.0)


# ---- the shell ----------------------------------------------------------------------------------
def env_pairs(host: Host, environ: Mapping[str, str], platform: str | None = None) -> list[tuple[str, str]]:
    """What `machine env --no-proxy` sets (the no-proxy part only when the user has a proxy)."""
    from skiffbox.machine.shellenv import no_proxy_pair

    plat = sys.platform if platform is None else platform
    pairs = [("DOCKER_TLS_VERIFY", "1"), ("DOCKER_HOST", host.url()), ("DOCKER_CERT_PATH", str(host.dir)),
             ("DOCKER_MACHINE_NAME", host.name)]
    if plat == "win32":
        pairs.append(("COMPOSE_CONVERT_WINDOWS_PATHS", "true"))
    if proxy_env(environ):
        pairs.append(no_proxy_pair(host.ip(), environ))
    return pairs


def shell_environ(host: Host, environ: Mapping[str, str], platform: str | None = None) -> dict[str, str]:
    env = dict(environ)
    # Toolbox: a non-SOCKS ALL_PROXY breaks the docker CLI's connection to the engine
    for var in ("ALL_PROXY", "all_proxy"):
        if env.get(var) and not env[var].startswith("socks"):
            env.pop(var)
    env.update(env_pairs(host, environ, platform))
    return env


def banner(host: Host) -> str:
    return (
        "\n"
        "                 |\\\n"
        "                 | \\\n"
        "                 |  \\\n"
        "             ____|___\\___\n"
        "        ~~~~ \\  s k i f f / ~~~~\n"
        "          ~~~~~~~~~~~~~~~~~~~\n\n"
        f"docker is configured to use the {host.name} machine with IP {host.ip()} "
        f"(engine {host.url()})\n"
        "Try: docker run --rm busybox echo hi   or   skiff run --rm busybox echo hi\n"
        f"Leave this shell to go back; `machine stop {host.name}` stops the machine.\n\n"
    )


def login_shell_argv(environ: Mapping[str, str], platform: str | None = None) -> list[str]:
    """The user's login shell, started as a login shell where it has such a mode (Toolbox: `--login`)."""
    from skiffbox.machine.shellenv import canonical, detect_shell

    plat = sys.platform if platform is None else platform
    kind = canonical(detect_shell(environ, plat))
    if kind == "powershell":
        exe = shutil.which("pwsh") or shutil.which("powershell") or "powershell.exe"
        return [exe, "-NoLogo", "-NoExit"]
    if kind == "cmd":
        return [environ.get("COMSPEC") or "cmd.exe", "/K"]
    path = environ.get("SHELL") or ("/bin/sh" if plat != "win32" else "sh")
    base = os.path.basename(path)
    if base in ("bash", "zsh", "fish", "ksh", "mksh"):
        return [path, "--login"] if base != "ksh" else [path, "-l"]
    if base in ("sh", "dash"):
        return [path, "-l"]
    return [path]  # tcsh/csh and others: plain (Toolbox did the same)


def exec_shell(argv: Sequence[str], env: Mapping[str, str], platform: str | None = None) -> int:
    """Replace this process with the shell on Unix; on Windows exec does not keep the console, so run it."""
    plat = sys.platform if platform is None else platform
    sys.stdout.flush()
    sys.stderr.flush()
    if plat == "win32":
        return subprocess.call(list(argv), env=dict(env))
    os.execvpe(argv[0], list(argv), dict(env))
    return 0  # not reached


# ---- launchers ----------------------------------------------------------------------------------
def machine_argv() -> list[str]:
    """How a launcher runs `machine`: the console script next to this Python, else `python -m skiffbox.cli.machine`."""
    exe = Path(sys.executable)
    for cand in (exe.with_name("machine"), exe.with_name("machine.exe")):
        if cand.is_file():
            return [str(cand)]
    found = shutil.which("machine")
    if found:
        return [found]
    return [str(exe), "-m", "skiffbox.cli.machine"]


def _desktop_exec_quote(arg: str) -> str:
    # freedesktop Exec: reserved characters need double quotes; inside them \\ " ` $ are escaped
    if arg and not any(c in arg for c in ' \t\n"\'\\><~|&;$*?#()`'):
        return arg.replace("%", "%%")
    inner = "".join("\\" + c if c in '"`$\\' else c for c in arg)
    return f'"{inner}"'.replace("%", "%%")


def launcher_text(platform: str, argv: Sequence[str], storage: str | None = None) -> str:
    """The launcher file's contents. `storage` pins MACHINE_STORAGE_PATH when the user set one."""
    full = [*argv, *(["--storage-path", storage] if storage else []), "quickstart"]
    if platform == "darwin":
        return ("#!/bin/bash\n# Skiff Quickstart Terminal: double-click to open a shell wired to the default machine.\n"
                f'exec {shlex.join(full)} "$@"\n')
    if platform == "win32":
        line = " ".join(f'"{a}"' if (" " in a or not a) else a for a in full)
        return "\r\n".join(["@echo off", "REM Skiff Quickstart Terminal", f"{line} %*", ""])
    return "\n".join([
        "[Desktop Entry]", "Type=Application", "Version=1.0", f"Name={LAUNCHER_NAME}",
        "Comment=Start the Skiff machine and open a shell wired to its engine",
        # the string-value escape (\\ for a backslash) applies on top of Exec's own quoting
        "Exec=" + " ".join(_desktop_exec_quote(a) for a in full).replace("\\", "\\\\"), "Terminal=true",
        "Icon=utilities-terminal", "Categories=Development;", "",
    ])


def launcher_path(platform: str, home: Path, environ: Mapping[str, str]) -> Path:
    if platform == "darwin":
        return home / "Applications" / f"{LAUNCHER_NAME}.command"
    if platform == "win32":
        appdata = Path(environ.get("APPDATA") or home / "AppData" / "Roaming")
        return appdata / "Microsoft" / "Windows" / "Start Menu" / "Programs" / f"{LAUNCHER_NAME}.cmd"
    data = Path(environ.get("XDG_DATA_HOME") or home / ".local" / "share")
    return data / "applications" / "skiff-quickstart.desktop"


def install_launcher(platform: str | None = None, argv: Sequence[str] | None = None, home: Path | None = None,
                     environ: Mapping[str, str] | None = None) -> Path:
    from skiffbox.machine.store import atomic_write

    plat = sys.platform if platform is None else platform
    env = os.environ if environ is None else environ
    path = launcher_path(plat, home or Path.home(), env)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = launcher_text(plat, list(argv or machine_argv()), env.get("MACHINE_STORAGE_PATH") or None)
    # .command files must be executable to open on double-click; .desktop ones to be "trusted" by GNOME/KDE
    atomic_write(path, text.encode(), 0o755 if plat != "win32" else 0o644)
    if plat.startswith("linux") and shutil.which("update-desktop-database"):
        subprocess.run(["update-desktop-database", str(path.parent)], capture_output=True, check=False)
    return path
