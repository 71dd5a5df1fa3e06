"""`stats`: docker's resource-usage table, live (redrawn in place every 500 ms) or once with `--no-stream`.

One collector thread per container reads the engine's stats stream on its own connection (the transport's
connection pool is not shared across threads); the drawing loop only reads the latest sample of each. As in
docker: a container that sends nothing for 2 s shows "--" ("timeout waiting for stats"), `stats` without
names follows container start/die events, and the numbers are computed on the client the way the Go CLI
does (memory without inactive file cache, CPU as a share of the machine times online CPUs).
"""

from __future__ import annotations

import threading
import time

from skiffbox.cli.skiffclient.commands import Cli, CliError
from skiffbox.cli.skiffclient.flags import Command, Flag

TYPE_CHECKING = False  # no runtime `typing` import: it costs startup time and annotations are strings
if TYPE_CHECKING:
    from typing import Any

STATS_TABLE = "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}"
STATS_TABLE_WINDOWS = "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.NetIO}}\t{{.BlockIO}}"
STATS_HEADERS = {"Container": "CONTAINER", "Name": "NAME", "ID": "CONTAINER ID", "CPUPerc": "CPU %",
                 "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O", "BlockIO": "BLOCK I/O",
                 "PIDs": "PIDS"}
FIRST_SAMPLE_TIMEOUT = 2.0
TICK = 0.5


