"""`machine`: docker-machine's commands for Skiff machines.

Two front doors to the same command functions (`cmd_*` below):
- a fast path for the read-only commands scripts call in loops (`env`, `ls`, `ip`, `url`, `active`,
  `status`, `config`, `inspect`, `version`): stdlib argparse, no typer/paramiko/cryptography import,
  so `eval "$(machine env)"` stays well under 150 ms;
- the typer app (`build_app()`) for everything, including `--help` for every command.
Driver-specific `create` flags come from each driver's `create_flags()`.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from typing import Any, Callable, NoReturn, Sequence

from skiffbox.machine.store import DEFAULT_NAME, Store, StoreError

FAST_COMMANDS = {"env", "ls", "ip", "url", "active", "status", "config", "inspect", "version"}
LS_FORMAT = "table {{ .Name }}\t{{ .Active }}\t{{ .DriverName}}\t{{ .State }}\t{{ .URL }}\t{{ .Swarm }}\t{{ .DockerVersion }}\t{{ .Error}}"
LS_HEADERS = {"Name": "NAME", "Active": "ACTIVE", "ActiveHost": "ACTIVE", "ActiveSwarm": "ACTIVE_SWARM",
              "DriverName": "DRIVER", "State": "STATE", "URL": "URL", "Swarm": "SWARM",
              "DockerVersion": "DOCKER", "Error": "ERRORS", "ResponseTime": "RESPONSE",
              "SwarmOptions": "SWARM_OPTIONS", "EngineOptions": "ENGINE_OPTIONS"}
LS_FILTER_KEYS = ("driver", "swarm", "state", "name", "label")


class CLIError(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _version() -> str:
    try:
        import importlib.metadata as md

        return md.version("skiffbox")
    except Exception:
        return "0+unknown"


def _store() -> Store:
    return Store()


def _target(names: Sequence[str]) -> str:
    if len(names) > 1:
        raise CLIError("Error: Expected one machine name as an argument")
    return names[0] if names else DEFAULT_NAME


def _load(store: Store, name: str):
    from skiffbox.machine.host import Host

    return Host.load(store, name)


def _running_host(store: Store, name: str, what: str):
    from skiffbox.machine.drivers.base import State

    h = _load(store, name)
    if h.skiff.get("State") == "creating":
        raise CLIError(f'machine "{name}" is still being created (or its creation was interrupted: see '
                       f"`machine ls`); wait for `machine create` to finish")
    st = h.state()
    if st != State.RUNNING:
        raise CLIError(f'Error checking TLS connection: machine "{name}" is not running (state: {st.value or "unknown"}). '
                       f"Start it with `machine start {name}`, then run `machine {what} {name}` again.")
    return h


def _argv0() -> str:
    a0 = sys.argv[0] if sys.argv and sys.argv[0] else "machine"
    base = os.path.basename(a0)
    real = os.path.realpath(a0)
    for d in os.environ.get("PATH", "").split(os.pathsep):  # on PATH as itself: print the short name
        cand = os.path.join(d, base)
        if d and os.path.isfile(cand):
            if os.path.realpath(cand) == real:
                return base
            break
    return "machine" if base in ("machine.py", "__main__.py", "-c") else a0


# ---- read-only commands (fast path and typer) -------------------------------------------------
def cmd_env(names: Sequence[str], shell: str = "", unset: bool = False, no_proxy: bool = False,
            argv: Sequence[str] | None = None) -> str:
    from skiffbox.machine import shellenv

    sh = shell or shellenv.detect_shell()
    usage = [_argv0(), *(argv if argv is not None else sys.argv[1:])]
    if unset:
        if names:
            raise CLIError("Error: Expected no machine name when the -u flag is present")
        pairs = [(v, "") for v in ("DOCKER_TLS_VERIFY", "DOCKER_HOST", "DOCKER_CERT_PATH", "DOCKER_MACHINE_NAME")]
        if no_proxy:
            pairs.append((shellenv.no_proxy_pair("", os.environ)[0], ""))
        return shellenv.render(sh, pairs, usage, unset=True)
    store = _store()
    name = _target(names)
    h = _running_host(store, name, "env")
    if not h.certs_current():
        h.ensure_server_cert()
    pairs = [("DOCKER_TLS_VERIFY", "1"), ("DOCKER_HOST", h.url()), ("DOCKER_CERT_PATH", str(h.dir)),
             ("DOCKER_MACHINE_NAME", name)]
    if sys.platform == "win32":
        pairs.append(("COMPOSE_CONVERT_WINDOWS_PATHS", "true"))
    if no_proxy:
        pairs.append(shellenv.no_proxy_pair(h.ip()))
    return shellenv.render(sh, pairs, usage)


def _parse_filters(filters: Sequence[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f in filters:
        k, sep, v = f.partition("=")
        k = k.strip().lower()
        if not sep or k not in LS_FILTER_KEYS:
            raise CLIError(f"Unsupported filter key {f!r}: use one of {', '.join(k + '=…' for k in LS_FILTER_KEYS)}")
        out.setdefault(k, []).append(v.strip())
    return out


def filter_machines(store: Store, names: list[str], filters: dict[str, list[str]]) -> list[str]:
    """Filters that need no query: name (regex search), driver, label, swarm. Same key ORs, keys AND."""
    import re

    out = []
    for n in names:
        if "name" in filters:
            try:
                if not any(re.search(p, n) for p in filters["name"]):
                    continue
            except re.error as e:
                raise CLIError(f"Invalid name filter: {e}") from None
        if "driver" in filters or "label" in filters or "swarm" in filters:
            try:
                cfg = store.load(n)
            except StoreError:
                continue
            if "driver" in filters and cfg.get("DriverName", "").lower() not in [d.lower() for d in filters["driver"]]:
                continue
            labels = ((cfg.get("HostOptions") or {}).get("EngineOptions") or {}).get("Labels") or []
            if "label" in filters and not any(lb in labels for lb in filters["label"]):
                continue
            if "swarm" in filters:
                continue  # no swarm support: a swarm filter matches nothing
        out.append(n)
    return out


def cmd_ls(quiet: bool = False, filters: Sequence[str] = (), timeout: float = 10.0, fmt: str = "") -> str:
    from skiffbox.client import gotemplate
    from skiffbox.machine.host import describe_all

    store = _store()
    parsed = _parse_filters(filters)
    names = filter_machines(store, store.names(), parsed)
    if quiet and "state" not in parsed:
        return "".join(n + "\n" for n in names)
    rows = describe_all(store, names, timeout)
    if "state" in parsed:
        want = [s.lower() for s in parsed["state"]]
        rows = [r for r in rows if r["State"].lower() in want]
    if quiet:
        return "".join(r["Name"] + "\n" for r in rows)
    f = fmt or LS_FORMAT
    try:
        if f.startswith("table"):
            return gotemplate.render_table(f[len("table"):].lstrip(" "), rows, LS_HEADERS)
        return "".join(gotemplate.render(f, r) + "\n" for r in rows)
    except gotemplate.TemplateError as e:
        raise CLIError(f"Template parsing error: {e}") from None


def cmd_ip(names: Sequence[str]) -> str:
    store = _store()
    results = _for_each(names or [DEFAULT_NAME], lambda n: _load(store, n).ip(), quiet_errors=False)
    return "".join(r + "\n" for r in results)


def cmd_url(names: Sequence[str]) -> str:
    store = _store()
    name = _target(names)
    h = _load(store, name)
    from skiffbox.machine.drivers.base import State

    if h.state() != State.RUNNING:
        return "\n"  # docker-machine prints an empty line for a stopped machine
    return h.url() + "\n"


def cmd_status(names: Sequence[str]) -> str:
    store = _store()
    return _load(store, _target(names)).state().value + "\n"


def cmd_active(timeout: float = 10.0) -> str:
    from skiffbox.machine.host import describe_all

    dh = os.environ.get("DOCKER_HOST", "")
    if not dh:
        raise CLIError("No active host found")
    store = _store()
    for r in describe_all(store, store.names(), timeout):
        if r["ActiveHost"]:
            return r["Name"] + "\n"
    raise CLIError("No active host found")


def cmd_config(names: Sequence[str]) -> str:
    store = _store()
    name = _target(names)
    h = _running_host(store, name, "config")
    if not h.certs_current():
        h.ensure_server_cert()
    d = h.dir
    return (f'--tlsverify\n--tlscacert="{d / "ca.pem"}"\n--tlscert="{d / "cert.pem"}"\n'
            f'--tlskey="{d / "key.pem"}"\n-H={h.url()}\n')


def cmd_inspect(names: Sequence[str], fmt: str = "") -> str:
    store = _store()
    name = _target(names)
    cfg = store.load(name)
    _add_live_forwards(store, name, cfg)
    if not fmt:
        return json.dumps(cfg, indent=4) + "\n"
    from skiffbox.client import gotemplate

    try:
        return gotemplate.render(fmt, cfg) + "\n"
    except gotemplate.TemplateError as e:
        raise CLIError(f"Template parsing error: {e}") from None


def _add_live_forwards(store: Any, name: str, cfg: dict) -> None:
    """config.json is what was saved; the forwarded container ports (and those that could not be forwarded, with
    why) are live, so inspect asks the driver."""
    from skiffbox.machine.host import Host

    try:
        h = Host.load(store, name)
    except Exception:
        return
    cfg.setdefault("Driver", {})["PortForwards"] = [
        f"{p.host_ip}:{p.host_port}->{p.guest_port}/{p.proto}" for p in h.driver.port_forwards()]
    cfg["Driver"]["PortForwardErrors"] = h.driver.port_forward_errors()


def cmd_version(names: Sequence[str]) -> str:
    if not names:
        return f"machine version {_version()} (skiff)\n"
    h = _running_host(_store(), _target(names), "version")
    status, body = h.engine_get("/version")
    if status != 200:
        raise CLIError(f"the engine answered HTTP {status}: {body[:200]!r}")
    return str(json.loads(body).get("Version", "?")) + "\n"


# ---- helpers for multi-machine commands ------------------------------------------------------------
def _for_each(names: Sequence[str], fn: Callable[[str], Any], quiet_errors: bool = False) -> list[Any]:
    """Run fn for each machine concurrently (docker-machine's runActionForeachMachine); keep order."""
    results: dict[str, Any] = {}
    errors: dict[str, BaseException] = {}

    def run(n: str) -> None:
        try:
            results[n] = fn(n)
        except BaseException as e:  # noqa: BLE001 - reported below per machine
            errors[n] = e

    if len(names) == 1:
        run(names[0])
    else:
        ts = [threading.Thread(target=run, args=(n,)) for n in names]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    if errors:
        msgs = [str(errors[n]) if len(names) == 1 else f'Error with machine "{n}": {errors[n]}' for n in names if n in errors]
        for e in errors.values():
            if isinstance(e, KeyboardInterrupt):
                raise e
        raise CLIError("\n".join(msgs))
    return [results[n] for n in names]


def _errmsg(e: BaseException) -> str:
    return str(e) or type(e).__name__


def _run(fn: Callable[[], str | None]) -> int:
    """Call a command, print its output, map known errors to a message and exit code 1."""
    from skiffbox.machine.drivers.base import DriverError

    try:
        out = fn()
    except KeyboardInterrupt:
        print("Interrupted", file=sys.stderr)
        return 130
    except CLIError as e:
        print(_errmsg(e), file=sys.stderr)
        return e.code
    except (StoreError, DriverError) as e:
        print(_errmsg(e), file=sys.stderr)
        return 1
    except ImportError as e:
        from skiffbox.cli.deps import missing_dependency

        print(missing_dependency(e, "machine"), file=sys.stderr)
        return 1
    except Exception as e:
        from skiffbox.machine.host import HostError

        mod = type(e).__module__
        if isinstance(e, HostError) or mod == "skiffbox.machine" or mod.startswith("skiffbox.machine."):
            print(_errmsg(e), file=sys.stderr)
            return 1
        raise
    if out:
        sys.stdout.write(out)
        sys.stdout.flush()
    return 0


# ---- fast path ----------------------------------------------------------------------------------
def _fast(argv: list[str]) -> int | None:
    """Parse and run a read-only command without typer. None means: let typer handle it."""
    import argparse

    cmd, rest = argv[0], argv[1:]

    class _Quit(Exception):
        pass

    class P(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:  # fall back to typer for its nicer messages
            raise _Quit()

    p = P(prog=f"machine {cmd}", add_help=False)
    if cmd == "env":
        p.add_argument("names", nargs="*")
        p.add_argument("--shell", default="")
        p.add_argument("-u", "--unset", action="store_true")
        p.add_argument("--no-proxy", action="store_true")
        p.add_argument("--swarm", action="store_true")
    elif cmd == "ls":
        p.add_argument("-q", "--quiet", action="store_true")
        p.add_argument("--filter", action="append", default=[])
        p.add_argument("-t", "--timeout", type=float, default=10.0)
        p.add_argument("-f", "--format", default="")
    elif cmd == "active":
        p.add_argument("-t", "--timeout", type=float, default=10.0)
    elif cmd == "inspect":
        p.add_argument("names", nargs="*")
        p.add_argument("-f", "--format", default="")
    else:
        p.add_argument("names", nargs="*")
        if cmd == "config":
            p.add_argument("--swarm", action="store_true")
    try:
        a = p.parse_args(rest)
    except _Quit:
        return None
    if cmd == "env":
        return _run(lambda: cmd_env(a.names, a.shell, a.unset, a.no_proxy, argv))
    if cmd == "ls":
        return _run(lambda: cmd_ls(a.quiet, a.filter, a.timeout, a.format))
    if cmd == "active":
        return _run(lambda: cmd_active(a.timeout))
    if cmd == "inspect":
        return _run(lambda: cmd_inspect(a.names, a.format))
    fn = {"ip": cmd_ip, "url": cmd_url, "status": cmd_status, "config": cmd_config, "version": cmd_version}[cmd]
    return _run(lambda: fn(a.names))


def _split_globals(argv: list[str]) -> list[str] | None:
    """Apply global options given before the command (-s/--storage-path, -D/--debug); None if unknown."""
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        a = argv[i]
        if a in ("-s", "--storage-path") and i + 1 < len(argv):
            os.environ["MACHINE_STORAGE_PATH"] = argv[i + 1]
            i += 2
        elif a.startswith("--storage-path="):
            os.environ["MACHINE_STORAGE_PATH"] = a.split("=", 1)[1]
            i += 1
        elif a in ("-D", "--debug"):
            os.environ["MACHINE_DEBUG"] = "1"
            i += 1
        elif a == "--native-ssh":
            os.environ["MACHINE_NATIVE_SSH"] = "1"
            i += 1
        else:
            return None
    return argv[i:]


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    rest = _split_globals(args)
    if (rest and rest[0] in FAST_COMMANDS and not any(a in ("-h", "--help") for a in rest[1:])
            and not os.environ.get("MACHINE_NO_FAST_PATH")):  # set to compare both paths (tests, debugging)
        rc = _fast(rest)
        if rc is not None:
            sys.exit(rc)
    try:
        run_app(args)
    except ImportError as e:  # typer itself (or a module it loads) missing
        from skiffbox.cli.deps import missing_dependency

        print(missing_dependency(e, "machine"), file=sys.stderr)
        sys.exit(1)




# ---- commands that change machines (typer path only) ---------------------------------------------
def _confirm(question: str) -> bool:
    sys.stderr.write(f"{question} (y/n): ")
    sys.stderr.flush()
    ans = sys.stdin.readline() if sys.stdin else ""
    return ans.strip().lower() in ("y", "yes")


def cmd_create(name: str, driver: str, driver_flags: dict[str, Any], engine_options: dict[str, Any],
               tls_sans: Sequence[str]) -> str:
    from skiffbox.machine.drivers.base import DriverError
    from skiffbox.machine.host import HostError, create, stderr_progress
    from skiffbox.machine.image.errors import ImageError
    from skiffbox.machine.offline import is_download_failure, with_offline_hint

    try:
        create(_store(), name, driver, driver_flags, engine_options, tls_sans, stderr_progress)
    except (DriverError, HostError, ImageError) as e:
        if is_download_failure(str(e)):  # no internet: say what works offline
            raise CLIError(with_offline_hint(_errmsg(e))) from None
        raise
    return ""


def _boot_image(h: Any) -> str:
    """The boot image file a VM driver's root disk is built on ("" for drivers without one)."""
    image = getattr(h.driver, "image", None) if hasattr(h.driver, "upgrade") else None
    return str(image.get("Disk", "")) if isinstance(image, dict) else ""


def _lifecycle(names: Sequence[str], op: str) -> str:
    from skiffbox.machine.host import stderr_progress

    store = _store()

    def act(n: str) -> None:
        h = _load(store, n)
        prog = stderr_progress if len(names) <= 1 else (lambda m, n=n: stderr_progress(f"({n}) {m}"))
        if op == "provision":
            h.provision(prog)
        elif op == "upgrade":
            before = _boot_image(h)
            h.provision(prog, upgrade=True)
            if before and _boot_image(h) == before:  # the VM kept its root disk: no reboot happened
                prog(f"{n} already runs the newest boot image ({before})")
        else:
            getattr(h, op)(prog)

    _for_each(list(names) or [DEFAULT_NAME], act)
    if op == "start":
        print("Started machines may have new IP addresses. You may need to re-run the `machine env` command.",
              file=sys.stderr)
    if op == "restart":
        print("Restarted machines may have new IP addresses. You may need to re-run the `machine env` command.",
              file=sys.stderr)
    return ""


def cmd_rm(names: Sequence[str], force: bool = False, yes: bool = False) -> str:
    from skiffbox.machine.host import Host, stderr_progress

    names = list(names) or [DEFAULT_NAME]
    store = _store()
    if not (force or yes):
        print("About to remove " + ", ".join(names), file=sys.stderr)
        print("WARNING: This action will delete both local reference and remote instance.", file=sys.stderr)
        if not _confirm("Are you sure?"):
            raise CLIError("Aborted: nothing was removed")

    def rm(n: str) -> None:
        try:
            h = Host.load(store, n)
        except StoreError:
            if force and store.machine_dir(n).exists():  # a broken record: drop it
                store.remove(n)
                return
            raise
        except Exception:
            if force and store.machine_dir(n).exists():
                store.remove(n)
                return
            raise
        h.remove(force=force, progress=stderr_progress)

    _for_each(names, rm)
    return ""


def cmd_regenerate_certs(names: Sequence[str], force: bool = False, client_certs: bool = False) -> str:
    from skiffbox.machine.host import stderr_progress

    if not force and not _confirm("Regenerate TLS machine certs?  Warning: this is irreversible."):
        raise CLIError("Aborted: certificates unchanged")
    store = _store()
    _for_each(list(names) or [DEFAULT_NAME],
              lambda n: _load(store, n).regenerate_certs(stderr_progress, client_certs=client_certs))
    return ""


def ssh_args(args: Sequence[str]) -> tuple[str, list[str]]:
    """`machine ssh [NAME] [--] [COMMAND...]` -> (name, command words); a `--` ends our arguments and
    never reaches the remote shell."""
    rest = list(args)
    if rest and rest[0] == "--":
        rest = rest[1:]
    name = rest.pop(0) if rest else DEFAULT_NAME
    if rest and rest[0] == "--":
        rest = rest[1:]
    return name, rest


def cmd_ssh(args: Sequence[str]) -> int:
    """The system ssh client where there is one (docker-machine's default), paramiko otherwise or with
    --native-ssh; returns the remote command's exit status."""
    from skiffbox.machine import ssh_system

    store = _store()
    name, command = ssh_args(args)
    h = _running_host(store, name, "ssh")
    binary = ssh_system.system_ssh()
    if binary:
        try:
            return ssh_system.run(binary, h.ssh_endpoint(), command)
        except ssh_system.KeyPermissionError as e:
            raise CLIError(str(e)) from None
    with h.ssh_client(timeout=30.0) as c:
        if not command:
            if not sys.stdin.isatty():
                raise CLIError("machine ssh without a command needs a terminal; pass a command to run")
            return c.interactive()
        return c.passthrough(" ".join(command))


def _split_scp_arg(arg: str) -> tuple[str | None, str | None, str]:
    """'[[user@]machine:]path' → (user, machine, path); 'C:\\x' and './a:b' stay local."""
    head, sep, path = arg.partition(":")
    if not sep or "/" in head or "\\" in head or (len(head) == 1 and sys.platform == "win32") or not head:
        return None, None, arg
    user, at, machine = head.rpartition("@")
    return (user if at else None), machine, path


def cmd_scp(src: str, dst: str, recursive: bool = False, quiet: bool = False) -> str:
    import posixpath
    import shutil
    import tempfile
    from pathlib import Path

    store = _store()
    su, sm, sp = _split_scp_arg(src)
    du, dm, dp = _split_scp_arg(dst)
    clients: dict[tuple[str, str | None], Any] = {}

    def client(m: str, user: str | None):
        key = (m, user)
        if key not in clients:
            h = _running_host(store, m, "scp")
            if user:
                h.driver.ssh_user = user
            clients[key] = h.ssh_client(timeout=30.0)
        return clients[key]

    def note(msg: str) -> None:
        if not quiet:
            print(msg, file=sys.stderr)

    def copy(isdir: bool, shown: str, tree: Callable[[Any, Any], Any], file: Callable[[Any, Any], Any],
             src: Any, dst: Any) -> None:
        """A directory goes as a tree, and only with -r (as scp); anything else as one file."""
        if isdir and not recursive:
            raise CLIError(f"{shown} is a directory (use -r)")
        (tree if isdir else file)(src, dst)

    def remote_dst(c: Any, name: str) -> str:
        """The destination on a machine: inside `dp` when that is a directory there (the home when empty)."""
        rdst = dp or "."
        return posixpath.join(rdst, name) if c.is_dir(rdst) else rdst

    try:
        if sm is None and dm is None:
            s, d = Path(sp), Path(dp)
            copy(s.is_dir(), sp, lambda src, dst: shutil.copytree(src, dst, dirs_exist_ok=True), shutil.copy2,
                 s, d / s.name if d.is_dir() else d)  # into a directory, as copy2 itself does with a file
            return ""
        if sm is None:  # host -> machine
            c = client(dm, du)  # type: ignore[arg-type]
            s = Path(sp)
            if not s.exists():
                raise CLIError(f"{sp}: No such file or directory")
            rdst = remote_dst(c, s.name)
            copy(s.is_dir(), sp, c.put_tree, c.put_file, s, rdst)
            note(f"{sp} -> {dm}:{rdst}")
            return ""
        c = client(sm, su)
        rsrc = sp or "."
        if not c.exists(rsrc):
            raise CLIError(f"{sm}:{rsrc}: No such file or directory")
        if dm is None:  # machine -> host
            d = Path(dp)
            target = d / posixpath.basename(rsrc.rstrip("/")) if d.is_dir() else d
            copy(c.is_dir(rsrc), f"{sm}:{rsrc}", c.get_tree, c.get_file, rsrc, target)
            note(f"{sm}:{rsrc} -> {target}")
            return ""
        # machine -> machine, through the host (like scp -3)
        c2 = client(dm, du)
        with tempfile.TemporaryDirectory(prefix="machine-scp-") as tmp:
            local = Path(tmp) / (posixpath.basename(rsrc.rstrip("/")) or "data")
            isdir = c.is_dir(rsrc)
            copy(isdir, f"{sm}:{rsrc}", c.get_tree, c.get_file, rsrc, local)
            rdst = remote_dst(c2, local.name)
            copy(isdir, f"{sm}:{rsrc}", c2.put_tree, c2.put_file, local, rdst)
        note(f"{sm}:{rsrc} -> {dm}:{rdst}")
        return ""
    finally:
        for c in clients.values():
            c.close()


def cmd_dashboard(name: str | None, open_browser: bool) -> str:
    from skiffbox.dashboard.engines import LOCAL
    from skiffbox.dashboard.server import DashboardError, serve

    try:
        serve(name or LOCAL, open_browser)
    except DashboardError as e:
        raise CLIError(str(e)) from None
    return ""


# ---- typer app ----------------------------------------------------------------------------------
def _add_create_command(app: Any) -> None:
    """`create`, with options from every driver's create_flags() (a typer command with a built signature)."""
    import inspect

    import typer

    from skiffbox.machine.drivers.base import driver_class, driver_names

    per_driver: dict[str, list[str]] = {}
    P = inspect.Parameter
    params = [P("name", P.POSITIONAL_OR_KEYWORD, annotation=str,
                default=typer.Argument(DEFAULT_NAME, help="Machine name"))]
    from skiffbox.machine.quickstart import default_driver as platform_driver

    default_driver = os.environ.get("MACHINE_DRIVER") or platform_driver()
    multi = list[str]
    common = [
        ("driver", str, typer.Option(default_driver, "--driver", "-d", envvar="MACHINE_DRIVER",
                                     help=f"Driver to create the machine with ({', '.join(driver_names())})")),
        ("engine_opt", multi, typer.Option(None, "--engine-opt", help="Engine option key=value (a daemon.json key)")),
        ("engine_insecure_registry", multi, typer.Option(None, "--engine-insecure-registry", help="Insecure registry for the engine")),
        ("engine_registry_mirror", multi, typer.Option(None, "--engine-registry-mirror", help="Registry mirror for the engine")),
        ("engine_label", multi, typer.Option(None, "--engine-label", help="Label for the engine (key=value)")),
        ("engine_env", multi, typer.Option(None, "--engine-env", help="Environment for the engine (HTTP_PROXY=...)")),
        ("engine_storage_driver", str, typer.Option("overlay2", "--engine-storage-driver", help="Storage driver (overlay2 only)")),
        ("engine_install_url", str, typer.Option("", "--engine-install-url", hidden=True)),
        ("tls_san", multi, typer.Option(None, "--tls-san", help="Extra name or IP for the server certificate")),
    ]
    for key, ann, default in common:
        params.append(P(key, P.KEYWORD_ONLY, annotation=ann, default=default))
    seen: set[str] = {p.name for p in params}
    for dn in driver_names():
        try:
            flags = driver_class(dn).create_flags()
        except Exception as e:  # a driver that does not import must not break the CLI
            if os.environ.get("MACHINE_DEBUG"):
                print(f"(driver {dn} unavailable: {e})", file=sys.stderr)
            continue
        per_driver[dn] = []
        for f in flags:
            key = f.name.replace("-", "_")
            per_driver[dn].append(key)
            if key in seen:
                continue
            seen.add(key)
            flag_type: type = bool if f.is_flag else f.type
            default = bool(f.default) if f.is_flag else f.default
            params.append(P(key, P.KEYWORD_ONLY, annotation=flag_type, default=typer.Option(
                default, f"--{f.name}", envvar=f.envvar, help=f"[{dn}] {f.help}",
                show_default=default not in (None, ""), rich_help_panel=f"{dn} driver")))

    def create(**kw: Any) -> None:
        driver, name = kw["driver"], kw["name"]
        dflags = {k: kw.get(k) for k in per_driver.get(driver, [])}
        eo = {"ArbitraryFlags": list(kw["engine_opt"] or []),
              "InsecureRegistry": list(kw["engine_insecure_registry"] or []),
              "RegistryMirror": list(kw["engine_registry_mirror"] or []),
              "Labels": list(kw["engine_label"] or []), "Env": list(kw["engine_env"] or []),
              "StorageDriver": kw["engine_storage_driver"]}
        rc = _run(lambda: cmd_create(name, driver, dflags, eo, list(kw["tls_san"] or [])))
        if rc == 0:
            print(f"To point your docker client at this machine's engine, run: machine env {name}", file=sys.stderr)
        raise typer.Exit(rc)

    create.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    create.__annotations__ = {p.name: p.annotation for p in params}
    app.command(name="create", help="Create a machine (driver options are listed per driver)")(create)


def build_app():
    import typer

    app = typer.Typer(name="machine", no_args_is_help=True, add_completion=False,
                      context_settings={"help_option_names": ["-h", "--help"]},
                      help="Create and manage Skiff machines: Linux hosts running the skiffd engine (docker-machine's commands).")

    def done(fn: Callable[[], str | None]) -> None:
        raise typer.Exit(_run(fn))

    @app.callback()
    def _globals(
        storage_path: str = typer.Option(None, "--storage-path", "-s", envvar="MACHINE_STORAGE_PATH",
                                         help="Where machines are stored"),
        debug: bool = typer.Option(False, "--debug", "-D", help="Debug output"),
        native_ssh: bool = typer.Option(False, "--native-ssh", envvar="MACHINE_NATIVE_SSH",
                                        help="Use paramiko for `machine ssh` instead of the system ssh client"),
    ) -> None:
        if storage_path:
            os.environ["MACHINE_STORAGE_PATH"] = storage_path
        if native_ssh:
            os.environ["MACHINE_NATIVE_SSH"] = "1"
        if debug:
            os.environ["MACHINE_DEBUG"] = "1"

    names_arg = typer.Argument(None, help="Machine name(s); default: 'default'", show_default=False)

    @app.command(help="Print the commands that point the docker CLI at a machine")
    def env(names: list[str] = names_arg,
            shell: str = typer.Option("", "--shell", help="bash, zsh, sh, fish, powershell, cmd, tcsh or emacs (default: detected)"),
            unset: bool = typer.Option(False, "--unset", "-u", help="Print the commands that unset the variables"),
            no_proxy: bool = typer.Option(False, "--no-proxy", help="Add the machine's IP to NO_PROXY"),
            swarm: bool = typer.Option(False, "--swarm", hidden=True)) -> None:
        done(lambda: cmd_env(names or [], shell, unset, no_proxy))

    @app.command(name="ls", help="List machines")
    def ls(quiet: bool = typer.Option(False, "--quiet", "-q", help="Print names only"),
           filter: list[str] = typer.Option(None, "--filter", help="driver=, state=, name= (regex), label=, swarm="),
           timeout: float = typer.Option(10.0, "--timeout", "-t", help="Seconds to wait for each machine"),
           format: str = typer.Option("", "--format", "-f", help="Go template, e.g. 'table {{.Name}}\\t{{.URL}}'")) -> None:
        done(lambda: cmd_ls(quiet, filter or [], timeout, format))

    @app.command(help="Print a machine's IP address")
    def ip(names: list[str] = names_arg) -> None:
        done(lambda: cmd_ip(names or []))

    @app.command(help="Print a machine's engine URL")
    def url(names: list[str] = names_arg) -> None:
        done(lambda: cmd_url(names or []))

    @app.command(help="Print a machine's state")
    def status(names: list[str] = names_arg) -> None:
        done(lambda: cmd_status(names or []))

    @app.command(help="Print the machine that DOCKER_HOST points at")
    def active(timeout: float = typer.Option(10.0, "--timeout", "-t")) -> None:
        done(lambda: cmd_active(timeout))

    @app.command(help="Print the docker CLI's TLS flags for a machine")
    def config(names: list[str] = names_arg, swarm: bool = typer.Option(False, "--swarm", hidden=True)) -> None:
        done(lambda: cmd_config(names or []))

    @app.command(help="Print a machine's configuration as JSON")
    def inspect(names: list[str] = names_arg,
                format: str = typer.Option("", "--format", "-f", help="Go template, e.g. '{{.Driver.IPAddress}}'")) -> None:
        done(lambda: cmd_inspect(names or [], format))

    @app.command(help="Print machine's version, or a machine's engine version")
    def version(names: list[str] = names_arg) -> None:
        done(lambda: cmd_version(names or []))

    for op, text in (("start", "Start machines"), ("stop", "Stop machines"), ("kill", "Kill (power off) machines"),
                     ("restart", "Restart machines (the engine only, for generic hosts)"),
                     ("provision", "Re-run provisioning: reinstall and restart the engine"),
                     ("upgrade", "Move machines to the newest boot image (VM drivers; the data disk is kept) "
                                 "and to this host's engine version")):
        def make(op: str = op) -> Callable[..., None]:
            def command(names: list[str] = names_arg) -> None:
                done(lambda: _lifecycle(names or [], op))
            return command

        app.command(name=op, help=text)(make())

    @app.command(help="Remove machines")
    def rm(names: list[str] = names_arg,
           force: bool = typer.Option(False, "--force", "-f", help="Remove the local record even if the driver fails"),
           yes: bool = typer.Option(False, "-y", help="Do not ask for confirmation")) -> None:
        done(lambda: cmd_rm(names or [], force, yes))

    @app.command(name="regenerate-certs", help="Regenerate TLS certificates for machines (restarts their engines)")
    def regenerate_certs(names: list[str] = names_arg,
                         force: bool = typer.Option(False, "--force", "-f", help="Do not ask for confirmation"),
                         client_certs: bool = typer.Option(False, "--client-certs", help="Also regenerate the CA and client certificate")) -> None:
        done(lambda: cmd_regenerate_certs(names or [], force, client_certs))

    @app.command(help="Log into or run a command on a machine with SSH: machine ssh [NAME] [COMMAND...]",
                 context_settings={"allow_extra_args": True, "ignore_unknown_options": True,
                                   "allow_interspersed_args": False})
    def ssh(args: list[str] = typer.Argument(None, help="NAME then the command and its arguments")) -> None:
        rc = 0

        def go() -> str:
            nonlocal rc
            rc = cmd_ssh(args or [])
            return ""

        code = _run(go)
        raise typer.Exit(code or rc)

    @app.command(help="Copy files between the host and machines: machine scp [-r] [[user@]machine:]SRC [[user@]machine:]DST")
    def scp(src: str = typer.Argument(...), dst: str = typer.Argument(...),
            recursive: bool = typer.Option(False, "--recursive", "-r", help="Copy directories"),
            quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output"),
            delta: bool = typer.Option(False, "--delta", "-d", hidden=True)) -> None:
        if delta:
            print("--delta (rsync) is not supported; copy with -r", file=sys.stderr)
            raise typer.Exit(1)
        done(lambda: cmd_scp(src, dst, recursive, quiet))

    @app.command(help="Open the web dashboard (machines, containers, images) for machine NAME, or without NAME "
                      "for the local engine (DOCKER_HOST, else the default socket); serves on 127.0.0.1 only")
    def dashboard(name: str = typer.Argument(None, help="Machine whose engine to show first", show_default=False),
                  no_browser: bool = typer.Option(False, "--no-browser", help="Print the URL, do not open a browser")) -> None:
        done(lambda: cmd_dashboard(name, not no_browser))

    _add_create_command(app)

    from skiffbox.machine.image.cli import register_image_commands

    register_image_commands(app)

    # ==== extension point: `machine quickstart` ==========================================
    # The quickstart command is added here by `register_quickstart(app)` (cli/quickstart, to come).
    # Keep this the last registration so it can rely on the commands above.
    _register_quickstart(app)
    # ======================================================================================
    return app


def _register_quickstart(app: Any) -> None:
    try:
        from skiffbox.cli.quickstart import register_quickstart
    except ImportError:
        return
    register_quickstart(app)


def run_app(args: list[str]) -> None:
    build_app()(args=args, prog_name="machine")


if __name__ == "__main__":
    main()
