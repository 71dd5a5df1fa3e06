"""Provisioning over SSH: install and (re)start the skiffd engine on a Debian-family guest.

The guest-side logic lives in one place, the shell scripts below (INSTALL_SH, START_SH, SYSTEMD_UNIT),
so every driver (generic, qemu, virtualbox) provisions the same way. The host uploads:

    wheels/   skiff_guest-<version>-py3-none-any.whl (the `guest` package, built here from the installed
              sources, so it works from a checkout and from an installed skiff) + h11's wheel: the guest
              needs no internet for Python packages (`pip install --no-index --find-links`)
    ca.pem server.pem server-key.pem daemon.json start.sh skiffd.service install.sh

and runs install.sh as root, which: checks python3 >= 3.11; installs the missing Debian packages the
engine needs (only if `dpkg -s` says they are missing; a clear error if apt cannot reach a mirror);
creates the venv /opt/skiff/venv; installs the wheel (skipped if that exact version is there, forced on
upgrade); installs TLS material and /etc/skiff/daemon.json; starts skiffd with systemd
(`skiffd.service`) when the guest runs systemd, else detached via /etc/skiff/start.sh with a pidfile.
Re-running it is harmless (idempotent).

API (used by machine/host.py; drivers need not call it):
    provision(client, *, ca_cert, server_cert, server_key, daemon_config, cache_dir, progress, upgrade=False)
    push_tls(client, ca_cert, server_cert, server_key)   # new server cert, then engine restart
    restart_engine(client); stop_engine(client)
    engine_config(engine_options, driver_name, engine_port) -> dict    # daemon.json content
    engine_logs(client, lines=40) -> str
    guest_wheels(cache_dir) -> list[Path]; guest_version() -> str
"""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.metadata as md
import io
import json
import os
import secrets
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterable

from skiffbox.machine.ssh import CommandError, SSHClient, SSHError

Progress = Callable[[str], None]

GUEST_DIST = "skiff-guest"
GUEST_ETC = "/etc/skiff"
GUEST_VENV = "/opt/skiff/venv"
DATA_ROOT = "/var/lib/skiff"
EXEC_ROOT = "/run/skiff"
GUEST_LOG = "/var/log/skiffd.log"
# What the engine needs at run time (see the skiffd contract); python3-venv for the venv itself.
GUEST_PACKAGES = ["python3", "python3-venv", "runc", "crun", "conmon", "netavark", "aardvark-dns", "dnsmasq-base",
                  "iptables", "catatonit", "ca-certificates"]


class ProvisionError(Exception):
    """Provisioning failed; the message says what to do next."""


# ---- guest-side scripts -------------------------------------------------------------------------
INSTALL_SH = r"""#!/bin/sh
# skiff guest installer: run as root by `machine create/provision/upgrade`. Idempotent.
set -eu
STAGE="$1"; MODE="$2"; WANT_VERSION="$3"
step() { echo "==> $*"; }
fail() { echo "ERROR: $*" >&2; exit 3; }

step "Checking the guest OS"
[ -r /etc/os-release ] && . /etc/os-release && echo "${PRETTY_NAME:-unknown}"
PKGS="@PACKAGES@"
missing=""
if command -v dpkg >/dev/null 2>&1; then
    for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
    if [ -n "$missing" ]; then
        command -v apt-get >/dev/null 2>&1 || fail "missing packages:$missing (and no apt-get here)"
        step "Installing packages:$missing"
        export DEBIAN_FRONTEND=noninteractive
        # apt-get update exits 0 even when no mirror answers; judge by the install, explain by the log
        apt-get update -qq >/tmp/skiff-apt.log 2>&1 || true
        if ! apt-get install -y -qq --no-install-recommends $missing >>/tmp/skiff-apt.log 2>&1; then
            tail -n 8 /tmp/skiff-apt.log >&2
            if grep -qE "Failed to fetch|Could not resolve|Temporary failure|unreachable|Unable to connect|Connection failed" /tmp/skiff-apt.log; then
                fail "cannot install$missing: this host cannot reach a Debian mirror. Fix its network or proxy, or install these packages yourself, then run 'machine provision'"
            fi
            fail "apt-get install failed for:$missing (log: /tmp/skiff-apt.log on the machine)"
        fi
    fi
else
    for b in python3 conmon; do command -v $b >/dev/null 2>&1 || missing="$missing $b"; done
    command -v runc >/dev/null 2>&1 || command -v crun >/dev/null 2>&1 || missing="$missing runc|crun"
    [ -z "$missing" ] || fail "not a Debian-family host and these are missing:$missing; install them and run 'machine provision'"
fi
python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
    || fail "skiffd needs python3 >= 3.11; this host has $(python3 -V 2>&1)"

step "Installing skiffd $WANT_VERSION"
VENV=@VENV@
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    rm -rf "$VENV"; python3 -m venv "$VENV"
fi
HAVE=$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("@DIST@"))' 2>/dev/null || true)
if [ "$HAVE" != "$WANT_VERSION" ] || [ "$MODE" = upgrade ]; then
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-index --find-links "$STAGE/wheels" \
        --force-reinstall "@DIST@==$WANT_VERSION"
    echo "installed @DIST@ $WANT_VERSION (was: ${HAVE:-none})"
else
    echo "@DIST@ $WANT_VERSION already installed"
fi

step "Writing TLS material and engine configuration"
install -d -m 0755 @ETC@ @DATA_ROOT@
install -m 0644 "$STAGE/ca.pem" @ETC@/ca.pem
install -m 0644 "$STAGE/server.pem" @ETC@/server.pem
install -m 0600 "$STAGE/server-key.pem" @ETC@/server-key.pem
install -m 0644 "$STAGE/daemon.json" @ETC@/daemon.json
install -m 0755 "$STAGE/start.sh" @ETC@/start.sh

step "Starting skiffd"
if [ -d /run/systemd/system ]; then
    install -m 0644 "$STAGE/skiffd.service" /etc/systemd/system/skiffd.service
    systemctl daemon-reload
    systemctl enable -q skiffd.service
    systemctl restart skiffd.service
else
    echo "no systemd here: starting skiffd detached (@ETC@/start.sh)"
    @ETC@/start.sh restart
fi
"""

