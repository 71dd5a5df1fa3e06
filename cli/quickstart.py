"""`machine quickstart`: the Quickstart Terminal command (logic in machine/quickstart.py)."""

from __future__ import annotations

import os
import sys
from typing import Any


def cmd_quickstart(name: str, driver: str, shell: bool, install: bool,
                   insecure_registries: list[str] | None = None, dashboard: bool = False) -> int:
    from skiffbox.machine import quickstart as qs
    from skiffbox.machine.shellenv import detect_shell, render
    from skiffbox.machine.store import Store

    if install:
        path = qs.install_launcher()
        print(f"Installed the launcher: {path}")
        return 0
    store = Store()
    eo = {"InsecureRegistry": list(insecure_registries)} if insecure_registries else None
    q = qs.Quickstart(store, name, driver or None, engine_options=eo)
    try:
        host = q.run()
    except qs.StepFailed as e:
        print(str(e), file=sys.stderr)
        return 1
    if dashboard:  # Kitematic's way in: the machine ready, then its containers in the browser
        from skiffbox.dashboard.server import serve

        try:
            serve(name)
        except KeyboardInterrupt:
            pass
        return 0
    env = qs.shell_environ(host, os.environ)
    if not shell:
        # for scripts: the same variables as `machine env`, for the detected shell
        sys.stdout.write(render(detect_shell(), qs.env_pairs(host, os.environ), ["machine", "env", name]))
        return 0
    sys.stdout.write(qs.banner(host))
    argv = qs.login_shell_argv(os.environ)
    try:
        return qs.exec_shell(argv, env)
    except OSError as e:
        print(str(qs.StepFailed(qs.STEP_SHELL, name, f"{argv[0]}: {e}")), file=sys.stderr)
        return 1


def register_quickstart(app: Any) -> None:
    import typer

    from skiffbox.machine.store import DEFAULT_NAME

    @app.command(help="Create/start the default machine and open your shell wired to its engine "
                      "(Docker Toolbox's Quickstart Terminal)")
    def quickstart(
        name: str = typer.Argument(DEFAULT_NAME, help="Machine name"),
        driver: str = typer.Option("", "--driver", "-d", envvar="MACHINE_DRIVER",
                                   help="Driver if the machine must be created (default: qemu on Linux, "
                                        "virtualbox elsewhere)"),
        shell: bool = typer.Option(True, "--shell/--no-shell",
                                   help="Open the login shell (--no-shell: print the env commands instead)"),
        install_launcher: bool = typer.Option(False, "--install-launcher",
                                              help="Put a Quickstart launcher where you click (Start menu, "
                                                   "~/Applications, the desktop's application menu)"),
        engine_insecure_registry: list[str] = typer.Option(
            None, "--engine-insecure-registry", help="Insecure registry for the engine (when creating the machine)"),
        dashboard: bool = typer.Option(False, "--dashboard",
                                       help="Open the machine's web dashboard in your browser instead of a shell"),
    ) -> None:
        raise typer.Exit(cmd_quickstart(name, driver, shell, install_launcher, engine_insecure_registry or [],
                                        dashboard))
