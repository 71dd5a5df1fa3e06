"""`version`, `info`, `system df`, `events` (docker's cli/command/system)."""

from __future__ import annotations

import platform
import sys
import time
from typing import Any

from skiffbox.cli.skiffclient.commands import Cli, CliError
from skiffbox.cli.skiffclient.flags import Command, Flag
from skiffbox.cli.skiffclient.formatting import (CONTAINER_HEADERS, IMAGE_HEADERS, VOLUME_HEADERS, bytes_size, container_row,
                                        human_size, render_object, render_rows, tabwrite)

CLIENT_VERSION = "0.1.0"
CLIENT_API = "1.50"


def _client_section(api_version: str, context: str = "default") -> dict[str, Any]:
    return {
        "Platform": {"Name": "Skiff Client"},
        "Version": CLIENT_VERSION,
        "ApiVersion": api_version,
        "DefaultAPIVersion": CLIENT_API,
        "GitCommit": "skiff",
        "GoVersion": f"python{platform.python_version()}",
        "Os": sys.platform if sys.platform != "win32" else "windows",
        "Arch": {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64", "AMD64": "amd64"}.get(
            platform.machine(), platform.machine()),
        "BuildTime": "",
        "Context": context,
    }


def _ansic(rfc3339: str) -> str:
    """reformatDate: RFC 3339 -> time.ANSIC ("Mon Jan _2 15:04:05 2006"); unparsable stays as is."""
    import re

    m = re.match(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)", rfc3339 or "")
    if not m:
        return rfc3339
    y, mo, d, hh, mm, ss = (int(x) for x in m.groups())
    import calendar

    wd = calendar.day_abbr[calendar.weekday(y, mo, d)]
    return f"{wd} {calendar.month_abbr[mo]} {d:>2} {hh:02}:{mm:02}:{ss:02} {y}"


