"""`login`, `logout`, `search` (docker's cli/command/registry).

Credentials go where the docker CLI keeps them (credstore.py), so a login by either client serves the
other. The engine checks them (`POST /auth`) before anything is stored. Docker Hub's browser "device
code" login is not implemented: without -u, skiff asks for a username and password for every registry.
"""

from __future__ import annotations

import sys

from skiffbox.cli.skiffclient.commands import Cli, CliError
from skiffbox.cli.skiffclient.config import INDEX_SERVER
from skiffbox.cli.skiffclient.flags import Command, Flag

TYPE_CHECKING = False  # no runtime `typing` import: it costs startup time and annotations are strings
if TYPE_CHECKING:
    from typing import Any


def _read_input(cli: Cli, prompt: str, echo: bool = True) -> str:
    """prompt.ReadInput: the prompt on stdout, one line from stdin (without echo for a password on a tty)."""
    cli.out.write(prompt)
    cli.out.flush()
    if not echo and sys.stdin.isatty():
        import termios

        fd = sys.stdin.fileno()
        old = termios.tcgetattr(fd)
        new = list(old)
        new[3] &= ~termios.ECHO
        termios.tcsetattr(fd, termios.TCSADRAIN, new)
        try:
            line = sys.stdin.readline()
        finally:
            termios.tcsetattr(fd, termios.TCSADRAIN, old)
    else:
        line = sys.stdin.readline()
    return line.strip()


def _prompt_credentials(cli: Cli, user: str, password: str, default_user: str) -> tuple[str, str]:
    user = user.strip()
    if not user:
        default_user = default_user.strip()
        user = _read_input(cli, f"Username ({default_user}): " if default_user else "Username: ") or default_user
        if not user:
            raise CliError("Error: Non-null Username Required")
    password = password.strip()
    if not password:
        password = _read_input(cli, "Password: ", echo=False)
        cli.out.write("\n")
        if not password:
            raise CliError("Error: Password Required")
    return user, password


