"""`ps`, `logs`, `start/stop/restart/kill/rm`, `wait`, `port`, `rename`, `inspect`, `container prune`."""

from __future__ import annotations

import sys

from skiffbox.client.api import APIError
from skiffbox.cli.skiffclient.commands import Cli, CliError
from skiffbox.cli.skiffclient.flags import Command, Flag
from skiffbox.cli.skiffclient.formatting import CONTAINER_HEADERS, CONTAINER_TABLE, container_row, render_rows

TYPE_CHECKING = False  # no runtime `typing` import: it costs startup time and annotations are strings
if TYPE_CHECKING:
    from typing import Any


def parse_filters(raw: list[str]) -> dict[str, list[str]]:
    """docker's FilterOpt: repeated `-f key=value`."""
    out: dict[str, list[str]] = {}
    for f in raw or []:
        if "=" not in f:
            raise CliError("bad format of filter (expected name=value)")
        k, v = f.split("=", 1)
        out.setdefault(k.strip().lower(), []).append(v.strip())
    return out


def join_errors(errs: list[str]) -> None:
    if errs:
        raise CliError("\n".join(errs))


def api_error_text(e: Exception) -> str:
    from skiffbox.cli.skiff import describe_error

    msg = describe_error(e)
    if msg is None:
        raise e
    return msg


# ---------------------------------------------------------------------------------------------
# ps
# ---------------------------------------------------------------------------------------------


