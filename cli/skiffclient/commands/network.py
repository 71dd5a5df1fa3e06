"""`network ls|create|rm|inspect|connect|disconnect|prune` (docker's cli/command/network)."""

from __future__ import annotations

import sys
from typing import Any

from skiffbox.client.api import APIError, q
from skiffbox.cli.skiffclient.commands import Cli, CliError
from skiffbox.cli.skiffclient.commands.containers import api_error_text, inspect_refs, parse_filters
from skiffbox.cli.skiffclient.flags import Command, Flag
from skiffbox.cli.skiffclient.formatting import (NETWORK_HEADERS, NETWORK_TABLE, list_format, natural_less_key, network_row,
                                        render_rows)


def run_ls(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    fmt = list_format(o["format"], o["quiet"], "networksFormat", table=NETWORK_TABLE, quiet_format="{{.ID}}",
                      raw="network_id: {{.ID}}\nname: {{.Name}}\ndriver: {{.Driver}}\nscope: {{.Scope}}\n")
    nets = sorted(cli.api.networks(parse_filters(o["filter"])), key=lambda n: natural_less_key(n.get("Name", "")))
    cli.out.write(render_rows(fmt, [network_row(n, not o["no_trunc"]) for n in nets], NETWORK_HEADERS))
    return 0


def _kv(values: list[str], what: str) -> dict[str, str]:
    out = {}
    for v in values:
        k, eq, val = v.partition("=")
        out[k] = val
    return out


def run_create(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    subnets, ranges, gws = o["subnet"], o["ip_range"], o["gateway"]
    if len(gws) > len(subnets) or len(ranges) > len(subnets):
        raise CliError("no matching subnet for gateway" if len(gws) > len(subnets) else "no matching subnet for range")
    ipam_cfg = []
    for i, s in enumerate(subnets):
        c: dict[str, Any] = {"Subnet": s}
        if i < len(ranges):
            c["IPRange"] = ranges[i]
        if i < len(gws):
            c["Gateway"] = gws[i]
        ipam_cfg.append(c)
    aux = _kv(o["aux_address"], "aux-address")
    if aux and ipam_cfg:
        ipam_cfg[0]["AuxiliaryAddresses"] = aux
    body: dict[str, Any] = {
        "Driver": o["driver"] or "bridge", "Scope": o["scope"],
        "IPAM": {"Driver": o["ipam_driver"] or "default", "Options": _kv(o["ipam_opt"], "ipam-opt"),
                 "Config": ipam_cfg},
        "Internal": o["internal"], "Attachable": o["attachable"], "Ingress": o["ingress"], "ConfigOnly": False,
        "ConfigFrom": None, "Options": _kv(o["opt"], "opt"), "Labels": _kv(o["label"], "label"), "Name": args[0],
    }
    if "ipv6" in o["_given"]:
        body["EnableIPv6"] = o["ipv6"]
    if "ipv4" in o["_given"]:
        body["EnableIPv4"] = o["ipv4"]
    res = cli.api.network_create(body)
    if res.get("Warning"):
        cli.err.write(f"WARNING: {res['Warning']}\n")
    cli.out.write(res["Id"] + "\n")
    return 0


def run_rm(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    errs = []
    for n in args:
        try:
            cli.api.network_inspect(n)
            cli.api.network_remove(n)
            cli.out.write(n + "\n")
        except APIError as e:
            if e.not_found and o["force"]:
                continue
            errs.append(api_error_text(e))
    if errs:  # docker 28 prints the errors, then cobra's text for a bare status: "exit status 1"
        raise CliError("\n".join(errs) + "\nexit status 1")
    return 0


def run_inspect(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    verbose = "?verbose=true" if o["verbose"] else ""
    return inspect_refs(cli, args, o["format"], lambda r: cli.api.raw("GET", f"/networks/{q(r)}{verbose}").read())


def run_connect(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    ep: dict[str, Any] = {}
    ipam = {k: v for k, v in (("IPv4Address", o["ip"]), ("IPv6Address", o["ip6"])) if v}
    if o["link_local_ip"]:
        ipam["LinkLocalIPs"] = o["link_local_ip"]
    ep["IPAMConfig"] = ipam
    ep["Links"] = o["link"] or None
    ep["Aliases"] = o["alias"] or None
    ep["DriverOpts"] = _kv(o["driver_opt"], "driver-opt")
    cli.api.network_connect(args[0], args[1], ep)
    return 0


def run_disconnect(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    cli.api.network_disconnect(args[0], args[1], o["force"])
    return 0


def run_prune(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    if not o["force"]:
        cli.out.write("WARNING! This will remove all custom networks not used by at least one container.\n"
                      "Are you sure you want to continue? [y/N] ")
        cli.out.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    rep = cli.api.networks_prune(parse_filters(o["filter"]))
    deleted = rep.get("NetworksDeleted") or []
    if deleted:
        cli.out.write("Deleted Networks:\n" + "".join(d + "\n" for d in deleted))
    return 0


L, S = "list", "string"
COMMANDS = {
    "ls": Command("network ls", "[OPTIONS]", "List networks", run_ls, [
        Flag("filter", "f", kind=L, help='Provide filter values (e.g. "driver=bridge")'),
        Flag("format", kind=S, help="Format output using a custom template"),
        Flag("no-trunc", help="Do not truncate the output"), Flag("quiet", "q", help="Only display network IDs")],
        max_args=0, aliases=("network ls", "network list")),
    "create": Command("network create", "[OPTIONS] NETWORK", "Create a network", run_create, [
        Flag("attachable", help="Enable manual container attachment"),
        Flag("aux-address", kind=L, help="Auxiliary IPv4 or IPv6 addresses used by Network driver"),
        Flag("driver", "d", kind=S, default="bridge", help="Driver to manage the Network"),
        Flag("gateway", kind=L, help="IPv4 or IPv6 Gateway for the master subnet"),
        Flag("ingress", help="Create swarm routing-mesh network"),
        Flag("internal", help="Restrict external access to the network"),
        Flag("ip-range", kind=L, help="Allocate container ip from a sub-range"),
        Flag("ipam-driver", kind=S, default="default", help="IP Address Management Driver"),
        Flag("ipam-opt", kind=L, help="Set IPAM driver specific options"),
        Flag("ipv4", default=True, help="Enable or disable IPv4 address assignment"),
        Flag("ipv6", help="Enable or disable IPv6 address assignment"),
        Flag("label", kind=L, help="Set metadata on a network"),
        Flag("opt", "o", kind=L, help="Set driver specific options"),
        Flag("scope", kind=S, help="Control the network's scope"),
        Flag("subnet", kind=L, help="Subnet in CIDR format that represents a network segment")], exact_args=1),
    "rm": Command("network rm", "NETWORK [NETWORK...]", "Remove one or more networks", run_rm, [
        Flag("force", "f", help="Do not error if the network does not exist")], min_args=1,
        aliases=("network rm", "network remove")),
    "inspect": Command("network inspect", "[OPTIONS] NETWORK [NETWORK...]",
                       "Display detailed information on one or more networks", run_inspect, [
                           Flag("format", "f", kind=S, help="Format output using a custom template"),
                           Flag("verbose", "v", help="Verbose output for diagnostics")], min_args=1),
    "connect": Command("network connect", "[OPTIONS] NETWORK CONTAINER", "Connect a container to a network",
                       run_connect, [
                           Flag("alias", kind=L, help="Add network-scoped alias for the container"),
                           Flag("driver-opt", kind=L, help="driver options for the network"),
                           Flag("ip", kind=S, help="IPv4 address (e.g., \"172.30.100.104\")"),
                           Flag("ip6", kind=S, help="IPv6 address (e.g., \"2001:db8::33\")"),
                           Flag("link", kind=L, help="Add link to another container"),
                           Flag("link-local-ip", kind=L, help="Add a link-local address for the container")],
                       exact_args=2),
    "disconnect": Command("network disconnect", "[OPTIONS] NETWORK CONTAINER", "Disconnect a container from a network",
                          run_disconnect, [Flag("force", "f", help="Force the container to disconnect from a network")],
                          exact_args=2),
    "prune": Command("network prune", "[OPTIONS]", "Remove all unused networks", run_prune, [
        Flag("filter", kind=L, help="Provide filter values (e.g. \"until=<timestamp>\")"),
        Flag("force", "f", help="Do not prompt for confirmation")], max_args=0),
}