def run_version(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    api = cli.api
    from skiffbox.cli.skiffclient.contexts import current

    client = _client_section("", current(cli.gopts))
    server = None
    err = None
    try:
        server = api.server_version()
        client["ApiVersion"] = api.version
    except Exception as e:  # docker prints the client part, then the error
        from skiffbox.cli.skiff import describe_error

        err = describe_error(e)
        if err is None:
            raise
        client["ApiVersion"] = api._version or CLIENT_API
    if server is not None:
        comps = server.get("Components") or []
        if not any(c.get("Name") == "Engine" for c in comps):
            comps.append({"Name": "Engine", "Version": server.get("Version", ""), "Details": {
                "ApiVersion": server.get("ApiVersion", ""), "MinAPIVersion": server.get("MinAPIVersion", ""),
                "GitCommit": server.get("GitCommit", ""), "GoVersion": server.get("GoVersion", ""),
                "Os": server.get("Os", ""), "Arch": server.get("Arch", ""),
                "BuildTime": server.get("BuildTime", ""), "Experimental": str(bool(server.get("Experimental"))).lower()}})
            server["Components"] = comps
        for c in comps:
            if c.get("Name") == "Engine" and "BuildTime" in (c.get("Details") or {}):
                c["Details"]["BuildTime"] = _ansic(c["Details"]["BuildTime"])
            if isinstance(c.get("Details"), dict):  # a Go map: --format prints its keys sorted
                c["Details"] = dict(sorted(c["Details"].items()))
    fmt = o["format"]
    if fmt:
        data = {"Client": client, "Server": server}
        cli.out.write(render_object("{{json .}}" if fmt == "json" else fmt, data) + "\n")
    else:
        cli.out.write(tabwrite(_version_text(client, server), 20, 1))
    if err:
        raise CliError(err)
    return 0


def _version_text(c: dict[str, Any], s: dict[str, Any] | None) -> str:
    api = c["ApiVersion"]
    if api != c["DefaultAPIVersion"]:
        api += f" (downgraded from {c['DefaultAPIVersion']})"
    lines = [f"Client: {c['Platform']['Name']}", f" Version:\t{c['Version']}", f" API version:\t{api}",
             f" Go version:\t{c['GoVersion']}", f" Git commit:\t{c['GitCommit']}", f" Built:\t{c['BuildTime']}",
             f" OS/Arch:\t{c['Os']}/{c['Arch']}", f" Context:\t{c['Context']}"]
    if s is not None:
        name = (s.get("Platform") or {}).get("Name", "")
        lines += ["", "Server:" + (f" {name}" if name else "")]
        for comp in s.get("Components") or []:
            d = comp.get("Details") or {}
            lines.append(f" {comp.get('Name', '')}:")
            if comp.get("Name") == "Engine":
                lines += [f"  Version:\t{comp.get('Version', '')}",
                          f"  API version:\t{d.get('ApiVersion', '')} (minimum version {d.get('MinAPIVersion', '')})",
                          f"  Go version:\t{d.get('GoVersion', '')}", f"  Git commit:\t{d.get('GitCommit', '')}",
                          f"  Built:\t{d.get('BuildTime', '')}", f"  OS/Arch:\t{d.get('Os', '')}/{d.get('Arch', '')}",
                          f"  Experimental:\t{d.get('Experimental', '')}"]
            else:
                lines.append(f"  Version:\t{comp.get('Version', '')}")
                lines += [f"  {k}:\t{d[k]}" for k in sorted(d)]
    return "\n".join(lines) + "\n"


def run_info(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    fmt = o["format"]
    client = {"Debug": False, **_client_section(""), "Plugins": [], "Warnings": None}
    del client["ApiVersion"]
    if fmt:
        info = cli.api.info()
        data = dict(info)
        data["ClientInfo"] = client
        cli.out.write(render_object("{{json .}}" if fmt == "json" else fmt, data) + "\n")
        return 0
    out = cli.out
    out.write("Client: Skiff Client\n")
    from skiffbox.cli.skiffclient.contexts import current

    out.write(f" Version:    {CLIENT_VERSION}\n Context:    {current(cli.gopts)}\n Debug Mode: false\n\nServer:\n")
    try:
        info = cli.api.info()
    except Exception as e:
        from skiffbox.cli.skiff import describe_error

        msg = describe_error(e)
        if msg is None:
            raise
        out.flush()
        cli.err.write(f"ERROR: {msg}\n")
        raise CliError("errors pretty printing info")
    out.write(_info_text(info))
    out.flush()
    for w in info.get("Warnings") or []:
        cli.err.write(w + "\n")
    return 0


def _b(v: Any) -> str:
    return "true" if v else "false"


def _info_text(i: dict[str, Any]) -> str:
    L: list[str] = []

    def nonempty(label: str, v: Any) -> None:
        if v not in (None, ""):
            L.append(f"{label} {v}")

    L += [f" Containers: {i.get('Containers', 0)}", f"  Running: {i.get('ContainersRunning', 0)}",
          f"  Paused: {i.get('ContainersPaused', 0)}", f"  Stopped: {i.get('ContainersStopped', 0)}",
          f" Images: {i.get('Images', 0)}"]
    nonempty(" Server Version:", i.get("ServerVersion"))
    nonempty(" Storage Driver:", i.get("Driver"))
    for k, v in i.get("DriverStatus") or []:
        L.append(f"  {k}: {v}")
    for k, v in i.get("SystemStatus") or []:
        L.append(f" {k}: {v}")
    nonempty(" Logging Driver:", i.get("LoggingDriver"))
    nonempty(" Cgroup Driver:", i.get("CgroupDriver"))
    nonempty(" Cgroup Version:", i.get("CgroupVersion"))
    p = i.get("Plugins") or {}
    L += [" Plugins:", "  Volume: " + " ".join(p.get("Volume") or []), "  Network: " + " ".join(p.get("Network") or [])]
    if p.get("Authorization"):
        L.append("  Authorization: " + " ".join(p["Authorization"]))
    L.append("  Log: " + " ".join(p.get("Log") or []))
    if i.get("CDISpecDirs"):
        L.append(" CDI spec directories:")
        L += [f"  {d}" for d in i["CDISpecDirs"]]
    sw = i.get("Swarm") or {}
    L.append(f" Swarm: {sw.get('LocalNodeState', '')}")
    if sw.get("LocalNodeState") not in ("inactive", "locked"):
        L += [f"  NodeID: {sw.get('NodeID', '')}", f"  Is Manager: {_b(sw.get('ControlAvailable'))}",
              f"  Node Address: {sw.get('NodeAddr', '')}"]
    rts = i.get("Runtimes") or {}
    if rts:
        L += [" Runtimes: " + " ".join(rts), f" Default Runtime: {i.get('DefaultRuntime', '')}"]
    if i.get("OSType") == "linux":
        L += [f" Init Binary: {i.get('InitBinary', '')}",
              f" containerd version: {(i.get('ContainerdCommit') or {}).get('ID', '')}",
              f" runc version: {(i.get('RuncCommit') or {}).get('ID', '')}",
              f" init version: {(i.get('InitCommit') or {}).get('ID', '')}"]
        sec = i.get("SecurityOptions") or []
        if sec:
            L.append(" Security Options:")
            for so in sec:
                kv = dict(part.split("=", 1) for part in so.split(",") if "=" in part)
                L.append("  " + kv.get("name", so))
                if "profile" in kv:
                    L.append(f"   Profile: {kv['profile']}")
    nonempty(" Kernel Version:", i.get("KernelVersion"))
    nonempty(" Operating System:", i.get("OperatingSystem"))
    nonempty(" OSType:", i.get("OSType"))
    nonempty(" Architecture:", i.get("Architecture"))
    L += [f" CPUs: {i.get('NCPU', 0)}", f" Total Memory: {bytes_size(i.get('MemTotal', 0))}"]
    nonempty(" Name:", i.get("Name"))
    nonempty(" ID:", i.get("ID"))
    L += [f" Docker Root Dir: {i.get('DockerRootDir', '')}", f" Debug Mode: {_b(i.get('Debug'))}"]
    if i.get("Debug"):
        L += [f"  File Descriptors: {i.get('NFd', 0)}", f"  Goroutines: {i.get('NGoroutines', 0)}",
              f"  System Time: {i.get('SystemTime', '')}", f"  EventsListeners: {i.get('NEventsListener', 0)}"]
    nonempty(" HTTP Proxy:", i.get("HttpProxy"))
    nonempty(" HTTPS Proxy:", i.get("HttpsProxy"))
    nonempty(" No Proxy:", i.get("NoProxy"))
    from skiffbox.cli.skiffclient.config import credentials

    nonempty(" Username:", credentials("docker.io").get("username"))
    if i.get("Labels"):
        L.append(" Labels:")
        L += [f"  {lbl}" for lbl in i["Labels"]]
    L.append(f" Experimental: {_b(i.get('ExperimentalBuild'))}")
    rc = i.get("RegistryConfig") or {}
    if rc.get("InsecureRegistryCIDRs") or rc.get("IndexConfigs"):
        L.append(" Insecure Registries:")
        L += [f"  {c.get('Name', '')}" for c in (rc.get("IndexConfigs") or {}).values() if not c.get("Secure")]
        L += [f"  {c}" for c in rc.get("InsecureRegistryCIDRs") or []]
    if rc.get("Mirrors"):
        L.append(" Registry Mirrors:")
        L += [f"  {m}" for m in rc["Mirrors"]]
    L.append(f" Live Restore Enabled: {_b(i.get('LiveRestoreEnabled'))}")
    if i.get("ProductLicense"):
        L.append(f" Product License: {i['ProductLicense']}")
    if i.get("DefaultAddressPools"):
        L.append(" Default Address Pools:")
        L += [f"   Base: {p.get('Base')}, Size: {p.get('Size')}" for p in i["DefaultAddressPools"]]
    return "\n".join(L) + "\n\n"


# ---------------------------------------------------------------------------------------------
# system df
# ---------------------------------------------------------------------------------------------


def _pct(reclaimable: int, total: int) -> str:
    if total > 0:
        return f"{human_size(reclaimable, 4)} ({reclaimable * 100 // total}%)"
    return human_size(reclaimable, 4)


def df_summary(du: dict[str, Any]) -> list[dict[str, str]]:
    """The four rows of `docker system df`, computed on the client as docker CLI 28 does."""
    images = du.get("Images") or []
    layers = int(du.get("LayersSize") or 0)
    used = sum((i.get("Size", 0) - i.get("SharedSize", 0)) for i in images
               if i.get("Containers", 0) != 0 and i.get("Size", -1) != -1 and i.get("SharedSize", -1) != -1)
    conts = du.get("Containers") or []
    active = [c for c in conts if any(s in (c.get("State") or "") for s in ("running", "paused", "restarting"))]
    csize = sum(c.get("SizeRw", 0) for c in conts if c.get("SizeRw", -1) != -1)
    crecl = sum(c.get("SizeRw", 0) for c in conts if c not in active and c.get("SizeRw", -1) != -1)
    vols = du.get("Volumes") or []
    vdata = [v.get("UsageData") or {} for v in vols]
    vsize = sum(u.get("Size", 0) for u in vdata if u.get("Size", -1) != -1)
    vrecl = sum(u.get("Size", 0) for u in vdata if u.get("RefCount", 0) == 0 and u.get("Size", -1) != -1)
    bc = du.get("BuildCache") or []
    bsize = sum(b.get("Size", 0) for b in bc if not b.get("Shared"))
    brecl = sum(b.get("Size", 0) for b in bc if not b.get("InUse") and not b.get("Shared"))
    return [
        {"Type": "Images", "TotalCount": str(len(images)),
         "Active": str(sum(1 for i in images if i.get("Containers", 0) > 0)),
         "Size": human_size(layers, 4), "Reclaimable": _pct(layers - used, layers)},
        {"Type": "Containers", "TotalCount": str(len(conts)), "Active": str(len(active)),
         "Size": human_size(csize, 4), "Reclaimable": _pct(crecl, csize)},
        {"Type": "Local Volumes", "TotalCount": str(len(vols)),
         "Active": str(sum(1 for u in vdata if u.get("RefCount", 0) > 0)),
         "Size": human_size(vsize, 4), "Reclaimable": _pct(vrecl, vsize)},
        {"Type": "Build Cache", "TotalCount": str(len(bc)), "Active": str(sum(1 for b in bc if b.get("InUse"))),
         "Size": human_size(bsize, 4), "Reclaimable": human_size(brecl, 4)},
    ]


DF_HEADERS = {"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE", "Size": "SIZE", "Reclaimable": "RECLAIMABLE"}


def run_df(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    du = cli.api.df()
    fmt = o["format"] or "table"
    if o["verbose"]:
        return _df_verbose(cli, du, fmt)
    if fmt == "table":
        fmt = "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}"
    cli.out.write(render_rows(fmt, df_summary(du), DF_HEADERS))
    return 0


def _df_verbose(cli: Cli, du: dict[str, Any], fmt: str) -> int:
    from skiffbox.cli.skiffclient.formatting import _image_row, familiar_name, split_reference, volume_row

    if fmt != "table":
        raise CliError("--format is not supported with --verbose yet (use --format with the summary)")
    now = time.time()
    out = cli.out
    img_rows = []
    for i in du.get("Images") or []:
        repo, tag = "<none>", "<none>"
        tags = [t for t in i.get("RepoTags") or [] if t != "<none>:<none>"]
        if tags:
            name, t, _ = split_reference(tags[0])
            repo, tag = familiar_name(name), t
        img_rows.append(_image_row(i, repo, tag, "", True, now))
    out.write("Images space usage:\n\n")
    out.write(render_rows("table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}\t{{.SharedSize}}"
                          "\t{{.UniqueSize}}\t{{.Containers}}", img_rows, IMAGE_HEADERS))
    rows = [container_row({**c, "SizeRootFs": 0}, True, now) for c in du.get("Containers") or []]
    out.write("\nContainers space usage:\n\n")
    out.write(render_rows("table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.LocalVolumes}}\t{{.Size}}\t{{.RunningFor}}"
                          "\t{{.Status}}\t{{.Names}}", rows, CONTAINER_HEADERS))
    out.write("\nLocal Volumes space usage:\n\n")
    out.write(render_rows("table {{.Name}}\t{{.Links}}\t{{.Size}}", [volume_row(v) for v in du.get("Volumes") or []],
                          VOLUME_HEADERS))
    bc = du.get("BuildCache") or []
    out.write(f"\nBuild cache usage: {human_size(sum(b.get('Size', 0) for b in bc), 4)}\n\n")
    out.write(render_rows("table {{.ID}}\t{{.CacheType}}\t{{.Size}}\t{{.CreatedSince}}\t{{.LastUsedSince}}"
                          "\t{{.UsageCount}}\t{{.Shared}}", [], {"ID": "CACHE ID", "CacheType": "CACHE TYPE",
                                                                 "Size": "SIZE", "CreatedSince": "CREATED",
                                                                 "LastUsedSince": "LAST USED",
                                                                 "UsageCount": "USAGE", "Shared": "SHARED"}))
    return 0


def _go_event(ev: dict[str, Any]) -> dict[str, Any]:
    """The event as the Go CLI re-encodes events.Message: its field order, Attributes (a map) sorted."""
    out: dict[str, Any] = {k: ev[k] for k in ("status", "id", "from") if ev.get(k)}
    actor = dict(ev.get("Actor") or {})
    actor["Attributes"] = dict(sorted((actor.get("Attributes") or {}).items()))
    out.update(Type=ev.get("Type", ""), Action=ev.get("Action", ""), Actor=actor, scope=ev.get("scope", ""),
               time=ev.get("time", 0), timeNano=ev.get("timeNano", 0))
    return out


def run_events(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    from skiffbox.client.streams import iter_json_stream
    from skiffbox.cli.skiffclient.commands.containers import parse_filters

    resp = cli.api.events(o["since"] or None, o["until"] or None, parse_filters(o["filter"]))
    fmt = o["format"]
    for ev in iter_json_stream(resp):
        if fmt:
            cli.out.write(render_object("{{json .}}" if fmt == "json" else fmt, _go_event(ev)) + "\n")
        else:
            ts = ev.get("timeNano", 0) / 1e9
            lt = time.localtime(ts)
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", lt) + f".{int(ev.get('timeNano', 0) % 1_000_000_000):09d}" + \
                (lambda z: "Z" if z == "+0000" else f"{z[:3]}:{z[3:]}")(time.strftime("%z", lt))
            actor = ev.get("Actor") or {}
            attrs = ", ".join(f"{k}={v}" for k, v in sorted((actor.get("Attributes") or {}).items()))
            line = f"{stamp} {ev.get('Type', '')} {ev.get('Action', '')} {actor.get('ID', '')}"
            cli.out.write(line + (f" ({attrs})" if attrs else "") + "\n")
        cli.out.flush()
    return 0


# ---------------------------------------------------------------------------------------------
# system prune
# ---------------------------------------------------------------------------------------------


def _prune_warning(o: dict[str, Any], filters: list[str]) -> str:
    items = ["all stopped containers", "all networks not used by at least one container"]
    if o["volumes"]:
        items.append("all anonymous volumes not used by at least one container")
    items.append("all images without at least one container associated to them" if o["all"] else "all dangling images")
    items.append("all build cache" if o["all"] else "unused build cache")
    text = "WARNING! This will remove:\n" + "".join(f"  - {i}\n" for i in items) + "\n"
    if filters:
        text += "  Items to be pruned will be filtered with:\n" + "".join(f"  - {f}\n" for f in sorted(filters)) + "\n"
    return text + "Are you sure you want to continue? [y/N] "


def run_prune(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    """docker system prune: containers, networks, [volumes], images, build cache; one total at the end."""
    from skiffbox.cli.skiffclient.commands.containers import parse_filters

    filters = parse_filters(o["filter"])
    if o["volumes"] and "until" in filters:
        raise CliError('ERROR: The "until" filter is not supported with "--volumes"')
    if not o["force"]:
        cli.out.write(_prune_warning(o, o["filter"]))
        cli.out.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    api = cli.api
    total = 0
    sections: list[tuple[str, list[str]]] = []
    rep = api.containers_prune(filters)
    total += rep.get("SpaceReclaimed") or 0
    sections.append(("Deleted Containers:", rep.get("ContainersDeleted") or []))
    rep = api.networks_prune(filters)
    sections.append(("Deleted Networks:", rep.get("NetworksDeleted") or []))
    if o["volumes"]:
        rep = api.volumes_prune(filters)
        total += rep.get("SpaceReclaimed") or 0
        sections.append(("Deleted Volumes:", rep.get("VolumesDeleted") or []))
    rep = api.images_prune({**filters, "dangling": ["false" if o["all"] else "true"]})
    total += rep.get("SpaceReclaimed") or 0
    lines = []
    for d in rep.get("ImagesDeleted") or []:
        if d.get("Untagged"):
            lines.append(f"untagged: {d['Untagged']}")
        if d.get("Deleted"):
            lines.append(f"deleted: {d['Deleted']}")
    sections.append(("Deleted Images:", lines))
    from skiffbox.client.api import filters_param

    rep = api.build_prune({"all": "1" if o["all"] else None, "filters": filters_param(filters)})
    total += rep.get("SpaceReclaimed") or 0
    sections.append(("Deleted build cache objects:", rep.get("CachesDeleted") or []))
    for title, items in sections:
        if items:
            cli.out.write(title + "\n" + "".join(i + "\n" for i in items) + "\n")
    cli.out.write(f"Total reclaimed space: {human_size(total, 4)}\n")
    return 0


_FORMAT = Flag("format", "f", kind="string", help="Format output using a custom template")

COMMANDS = {
    "version": Command("version", "[OPTIONS]", "Show the Docker version information", run_version,
                       [_FORMAT], max_args=0),
    "info": Command("info", "[OPTIONS]", "Display system-wide information", run_info, [_FORMAT], max_args=0),
    "df": Command("system df", "[OPTIONS]", "Show docker disk usage", run_df,
                  [Flag("format", kind="string", help="Format output using a custom template"),
                   Flag("verbose", "v", help="Show detailed information on space usage")], max_args=0),
    "prune": Command("system prune", "[OPTIONS]", "Remove unused data", run_prune, [
        Flag("all", "a", help="Remove all unused images not just dangling ones"),
        Flag("filter", kind="list", metavar="filter", help='Provide filter values (e.g. "label=<key>=<value>")'),
        Flag("force", "f", help="Do not prompt for confirmation"),
        Flag("volumes", help="Prune anonymous volumes")], max_args=0),
    "events": Command("events", "[OPTIONS]", "Get real time events from the server", run_events,
                      [Flag("filter", "f", kind="list", help="Filter output based on conditions provided"),
                       Flag("format", kind="string", help="Format output using a custom template"),
                       Flag("since", kind="string", help="Show all events created since timestamp"),
                       Flag("until", kind="string", help="Stream events until this timestamp")], max_args=0),
}