def sample_entry(v: dict[str, Any], windows: bool) -> dict[str, Any]:
    """A stats JSON object -> docker's StatsEntry numbers (stats_helpers.go)."""
    cpu, pre = v.get("cpu_stats") or {}, v.get("precpu_stats") or {}
    cpu_usage, pre_usage = cpu.get("cpu_usage") or {}, pre.get("cpu_usage") or {}
    rx = tx = 0.0
    for n in (v.get("networks") or {}).values():
        rx += n.get("rx_bytes", 0)
        tx += n.get("tx_bytes", 0)
    e: dict[str, Any] = {"Name": v.get("name", ""), "ID": v.get("id", ""), "NetworkRx": rx, "NetworkTx": tx,
                         "Invalid": False}
    if windows:
        mem = v.get("memory_stats") or {}
        e.update(CPUPercentage=0.0, Memory=float(mem.get("privateworkingset", 0)), MemoryLimit=0.0,
                 MemoryPercentage=0.0, BlockRead=float((v.get("storage_stats") or {}).get("read_size_bytes", 0)),
                 BlockWrite=float((v.get("storage_stats") or {}).get("write_size_bytes", 0)), PidsCurrent=0)
        return e
    cpu_delta = float(cpu_usage.get("total_usage", 0)) - float(pre_usage.get("total_usage", 0))
    sys_delta = float(cpu.get("system_cpu_usage", 0)) - float(pre.get("system_cpu_usage", 0))
    online = float(cpu.get("online_cpus", 0)) or float(len(cpu_usage.get("percpu_usage") or []))
    cpu_pct = cpu_delta / sys_delta * online * 100.0 if sys_delta > 0 and cpu_delta > 0 else 0.0
    mem = v.get("memory_stats") or {}
    usage, mstats = mem.get("usage", 0), mem.get("stats") or {}
    if "total_inactive_file" in mstats and mstats["total_inactive_file"] < usage:
        used = float(usage - mstats["total_inactive_file"])
    elif mstats.get("inactive_file", 0) < usage:
        used = float(usage - mstats.get("inactive_file", 0))
    else:
        used = float(usage)
    limit = float(mem.get("limit", 0))
    rd = wr = 0
    for b in (v.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []:
        op = (b.get("op") or " ")[0]
        if op in "rR":
            rd += b.get("value", 0)
        elif op in "wW":
            wr += b.get("value", 0)
    e.update(CPUPercentage=cpu_pct, Memory=used, MemoryLimit=limit,
             MemoryPercentage=used / limit * 100.0 if limit else 0.0, BlockRead=float(rd), BlockWrite=float(wr),
             PidsCurrent=int((v.get("pids_stats") or {}).get("current", 0)))
    return e


def stats_row(container: str, e: dict[str, Any], windows: bool, trunc: bool) -> dict[str, Any]:
    """docker's statsContext: the template fields of one row."""
    from skiffbox.cli.skiffclient.formatting import bytes_size, human_size, truncate_id

    bad = e.get("Invalid", False)
    name = e.get("Name", "")

    def pct(x: float) -> str:
        return f"{x:.2f}%"

    return {
        "Container": container,
        "Name": name[1:] if len(name) > 1 else "--",
        "ID": truncate_id(e.get("ID", "")) if trunc else e.get("ID", ""),
        "CPUPerc": "--" if bad else pct(e.get("CPUPercentage", 0.0)),
        "MemUsage": "-- / --" if bad else (bytes_size(e.get("Memory", 0)) if windows else
                                           f"{bytes_size(e.get('Memory', 0))} / {bytes_size(e.get('MemoryLimit', 0))}"),
        "MemPerc": "--" if bad or windows else pct(e.get("MemoryPercentage", 0.0)),
        "NetIO": "--" if bad else f"{human_size(e.get('NetworkRx', 0), 3)} / {human_size(e.get('NetworkTx', 0), 3)}",
        "BlockIO": "--" if bad else f"{human_size(e.get('BlockRead', 0), 3)} / {human_size(e.get('BlockWrite', 0), 3)}",
        "PIDs": "--" if bad or windows else str(e.get("PidsCurrent", 0)),
        "_type": "*container.statsContext",
    }


class Tracked:
    """One container's latest sample, written by its collector thread."""

    def __init__(self, container: str) -> None:
        self.container = container
        self.entry: dict[str, Any] = {}
        self.error: str = ""
        self.first = threading.Event()
        self.lock = threading.Lock()

    def set(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.entry, self.error = entry, ""
        self.first.set()

    def fail(self, error: str, reset: bool = False) -> None:
        with self.lock:
            self.error = error
            if reset:
                self.entry = {"Name": self.entry.get("Name", ""), "ID": self.entry.get("ID", "")}
            self.entry = {**self.entry, "Invalid": True}
        self.first.set()

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return dict(self.entry)


class Collector:
    def __init__(self, cli: Cli, stream: bool, windows: bool) -> None:
        self.cli, self.stream, self.windows = cli, stream, windows
        self.tracked: list[Tracked] = []
        self.lock = threading.Lock()
        self.endpoint = cli.api.t.endpoint
        self.version = cli.api.version

    def client(self) -> Any:
        from skiffbox.client.api import APIClient
        from skiffbox.client.transport import Transport

        api = APIClient(Transport(self.endpoint), version=self.version)
        api._version = self.version  # already negotiated by the main connection: no second ping
        return api

    def add(self, container: str) -> None:
        with self.lock:
            if any(t.container == container for t in self.tracked):
                return
            t = Tracked(container)
            self.tracked.append(t)
        threading.Thread(target=self._collect, args=(t,), daemon=True).start()

    def remove(self, container: str) -> None:
        with self.lock:
            self.tracked = [t for t in self.tracked if t.container != container]

    def snapshot(self) -> list[Tracked]:
        with self.lock:
            return list(self.tracked)

    def _collect(self, t: Tracked) -> None:
        from skiffbox.client.streams import iter_json_stream

        api = self.client()
        try:
            try:
                resp = api.stats(t.container, self.stream)
            except Exception as e:  # noqa: BLE001 - shown as the row's error, as docker does
                from skiffbox.cli.skiff import describe_error

                t.fail(describe_error(e) or str(e))
                return
            watchdog = _Watchdog(t, FIRST_SAMPLE_TIMEOUT)
            try:
                for v in iter_json_stream(resp):
                    watchdog.kick()
                    t.set(sample_entry(v, self.windows))
                    if not self.stream:
                        return
                t.fail("EOF")
            except Exception as e:  # noqa: BLE001 - a dropped connection marks the row invalid
                t.fail(str(e))
            finally:
                watchdog.stop()
        finally:
            api.t.close()


class _Watchdog:
    """Zero a row whose stream stays silent for `timeout` seconds (docker's "timeout waiting for stats")."""

    def __init__(self, t: Tracked, timeout: float) -> None:
        self.t, self.timeout = t, timeout
        self.last = time.monotonic()
        self.done = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def kick(self) -> None:
        self.last = time.monotonic()

    def stop(self) -> None:
        self.done.set()

    def _run(self) -> None:
        while not self.done.wait(min(self.timeout, 0.5)):
            if time.monotonic() - self.last >= self.timeout:
                self.t.fail("timeout waiting for stats", reset=True)
                self.last = time.monotonic()


def _follow_events(cli: Cli, col: Collector, all_: bool) -> None:
    """Add containers as they start (or are created, with -a), drop them when they die (without -a)."""
    from skiffbox.client.streams import iter_json_stream

    api = col.client()
    try:
        resp = api.events(filters={"type": ["container"]})
        for ev in iter_json_stream(resp):
            action, cid = ev.get("Action") or ev.get("status") or "", (ev.get("id") or "")[:12]
            if action == "start" or (action == "create" and all_):
                col.add(cid)
            elif action == "die" and not all_:
                col.remove(cid)
    except Exception:  # noqa: BLE001 - the table stays up; docker ends only on a closed events stream
        return


def run_stats(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    from skiffbox.cli.skiffclient.config import default_format
    from skiffbox.cli.skiffclient.formatting import render_rows

    windows = cli.api.server_version().get("Os") == "windows"
    stream = not o["no_stream"]
    col = Collector(cli, stream, windows)
    show_all = not args
    if show_all:
        if stream:
            threading.Thread(target=_follow_events, args=(cli, col, o["all"]), daemon=True).start()
        for c in cli.api.containers(all=o["all"]):
            col.add(c["Id"][:12])
    else:
        for name in args:
            col.add(name)
    deadline = time.monotonic() + FIRST_SAMPLE_TIMEOUT + 1
    for t in col.snapshot():
        t.first.wait(max(0.0, deadline - time.monotonic()))
    if not show_all:
        errs = [t.error for t in col.snapshot() if t.error and not t.entry.get("ID")]
        if errs:
            raise CliError("\n".join(errs))
    fmt = o["format"] or default_format("statsFormat") or "table"
    if fmt == "table":
        fmt = STATS_TABLE_WINDOWS if windows else STATS_TABLE
    trunc = not o["no_trunc"]

    def frame() -> str:
        rows = []
        for t in col.snapshot():
            e = t.snapshot()
            if not e and not t.first.is_set():
                e = {"Invalid": True}
            rows.append(stats_row(t.container, e, windows, trunc))
        return render_rows(fmt, rows, STATS_HEADERS)

    if not stream:
        cli.out.write(frame())
        return 0
    while True:
        # docker 28's bytes exactly, terminal or not: the table after "cursor home", then the same again
        # with each line (and a last empty one) followed by " erase to end of line", then "erase below".
        text = "\x1b[H" + frame()
        cli.out.write(text + "".join(line + " \x1b[K\n" for line in text.split("\n")) + "\x1b[J")
        cli.out.flush()
        if not show_all and not col.snapshot():
            return 0
        time.sleep(TICK)


COMMANDS = {
    "stats": Command("stats", "[OPTIONS] [CONTAINER...]",
                     "Display a live stream of container(s) resource usage statistics", run_stats, [
                         Flag("all", "a", help="Show all containers (default shows just running)"),
                         Flag("format", kind="string", help="Format output using a custom template:\n"
                              "'table':            Print output in table format with column headers (default)\n"
                              "'table TEMPLATE':   Print output in table format using the given Go template\n"
                              "'json':             Print in JSON format\n"
                              "'TEMPLATE':         Print output using the given Go template.\n"
                              "Refer to https://docs.docker.com/go/formatting/ for more information about "
                              "formatting output with templates"),
                         Flag("no-stream", help="Disable streaming stats and only pull the first result"),
                         Flag("no-trunc", help="Do not truncate output"),
                     ], aliases=("container stats", "stats")),
}