def run_login(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    from skiffbox.cli.skiffclient import credstore
    from skiffbox.client.api import APIError
    from skiffbox.cli.skiffclient.config import credentials

    user, password = o["username"], o["password"]
    if password and o["password_stdin"]:
        raise CliError("conflicting options: cannot specify both --password and --password-stdin")
    if password:
        cli.err.write("WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n")
    if o["password_stdin"]:
        if not user:
            raise CliError("the --password-stdin option requires --username to be set")
        password = sys.stdin.read()
        password = password[:-1] if password.endswith("\n") else password
        password = password[:-1] if password.endswith("\r") else password
    server = args[0] if args and args[0] not in ("", "docker.io") else INDEX_SERVER
    if server != INDEX_SERVER:
        server = credstore.convert_to_hostname(server)
    stored: dict[str, str] = {}
    if not user and not password:
        try:
            stored = credentials(server)
        except Exception:  # noqa: BLE001 - an unreadable store means "ask"
            stored = {}
    status = ""
    if stored.get("username") and stored.get("password"):
        cli.err.write(f"Authenticating with existing credentials... [Username: {stored['username']}]\n")
        cli.err.flush()
        try:
            resp = cli.api.auth({"username": stored["username"], "password": stored["password"],
                                 "serveraddress": server})
            status = _remember(cli, server, stored["username"], stored["password"], resp, warn=False)
            cli.err.write("\n Info -> To login with a different account, run 'skiff logout' followed by "
                          "'skiff login'\n\n\n")
        except APIError as e:
            if e.status == 401:
                cli.err.write("Stored credentials invalid or expired\n")
            else:
                cli.err.write(f"Login did not succeed, error: Error response from daemon: {e.message}\n")
            status = ""
            stored = {}
    if not status and not (stored.get("username") and stored.get("password")):
        if (not user or not password) and not sys.stdin.isatty():
            raise CliError("Error: Cannot perform an interactive login from a non TTY device")
        user, password = _prompt_credentials(cli, user, password, stored.get("username", ""))
        resp = cli.api.auth({"username": user, "password": password, "serveraddress": server})
        status = _remember(cli, server, user, password, resp)
    if status:
        cli.out.write(status + "\n")
    return 0


def _remember(cli: Cli, server: str, user: str, password: str, resp: dict[str, Any], warn: bool = True) -> str:
    from skiffbox.cli.skiffclient import credstore

    token = resp.get("IdentityToken") or ""
    try:
        warning = credstore.store(server, user, "" if token else password, token)
    except credstore.CredStoreError as e:
        raise CliError(str(e)) from None
    if warn:
        cli.err.write(warning)
    return str(resp.get("Status") or "")


def run_logout(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    from skiffbox.cli.skiffclient import credstore

    server = args[0] if args else ""
    default = not server
    if default:
        server = INDEX_SERVER
    targets, host = [server], server
    if not default:
        host = credstore.convert_to_hostname(server)
        targets += [host, "http://" + host, "https://" + host]
    cli.out.write(f"Removing login credentials for {host}\n")
    errs: dict[str, str] = {}
    for t in targets:
        err = credstore.erase(t)
        if err:
            errs[t] = err
    if len(errs) == len(targets):
        cli.err.write("WARNING: could not erase credentials:\n" + "".join(f"{k}: {v}\n" for k, v in errs.items()))
    return 0


# ---------------------------------------------------------------------------------------------
# search
# ---------------------------------------------------------------------------------------------

SEARCH_TABLE = "table {{.Name}}\t{{.Description}}\t{{.StarCount}}\t{{.IsOfficial}}"
SEARCH_HEADERS = {"Name": "NAME", "Description": "DESCRIPTION", "StarCount": "STARS", "IsOfficial": "OFFICIAL",
                  "IsAutomated": "AUTOMATED"}


def search_index(term: str) -> str:
    """registry.ParseSearchIndexInfo: the registry a search term names (Docker Hub without one)."""
    first, slash, _ = term.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def run_search(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    from skiffbox.cli.skiffclient.commands.containers import parse_filters
    from skiffbox.cli.skiffclient.commands.images import auth_header
    from skiffbox.cli.skiffclient.formatting import ellipsis, render_rows

    term = args[0]
    results = cli.api.search(term, o["limit"], parse_filters(o["filter"]), auth_header(search_index(term) + "/x"))
    trunc = not o["no_trunc"]
    rows = []
    for r in results:
        desc = (r.get("description") or "").replace("\n", " ").replace("\r", " ")
        rows.append({"Name": r.get("name", ""), "Description": ellipsis(desc, 45) if trunc else desc,
                     "StarCount": str(r.get("star_count", 0)), "IsOfficial": "[OK]" if r.get("is_official") else "",
                     "IsAutomated": "[OK]" if r.get("is_automated") else "", "_type": "*registry.searchContext"})
    fmt = o["format"] or "table"
    cli.out.write(render_rows(SEARCH_TABLE if fmt == "table" else fmt, rows, SEARCH_HEADERS))
    return 0


COMMANDS = {
    "login": Command("login", "[OPTIONS] [SERVER]",
                     "Authenticate to a registry.\nDefaults to Docker Hub if no server is specified.", run_login, [
                         Flag("password", "p", kind="string", help="Password or Personal Access Token (PAT)"),
                         Flag("password-stdin", help="Take the Password or Personal Access Token (PAT) from stdin"),
                         Flag("username", "u", kind="string", help="Username"),
                     ], max_args=1),
    "logout": Command("logout", "[SERVER]",
                      "Log out from a registry.\nIf no server is specified, the default is defined by the daemon.",
                      run_logout, [], max_args=1),
    "search": Command("search", "[OPTIONS] TERM", "Search Docker Hub for images", run_search, [
        Flag("filter", "f", kind="list", metavar="filter", help="Filter output based on conditions provided"),
        Flag("format", kind="string", help="Pretty-print search using a Go template"),
        Flag("limit", kind="int", help="Max number of search results"),
        Flag("no-trunc", help="Don't truncate output"),
    ], exact_args=1),
}
