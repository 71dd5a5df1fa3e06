"""`volume ls|create|rm|inspect|prune` (docker's cli/command/volume)."""

from __future__ import annotations

import sys
from typing import Any

from skiffbox.client.api import APIError, q
from skiffbox.cli.skiffclient.commands import Cli, CliError
from skiffbox.cli.skiffclient.commands.containers import api_error_text, inspect_refs, join_errors, parse_filters
from skiffbox.cli.skiffclient.flags import Command, Flag
from skiffbox.cli.skiffclient.formatting import (VOLUME_HEADERS, VOLUME_TABLE, human_size, list_format, natural_less_key,
                                        render_rows, volume_row)


def run_ls(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    filters = parse_filters(o["filter"])
    fmt = list_format(o["format"], o["quiet"], "volumesFormat", table=VOLUME_TABLE, quiet_format="{{.Name}}",
                      raw="name: {{.Name}}\ndriver: {{.Driver}}\n")
    res = cli.api.volumes(filters)
    vols = sorted(res.get("Volumes") or [], key=lambda v: natural_less_key(v.get("Name", "")))
    cli.out.write(render_rows(fmt, [volume_row(v) for v in vols], VOLUME_HEADERS))
    for w in res.get("Warnings") or []:
        cli.err.write(w + "\n")
    return 0


def run_create(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    name = o["name"] or (args[0] if args else "")
    if args and o["name"] and args[0] != o["name"]:
        raise CliError("conflicting options: cannot specify a volume-name through both --name and as a positional "
                       "arg")
    body: dict[str, Any] = {"Driver": o["driver"] or "local"}
    opts = {}
    for kv in o["opt"]:
        k, _, v = kv.partition("=")
        opts[k] = v
    if opts:
        body["DriverOpts"] = opts
    labels = {}
    for kv in o["label"]:
        k, _, v = kv.partition("=")
        labels[k] = v
    body["Labels"] = labels
    body["Name"] = name
    vol = cli.api.volume_create(body)
    cli.out.write(vol.get("Name", name) + "\n")
    return 0


def run_rm(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    errs = []
    for n in args:
        try:
            cli.api.volume_remove(n, o["force"])
            cli.out.write(n + "\n")
        except APIError as e:
            errs.append(api_error_text(e))
    join_errors(errs)
    return 0


def run_inspect(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    return inspect_refs(cli, args, o["format"], lambda r: cli.api.raw("GET", f"/volumes/{q(r)}").read())


def run_prune(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    filters = parse_filters(o["filter"])
    if o["all"]:
        filters["all"] = ["true"]
    if not o["force"]:
        warn = ("WARNING! This will remove all local volumes not used by at least one container."
                if o["all"] else "WARNING! This will remove anonymous local volumes not used by at least one container.")
        cli.out.write(warn + "\nAre you sure you want to continue? [y/N] ")
        cli.out.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    rep = cli.api.volumes_prune(filters)
    deleted = rep.get("VolumesDeleted") or []
    if deleted:
        cli.out.write("Deleted Volumes:\n" + "".join(d + "\n" for d in deleted) + "\n")
    cli.out.write(f"Total reclaimed space: {human_size(rep.get('SpaceReclaimed') or 0, 4)}\n")
    return 0


L, S = "list", "string"
COMMANDS = {
    "ls": Command("volume ls", "[OPTIONS]", "List volumes", run_ls, [
        Flag("cluster", help="Display only cluster volumes, and use cluster volume list formatting", hidden=True),
        Flag("filter", "f", kind=L, help="Provide filter values (e.g. \"dangling=true\")"),
        Flag("format", kind=S, help="Format output using a custom template"),
        Flag("quiet", "q", help="Only display volume names")], max_args=0, aliases=("volume ls", "volume list")),
    "create": Command("volume create", "[OPTIONS] [VOLUME]", "Create a volume", run_create, [
        Flag("driver", "d", kind=S, default="local", help="Specify volume driver name"),
        Flag("label", kind=L, help="Set metadata for a volume"),
        Flag("name", kind=S, hidden=True, help="Specify volume name"),
        Flag("opt", "o", kind=L, help="Set driver specific options")], max_args=1),
    "rm": Command("volume rm", "[OPTIONS] VOLUME [VOLUME...]", "Remove one or more volumes", run_rm, [
        Flag("force", "f", help="Force the removal of one or more volumes")], min_args=1,
        aliases=("volume rm", "volume remove")),
    "inspect": Command("volume inspect", "[OPTIONS] VOLUME [VOLUME...]",
                       "Display detailed information on one or more volumes", run_inspect, [
                           Flag("format", "f", kind=S, help="Format output using a custom template")], min_args=1),
    "prune": Command("volume prune", "[OPTIONS]", "Remove unused local volumes", run_prune, [
        Flag("all", "a", help="Remove all unused volumes, not just anonymous ones"),
        Flag("filter", kind=L, help="Provide filter values (e.g. \"label=<label>\")"),
        Flag("force", "f", help="Do not prompt for confirmation")], max_args=0),
}
