"""`exec` and `attach` (docker's cli/command/container/exec.go and attach.go)."""

from __future__ import annotations

from typing import Any

from skiffbox.cli.skiffclient.commands import Cli, CliError, StatusError
from skiffbox.cli.skiffclient.commands.run import env_list
from skiffbox.cli.skiffclient.flags import Command, Flag


def run_exec(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    from skiffbox.cli.skiffclient import streams
    from skiffbox.cli.skiffclient.commands.run import _config_detach_keys

    name, cmd = args[0], args[1:]
    api = cli.api
    tty, interactive, detach = o["tty"], o["interactive"], o["detach"]
    if tty and interactive and not streams.stdin_is_tty():
        raise CliError("the input device is not a TTY")
    api.container_inspect(name)  # so that "No such container" wins over exec errors, as docker does
    console = streams.terminal_size(1) if tty else None
    body: dict[str, Any] = {"User": o["user"], "Privileged": o["privileged"], "Tty": tty}
    if console:
        body["ConsoleSize"] = list(console)
    body.update({"AttachStdin": interactive and not detach, "AttachStderr": not detach, "AttachStdout": not detach,
                 "Detach": detach, "DetachKeys": o["detach_keys"], "Env": env_list(o["env"], o["env_file"]) or None,
                 "WorkingDir": o["workdir"], "Cmd": cmd})
    eid = api.exec_create(name, body)["Id"]
    if detach:
        api.exec_start_detached(eid, tty)
        return 0
    conn = api.exec_attach(eid, tty, list(console) if console else None)
    keys = streams.parse_detach_keys(o["detach_keys"] or _config_detach_keys())
    resizer = streams.ResizeMonitor(lambda h, w: api.exec_resize(eid, h, w)).start() if console else None
    try:
        outcome = streams.stream(conn, tty=tty, stdin=interactive, detach_keys=keys)
    finally:
        if resizer:
            resizer.stop()
    if outcome == "detached":
        return 0
    code = int(api.exec_inspect(eid).get("ExitCode") or 0)
    if code:
        raise StatusError("", code)
    return 0


def run_attach(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    from skiffbox.cli.skiffclient import streams
    from skiffbox.cli.skiffclient.commands.run import _config_detach_keys

    api = cli.api
    c = api.container_inspect(args[0])
    state = c.get("State") or {}
    if not state.get("Running"):
        raise CliError("You cannot attach to a stopped container, start it first")
    if state.get("Paused"):
        raise CliError("You cannot attach to a paused container, unpause it first")
    if state.get("Restarting"):
        raise CliError("You cannot attach to a restarting container, wait until it is running")
    cfg = c.get("Config") or {}
    tty = bool(cfg.get("Tty"))
    a_in = bool(cfg.get("OpenStdin")) and not o["no_stdin"]
    keys_spec = o["detach_keys"] or None
    keys = streams.parse_detach_keys(keys_spec or _config_detach_keys())
    wait = api.wait(c["Id"])
    conn = api.attach(c["Id"], stdin=a_in, stdout=True, stderr=True, detach_keys=keys_spec)
    resizer = streams.ResizeMonitor(lambda h, w: api.resize(c["Id"], h, w)).start() \
        if tty and streams.terminal_size(1) else None
    proxy = streams.SignalProxy(lambda s: api.kill(c["Id"], s)).start() if o["sig_proxy"] and not tty else None
    try:
        outcome = streams.stream(conn, tty=tty, stdin=a_in, detach_keys=keys)
    finally:
        if resizer:
            resizer.stop()
        if proxy:
            proxy.stop()
    if outcome == "detached":
        wait.close()
        return 0
    res = wait.json() or {}
    code = int(res.get("StatusCode", 0))
    if code:
        raise StatusError("", code)
    return 0


COMMANDS = {
    "exec": Command("exec", "[OPTIONS] CONTAINER COMMAND [ARG...]", "Execute a command in a running container",
                    run_exec, [
                        Flag("detach", "d", help="Detached mode: run command in the background"),
                        Flag("detach-keys", kind="string", help="Override the key sequence for detaching a container"),
                        Flag("env", "e", kind="list", help="Set environment variables"),
                        Flag("env-file", kind="list", help="Read in a file of environment variables"),
                        Flag("interactive", "i", help="Keep STDIN open even if not attached"),
                        Flag("privileged", help="Give extended privileges to the command"),
                        Flag("tty", "t", help="Allocate a pseudo-TTY"),
                        Flag("user", "u", kind="string", help="Username or UID (format: \"<name|uid>[:<group|gid>]\")"),
                        Flag("workdir", "w", kind="string", help="Working directory inside the container")],
                    min_args=2, interspersed=False, aliases=("container exec", "exec")),
    "attach": Command("attach", "[OPTIONS] CONTAINER", "Attach local standard input, output, and error streams to a "
                      "running container", run_attach, [
                          Flag("detach-keys", kind="string", help="Override the key sequence for detaching a container"),
                          Flag("no-stdin", help="Do not attach STDIN"),
                          Flag("sig-proxy", default=True, help="Proxy all received signals to the process")],
                      exact_args=1),
}
