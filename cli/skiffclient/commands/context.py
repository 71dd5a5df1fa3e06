"""`context ls/use/show/inspect`: docker's contexts plus the Skiff machines (see contexts.py for the store)."""

from __future__ import annotations

import os

from skiffbox.cli.skiffclient import contexts
from skiffbox.cli.skiffclient.commands import Cli, CliError
from skiffbox.cli.skiffclient.flags import Command, Flag

TYPE_CHECKING = False  # no runtime `typing` import: it costs startup time and annotations are strings
if TYPE_CHECKING:
    from typing import Any

CONTEXT_TABLE = "table {{.Name}}\t{{.Description}}\t{{.DockerEndpoint}}\t{{.Error}}"
CONTEXT_HEADERS = {"Name": "NAME", "Description": "DESCRIPTION", "DockerEndpoint": "DOCKER ENDPOINT",
                   "Error": "ERROR", "Current": "CURRENT"}
HOST_WARNING = ("Warning: DOCKER_HOST environment variable overrides the active context. To use a context, either set "
                "the global --context flag, or unset DOCKER_HOST environment variable.\n")


def _default_host() -> str:
    from skiffbox.cli.skiffclient.config import default_host

    # docker shows the endpoint the default context would reach: the npipe on Windows
    return os.environ.get("DOCKER_HOST") or default_host()


def _rows(cli: Cli) -> list[dict[str, Any]]:
    cur = contexts.current(cli.gopts)
    rows: list[dict[str, Any]] = [{"Name": contexts.DEFAULT, "Description": contexts.DEFAULT_DESCRIPTION,
             "DockerEndpoint": _default_host(), "Error": ""}]
    stored = contexts.stored_names()
    for name in stored:
        row: dict[str, Any] = {"Name": name, "Description": "", "DockerEndpoint": "", "Error": ""}
        try:
            meta = contexts.load_meta(name)
            row["Description"] = (meta.get("Metadata") or {}).get("Description", "")
            row["DockerEndpoint"] = ((meta.get("Endpoints") or {}).get("docker") or {}).get("Host", "")
        except Exception as e:  # noqa: BLE001 - a broken context is listed with its error, as docker does
            row["Error"] = str(e)
        rows.append(row)
    for name in contexts.machine_names():
        if name in stored:
            continue
        row = {"Name": name, "Description": f"Skiff machine {name}", "DockerEndpoint": "", "Error": ""}
        try:
            row["DockerEndpoint"] = contexts.config.machine_endpoint(name, cli.gopts).url
        except Exception as e:  # noqa: BLE001 - a stopped machine: listed, its state as the error
            row["Error"] = str(e)
        rows.append(row)
    from skiffbox.cli.skiffclient.formatting import natural_less_key

    rows.sort(key=lambda r: natural_less_key(r["Name"]))
    for r in rows:
        r["Current"] = r["Name"] == cur
    return rows


def run_ls(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    from skiffbox.cli.skiffclient.formatting import render_rows

    rows = _rows(cli)
    fmt = o["format"] or "table"
    if o["quiet"]:
        fmt = "{{.Name}}"
    if fmt == "table":
        for r in rows:
            r["Name"] += " *" if r["Current"] else ""
        fmt = CONTEXT_TABLE
    elif fmt != "json" and "{{if" not in fmt.replace(" ", ""):
        for r in rows:  # Go prints a bool as true/false
            r["Current"] = "true" if r["Current"] else "false"
    cli.out.write(render_rows(fmt, rows, CONTEXT_HEADERS))
    if os.environ.get("DOCKER_HOST") and not o["quiet"]:
        cli.err.write(HOST_WARNING)
    return 0


def run_show(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    cli.out.write(contexts.current(cli.gopts) + "\n")
    return 0


def run_use(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    from skiffbox.cli.skiffclient.config import ConfigError

    if len(args) != 1:  # cobra.ExactArgs's own wording, which docker keeps for this command
        raise CliError(f"accepts 1 arg(s), received {len(args)}")
    name = args[0]
    if name != contexts.DEFAULT:
        try:
            meta = contexts.load_meta(name)
            machine = (meta.get("Metadata") or {}).get("SkiffMachine")
        except ConfigError:
            if name not in contexts.machine_names():
                raise
            machine = name
        if machine:  # (re)write the docker context of the machine: its current URL and certificates
            contexts.write_machine_context(machine)
    contexts.set_current(name)
    cli.out.write(name + "\n")
    cli.err.write(f'Current context is now "{name}"\n')
    if os.environ.get("DOCKER_HOST"):
        cli.err.write(HOST_WARNING)
    return 0


def _inspect_one(name: str) -> dict[str, Any]:
    if name == contexts.DEFAULT:
        return {"Name": name, "Metadata": {}, "Endpoints": {"docker": {"Host": _default_host(),
                                                                       "SkipTLSVerify": False}},
                "TLSMaterial": {}, "Storage": {"MetadataPath": "<IN MEMORY>", "TLSPath": "<IN MEMORY>"}}
    meta = contexts.load_meta(name)
    tls = contexts.tls_dir(name)
    files = sorted(f for f in os.listdir(tls)) if os.path.isdir(tls) else []
    return {**meta, "TLSMaterial": {"docker": files} if files else {},
            "Storage": {"MetadataPath": os.path.dirname(contexts.meta_path(name)),
                        "TLSPath": os.path.dirname(tls)}}


def run_inspect(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    import json

    from skiffbox.cli.skiffclient.formatting import render_object

    names = args or [contexts.current(cli.gopts)]
    objs, errs = [], []
    for n in names:
        try:
            objs.append(_inspect_one(n))
        except Exception as e:  # noqa: BLE001 - docker reports each missing context and exits 1
            errs.append(str(e))
    if o["format"]:
        for obj in objs:
            cli.out.write(render_object(o["format"], obj) + "\n")
    else:
        text = json.dumps(objs, indent=4, ensure_ascii=False)
        for c, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
            text = text.replace(c, esc)
        cli.out.write(text + "\n")
    if errs:
        raise CliError("\n".join(errs))
    return 0


COMMANDS = {
    "ls": Command("context ls", "[OPTIONS]", "List contexts", run_ls, [
        Flag("format", kind="string", help="Format output using a custom template"),
        Flag("quiet", "q", help="Only show context names")], max_args=0, aliases=("context ls", "context list")),
    "show": Command("context show", "", "Print the name of the current context", run_show, [], max_args=0),
    "use": Command("context use", "CONTEXT", "Set the current docker context (a Skiff machine or a docker context)",
                   run_use, []),
    "inspect": Command("context inspect", "[OPTIONS] [CONTEXT] [CONTEXT...]",
                       "Display detailed information on one or more contexts", run_inspect,
                       [Flag("format", "f", kind="string", help="Format output using a custom template")]),
}
