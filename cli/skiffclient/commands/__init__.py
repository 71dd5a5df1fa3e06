"""Command table and the context every command gets.

Commands live in one module per group (system, images, containers, run, exec, network, volume); only the
module of the command being run is imported, which keeps `skiff ps` fast. Paths are docker's: top-level
shortcuts (`ps`, `rmi`, …) and management commands (`container ls`, `image rm`, …) map to the same code.
"""

from __future__ import annotations

import importlib
import sys


from skiffbox.cli.skiffclient.flags import Command

TYPE_CHECKING = False  # no runtime `typing` import: it costs startup time and annotations are strings
if TYPE_CHECKING:
    from typing import Any, TextIO

# path -> (module, command key). Aliases map to the same entry.
_GROUPS: dict[str, dict[str, tuple[str, str]]] = {
    "container": {
        "ls": ("containers", "ps"), "list": ("containers", "ps"), "ps": ("containers", "ps"),
        "run": ("run", "run"), "create": ("run", "create"), "start": ("containers", "start"),
        "stop": ("containers", "stop"), "restart": ("containers", "restart"), "kill": ("containers", "kill"),
        "rm": ("containers", "rm"), "remove": ("containers", "rm"), "logs": ("containers", "logs"),
        "inspect": ("containers", "container inspect"), "wait": ("containers", "wait"),
        "cp": ("cp", "cp"), "exec": ("exec", "exec"), "prune": ("containers", "prune"),
        "port": ("containers", "port"), "rename": ("containers", "rename"), "attach": ("exec", "attach"),
        "pause": ("control", "pause"), "unpause": ("control", "unpause"), "top": ("control", "top"),
        "diff": ("control", "diff"), "update": ("control", "update"), "commit": ("transfer", "commit"),
        "export": ("transfer", "export"), "stats": ("stats", "stats"),
    },
    "image": {
        "ls": ("images", "images"), "list": ("images", "images"), "pull": ("images", "pull"),
        "push": ("images", "push"), "rm": ("images", "rmi"), "remove": ("images", "rmi"),
        "tag": ("images", "tag"), "inspect": ("images", "image inspect"), "prune": ("images", "prune"),
        "history": ("images", "history"), "build": ("build", "build"), "save": ("transfer", "save"),
        "load": ("transfer", "load"), "import": ("transfer", "import"),
    },
    "network": {
        "ls": ("network", "ls"), "list": ("network", "ls"), "create": ("network", "create"),
        "rm": ("network", "rm"), "remove": ("network", "rm"), "inspect": ("network", "inspect"),
        "connect": ("network", "connect"), "disconnect": ("network", "disconnect"), "prune": ("network", "prune"),
    },
    "volume": {
        "ls": ("volume", "ls"), "list": ("volume", "ls"), "create": ("volume", "create"),
        "rm": ("volume", "rm"), "remove": ("volume", "rm"), "inspect": ("volume", "inspect"),
        "prune": ("volume", "prune"),
    },
    "system": {
        "df": ("system", "df"), "info": ("system", "info"), "events": ("system", "events"),
        "prune": ("system", "prune"),
    },
    "context": {
        "ls": ("context", "ls"), "list": ("context", "ls"), "use": ("context", "use"),
        "show": ("context", "show"), "inspect": ("context", "inspect"),
    },
    "builder": {
        "build": ("build", "build"), "prune": ("build", "prune"),
    },

}

_TOP: dict[str, tuple[str, str]] = {
    "version": ("system", "version"), "info": ("system", "info"), "events": ("system", "events"),
    "pull": ("images", "pull"), "push": ("images", "push"), "images": ("images", "images"),
    "rmi": ("images", "rmi"), "tag": ("images", "tag"), "history": ("images", "history"),
    "run": ("run", "run"), "create": ("run", "create"), "ps": ("containers", "ps"),
    "logs": ("containers", "logs"), "start": ("containers", "start"), "stop": ("containers", "stop"),
    "restart": ("containers", "restart"), "kill": ("containers", "kill"), "rm": ("containers", "rm"),
    "wait": ("containers", "wait"), "port": ("containers", "port"), "rename": ("containers", "rename"),
    "inspect": ("containers", "inspect"), "cp": ("cp", "cp"), "exec": ("exec", "exec"),
    "attach": ("exec", "attach"), "pause": ("control", "pause"), "unpause": ("control", "unpause"),
    "top": ("control", "top"), "diff": ("control", "diff"), "update": ("control", "update"),
    "commit": ("transfer", "commit"), "export": ("transfer", "export"), "import": ("transfer", "import"),
    "save": ("transfer", "save"), "load": ("transfer", "load"), "stats": ("stats", "stats"),
    "build": ("build", "build"), "login": ("registry", "login"), "logout": ("registry", "logout"), "search": ("registry", "search"),
}

SHORT_HELP = {
    "container": "Manage containers", "image": "Manage images", "network": "Manage networks",
    "volume": "Manage volumes", "system": "Manage Docker", "builder": "Manage builds", "context": "Manage contexts",
}