START_SH = r"""#!/bin/sh
# Start/stop skiffd where systemd does not run (containers, chroots, WSL): start|stop|restart|status
PIDFILE=@EXEC_ROOT@/skiffd.pid
LOG=@LOG@
running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }
stop() {
    if running; then
        pid=$(cat "$PIDFILE"); kill "$pid" 2>/dev/null || true; i=0
        while kill -0 "$pid" 2>/dev/null && [ $i -lt 150 ]; do sleep 0.1; i=$((i+1)); done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$PIDFILE"
}
start() {
    running && return 0
    mkdir -p @EXEC_ROOT@ "$(dirname "$LOG")"
    setsid @VENV@/bin/skiffd --config-file @ETC@/daemon.json </dev/null >>"$LOG" 2>&1 &
    echo $! > "$PIDFILE"
}
case "${1:-start}" in
    start) start ;;
    stop) stop ;;
    restart) stop; start ;;
    status) running ;;
    *) echo "usage: $0 start|stop|restart|status" >&2; exit 2 ;;
esac
"""

SYSTEMD_UNIT = """[Unit]
Description=Skiff container engine (Docker Engine API)
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart=@VENV@/bin/skiffd --config-file @ETC@/daemon.json
Restart=on-failure
RestartSec=2
# containers run under conmon and must outlive a daemon restart
KillMode=process
Delegate=yes
LimitNOFILE=1048576
TasksMax=infinity

[Install]
WantedBy=multi-user.target
"""

SERVICE_CTL = (
    "if [ -d /run/systemd/system ]; then systemctl {verb} skiffd.service; "
    "else " + GUEST_ETC + "/start.sh {verb}; fi"
)


# `--engine-opt emulation=true`: containers of other architectures (linux/amd64 on an arm64 guest
# and the reverse) run through Debian's qemu-user-static, which registers binfmt_misc handlers
# with the F flag, so they work inside containers' mount namespaces too.
EMULATION_OPT = "emulation"
EMULATION_PACKAGES = ["qemu-user-static", "binfmt-support"]


def _fill(text: str, packages: list[str] | None = None) -> str:
    return (
        text.replace("@PACKAGES@", " ".join(packages or GUEST_PACKAGES)).replace("@VENV@", GUEST_VENV)
        .replace("@DIST@", GUEST_DIST).replace("@ETC@", GUEST_ETC).replace("@DATA_ROOT@", DATA_ROOT)
        .replace("@EXEC_ROOT@", EXEC_ROOT).replace("@LOG@", GUEST_LOG)
    )


