"""`run`, `create` and `start -a`: docker's container options and run sequence.

The sequence is the docker CLI's (cli/command/container/run.go), which the engine's timing depends on:
create (on 404 "No such image": say so, pull with progress on stderr, create again) → attach (hijack,
before start, so no output is lost) → wait (condition next-exit, or removed with --rm; its headers
arrive before start is sent) → start → resize the TTY → copy streams → exit with the container's status.
Errors before the container runs exit 125 (126/127 when the command cannot be run), like docker.
"""

from __future__ import annotations

import os
from typing import Any

from skiffbox.client.api import APIError
from skiffbox.cli.skiffclient.commands import Cli, CliError, StatusError
from skiffbox.cli.skiffclient.flags import Command, Flag
from skiffbox.cli.skiffclient.formatting import familiar_name, parse_size, split_reference
from skiffbox.guest.util.timefmt import parse_go_duration  # one implementation with the engine's

# ---------------------------------------------------------------------------------------------
# Option parsing helpers (docker's opts package)
# ---------------------------------------------------------------------------------------------


def _port_range(s: str) -> list[int]:
    if "-" in s:
        a, b = s.split("-", 1)
        lo, hi = int(a), int(b)
        if hi < lo:
            raise ValueError(f"invalid range specified for container port: {s}")
        return list(range(lo, hi + 1))
    return [int(s)]


def parse_publish(specs: list[str]) -> tuple[dict[str, dict], dict[str, list[dict[str, str]]]]:
    """nat.ParsePortSpecs: ip:hostPort:containerPort[/proto] and its shorter forms and ranges."""
    exposed: dict[str, dict] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for spec in specs:
        raw, _, proto = spec.partition("/")
        proto = proto or "tcp"
        ip = ""
        if raw.startswith("["):  # [::1]:8080:80
            end = raw.index("]")
            ip, raw = raw[1:end], raw[end + 2:]
            parts = raw.split(":")
            host, cont = (parts[0], parts[1]) if len(parts) == 2 else ("", parts[0])
        else:
            parts = raw.split(":")
            if len(parts) == 1:
                host, cont = "", parts[0]
            elif len(parts) == 2:
                host, cont = parts
            elif len(parts) == 3:
                ip, host, cont = parts
            else:
                ip, host, cont = ":".join(parts[:-2]), parts[-2], parts[-1]
        if not cont:
            raise CliError(f"No port specified: {spec}<empty>")
        try:
            cports = _port_range(cont)
            hports = _port_range(host) if host else []
        except ValueError:
            raise CliError(f"Invalid containerPort: {cont}") from None
        if hports and len(cports) != len(hports) and len(cports) > 1:
            raise CliError(f"invalid ranges specified for container and host Ports: {cont} and {host}")
        for i, cp in enumerate(cports):
            key = f"{cp}/{proto}"
            exposed[key] = {}
            if hports and len(cports) == len(hports):
                hp = str(hports[i])
            elif hports:
                hp = host  # one container port, a range of host ports: the engine picks one
            else:
                hp = ""
            bindings.setdefault(key, []).append({"HostIp": ip, "HostPort": hp})
    return exposed, bindings


def read_env_file(path: str) -> list[str]:
    out = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.rstrip("\n").lstrip()
                if not line or line.startswith("#"):
                    continue
                if "=" not in line:
                    v = os.environ.get(line)
                    if v is not None:
                        out.append(f"{line}={v}")
                    continue
                out.append(line)
    except OSError as e:
        raise CliError(f"open {path}: {e.strerror.lower() if e.strerror else e}") from None
    return out


def env_list(values: list[str], files: list[str]) -> list[str]:
    env = []
    for f in files:
        env += read_env_file(f)
    for v in values:
        if "=" not in v and v in os.environ:
            v = f"{v}={os.environ[v]}"
        env.append(v)
    return env