def lookup(args: list[str]) -> tuple[Command | None, list[str], str]:
    """(command, remaining args, error). A group without a subcommand returns (None, [], "group:<name>")."""
    if not args:
        return None, [], "help"
    head = args[0]
    if head in _GROUPS:
        if len(args) < 2 or args[1] in ("--help", "-h", "help"):
            return None, [], f"group:{head}"
        sub = args[1]
        entry = _GROUPS[head].get(sub)
        if entry is None:
            return None, [], f"unknown:{head} {sub}"
        return _load(entry, f"{head} {sub}"), args[2:], ""
    entry = _TOP.get(head)
    if entry is None:
        return None, [], f"unknown:{head}"
    return _load(entry, head), args[1:], ""


def _load(entry: tuple[str, str], path: str) -> Command:
    mod = importlib.import_module(f"skiffbox.cli.skiffclient.commands.{entry[0]}")
    cmd: Command = mod.COMMANDS[entry[1]]
    cmd.path = path
    return cmd


def group_help(group: str) -> str:
    subs = sorted(set(_GROUPS[group]))
    lines = [f"Usage:  skiff {group} COMMAND", "", SHORT_HELP.get(group, ""), "", "Commands:"]
    lines += [f"  {s}" for s in subs]
    lines += ["", f"Run 'skiff {group} COMMAND --help' for more information on a command."]
    return "\n".join(lines) + "\n"


def main_help() -> str:
    return """Usage:  skiff [OPTIONS] COMMAND

A pure-Python Docker client for Skiff (and any Docker Engine API)

Common Commands:
  run         Create and run a new container from an image
  exec        Execute a command in a running container
  ps          List containers
  build       Build an image from a Dockerfile
  pull        Download an image from a registry
  push        Upload an image to a registry
  images      List images
  login       Authenticate to a registry
  logout      Log out from a registry
  search      Search Docker Hub for images
  version     Show the Docker version information
  info        Display system-wide information

Management Commands:
  builder     Manage builds
  container   Manage containers
  context     Manage contexts (Skiff machines and docker contexts)
  image       Manage images
  network     Manage networks
  system      Manage Docker
  volume      Manage volumes

Commands:
  attach      Attach local standard input, output, and error streams to a running container
  commit      Create a new image from a container's changes
  cp          Copy files/folders between a container and the local filesystem
  create      Create a new container
  diff        Inspect changes to files or directories on a container's filesystem
  events      Get real time events from the server
  export      Export a container's filesystem as a tar archive
  history     Show the history of an image
  import      Import the contents from a tarball to create a filesystem image
  inspect     Return low-level information on Docker objects
  kill        Kill one or more running containers
  load        Load an image from a tar archive or STDIN
  logs        Fetch the logs of a container
  pause       Pause all processes within one or more containers
  port        List port mappings or a specific mapping for the container
  rename      Rename a container
  restart     Restart one or more containers
  rm          Remove one or more containers
  rmi         Remove one or more images
  save        Save one or more images to a tar archive (streamed to STDOUT by default)
  start       Start one or more stopped containers
  stats       Display a live stream of container(s) resource usage statistics
  stop        Stop one or more running containers
  tag         Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
  top         Display the running processes of a container
  unpause     Unpause all processes within one or more containers
  update      Update configuration of one or more containers
  wait        Block until one or more containers stop, then print their exit codes

Global Options:
      --config string      Location of client config files (default "~/.docker")
  -D, --debug              Enable debug mode
  -H, --host string        Daemon socket to connect to
      --machine string     Talk to the engine of this Skiff machine (no `machine env` needed)
      --tls                Use TLS; implied by --tlsverify
      --tlscacert string   Trust certs signed only by this CA (default "~/.docker/ca.pem")
      --tlscert string     Path to TLS certificate file (default "~/.docker/cert.pem")
      --tlskey string      Path to TLS key file (default "~/.docker/key.pem")
      --tlsverify          Use TLS and verify the remote
  -v, --version            Print version information and quit

Run 'skiff COMMAND --help' for more information on a command.
"""


# ---------------------------------------------------------------------------------------------
# Errors a command raises to set the exit status
# ---------------------------------------------------------------------------------------------


class CliError(Exception):
    """Print the message on stderr and exit with `status`."""

    def __init__(self, message: str = "", status: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class StatusError(CliError):
    """Exit with a status without (or after) printing: `run` returns the container's exit code."""


class Cli:
    """What a command runs with: the API client (connected on first use), streams and global options."""

    def __init__(self, gopts: Any, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.gopts = gopts
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self._api = None

    @property
    def api(self):
        if self._api is None:
            from skiffbox.client.api import APIClient
            from skiffbox.cli.skiffclient.config import resolve_endpoint
            from skiffbox.client.transport import Transport

            self._api = APIClient(Transport(resolve_endpoint(self.gopts)))
        return self._api

    def close(self) -> None:
        if self._api is not None:
            self._api.t.close()
