"""`build` (docker's classic builder client: `POST /build` with the context as a tar stream) and `builder prune`.

The context is tarred while it is uploaded (buildcontext.py: .dockerignore applied, chunked transfer, never
the whole archive in memory). On a terminal the upload shows docker's "Sending build context to Docker
daemon" counter; elsewhere only its final value is printed, as docker does. A Dockerfile outside the context
(`-f ../Dockerfile`, or `-f -` from stdin) travels inside the tar under a random `.dockerfile.<hex>` name.
Remote contexts (`http(s)://…` tarballs and git URLs) are passed to the engine as `remote`.
"""

from __future__ import annotations

import os
import sys

from skiffbox.cli.skiffclient.commands import Cli, CliError, StatusError
from skiffbox.cli.skiffclient.flags import Command, Flag

TYPE_CHECKING = False  # no runtime `typing` import: it costs startup time and annotations are strings
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any, TextIO

SENDING = "Sending build context to Docker daemon"


def _is_remote(ctx: str) -> bool:
    return ctx.startswith(("http://", "https://", "git://", "github.com/", "git@"))


def _registry_config() -> str:
    """X-Registry-Config: every stored login, so FROM can pull private bases (the CLI's GetAllCredentials)."""
    import base64
    import json

    from skiffbox.cli.skiffclient.config import credentials, load_config_file

    cfg = load_config_file()
    out: dict[str, Any] = {}
    for key in list((cfg.get("auths") or {})) + list((cfg.get("credHelpers") or {})):
        try:
            c = credentials(key)
        except Exception:  # noqa: BLE001 - an unreadable entry is skipped, as docker skips it
            continue
        if c:
            out[key] = c
    return base64.urlsafe_b64encode(json.dumps(out, separators=(",", ":")).encode()).decode()


class _Progress:
    """The upload counter: redrawn in place on a terminal, printed once at the end otherwise."""

    def __init__(self, out: TextIO | None, tty: bool) -> None:
        import time

        self.out, self.tty, self.sent, self.last = out, tty, 0, 0.0
        self._time = time.monotonic

    def line(self) -> str:
        from skiffbox.cli.skiffclient.formatting import human_size

        return f"{SENDING} {human_size(self.sent, 4):>8}"

    def add(self, n: int) -> None:
        self.sent += n
        if self.out is not None and self.tty and self._time() - self.last > 0.1:
            self.last = self._time()
            self.out.write(self.line() + "\r")
            self.out.flush()

    def done(self) -> None:
        if self.out is not None:
            self.out.write(self.line() + "\r" + ("\n" if self.tty else "\r\n"))
            self.out.flush()


def _gzipped(chunks: Iterator[bytes], on_bytes: Any) -> Iterator[bytes]:
    """--compress: the tar stream gzipped as it goes (the counter shows what is sent)."""
    import zlib

    z = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    for c in chunks:
        out = z.compress(c)
        if out:
            on_bytes(len(out))
            yield out
    out = z.flush()
    on_bytes(len(out))
    yield out


def _check_tag(raw: str) -> None:
    from skiffbox.cli.skiffclient.commands.transfer import check_reference

    try:
        check_reference(raw)
    except CliError as e:
        raise ValueError(e.message) from None


def _build_args(values: list[str]) -> dict[str, str | None]:
    """--build-arg K=V, or K alone: the value from the environment, else unset (null: the engine skips it)."""
    out: dict[str, str | None] = {}
    for v in values:
        k, eq, val = v.partition("=")
        out[k] = val if eq else os.environ.get(k)
    return out