def label_map(values: list[str], files: list[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    lines = []
    for f in files:
        lines += read_env_file(f)
    for v in lines + values:
        k, _, val = v.partition("=")
        labels[k] = val
    return labels


def parse_mount(spec: str) -> dict[str, Any]:
    """--mount type=bind,source=/a,target=/b,readonly (the common keys)."""
    m: dict[str, Any] = {"Type": "volume"}
    for field in spec.split(","):
        k, eq, v = field.partition("=")
        k = k.strip().lower()
        if k == "type":
            m["Type"] = v
        elif k in ("source", "src"):
            m["Source"] = v
        elif k in ("target", "destination", "dst"):
            m["Target"] = v
        elif k in ("readonly", "ro"):
            m["ReadOnly"] = (not eq) or v.lower() in ("1", "true")
        elif k == "bind-propagation":
            m.setdefault("BindOptions", {})["Propagation"] = v
        elif k == "volume-nocopy":
            m.setdefault("VolumeOptions", {})["NoCopy"] = (not eq) or v.lower() in ("1", "true")
        elif k == "tmpfs-size":
            m.setdefault("TmpfsOptions", {})["SizeBytes"] = parse_size(v)
        elif k == "tmpfs-mode":
            m.setdefault("TmpfsOptions", {})["Mode"] = int(v, 8)
        elif k.startswith("volume-label"):
            lk, _, lv = v.partition("=")
            m.setdefault("VolumeOptions", {}).setdefault("Labels", {})[lk] = lv
        else:
            raise CliError(f"invalid argument \"{spec}\" for \"--mount\" flag: unexpected key '{k}' in '{field}'")
    if "Target" not in m:
        raise CliError(f"invalid argument \"{spec}\" for \"--mount\" flag: target is required")
    return m


def parse_restart(raw: str) -> dict[str, Any]:
    if not raw:
        return {"Name": "no"}
    name, _, count = raw.partition(":")
    if name not in ("no", "always", "on-failure", "unless-stopped"):
        raise CliError(f"invalid restart policy format: {raw}")
    pol: dict[str, Any] = {"Name": name}
    if count:
        pol["MaximumRetryCount"] = int(count)
    return pol


def normalize_caps(caps: list[str]) -> list[str] | None:
    """opts.NormalizeCapabilities: upper case, "CAP_" prefixed (except ALL), duplicates dropped."""
    out: list[str] = []
    for c in caps:
        c = c.strip().upper()
        if c != "ALL" and not c.startswith("CAP_"):
            c = "CAP_" + c
        if c not in out:
            out.append(c)
    return out or None


def parse_ulimits(values: list[str]) -> list[dict[str, Any]]:
    out = []
    for v in values:
        name, _, rng = v.partition("=")
        soft, _, hard = rng.partition(":")
        out.append({"Name": name, "Soft": int(soft), "Hard": int(hard or soft)})
    return out


def parse_devices(values: list[str]) -> list[dict[str, str]]:
    out = []
    for v in values:
        parts = v.split(":")
        host = parts[0]
        cont = parts[1] if len(parts) > 1 and parts[1].startswith("/") else host
        perms = parts[-1] if len(parts) > 1 and not parts[-1].startswith("/") else "rwm"
        out.append({"PathOnHost": host, "PathInContainer": cont, "CgroupPermissions": perms})
    return out


# ---------------------------------------------------------------------------------------------
# The create body
# ---------------------------------------------------------------------------------------------


def build_create(o: dict[str, Any], image: str, cmd: list[str], console: tuple[int, int] | None) -> dict[str, Any]:
    """Config + HostConfig + NetworkingConfig, as docker's container opts produce them."""
    detach = o.get("detach", False)
    attach = [a.lower() for a in o["attach"]]
    if detach and attach:
        raise CliError("Conflicting options: -a and -d")
    if attach:
        a_in, a_out, a_err = "stdin" in attach, "stdout" in attach, "stderr" in attach
    elif detach:
        a_in = a_out = a_err = False
    else:
        a_in, a_out, a_err = o["interactive"], True, True
    exposed, bindings = parse_publish(o["publish"])
    for e in o["expose"]:
        p, _, proto = e.partition("/")
        for port in _port_range(p):
            exposed.setdefault(f"{port}/{proto or 'tcp'}", {})
    binds: list[str] = []
    volumes: dict[str, dict[str, Any]] = {}
    for v in o["volume"]:
        if ":" in v:  # src:dst[:mode] binds a path or a named volume; a lone path is an anonymous volume
            binds.append(v)
        else:
            volumes[v] = {}
    entrypoint = None
    if "entrypoint" in o["_given"]:
        entrypoint = [o["entrypoint"]] if o["entrypoint"] else [""]
    health: dict[str, Any] | None = None
    if o["health_cmd"] or o["no_healthcheck"]:
        if o["no_healthcheck"]:
            health = {"Test": ["NONE"]}
        else:
            health = {"Test": ["CMD-SHELL", o["health_cmd"]]}
            for k, f in (("Interval", "health_interval"), ("Timeout", "health_timeout"),
                         ("StartPeriod", "health_start_period"), ("StartInterval", "health_start_interval")):
                if o[f]:
                    health[k] = parse_go_duration(o[f])
            if o["health_retries"]:
                health["Retries"] = o["health_retries"]
    network = o["network"] or "default"
    config: dict[str, Any] = {
        "Hostname": o["hostname"], "Domainname": o["domainname"], "User": o["user"],
        "AttachStdin": a_in, "AttachStdout": a_out, "AttachStderr": a_err,
    }
    if exposed:
        config["ExposedPorts"] = exposed
    config.update({
        "Tty": o["tty"], "OpenStdin": o["interactive"], "StdinOnce": bool(o["interactive"] and a_in and not detach),
        "Env": env_list(o["env"], o["env_file"]) or None, "Cmd": cmd or None,
    })
    if health:
        config["Healthcheck"] = health
    config.update({
        "Image": image, "Volumes": volumes, "WorkingDir": o["workdir"], "Entrypoint": entrypoint,
        "OnBuild": None, "Labels": label_map(o["label"], o["label_file"]),
    })
    if o["stop_signal"]:
        config["StopSignal"] = o["stop_signal"]
    if "stop_timeout" in o["_given"]:
        config["StopTimeout"] = o["stop_timeout"]
    tmpfs = {}
    for t in o["tmpfs"]:
        path, _, opts = t.partition(":")
        tmpfs[path] = opts
    log_cfg = {}
    for lo in o["log_opt"]:
        k, _, v = lo.partition("=")
        log_cfg[k] = v
    try:
        memory = parse_size(o["memory"]) if o["memory"] else 0
        swap = -1 if o["memory_swap"] == "-1" else (parse_size(o["memory_swap"]) if o["memory_swap"] else 0)
        reservation = parse_size(o["memory_reservation"]) if o["memory_reservation"] else 0
        shm = parse_size(o["shm_size"]) if o["shm_size"] else 0
    except ValueError as e:
        raise CliError(f"invalid argument: {e}") from None
    nano = 0
    if o["cpus"]:
        try:
            nano = int(round(float(o["cpus"]) * 1e9))
        except ValueError:
            raise CliError(f"invalid argument \"{o['cpus']}\" for \"--cpus\" flag: failed to parse "
                           f"{o['cpus']} as a rational number") from None
    host: dict[str, Any] = {
        "Binds": binds or None, "ContainerIDFile": o["cidfile"],
        "LogConfig": {"Type": o["log_driver"], "Config": log_cfg},
        "NetworkMode": network, "PortBindings": bindings, "RestartPolicy": parse_restart(o["restart"]),
        "AutoRemove": o["rm"], "VolumeDriver": "", "VolumesFrom": o["volumes_from"] or None,
        "ConsoleSize": list(console) if console else [0, 0],
        "CapAdd": normalize_caps(o["cap_add"]), "CapDrop": normalize_caps(o["cap_drop"]), "CgroupnsMode": o["cgroupns"],
        "Dns": o["dns"], "DnsOptions": o["dns_option"], "DnsSearch": o["dns_search"],
        "ExtraHosts": o["add_host"] or None, "GroupAdd": o["group_add"] or None, "IpcMode": o["ipc"],
        "Cgroup": "", "Links": None, "OomScoreAdj": 0, "PidMode": o["pid"], "Privileged": o["privileged"],
        "PublishAllPorts": o["publish_all"], "ReadonlyRootfs": o["read_only"],
        "SecurityOpt": o["security_opt"] or None, "Tmpfs": tmpfs or None, "UTSMode": o["uts"],
        "UsernsMode": o["userns"], "ShmSize": shm, "Runtime": o["runtime"] or None,
        "Isolation": "", "CpuShares": o["cpu_shares"], "Memory": memory, "NanoCpus": nano,
        "CgroupParent": o["cgroup_parent"], "BlkioWeight": 0, "CpuPeriod": o["cpu_period"],
        "CpuQuota": o["cpu_quota"], "CpusetCpus": o["cpuset_cpus"], "CpusetMems": o["cpuset_mems"],
        "Devices": parse_devices(o["device"]), "MemoryReservation": reservation, "MemorySwap": swap,
        "MemorySwappiness": None, "OomKillDisable": o["oom_kill_disable"],
        "PidsLimit": o["pids_limit"] if "pids_limit" in o["_given"] else None,
        "Ulimits": parse_ulimits(o["ulimit"]), "Mounts": [parse_mount(m) for m in o["mount"]] or None,
        "Init": True if o["init"] else None,
    }
    if o["sysctl"]:
        host["Sysctls"] = dict(s.split("=", 1) for s in o["sysctl"])
    endpoint: dict[str, Any] = {}
    if o["network_alias"]:
        endpoint["Aliases"] = o["network_alias"]
    if o["ip"] or o["ip6"]:
        endpoint["IPAMConfig"] = {k: v for k, v in (("IPv4Address", o["ip"]), ("IPv6Address", o["ip6"])) if v}
    nets = {} if network.startswith("container:") else {network: endpoint}
    return {**config, "HostConfig": host, "NetworkingConfig": {"EndpointsConfig": nets}}


def _familiar_ref(image: str) -> str:
    name, tag, digest = split_reference(image)
    ref = familiar_name(name)
    if digest:
        return f"{ref}@{digest}"
    return f"{ref}:{tag or 'latest'}"


def create_container(cli: Cli, o: dict[str, Any], image: str, cmd: list[str], console: tuple[int, int] | None) -> str:
    """POST /containers/create, pulling on "No such image" (or first, with --pull=always); returns the ID."""
    from skiffbox.cli.skiffclient.commands.images import pull_image

    body = build_create(o, image, cmd, console)
    pull = o["pull"] or "missing"
    if pull not in ("always", "missing", "never"):
        raise CliError(f'invalid pull option: \'{pull}\': must be one of "always", "missing" or "never"')
    if pull == "always":
        pull_image(cli, image, cli.err, quiet=o["quiet"], platform=o["platform"] or None)
    try:
        res = cli.api.create(body, o["name"] or None, o["platform"] or None)
    except APIError as e:
        if not (e.not_found and pull == "missing" and "image" in e.message.lower()):
            raise
        cli.err.write(f"Unable to find image '{_familiar_ref(image)}' locally\n")
        cli.err.flush()
        pull_image(cli, image, cli.err, quiet=o["quiet"], platform=o["platform"] or None)
        res = cli.api.create(body, o["name"] or None, o["platform"] or None)
    for w in res.get("Warnings") or []:
        cli.err.write(f"WARNING: {w}\n")
    cid = res["Id"]
    if o["cidfile"]:
        with open(o["cidfile"], "x") as f:
            f.write(cid)
    return cid


def _run_failed(e: Exception, path: str) -> CliError:
    """docker's toStatusError: 127 for a missing command, 126 for one that cannot be run, else 125."""
    from skiffbox.cli.skiff import describe_error

    msg = e.message if isinstance(e, CliError) else describe_error(e)
    if msg is None:
        raise e
    status = 125
    if any(s in msg for s in ("executable file not found", "no such file or directory",
                              "system cannot find the file specified")):
        status = 127
    elif "permission denied" in msg or "is a directory" in msg:
        status = 126
    return CliError(f"skiff: {msg}\n\nRun 'skiff {path} --help' for more information", status)


# ---------------------------------------------------------------------------------------------
# run / create / start -a
# ---------------------------------------------------------------------------------------------


def run_run(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    from skiffbox.cli.skiffclient import streams

    image, cmd = args[0], args[1:]
    try:
        keys = streams.parse_detach_keys(o["detach_keys"] or _config_detach_keys())
    except streams.DetachKeysError as e:
        raise CliError(f"skiff: {e}\n\nRun 'skiff run --help' for more information", 125) from None
    tty = o["tty"]
    if tty and o["interactive"] and not streams.stdin_is_tty():
        raise CliError("the input device is not a TTY", 1)
    console = streams.terminal_size(1) if tty else None
    try:
        cid = create_container(cli, o, image, cmd, console)
    except Exception as e:
        raise _run_failed(e, "run") from None
    a = [x.lower() for x in o["attach"]]
    if o["detach"]:
        a_in = a_out = a_err = False
    elif a:
        a_in, a_out, a_err = "stdin" in a, "stdout" in a, "stderr" in a
    else:
        a_in, a_out, a_err = o["interactive"], True, True
    return start_and_stream(cli, cid, tty=tty, a_in=a_in, a_out=a_out, a_err=a_err, auto_remove=o["rm"],
                            detach_keys=keys, keys_spec=o["detach_keys"] or None, sig_proxy=o["sig_proxy"],
                            print_id=o["detach"], path="run")


def start_and_stream(cli: Cli, cid: str, *, tty: bool, a_in: bool, a_out: bool, a_err: bool, auto_remove: bool,
                     detach_keys: bytes, keys_spec: str | None, sig_proxy: bool, print_id: bool, path: str) -> int:
    from skiffbox.cli.skiffclient import streams

    api = cli.api
    conn = None
    attached = a_in or a_out or a_err
    try:
        if attached:
            conn = api.attach(cid, stdin=a_in, stdout=a_out, stderr=a_err, detach_keys=keys_spec)
        wait_resp = api.wait(cid, "removed" if auto_remove else "next-exit")
    except (APIError, OSError) as e:
        if conn is not None:
            conn.close()
        raise _run_failed(e, path) from None
    try:
        api.start(cid)
    except (APIError, OSError) as e:
        if conn is not None:
            conn.close()
        if auto_remove:  # like docker: let the engine remove it before reporting (bounded, unlike docker)
            _await(wait_resp, 10.0)
        raise _run_failed(e, path) from None
    if print_id and not attached:
        cli.out.write(cid + "\n")
        cli.out.flush()
        wait_resp.close()
        return 0
    resizer = None
    proxy = None
    if tty and streams.terminal_size(1):
        resizer = streams.ResizeMonitor(lambda h, w: api.resize(cid, h, w)).start()
    if sig_proxy and not tty:
        proxy = streams.SignalProxy(lambda sig: api.kill(cid, sig)).start()
    outcome = "eof"
    try:
        if conn is not None:
            outcome = streams.stream(conn, tty=tty, stdin=a_in, detach_keys=detach_keys)
    finally:
        if resizer:
            resizer.stop()
    if outcome == "detached":
        wait_resp.close()
        if proxy:
            proxy.stop()
        return 0
    try:
        result = wait_resp.json() or {}
    except Exception as e:  # the engine went away: docker reports the error and exits 125
        from skiffbox.cli.skiff import describe_error

        msg = describe_error(e) or str(e)
        raise CliError(msg, 125) from None
    finally:
        if proxy:
            proxy.stop()
    err = (result.get("Error") or {}).get("Message") if isinstance(result.get("Error"), dict) else None
    if err:
        raise CliError(err, 125)
    status = int(result.get("StatusCode", 0))
    if status:
        raise StatusError("", status)
    return 0


def _await(resp, timeout: float) -> None:
    conn = getattr(resp, "_conn", None)
    try:
        if conn is not None:
            conn.sock.settimeout(timeout)
        resp.read()
    except Exception:
        resp.close()


def _config_detach_keys() -> str:
    from skiffbox.cli.skiffclient.config import load_config_file

    return load_config_file().get("detachKeys") or streams_default()


def streams_default() -> str:
    from skiffbox.cli.skiffclient.streams import DEFAULT_DETACH_KEYS

    return DEFAULT_DETACH_KEYS


def run_create(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
    from skiffbox.cli.skiffclient import streams

    o["detach"] = False
    console = streams.terminal_size(1) if o["tty"] else None
    try:
        cid = create_container(cli, o, args[0], args[1:], console)
    except (APIError, CliError, OSError) as e:
        raise _run_failed(e, "create") from None
    cli.out.write(cid + "\n")
    return 0


def start_attached(cli: Cli, name: str, o: dict[str, Any]) -> int:
    """`start -a [-i]`: inspect for the TTY setting, then attach → wait → start like run."""
    from skiffbox.cli.skiffclient import streams

    c = cli.api.container_inspect(name)
    cfg = c.get("Config") or {}
    tty = bool(cfg.get("Tty"))
    a_in = bool(o["interactive"] and cfg.get("OpenStdin"))
    keys_spec = o["detach_keys"] or None
    keys = streams.parse_detach_keys(keys_spec or _config_detach_keys())
    auto_remove = bool((c.get("HostConfig") or {}).get("AutoRemove"))
    try:
        return start_and_stream(cli, c["Id"], tty=tty, a_in=a_in, a_out=True, a_err=True, auto_remove=auto_remove,
                                detach_keys=keys, keys_spec=keys_spec, sig_proxy=True, print_id=False, path="start")
    except CliError as e:
        if e.status == 125 and e.message.startswith("skiff: "):
            raise CliError(e.message.split("\n", 1)[0][len("skiff: "):], 1) from None
        raise


# ---------------------------------------------------------------------------------------------
# Flags
# ---------------------------------------------------------------------------------------------


def _check_stream(v: str) -> None:
    if v.lower() not in ("stdin", "stdout", "stderr"):
        raise ValueError("valid streams are STDIN, STDOUT and STDERR")


def _container_flags() -> list[Flag]:
    S, L, I = "string", "list", "int"
    return [
        Flag("add-host", kind=L, help="Add a custom host-to-IP mapping (host:ip)"),
        Flag("attach", "a", kind=L, help="Attach to STDIN, STDOUT or STDERR", check=_check_stream),
        Flag("cap-add", kind=L, help="Add Linux capabilities"), Flag("cap-drop", kind=L, help="Drop Linux capabilities"),
        Flag("cgroup-parent", kind=S, help="Optional parent cgroup for the container"),
        Flag("cgroupns", kind=S, help="Cgroup namespace to use (host|private)"),
        Flag("cidfile", kind=S, help="Write the container ID to the file"),
        Flag("cpu-period", kind=I, help="Limit CPU CFS (Completely Fair Scheduler) period"),
        Flag("cpu-quota", kind=I, help="Limit CPU CFS (Completely Fair Scheduler) quota"),
        Flag("cpu-shares", "c", kind=I, help="CPU shares (relative weight)"),
        Flag("cpus", kind=S, help="Number of CPUs"),
        Flag("cpuset-cpus", kind=S, help="CPUs in which to allow execution (0-3, 0,1)"),
        Flag("cpuset-mems", kind=S, help="MEMs in which to allow execution (0-3, 0,1)"),
        Flag("device", kind=L, help="Add a host device to the container"),
        Flag("dns", kind=L, help="Set custom DNS servers"), Flag("dns-option", kind=L, help="Set DNS options"),
        Flag("dns-search", kind=L, help="Set custom DNS search domains"),
        Flag("domainname", kind=S, help="Container NIS domain name"),
        Flag("entrypoint", kind=S, help="Overwrite the default ENTRYPOINT of the image"),
        Flag("env", "e", kind=L, help="Set environment variables"),
        Flag("env-file", kind=L, help="Read in a file of environment variables"),
        Flag("expose", kind=L, help="Expose a port or a range of ports"),
        Flag("group-add", kind=L, help="Add additional groups to join"),
        Flag("health-cmd", kind=S, help="Command to run to check health"),
        Flag("health-interval", kind=S, help="Time between running the check (ms|s|m|h)"),
        Flag("health-retries", kind=I, help="Consecutive failures needed to report unhealthy"),
        Flag("health-start-interval", kind=S, help="Time between running the check during the start period"),
        Flag("health-start-period", kind=S, help="Start period for the container to initialize"),
        Flag("health-timeout", kind=S, help="Maximum time to allow one check to run (ms|s|m|h)"),
        Flag("hostname", "h", kind=S, help="Container host name"),
        Flag("init", help="Run an init inside the container that forwards signals and reaps processes"),
        Flag("interactive", "i", help="Keep STDIN open even if not attached"),
        Flag("ip", kind=S, help="IPv4 address (e.g., 172.30.100.104)"), Flag("ip6", kind=S, help="IPv6 address"),
        Flag("ipc", kind=S, help="IPC mode to use"),
        Flag("label", "l", kind=L, help="Set meta data on a container"),
        Flag("label-file", kind=L, help="Read in a line delimited file of labels"),
        Flag("log-driver", kind=S, help="Logging driver for the container"),
        Flag("log-opt", kind=L, help="Log driver options"),
        Flag("memory", "m", kind=S, help="Memory limit"),
        Flag("memory-reservation", kind=S, help="Memory soft limit"),
        Flag("memory-swap", kind=S, help="Swap limit equal to memory plus swap: '-1' to enable unlimited swap"),
        Flag("mount", kind=L, help="Attach a filesystem mount to the container"),
        Flag("name", kind=S, help="Assign a name to the container"),
        Flag("network", kind=S, help="Connect a container to a network"),
        Flag("net", kind=S, hidden=True),
        Flag("network-alias", kind=L, help="Add network-scoped alias for the container"),
        Flag("no-healthcheck", help="Disable any container-specified HEALTHCHECK"),
        Flag("oom-kill-disable", help="Disable OOM Killer"),
        Flag("pid", kind=S, help="PID namespace to use"),
        Flag("pids-limit", kind=I, help="Tune container pids limit (set -1 for unlimited)"),
        Flag("platform", kind=S, help="Set platform if server is multi-platform capable"),
        Flag("privileged", help="Give extended privileges to this container"),
        Flag("publish", "p", kind=L, help="Publish a container's port(s) to the host"),
        Flag("publish-all", "P", help="Publish all exposed ports to random ports"),
        Flag("pull", kind=S, default="missing", help='Pull image before creating ("always", "missing", "never")'),
        Flag("quiet", "q", help="Suppress the pull output"),
        Flag("read-only", help="Mount the container's root filesystem as read only"),
        Flag("restart", kind=S, default="no", help="Restart policy to apply when a container exits"),
        Flag("rm", help="Automatically remove the container and its associated anonymous volumes when it exits"),
        Flag("runtime", kind=S, help="Runtime to use for this container"),
        Flag("security-opt", kind=L, help="Security Options"),
        Flag("shm-size", kind=S, help="Size of /dev/shm"),
        Flag("stop-signal", kind=S, help="Signal to stop the container"),
        Flag("stop-timeout", kind=I, help="Timeout (in seconds) to stop a container"),
        Flag("sysctl", kind=L, help="Sysctl options"),
        Flag("tmpfs", kind=L, help="Mount a tmpfs directory"),
        Flag("tty", "t", help="Allocate a pseudo-TTY"),
        Flag("ulimit", kind=L, help="Ulimit options"),
        Flag("user", "u", kind=S, help="Username or UID (format: <name|uid>[:<group|gid>])"),
        Flag("userns", kind=S, help="User namespace to use"), Flag("uts", kind=S, help="UTS namespace to use"),
        Flag("volume", "v", kind=L, help="Bind mount a volume"),
        Flag("volumes-from", kind=L, help="Mount volumes from the specified container(s)"),
        Flag("workdir", "w", kind=S, help="Working directory inside the container"),
    ]


def _with_net_alias(fn):
    def run(cli: Cli, o: dict[str, Any], args: list[str]) -> int:
        if o.get("net") and not o.get("network"):
            o["network"] = o["net"]
        if o.get("restart") == "no" and "restart" not in o["_given"]:
            o["restart"] = ""
        return fn(cli, o, args)
    return run


_RUN_ONLY = [
    Flag("detach", "d", help="Run container in background and print container ID"),
    Flag("detach-keys", kind="string", help="Override the key sequence for detaching a container"),
    Flag("sig-proxy", default=True, help="Proxy received signals to the process"),
]

COMMANDS = {
    "run": Command("run", "[OPTIONS] IMAGE [COMMAND] [ARG...]", "Create and run a new container from an image",
                   _with_net_alias(run_run), sorted(_container_flags() + _RUN_ONLY, key=lambda f: f.name),
                   min_args=1, interspersed=False, aliases=("container run", "run")),
    "create": Command("create", "[OPTIONS] IMAGE [COMMAND] [ARG...]", "Create a new container",
                      _with_net_alias(run_create), _container_flags(), min_args=1, interspersed=False,
                      aliases=("container create", "create")),
}
