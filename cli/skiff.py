"""`skiff`: a pure-Python docker client for the Docker Engine API (Skiff's engine or any other).

Global flags are docker's (-H, --tls*, --config, -D) plus `--machine NAME`. Startup stays light on
purpose (no typer/rich/http.client on the path of `skiff ps`): see bench/README-client.md.
Exit statuses are docker's: 125 for flag errors and for `run` failures before the container starts,
the container's own status for `run`, 1 for other errors.
"""

from __future__ import annotations

import os
import sys

from skiffbox.cli.skiffclient import flags as F
from skiffbox.cli.skiffclient.commands import Cli, CliError, lookup

VERSION = "0.1.0"

GLOBAL_FLAGS = [
    F.Flag("config", kind="string", help="Location of client config files"),
    F.Flag("context", "c", kind="string", help="Name of the context to use (see `skiff context`)"),
    F.Flag("debug", "D", help="Enable debug mode"),
    F.Flag("host", "H", kind="list", help="Daemon socket to connect to"),
    F.Flag("log-level", "l", kind="string", help="Set the logging level"),
    F.Flag("machine", kind="string", help="Talk to the engine of this Skiff machine"),
    F.Flag("tls", help="Use TLS; implied by --tlsverify"),
    F.Flag("tlscacert", kind="string", help="Trust certs signed only by this CA"),
    F.Flag("tlscert", kind="string", help="Path to TLS certificate file"),
    F.Flag("tlskey", kind="string", help="Path to TLS key file"),
    F.Flag("tlsverify", help="Use TLS and verify the remote"),
    F.Flag("version", "v", help="Print version information and quit"),
]


def _global_command() -> F.Command:
    return F.Command("", "[OPTIONS] COMMAND", "A pure-Python Docker client", flags=GLOBAL_FLAGS, interspersed=False)


def _write_err(msg: str) -> None:
    if msg:
        sys.stderr.write(msg if msg.endswith("\n") else msg + "\n")
        sys.stderr.flush()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from skiffbox.cli.skiffclient.commands import group_help, main_help

    try:
        gvals, rest = F.parse(_global_command(), argv)
    except F.HelpRequested:
        sys.stdout.write(main_help())
        return 0
    except (F.FlagError, F.ArgsError) as e:
        _write_err(str(e).replace("Usage:  skiff  [OPTIONS] COMMAND", "Usage:  skiff [OPTIONS] COMMAND")
                   .replace("'skiff  --help'", "'skiff --help'"))
        return e.status
    if gvals["version"]:
        sys.stdout.write(f"Skiff version {VERSION}, build python\n")
        return 0
    if gvals["config"]:
        os.environ["DOCKER_CONFIG"] = gvals["config"]
    if not rest or rest[0] == "help":
        sys.stdout.write(main_help())
        return 0
    cmd, args, problem = lookup(rest)
    if cmd is None:
        if problem.startswith("group:"):
            sys.stdout.write(group_help(problem[6:]))
            return 0
        what = problem.split(":", 1)[1]
        _write_err(f"skiff: unknown command: skiff {what}\n\nRun 'skiff --help' for more information")
        return 1

    from skiffbox.cli.skiffclient.config import GlobalOptions

    given = gvals["_given"]
    gopts = GlobalOptions(
        hosts=gvals["host"] or [],
        tls=gvals["tls"] if "tls" in given else None,
        tlsverify=gvals["tlsverify"] if "tlsverify" in given else None,
        tlscacert=gvals["tlscacert"] or None, tlscert=gvals["tlscert"] or None, tlskey=gvals["tlskey"] or None,
        machine=gvals["machine"] or None, config=gvals["config"] or None, context=gvals["context"] or None,
    )
    try:
        opts, pos = F.parse(cmd, args)
    except F.HelpRequested:
        sys.stdout.write(cmd.help_text())
        return 0
    except (F.FlagError, F.ArgsError) as e:
        _write_err(str(e))
        return e.status
    cli = Cli(gopts)
    try:
        assert cmd.run is not None, f"{cmd.path} has no run function"  # every registered command has one
        status = cmd.run(cli, opts, pos)
        sys.stdout.flush()
        return int(status or 0)
    except CliError as e:
        try:
            sys.stdout.flush()
        except OSError:
            pass
        _write_err(e.message)
        return e.status
    except BrokenPipeError:
        # `skiff ps | head`: the reader went away; exit quietly like a Go program would on EPIPE.
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # API, transport and config errors: docker's messages, exit 1
        msg = describe_error(e)
        if msg is None:
            raise
        _write_err(msg)
        return 1
    finally:
        cli.close()


def describe_error(e: Exception) -> str | None:
    """The text docker prints for an error, or None for an unexpected one (a bug: show the traceback)."""
    from skiffbox.client.api import APIError
    from skiffbox.cli.skiffclient.config import ConfigError
    from skiffbox.cli.skiffclient.formatting import TemplateError
    from skiffbox.cli.skiffclient.progress import StreamError
    from skiffbox.client.transport import ConnectFailed, TransportError

    if isinstance(e, APIError):
        return f"Error response from daemon: {e.message}"
    if isinstance(e, ConnectFailed) and e.endpoint.unconfigured:
        from skiffbox.cli.skiffclient.config import UNCONFIGURED_HINT

        return f"{e}\n{UNCONFIGURED_HINT}"
    if isinstance(e, (TransportError, ConfigError, TemplateError, StreamError)):
        return str(e)
    if isinstance(e, OSError):
        return str(e)
    if isinstance(e, ImportError):
        from skiffbox.cli.deps import missing_dependency

        return missing_dependency(e, "skiff")
    return None


if __name__ == "__main__":
    sys.exit(main())
