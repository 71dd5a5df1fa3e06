"""`pause`, `unpause`, `update`, `top`, `diff` (docker's cli/command/container, same texts and statuses)."""

from __future__ import annotations

from skiffbox.cli.skiffclient.commands import Cli, CliError
from skiffbox.cli.skiffclient.commands.containers import api_error_text, join_errors
from skiffbox.cli.skiffclient.flags import Command, Flag

TYPE_CHECKING = False  # no runtime `typing` import: it costs startup time and annotations are strings
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def each_container(cli: Cli, names: list[str], op: Callable[[str], Any]) -> None:
    """docker's pattern for `pause a b c`: each name that worked is echoed, the errors joined (exit 1)."""
    errs = []
    for name in names:
        try:
            op(name)
        except Exception as e:  # noqa: BLE001 - api_error_text re-raises what is not an API/transport error
            errs.append(api_error_text(e))
            continue
        cli.out.write(name + "\n")
    join_errors(errs)


def run_pause(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    each_container(cli, args, cli.api.pause)
    return 0


def run_unpause(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    each_container(cli, args, cli.api.unpause)
    return 0


def run_top(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    from skiffbox.cli.skiffclient.formatting import tabwrite

    procs = cli.api.top(args[0], " ".join(args[1:]) if len(args) > 1 else None)
    lines = ["\t".join(procs.get("Titles") or [])] + ["\t".join(p) for p in procs.get("Processes") or []]
    cli.out.write(tabwrite("\n".join(lines) + "\n", 20, 3))
    return 0


_KINDS = {0: "C", 1: "A", 2: "D"}


def run_diff(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    if not args[0]:
        raise CliError("Container name cannot be empty")
    for ch in cli.api.changes(args[0]):
        cli.out.write(f"{_KINDS.get(ch.get('Kind'), '')} {ch.get('Path', '')}\n")
    return 0


# ---------------------------------------------------------------------------------------------
# update
# ---------------------------------------------------------------------------------------------


def _size(raw: str) -> None:
    from skiffbox.cli.skiffclient.formatting import parse_size

    parse_size(raw)


def _swap(raw: str) -> None:
    if raw != "-1":
        _size(raw)


def nano_cpus(raw: str) -> int:
    """opts.NanoCPUs: a decimal number of CPUs; docker's own wording for a bad value."""
    from decimal import Decimal, InvalidOperation

    try:
        d = Decimal(raw)
        if not d.is_finite():
            raise InvalidOperation
    except InvalidOperation:
        raise ValueError(f"failed to parse {raw} as a rational number") from None
    n = d * 1_000_000_000
    if n != n.to_integral_value():
        raise ValueError("value is too precise")
    return int(n)


def _cpus(raw: str) -> None:
    nano_cpus(raw)


def _uint16(raw: str) -> None:
    if not raw.isdigit():
        raise ValueError(f'strconv.ParseUint: parsing "{raw}": invalid syntax')
    if int(raw) > 65535:
        raise ValueError(f'strconv.ParseUint: parsing "{raw}": value out of range')


def restart_policy(raw: str) -> dict[str, Any]:
    """opts.ParseRestartPolicy: the name is the engine's to check, the count the client's."""
    name, colon, count = raw.partition(":")
    if colon and not name:
        raise CliError("invalid restart policy format: no policy provided before colon")
    n = 0
    if count:
        try:
            n = int(count)
        except ValueError:
            raise CliError("invalid restart policy format: maximum retry count must be an integer") from None
    return {"Name": name, "MaximumRetryCount": n}


def run_update(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    from skiffbox.cli.skiffclient.formatting import parse_size

    given = o["_given"]
    if not given:
        raise CliError("you must provide one or more flags when using this command")
    restart = restart_policy(o["restart"])
    body: dict[str, Any] = {
        "CpuShares": o["cpu_shares"], "Memory": parse_size(o["memory"]) if o["memory"] else 0,
        "NanoCpus": nano_cpus(o["cpus"]) if o["cpus"] else 0, "CpuPeriod": o["cpu_period"],
        "CpuQuota": o["cpu_quota"], "CpuRealtimePeriod": o["cpu_rt_period"],
        "CpuRealtimeRuntime": o["cpu_rt_runtime"], "CpusetCpus": o["cpuset_cpus"], "CpusetMems": o["cpuset_mems"],
        "BlkioWeight": int(o["blkio_weight"] or 0),
        "MemoryReservation": parse_size(o["memory_reservation"]) if o["memory_reservation"] else 0,
        "MemorySwap": (-1 if o["memory_swap"] == "-1" else parse_size(o["memory_swap"])) if o["memory_swap"] else 0,
        "PidsLimit": o["pids_limit"] if "pids_limit" in given else None,
        "RestartPolicy": restart,
    }
    warns: list[str] = []

    def one(name: str) -> None:
        warns.extend(cli.api.update(name, body).get("Warnings") or [])

    errs = []
    for name in args:
        try:
            one(name)
        except Exception as e:  # noqa: BLE001
            errs.append(api_error_text(e))
            continue
        cli.out.write(name + "\n")
    if warns:
        cli.out.write("\n".join(warns) + "\n")
    join_errors(errs)
    return 0


COMMANDS = {
    "pause": Command("pause", "CONTAINER [CONTAINER...]", "Pause all processes within one or more containers",
                     run_pause, [], min_args=1, aliases=("container pause", "pause")),
    "unpause": Command("unpause", "CONTAINER [CONTAINER...]", "Unpause all processes within one or more containers",
                       run_unpause, [], min_args=1, aliases=("container unpause", "unpause")),
    "top": Command("top", "CONTAINER [ps OPTIONS]", "Display the running processes of a container", run_top, [],
                   min_args=1, interspersed=False, aliases=("container top", "top")),
    "diff": Command("diff", "CONTAINER", "Inspect changes to files or directories on a container's filesystem",
                    run_diff, [], exact_args=1, aliases=("container diff", "diff")),
    "update": Command("update", "[OPTIONS] CONTAINER [CONTAINER...]", "Update configuration of one or more containers",
                      run_update, [
                          Flag("blkio-weight", kind="string", metavar="uint16", check=_uint16,
                               help="Block IO (relative weight), between 10 and 1000, or 0 to disable (default 0)"),
                          Flag("cpu-period", kind="int", help="Limit CPU CFS (Completely Fair Scheduler) period"),
                          Flag("cpu-quota", kind="int", help="Limit CPU CFS (Completely Fair Scheduler) quota"),
                          Flag("cpu-rt-period", kind="int", help="Limit the CPU real-time period in microseconds"),
                          Flag("cpu-rt-runtime", kind="int", help="Limit the CPU real-time runtime in microseconds"),
                          Flag("cpu-shares", "c", kind="int", help="CPU shares (relative weight)"),
                          Flag("cpus", kind="string", metavar="decimal", check=_cpus, help="Number of CPUs"),
                          Flag("cpuset-cpus", kind="string", help="CPUs in which to allow execution (0-3, 0,1)"),
                          Flag("cpuset-mems", kind="string", help="MEMs in which to allow execution (0-3, 0,1)"),
                          Flag("memory", "m", kind="string", metavar="bytes", check=_size, help="Memory limit"),
                          Flag("memory-reservation", kind="string", metavar="bytes", check=_size,
                               help="Memory soft limit"),
                          Flag("memory-swap", kind="string", metavar="bytes", check=_swap,
                               help="Swap limit equal to memory plus swap: -1 to enable unlimited swap"),
                          Flag("pids-limit", kind="int", help="Tune container pids limit (set -1 for unlimited)"),
                          Flag("restart", kind="string", help="Restart policy to apply when a container exits"),
                      ], min_args=1, aliases=("container update", "update")),
}