# ---- wheels ---------------------------------------------------------------------------------------
def _guest_files() -> list[tuple[str, bytes]]:
    from skiffbox import guest
    root = Path(guest.__file__).resolve().parent
    out = []
    for p in sorted(root.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo"):
            out.append(("skiffbox/guest/" + p.relative_to(root).as_posix(), p.read_bytes()))
    return out


def guest_version() -> str:
    """The skiff version plus a hash of the guest sources: a changed engine is a new version."""
    try:
        base = md.version("skiffbox")
    except md.PackageNotFoundError:
        from skiffbox import guest
        base = getattr(guest, "__version__", "0")
    h = hashlib.sha256()
    for name, data in _guest_files():
        h.update(name.encode() + b"\0" + data + b"\0")
    return f"{base}+g{h.hexdigest()[:12]}"


def _record_line(name: str, data: bytes) -> list[str]:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return [name, f"sha256={digest}", str(len(data))]


def _write_wheel(path: Path, dist: str, version: str, files: Iterable[tuple[str, bytes]],
                 metadata: str, entry_points: str = "") -> None:
    norm = dist.replace("-", "_")
    info = f"{norm}-{version}.dist-info"
    entries = list(files)
    entries.append((f"{info}/METADATA", metadata.encode()))
    entries.append((f"{info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: skiff-machine\nRoot-Is-Purelib: true\nTag: py3-none-any\n"))
    if entry_points:
        entries.append((f"{info}/entry_points.txt", entry_points.encode()))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    for name, data in entries:
        w.writerow(_record_line(name, data))
    w.writerow([f"{info}/RECORD", "", ""])
    entries.append((f"{info}/RECORD", buf.getvalue().encode()))
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries:
            zi = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            zi.external_attr = 0o644 << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(zi, data)
    os.replace(tmp, path)


def _installed_dist_wheel(dist: str, out_dir: Path) -> Path:
    """Re-pack an installed pure-Python distribution (e.g. h11) as a wheel: no network needed."""
    d = md.distribution(dist)
    version = d.version
    path = out_dir / f"{dist.replace('-', '_')}-{version}-py3-none-any.whl"
    if path.exists():
        return path
    files = []
    for f in d.files or []:
        s = str(f)
        if "__pycache__" in s or ".dist-info/" in s or s.startswith(".."):
            continue
        files.append((s, Path(f.locate()).read_bytes()))
    _write_wheel(path, dist, version, files, d.read_text("METADATA") or f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    return path


def guest_wheels(cache_dir: Path) -> tuple[str, list[Path]]:
    """Build (or reuse from the cache) the wheels the guest installs. Returns (guest version, paths)."""
    out = Path(cache_dir) / "wheels"
    out.mkdir(parents=True, exist_ok=True)
    version = guest_version()
    gw = out / f"{GUEST_DIST.replace('-', '_')}-{version}-py3-none-any.whl"
    if not gw.exists():
        h11v = md.version("h11")
        meta = (f"Metadata-Version: 2.1\nName: {GUEST_DIST}\nVersion: {version}\n"
                f"Summary: skiffd, the Skiff container engine (guest side)\nRequires-Python: >=3.11\n"
                f"Requires-Dist: h11>={h11v.split('.')[0]}.{h11v.split('.')[1]}\n")
        _write_wheel(gw, GUEST_DIST, version, _guest_files(), meta,
                     "[console_scripts]\nskiffd = skiffbox.guest.daemon:main\n")
    return version, [gw, _installed_dist_wheel("h11", out)]


# ---- engine configuration ------------------------------------------------------------------------
def engine_config(engine_options: dict[str, Any], driver_name: str, engine_port: int = 2376) -> dict[str, Any]:
    """daemon.json from HostOptions.EngineOptions (docker-machine's --engine-* flags)."""
    eo = engine_options or {}
    cfg: dict[str, Any] = {
        "hosts": [f"unix://{EXEC_ROOT}/skiff.sock", f"tcp://0.0.0.0:{engine_port}"],
        "tlsverify": True,
        "tlscacert": f"{GUEST_ETC}/ca.pem",
        "tlscert": f"{GUEST_ETC}/server.pem",
        "tlskey": f"{GUEST_ETC}/server-key.pem",
        "data-root": eo.get("GraphDir") or DATA_ROOT,
        "exec-root": EXEC_ROOT,
        "labels": [f"provider={driver_name}"] + list(eo.get("Labels") or []),
        "insecure-registries": list(eo.get("InsecureRegistry") or []),
    }
    if eo.get("RegistryMirror"):
        cfg["registry-mirrors"] = list(eo["RegistryMirror"])
    if eo.get("LogLevel"):
        cfg["log-level"] = eo["LogLevel"]
    proxies = {}
    for item in eo.get("Env") or []:
        k, _, v = item.partition("=")
        key = {"http_proxy": "http-proxy", "https_proxy": "https-proxy", "no_proxy": "no-proxy"}.get(k.lower())
        if key:
            proxies[key] = v
    if proxies:
        cfg["proxies"] = proxies
    for flag in eo.get("ArbitraryFlags") or []:  # --engine-opt key=value → daemon.json key
        k, _, v = flag.partition("=")
        k = k.lstrip("-")
        if not k:
            continue
        try:
            cfg[k] = json.loads(v)
        except ValueError:
            cfg[k] = v
    return cfg


# ---- steps run over SSH ----------------------------------------------------------------------------
def _stage(client: SSHClient) -> str:
    home = client.run("echo $HOME", check=True).stdout.strip() or "/tmp"
    stage = f"{home}/.skiff-provision-{secrets.token_hex(4)}"
    client.mkdir_p(stage + "/wheels")
    return stage


def provision(client: SSHClient, *, ca_cert: Path, server_cert: Path, server_key: Path,
              daemon_config: dict[str, Any], cache_dir: Path, progress: Progress,
              upgrade: bool = False) -> str:
    """Install/refresh skiffd on the guest and (re)start it. Returns the installed guest version.

    Does not wait for the engine: host.py checks /_ping over mutual TLS from the host afterwards.
    """
    progress("Building the guest package...")
    version, wheels = guest_wheels(cache_dir)
    progress("Copying the engine and certificates to the machine...")
    stage = _stage(client)
    try:
        for w in wheels:
            client.put_file(w, f"{stage}/wheels/{w.name}", 0o644)
        client.put_file(ca_cert, f"{stage}/ca.pem", 0o644)
        client.put_file(server_cert, f"{stage}/server.pem", 0o644)
        client.put_file(server_key, f"{stage}/server-key.pem", 0o600)
        client.put_bytes(json.dumps(daemon_config, indent=2).encode() + b"\n", f"{stage}/daemon.json")
        client.put_bytes(_fill(START_SH).encode(), f"{stage}/start.sh", 0o755)
        client.put_bytes(_fill(SYSTEMD_UNIT).encode(), f"{stage}/skiffd.service")
        packages = GUEST_PACKAGES + (EMULATION_PACKAGES if daemon_config.get(EMULATION_OPT) is True else [])
        client.put_bytes(_fill(INSTALL_SH, packages).encode(), f"{stage}/install.sh", 0o755)
        lines: list[str] = []

        def on_line(line: str) -> None:
            lines.append(line)
            if line.startswith("==> "):
                progress(line[4:] + "...")

        mode = "upgrade" if upgrade else "provision"
        rc = client.stream(f"sh {stage}/install.sh {stage} {mode} '{version}'", on_line, sudo=True)
        if rc != 0:
            errs = [ln[7:] for ln in lines if ln.startswith("ERROR: ")]
            detail = errs[-1] if errs else "\n".join(lines[-15:])
            if "sudo:" in "\n".join(lines[-5:]):
                detail += f"\n(the SSH user {client.endpoint.user!r} needs passwordless sudo)"
            raise ProvisionError(f"Provisioning failed (exit {rc}): {detail}")
    finally:
        try:
            client.run(f"rm -rf {stage}", check=False)
        except SSHError:
            pass
    return version


def push_tls(client: SSHClient, ca_cert: Path, server_cert: Path, server_key: Path) -> None:
    """Replace the engine's TLS material (regenerate-certs, IP change) and restart it."""
    stage = _stage(client)
    try:
        client.put_file(ca_cert, f"{stage}/ca.pem", 0o644)
        client.put_file(server_cert, f"{stage}/server.pem", 0o644)
        client.put_file(server_key, f"{stage}/server-key.pem", 0o600)
        client.run(
            f"install -d -m 0755 {GUEST_ETC} && install -m 0644 {stage}/ca.pem {GUEST_ETC}/ca.pem && "
            f"install -m 0644 {stage}/server.pem {GUEST_ETC}/server.pem && "
            f"install -m 0600 {stage}/server-key.pem {GUEST_ETC}/server-key.pem",
            sudo=True,
        )
    finally:
        client.run(f"rm -rf {stage}", check=False)
    restart_engine(client)


def restart_engine(client: SSHClient) -> None:
    try:
        client.run(SERVICE_CTL.format(verb="restart"), sudo=True)
    except CommandError as e:
        raise ProvisionError(f"could not restart skiffd: {e}. Run `machine provision` to reinstall it.") from None


def stop_engine(client: SSHClient) -> None:
    client.run(SERVICE_CTL.format(verb="stop"), sudo=True, check=False)


def engine_logs(client: SSHClient, lines: int = 40) -> str:
    cmd = (f"if [ -d /run/systemd/system ]; then journalctl -u skiffd.service -n {lines} --no-pager; "
           f"else tail -n {lines} {GUEST_LOG}; fi")
    try:
        r = client.run(cmd, sudo=True, check=False, timeout=20)
    except SSHError as e:
        return f"(could not read the engine log: {e})"
    return (r.stdout + r.stderr).strip()