def run_ps(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    from skiffbox.cli.skiffclient.config import default_format

    fmt = o["format"] or (default_format("psFormat") if not o["quiet"] else "") or "table"
    if o["quiet"] and fmt != "raw":
        fmt = "{{.ID}}"
    elif fmt == "table":
        fmt = CONTAINER_TABLE + ("\t{{.Size}}" if o["size"] else "")
    elif fmt == "raw":
        fmt = ("container_id: {{.ID}}\nimage: {{.Image}}\ncommand: {{.Command}}\ncreated_at: {{.CreatedAt}}\n"
               "state: {{.State}}\nstatus: {{.Status}}\nnames: {{.Names}}\nlabels: {{.Labels}}\nports: {{.Ports}}\n")
    limit = 1 if o["latest"] and o["last"] == -1 else o["last"]
    containers = cli.api.containers(all=o["all"], limit=limit, size=o["size"] or _uses_size(fmt),
                                    filters=parse_filters(o["filter"]))
    rows = [container_row(c, trunc=not o["no_trunc"]) for c in containers]
    cli.out.write(render_rows(fmt, rows, CONTAINER_HEADERS))
    return 0


def _uses_size(fmt: str) -> bool:
    """docker runs the template once to see whether it reads .Size ({{json .}} does) and then asks for sizes."""
    compact = fmt.replace(" ", "").replace("-", "")
    return ".Size" in fmt or fmt == "json" or "{{json.}}" in compact


# ---------------------------------------------------------------------------------------------
# lifecycle
# ---------------------------------------------------------------------------------------------


def _each(cli: Cli, names: list[str], fn) -> int:
    errs = []
    for n in names:
        try:
            fn(n)
            cli.out.write(n + "\n")
            cli.out.flush()
        except (APIError, OSError) as e:
            errs.append(api_error_text(e))
    join_errors(errs)
    return 0


def run_start(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    if o["attach"] or o["interactive"]:
        if len(args) > 1:
            raise CliError("you cannot start and attach multiple containers at once")
        from skiffbox.cli.skiffclient.commands.run import start_attached

        return start_attached(cli, args[0], o)
    failed = []
    for n in args:
        try:
            cli.api.start(n)
            cli.out.write(n + "\n")
        except (APIError, OSError) as e:
            cli.out.flush()
            cli.err.write(api_error_text(e) + "\n")
            failed.append(n)
    if failed:
        raise CliError("Error: failed to start containers: " + ", ".join(failed))
    return 0


def _timeout(o: dict[str, Any]) -> int | None:
    return o["timeout"] if "timeout" in o["_given"] else None


def run_stop(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    return _each(cli, args, lambda n: cli.api.stop(n, _timeout(o), o["signal"] or None))


def run_restart(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    return _each(cli, args, lambda n: cli.api.restart(n, _timeout(o), o["signal"] or None))


def run_kill(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    return _each(cli, args, lambda n: cli.api.kill(n, o["signal"] or None))


def run_rm(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    errs = []
    for n in args:
        try:
            cli.api.remove(n, force=o["force"], volumes=o["volumes"], link=o["link"])
            cli.out.write(n + "\n")
        except APIError as e:
            if e.not_found and o["force"]:
                # docker 28 reports a missing container on `rm -f` but does not fail for it
                cli.out.flush()
                cli.err.write(api_error_text(e) + "\n")
                continue
            errs.append(api_error_text(e))
    join_errors(errs)
    return 0


def run_wait(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    errs = []
    for n in args:
        try:
            res = cli.api.wait(n).json() or {}
            cli.out.write(f"{res.get('StatusCode', 0)}\n")
            cli.out.flush()
        except APIError as e:
            errs.append(api_error_text(e))
    join_errors(errs)
    return 0


def run_rename(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    old, new = args[0], args[1].strip()
    if not new:
        raise CliError("Error: Neither old nor new names may be empty")
    try:
        cli.api.post(f"/containers/{old}/rename", {"name": new})
    except APIError as e:
        raise CliError(f"{api_error_text(e)}\nError: failed to rename container named {old}") from None
    return 0


def run_port(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    c = cli.api.container_inspect(args[0])
    ports = ((c.get("NetworkSettings") or {}).get("Ports")) or {}
    want = args[1] if len(args) > 1 else None
    if want:
        port, _, proto = want.partition("/")
        key = f"{port}/{proto or 'tcp'}"
        binds = ports.get(key)
        if binds:
            for b in binds:
                cli.out.write(_host_port(b) + "\n")
            return 0
        raise CliError(f"Error: No public port '{want}' published for {args[0]}")
    lines = []
    for key in sorted(ports, key=lambda k: (int(k.split("/")[0]) if k.split("/")[0].isdigit() else 0, k)):
        for b in ports[key] or []:
            lines.append(f"{key} -> {_host_port(b)}")
    cli.out.write("".join(l + "\n" for l in lines))
    return 0


def _host_port(b: dict[str, str]) -> str:
    ip = b.get("HostIp", "")
    return f"[{ip}]:{b.get('HostPort', '')}" if ":" in ip else f"{ip}:{b.get('HostPort', '')}"


def run_prune(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    from skiffbox.cli.skiffclient.formatting import human_size

    if not o["force"]:
        cli.out.write("WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] ")
        cli.out.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    rep = cli.api.containers_prune(parse_filters(o["filter"]))
    deleted = rep.get("ContainersDeleted") or []
    if deleted:
        cli.out.write("Deleted Containers:\n" + "".join(d + "\n" for d in deleted) + "\n")
    cli.out.write(f"Total reclaimed space: {human_size(rep.get('SpaceReclaimed') or 0, 4)}\n")
    return 0


# ---------------------------------------------------------------------------------------------
# logs
# ---------------------------------------------------------------------------------------------


def run_logs(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    from skiffbox.client.streams import demux
    from skiffbox.cli.skiffclient.streams import write_all

    c = cli.api.container_inspect(args[0])
    resp = cli.api.logs(c["Id"], follow=o["follow"], timestamps=o["timestamps"], tail=o["tail"] or "all",
                        since=o["since"] or None, until=o["until"] or None, details=o["details"])
    cli.out.flush()
    tty = bool((c.get("Config") or {}).get("Tty"))
    try:
        if tty:
            for chunk in resp.iter_chunks():
                write_all(1, chunk)
        else:
            for stream, data in demux(resp.read1):
                write_all(2 if stream == 2 else 1, data)
    except KeyboardInterrupt:
        return 130
    return 0


# ---------------------------------------------------------------------------------------------
# inspect
# ---------------------------------------------------------------------------------------------


def inspect_refs(cli: Cli, refs: list[str], fmt: str, getter) -> int:
    """docker's inspect.Inspect: raw JSON re-indented (or templated) per ref, errors collected."""
    from skiffbox.cli.skiffclient.formatting import indent_raw, render_object

    raws: list[bytes] = []
    errs: list[str] = []
    texts: list[str] = []
    for ref in refs:
        try:
            raw = getter(ref)
        except CliError as e:
            errs.append(e.message)
            continue
        except APIError as e:
            errs.append(api_error_text(e))
            continue
        if fmt and fmt != "json":
            import json

            texts.append(render_object(fmt, json.loads(raw)))
        else:
            raws.append(raw)
    if fmt and fmt != "json":
        cli.out.write("".join(t + "\n" for t in texts) if texts else "\n")
    elif fmt == "json":
        import json

        from skiffbox.cli.skiffclient.formatting import compact_raw

        cli.out.write((compact_raw(b"[" + b",".join(raws) + b"]") if raws else "[]") + "\n")
    else:
        cli.out.write((indent_raw(b"[" + b",".join(raws) + b"]") if raws else "[]") + "\n")
    join_errors(errs)
    return 0


def _raw_get(cli: Cli, path: str) -> bytes:
    return cli.api.raw("GET", path).read()


def run_container_inspect(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    from skiffbox.client.api import q

    size = "?size=1" if o["size"] else ""
    return inspect_refs(cli, args, o["format"], lambda r: _raw_get(cli, f"/containers/{q(r)}/json{size}"))


def run_inspect(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    """`docker inspect`: containers, then images, networks, volumes, as the CLI falls through on 404."""
    from skiffbox.client.api import q

    kinds = {"container": lambda r: f"/containers/{q(r)}/json" + ("?size=1" if o["size"] else ""),
             "image": lambda r: f"/images/{q(r)}/json", "network": lambda r: f"/networks/{q(r)}",
             "volume": lambda r: f"/volumes/{q(r)}"}
    want = o["type"]
    if want and want not in kinds:
        raise CliError(f'"{want}" is not a valid value for --type')
    order = [want] if want else list(kinds)

    def get(ref: str) -> bytes:
        for k in order:
            try:
                return _raw_get(cli, kinds[k](ref))
            except APIError as e:
                if want or not e.not_found:
                    raise  # with --type, docker reports the engine's answer as it is
        raise CliError(f"Error: No such object: {ref}")

    return inspect_refs(cli, args, o["format"], get)


# ---------------------------------------------------------------------------------------------

_FILTER = Flag("filter", "f", kind="list", help="Filter output based on conditions provided")
_FMT = Flag("format", kind="string", help="Format output using a custom template")

COMMANDS = {
    "ps": Command("ps", "[OPTIONS]", "List containers", run_ps, [
        Flag("all", "a", help="Show all containers (default shows just running)"), _FILTER, _FMT,
        Flag("last", "n", kind="int", default=-1, help="Show n last created containers (includes all states)"),
        Flag("latest", "l", help="Show the latest created container (includes all states)"),
        Flag("no-trunc", help="Don't truncate output"), Flag("quiet", "q", help="Only display container IDs"),
        Flag("size", "s", help="Display total file sizes")], max_args=0,
        aliases=("container ls", "container list", "container ps", "ps")),
    "start": Command("start", "[OPTIONS] CONTAINER [CONTAINER...]", "Start one or more stopped containers",
                     run_start, [Flag("attach", "a", help="Attach STDOUT/STDERR and forward signals"),
                                 Flag("detach-keys", kind="string", help="Override the key sequence for detaching"),
                                 Flag("interactive", "i", help="Attach container's STDIN")], min_args=1),
    "stop": Command("stop", "[OPTIONS] CONTAINER [CONTAINER...]", "Stop one or more running containers", run_stop,
                    [Flag("signal", "s", kind="string", help="Signal to send to the container"),
                     Flag("timeout", "t", kind="int", help="Seconds to wait before killing the container")],
                    min_args=1),
    "restart": Command("restart", "[OPTIONS] CONTAINER [CONTAINER...]", "Restart one or more containers",
                       run_restart, [Flag("signal", "s", kind="string", help="Signal to send to the container"),
                                     Flag("timeout", "t", kind="int",
                                          help="Seconds to wait before killing the container")], min_args=1),
    "kill": Command("kill", "[OPTIONS] CONTAINER [CONTAINER...]", "Kill one or more running containers", run_kill,
                    [Flag("signal", "s", kind="string", help="Signal to send to the container")], min_args=1),
    "rm": Command("rm", "[OPTIONS] CONTAINER [CONTAINER...]", "Remove one or more containers", run_rm,
                  [Flag("force", "f", help="Force the removal of a running container (uses SIGKILL)"),
                   Flag("link", "l", help="Remove the specified link"),
                   Flag("volumes", "v", help="Remove anonymous volumes associated with the container")], min_args=1),
    "wait": Command("wait", "CONTAINER [CONTAINER...]", "Block until one or more containers stop, then print their "
                    "exit codes", run_wait, [], min_args=1),
    "rename": Command("rename", "CONTAINER NEW_NAME", "Rename a container", run_rename, [], exact_args=2),
    "port": Command("port", "CONTAINER [PRIVATE_PORT[/PROTO]]", "List port mappings or a specific mapping for the "
                    "container", run_port, [], min_args=1, max_args=2),
    "prune": Command("container prune", "[OPTIONS]", "Remove all stopped containers", run_prune,
                     [Flag("filter", kind="list", help="Provide filter values"),
                      Flag("force", "f", help="Do not prompt for confirmation")], max_args=0),
    "logs": Command("logs", "[OPTIONS] CONTAINER", "Fetch the logs of a container", run_logs, [
        Flag("details", help="Show extra details provided to logs"), Flag("follow", "f", help="Follow log output"),
        Flag("since", kind="string", help="Show logs since timestamp or relative (e.g. 42m for 42 minutes)"),
        Flag("tail", "n", kind="string", default="all", help="Number of lines to show from the end of the logs"),
        Flag("timestamps", "t", help="Show timestamps"),
        Flag("until", kind="string", help="Show logs before a timestamp or relative")], exact_args=1),
    "container inspect": Command("container inspect", "[OPTIONS] CONTAINER [CONTAINER...]",
                                 "Display detailed information on one or more containers", run_container_inspect,
                                 [Flag("format", "f", kind="string", help="Format output using a custom template"),
                                  Flag("size", "s", help="Display total file sizes")], min_args=1),
    "inspect": Command("inspect", "[OPTIONS] NAME|ID [NAME|ID...]", "Return low-level information on Docker objects",
                       run_inspect, [Flag("format", "f", kind="string", help="Format output using a custom template"),
                                     Flag("size", "s", help="Display total file sizes if the type is container"),
                                     Flag("type", kind="string", help="Return JSON for specified type")], min_args=1),
}