def run_build(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    import io
    import json

    from skiffbox.cli.skiffclient import buildcontext as bc
    from skiffbox.guest.build.dockerfile import DockerfileError
    from skiffbox.guest.build.dockerignore import Matcher, read_patterns
    from skiffbox.client.streams import iter_json_stream
    from skiffbox.cli.skiffclient.commands.run import label_map, parse_ulimits
    from skiffbox.cli.skiffclient.formatting import parse_size
    from skiffbox.cli.skiffclient.progress import StreamError, display_stream

    ctx, dockerfile = args[0], o["file"]
    if ctx == "-" and dockerfile == "-":
        raise CliError("invalid argument: can't use stdin for both build context and dockerfile")
    remote = ""
    body: Iterator[bytes] | bytes = b""
    progress_out = io.StringIO() if o["quiet"] else cli.out
    tty = not o["quiet"] and cli.out.isatty()
    progress = _Progress(progress_out, tty)
    extra: list[tuple[str, bytes]] = []
    df_param = dockerfile
    if dockerfile == "-":
        df_param = ".dockerfile." + os.urandom(10).hex()
        extra.append((df_param, sys.stdin.buffer.read()))
    if ctx == "-":
        stdin = sys.stdin.buffer

        def from_stdin() -> Iterator[bytes]:
            while chunk := stdin.read(bc.CHUNK):
                progress.add(len(chunk))
                yield chunk

        body = from_stdin()  # a tar (or a bare Dockerfile, which the engine accepts as the whole context)
    elif _is_remote(ctx):
        remote = ctx
        body = b""
    else:
        if not os.path.isdir(ctx):
            if not os.path.exists(ctx):
                raise CliError(f'unable to prepare context: path "{ctx}" not found')
            raise CliError(f"unable to prepare context: context must be a directory: {ctx}")
        root = os.path.abspath(ctx)
        keep = [".dockerignore"]
        if dockerfile != "-":
            df_path = os.path.abspath(dockerfile) if dockerfile else os.path.join(root, "Dockerfile")
            if not os.path.exists(df_path):
                raise CliError("unable to prepare context: unable to evaluate symlinks in Dockerfile path: "
                               f"lstat {df_path}: no such file or directory")
            real_root, real_df = os.path.realpath(root), os.path.realpath(df_path)
            if os.path.commonpath([real_root, real_df]) == real_root:
                df_param = os.path.relpath(real_df, real_root).replace(os.sep, "/")
                keep.append(df_param)
            else:  # outside the context: carried inside the tar under a name of its own
                df_param = ".dockerfile." + os.urandom(10).hex()
                with open(real_df, "rb") as df_file:
                    extra.append((df_param, df_file.read()))
        patterns: list[str] = []
        try:
            with open(os.path.join(root, ".dockerignore"), encoding="utf-8", errors="replace") as f:
                patterns = read_patterns(f.read())
        except FileNotFoundError:
            pass
        except OSError as e:
            raise CliError(f"unable to prepare context: {e}") from None
        try:
            ignore = Matcher(patterns)
        except DockerfileError as e:  # a bad pattern
            raise CliError(f"unable to prepare context: {e}") from None
        body = bc.tar_context(root, ignore, keep, extra, None if o["compress"] else progress.add)
        if o["compress"]:
            body = _gzipped(body, progress.add)
        extra = []
    if extra:  # a Dockerfile from stdin with a remote or stdin context is not something docker supports either
        raise CliError("unable to prepare context: a Dockerfile from stdin needs a local context directory")
    try:
        memory = parse_size(o["memory"]) if o["memory"] else 0
        swap = (-1 if o["memory_swap"] == "-1" else parse_size(o["memory_swap"])) if o["memory_swap"] else 0
        shm = parse_size(o["shm_size"]) if o["shm_size"] else 0
    except ValueError as e:
        raise CliError(f"invalid argument: {e}") from None
    cache_from = [c for v in o["cache_from"] for c in v.split(",") if c]
    query: list[tuple[str, str | None]] = [(k, v) for k, v in [
        ("buildargs", json.dumps(_build_args(o["build_arg"]), separators=(",", ":"))),
        ("cachefrom", json.dumps(cache_from, separators=(",", ":"))),
        ("cgroupparent", o["cgroup_parent"]), ("cpuperiod", str(o["cpu_period"])),
        ("cpuquota", str(o["cpu_quota"])), ("cpusetcpus", o["cpuset_cpus"]), ("cpusetmems", o["cpuset_mems"]),
        ("cpushares", str(o["cpu_shares"])), ("dockerfile", df_param),
        ("forcerm", "1" if o["force_rm"] else None), ("isolation", o["isolation"] or None),
        ("labels", json.dumps(label_map(o["label"], []), separators=(",", ":"))), ("memory", str(memory)),
        ("memswap", str(swap)), ("networkmode", o["network"]), ("nocache", "1" if o["no_cache"] else None),
        ("platform", o["platform"].lower() or None), ("pull", "1" if o["pull"] else None),
        ("q", "1" if o["quiet"] else None), ("remote", remote or None), ("rm", None if o["rm"] else "0"),
        ("shmsize", str(shm)), ("squash", "1" if o["squash"] else None), ("target", o["target"]),
        ("ulimits", json.dumps(parse_ulimits(o["ulimit"]) or None, separators=(",", ":"))), ("version", "1")]]
    query += [("extrahosts", h) for h in o["add_host"]] + [("securityopt", s) for v in o["security_opt"]
                                                            for s in v.split(",")]
    query += [("t", t) for t in o["tag"]]
    from skiffbox.client.api import APIError

    try:
        resp = cli.api.build(query, body if not isinstance(body, bytes) else iter([body]),
                             {"X-Registry-Config": _registry_config()})
    except bc.ContextError as e:
        raise CliError(str(e)) from None
    except APIError:
        if not remote:
            progress.done()  # the whole context went up before the engine refused it
        raise
    if not remote:
        progress.done()
    image_id = ""

    def aux(a: dict[str, Any]) -> None:
        nonlocal image_id
        image_id = a.get("ID") or image_id

    build_out = io.StringIO() if o["quiet"] else cli.out
    code = 1

    def messages() -> Iterator[dict[str, Any]]:
        nonlocal code
        for jm in iter_json_stream(resp):
            code = int((jm.get("errorDetail") or {}).get("code") or 1)
            yield jm

    try:
        display_stream(messages(), build_out, is_tty=tty, on_aux=aux)
    except StreamError as e:
        if o["quiet"]:
            # both are StringIOs when quiet
            cli.err.write(progress_out.getvalue() + build_out.getvalue())  # type: ignore[union-attr]
        cli.out.flush()
        cli.err.write(str(e) + "\n")
        raise StatusError("", code) from None  # docker exits with the failed step's status
    if o["quiet"]:
        cli.out.write(image_id + "\n")
    if o["iidfile"]:
        with open(o["iidfile"], "w") as iid_file:
            iid_file.write(image_id)
    return 0


def run_builder_prune(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    from skiffbox.client.api import filters_param
    from skiffbox.cli.skiffclient.commands.containers import parse_filters
    from skiffbox.cli.skiffclient.formatting import human_size

    if not o["force"]:
        cli.out.write("WARNING! This will remove all dangling build cache. Are you sure you want to continue? [y/N] "
                      if not o["all"] else
                      "WARNING! This will remove all build cache. Are you sure you want to continue? [y/N] ")
        cli.out.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    rep = cli.api.build_prune({"all": "1" if o["all"] else None, "filters": filters_param(parse_filters(o["filter"]))})
    deleted = rep.get("CachesDeleted") or []
    if deleted:
        cli.out.write("Deleted build cache objects:\n" + "".join(d + "\n" for d in deleted) + "\n")
    cli.out.write(f"Total reclaimed space: {human_size(rep.get('SpaceReclaimed') or 0, 4)}\n")
    return 0


L, S = "list", "string"
COMMANDS = {
    "build": Command("build", "[OPTIONS] PATH | URL | -", "Build an image from a Dockerfile", run_build, [
        Flag("add-host", kind=L, help='Add a custom host-to-IP mapping ("host:ip")'),
        Flag("build-arg", kind=L, help="Set build-time variables"),
        Flag("cache-from", kind=L, metavar="strings", help="Images to consider as cache sources"),
        Flag("cgroup-parent", kind=S, help='Set the parent cgroup for the "RUN" instructions during build'),
        Flag("compress", help="Compress the build context using gzip"),
        Flag("cpu-period", kind="int", help="Limit the CPU CFS (Completely Fair Scheduler) period"),
        Flag("cpu-quota", kind="int", help="Limit the CPU CFS (Completely Fair Scheduler) quota"),
        Flag("cpu-shares", "c", kind="int", help="CPU shares (relative weight)"),
        Flag("cpuset-cpus", kind=S, help="CPUs in which to allow execution (0-3, 0,1)"),
        Flag("cpuset-mems", kind=S, help="MEMs in which to allow execution (0-3, 0,1)"),
        Flag("disable-content-trust", default=True, help="Skip image verification (default true)"),
        Flag("file", "f", kind=S, help='Name of the Dockerfile (Default is "PATH/Dockerfile")'),
        Flag("force-rm", help="Always remove intermediate containers"),
        Flag("iidfile", kind=S, help="Write the image ID to the file"),
        Flag("isolation", kind=S, help="Container isolation technology"),
        Flag("label", kind=L, help="Set metadata for an image"),
        Flag("memory", "m", kind=S, metavar="bytes", help="Memory limit"),
        Flag("memory-swap", kind=S, metavar="bytes",
             help="Swap limit equal to memory plus swap: -1 to enable unlimited swap"),
        Flag("network", kind=S, default="default",
             help='Set the networking mode for the RUN instructions during build (default "default")'),
        Flag("no-cache", help="Do not use cache when building the image"),
        Flag("platform", kind=S, help="Set platform if server is multi-platform capable"),
        Flag("pull", help="Always attempt to pull a newer version of the image"),
        Flag("quiet", "q", help="Suppress the build output and print image ID on success"),
        Flag("rm", default=True, help="Remove intermediate containers after a successful build (default true)"),
        Flag("security-opt", kind=L, metavar="strings", help="Security options"),
        Flag("shm-size", kind=S, metavar="bytes", help='Size of "/dev/shm"'),
        Flag("squash", help="Squash newly built layers into a single new layer"),
        Flag("tag", "t", kind=L, check=_check_tag, help='Name and optionally a tag in the "name:tag" format'),
        Flag("target", kind=S, help="Set the target build stage to build."),
        Flag("ulimit", kind=L, metavar="ulimit", help="Ulimit options (default [])"),
    ], exact_args=1, aliases=("image build", "build", "builder build")),
    "prune": Command("builder prune", "", "Remove build cache", run_builder_prune, [
        Flag("all", "a", help="Remove all unused build cache, not just dangling ones"),
        Flag("filter", kind=L, metavar="filter", help='Provide filter values (e.g. "until=24h")'),
        Flag("force", "f", help="Do not prompt for confirmation"),
    ], max_args=0),
}
