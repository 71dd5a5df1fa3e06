"""A machine: its config, driver and lifecycle (libmachine's `Host` and `libmachine.Create` pipeline).

Everything a command does to a machine goes through here, under the machine's store lock, so two
commands on one machine are serialised. Drivers only make/run/remove VMs; TLS (machine/certs.py) and
the engine install (machine/provision.py) are driven from here, the same way for every driver.

API:
    h = create(store, name, driver_name, driver_flags, engine_options=None, tls_sans=(), progress=...)
        pre-create check → CA/client certs → machine folder + config.json → driver.create()
        (any failure so far: driver.remove() + folder deleted: nothing is left behind)
        → wait Running → SSH → server cert → provision → /_ping over mutual TLS
        (a failure here keeps the machine, marked in error with the cause; `machine provision` retries)
    h = Host.load(store, name)
    h.state() h.ip() h.url() h.start(progress) h.stop() h.kill() h.restart(progress) h.remove(force)
    h.provision(progress, upgrade=False)     h.regenerate_certs(progress, client_certs=False)
    h.ensure_server_cert(progress) -> bool   re-issue (+ push, restart engine) if the IP/CA changed
    h.certs_current() -> bool                stdlib-only check (used by the fast `env`/`ls` path)
    h.ssh_client(timeout) -> machine.ssh.SSHClient (waits for sshd)
    h.engine_get(path, timeout) -> (status, bytes)  over mutual TLS; h.wait_for_engine(timeout)
    h.config() -> dict (config.json, docker-machine shaped); h.save()
    describe(store, name, timeout, docker_host) -> dict   one `ls` row (Name, Active, DriverName, State,
                                                          URL, Swarm, DockerVersion, Error, ResponseTime)
    describe_all(store, names, timeout) -> list[dict]     in parallel, per-host timeout → State "Timeout"

Optional driver class attributes read here (not in the Driver ABC): `skip_provision = True` (no SSH,
e.g. `none`), `host_outlives_remove = True` (e.g. `generic`: `rm` stops skiffd on that host).
Module imports are stdlib + store + drivers.base only; certs/ssh/provision load on demand.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

if TYPE_CHECKING:  # loaded on demand at run time
    import ssl
    from contextlib import AbstractContextManager

    from skiffbox.machine.ssh import SSHClient

from skiffbox.machine.drivers.base import Driver, DriverError, NotSupported, SSHEndpoint, State, driver_class
from skiffbox.machine.store import MachineExists, Store, validate_name

Progress = Callable[[str], None]
CONFIG_VERSION = 3
SSH_WAIT = 180.0  # docker-machine: 60 × 3 s
ENGINE_WAIT = 60.0
# `start`: how long the engine may take to answer after boot before we look at it over SSH, as a
# share of the boot time (under TCG on a loaded host both stretch alike), within bounds
ENGINE_GRACE_FACTOR = 0.5
ENGINE_GRACE_MIN = 5.0
ENGINE_GRACE_MAX = 60.0
PING_INTERVAL = 0.2


_TLS_CACHE: dict[tuple[bytes, ...], Any] = {}
_TLS_LOCK = threading.Lock()


def stderr_progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def trace(event: str) -> None:
    """With MACHINE_DEBUG (`machine -D`): a timestamped phase line. CLOCK_MONOTONIC is system-wide,
    so bench/machine_start.py --split lines these up with what it observes from outside."""
    if os.environ.get("MACHINE_DEBUG"):
        print(f"[debug] t={time.monotonic():.3f} {event}", file=sys.stderr, flush=True)


class HostError(Exception):
    """A machine operation failed; the message says what to do next."""


def _default_engine_options() -> dict[str, Any]:
    return {"ArbitraryFlags": [], "Dns": None, "GraphDir": "", "Env": [], "Ipv6": False,
            "InsecureRegistry": [], "Labels": [], "LogLevel": "", "StorageDriver": "overlay2",
            "SelinuxEnabled": False, "TlsVerify": True, "RegistryMirror": [], "InstallURL": ""}


class Host:
    def __init__(self, store: Store, name: str, driver_name: str, driver: Driver,
                 host_options: dict[str, Any] | None = None, skiff: dict[str, Any] | None = None) -> None:
        self.store = store
        self.name = name
        self.driver_name = driver_name
        self.driver = driver
        self.host_options = host_options or {}
        self.skiff = skiff or {}

    # ---- persistence -------------------------------------------------------------------------
    @property
    def dir(self) -> Path:
        return self.store.machine_dir(self.name)

    @classmethod
    def load(cls, store: Store, name: str) -> "Host":
        cfg = store.load(validate_name(name))
        dname = cfg.get("DriverName", "")
        try:
            drv = driver_class(dname)(name, store.machine_dir(name))
        except (DriverError, ImportError) as e:
            raise HostError(f'machine "{name}" uses driver {dname!r}, which cannot be loaded: {e}') from None
        drv.load_config(cfg.get("Driver") or {})
        return cls(store, name, dname, drv, cfg.get("HostOptions") or {}, cfg.get("Skiff") or {})

    def _auth_options(self) -> dict[str, Any]:
        certs, d = self.store.certs_dir, self.dir
        prev = self.host_options.get("AuthOptions") or {}
        return {
            "CertDir": str(certs), "CaCertPath": str(certs / "ca.pem"),
            "CaPrivateKeyPath": str(certs / "ca-key.pem"), "CaCertRemotePath": "/etc/skiff/ca.pem",
            "ServerCertPath": str(d / "server.pem"), "ServerKeyPath": str(d / "server-key.pem"),
            "ClientKeyPath": str(certs / "key.pem"), "ServerCertRemotePath": "/etc/skiff/server.pem",
            "ServerKeyRemotePath": "/etc/skiff/server-key.pem", "ClientCertPath": str(certs / "cert.pem"),
            "ServerCertSANs": list(prev.get("ServerCertSANs") or []), "StorePath": str(d),
        }

    def config(self) -> dict[str, Any]:
        drv = {"MachineName": self.name, "StorePath": str(self.store.root),
               "SSHKeyPath": str(self.driver.ssh_key_path())}
        drv.update(self.driver.to_config())
        ho = dict(self.host_options)
        ho.setdefault("Driver", "")
        ho.setdefault("Memory", 0)
        ho.setdefault("Disk", 0)
        ho["EngineOptions"] = {**_default_engine_options(), **(ho.get("EngineOptions") or {})}
        ho.setdefault("SwarmOptions", {"IsSwarm": False, "Address": "", "Discovery": "", "Agent": False,
                                       "Master": False, "Host": "", "Image": "", "Strategy": "",
                                       "Heartbeat": 0, "Overcommit": 0, "ArbitraryFlags": [],
                                       "ArbitraryJoinFlags": [], "Env": None, "IsExperimental": False})
        ho["AuthOptions"] = self._auth_options()
        return {"ConfigVersion": CONFIG_VERSION, "Driver": drv, "DriverName": self.driver_name,
                "HostOptions": ho, "Name": self.name, "Skiff": self.skiff}

    def save(self) -> None:
        self.host_options = self.config()["HostOptions"]
        self.store.save(self.name, self.config())

    def lock(self) -> AbstractContextManager[None]:
        return self.store.lock(self.name)

    # ---- addressing -------------------------------------------------------------------------
    def state(self) -> State:
        return self.driver.state()

    def ip(self) -> str:
        return self.driver.ip()

    def url(self) -> str:
        return self.driver.url()

    def _require_running(self, what: str) -> None:
        st = self.state()
        if st != State.RUNNING:
            raise HostError(f'Cannot {what}: machine "{self.name}" is not running (state: {st.value or "unknown"}). '
                            f"Start it with `machine start {self.name}`.")

    # ---- TLS --------------------------------------------------------------------------------
    def wanted_sans(self) -> list[str]:
        names: list[str] = []
        for s in [self.driver.ip(), self.driver.engine_endpoint()[0], "127.0.0.1", "localhost", self.name,
                  *self.driver.extra_cert_sans(), *self._auth_options()["ServerCertSANs"]]:
            if s and s not in names:
                names.append(s)
        return names

    def _ca_hash(self) -> str:
        """Identifies the CA a server cert came from (detects a regenerated CA; not a security check).
        zlib, not hashlib: this runs on every `env`, and hashlib's import costs more than the rest."""
        import zlib

        try:
            return f"crc32:{zlib.crc32((self.store.certs_dir / 'ca.pem').read_bytes()):08x}"
        except FileNotFoundError:
            return ""

    def certs_current(self) -> bool:
        """Stdlib-only: does the server cert exist, name every wanted address, and come from today's CA?"""
        if not (self.dir / "server.pem").is_file() or not (self.dir / "ca.pem").is_file():
            return False
        issued = set(self.skiff.get("CertSANs") or [])
        return set(self.wanted_sans()) <= issued and self.skiff.get("CAHash") == self._ca_hash()

    def _issue_server_cert(self, progress: Progress) -> None:
        from skiffbox.machine import certs

        certs.ensure_ca_and_client(self.store.certs_dir)
        sans = self.wanted_sans()
        progress(f"Issuing the server certificate for {', '.join(sans)}...")
        cd = self.store.certs_dir
        certs.issue_server_cert(cd / "ca.pem", cd / "ca-key.pem", self.dir / "server.pem",
                                self.dir / "server-key.pem", sans, org=f"skiff.{self.name}")
        import shutil

        # DOCKER_CERT_PATH is the machine folder: it holds copies of the CA and client cert
        for f, mode in (("ca.pem", 0o644), ("cert.pem", 0o644), ("key.pem", 0o600)):
            shutil.copyfile(cd / f, self.dir / f)
            os.chmod(self.dir / f, mode)
        self.skiff["CertSANs"] = sans
        self.skiff["CAHash"] = self._ca_hash()
        self.save()

    def ensure_server_cert(self, progress: Progress = stderr_progress, client: SSHClient | None = None) -> bool:
        """Re-issue the server cert if the machine's address (or the CA) changed, push it to the
        engine and restart it: docker-machine made users run `regenerate-certs` by hand for this."""
        with self.lock():
            if self.certs_current():
                return False
            old = self.skiff.get("CertSANs")
            if old:
                progress(f"The machine's addresses changed ({', '.join(old)} → {', '.join(self.wanted_sans())}): "
                         f"re-issuing its TLS certificate")
            self._issue_server_cert(progress)
            if getattr(self.driver, "skip_provision", False) or not self.skiff.get("GuestVersion"):
                return True
            self._push_tls(progress, client)
            return True

    def _push_tls(self, progress: Progress, client: SSHClient | None = None) -> None:
        from skiffbox.machine import provision

        own = client is None
        client = client or self.ssh_client()
        try:
            progress("Copying certificates to the machine and restarting the engine...")
            provision.push_tls(client, self.dir / "ca.pem", self.dir / "server.pem", self.dir / "server-key.pem")
            self.wait_for_engine(client=client)
        finally:
            if own:
                client.close()

    def regenerate_certs(self, progress: Progress = stderr_progress, client_certs: bool = False) -> None:
        with self.lock():
            if client_certs:
                progress("Regenerating the CA and client certificates (every machine gets new certs)...")
                for f in ("ca.pem", "ca-key.pem", "cert.pem", "key.pem"):
                    (self.store.certs_dir / f).unlink(missing_ok=True)
            progress("Regenerating TLS certificates")
            self._issue_server_cert(progress)
            if not getattr(self.driver, "skip_provision", False):
                self._require_running("regenerate certificates")
                self._push_tls(progress)

    # ---- SSH and engine ---------------------------------------------------------------------
    def ssh_endpoint(self) -> SSHEndpoint:
        if getattr(self.driver, "skip_provision", False):
            raise HostError(f'machine "{self.name}" (driver {self.driver_name}) has no SSH access')
        return self.driver.ssh_endpoint()

    def ssh_client(self, timeout: float = 30.0, progress: Progress | None = None) -> SSHClient:
        from skiffbox.machine.ssh import SSHError, wait_for_ssh

        ep = self.ssh_endpoint()
        try:
            return wait_for_ssh(ep, timeout=timeout, progress=progress)
        except SSHError as e:
            raise HostError(str(e)) from None

    def _tls_context(self) -> ssl.SSLContext:
        """One context per distinct (CA, client cert, key): every machine of a store shares the user's,
        so `ls` over many machines pays for loading them once."""
        import ssl

        files = [self.dir / "ca.pem", self.dir / "cert.pem", self.dir / "key.pem"]
        key = tuple(f.read_bytes() for f in files)
        with _TLS_LOCK:
            ctx = _TLS_CACHE.get(key)
            if ctx is None:
                ctx = ssl.create_default_context(cadata=key[0].decode())
                ctx.load_cert_chain(str(files[1]), str(files[2]))
                _TLS_CACHE[key] = ctx
        return ctx

    def engine_get(self, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
        """GET `path` from the engine over mutual TLS with the engine client (skiffbox.client); any failure to
        reach it or to read its answer is an OSError, whose text says why (refused, timed out, TLS)."""
        from skiffbox.client.transport import ConnectFailed, Endpoint, Transport, TransportError

        host, port = self.driver.engine_endpoint()
        ep = Endpoint("tcp", host, port, url=f"tcp://{host}:{port}")
        ep.tls = ep.verify = True
        t = Transport(ep, timeout=timeout, read_timeout=timeout, ssl_context=self._tls_context())
        try:
            resp = t.request("GET", path)
            return resp.status, resp.read()
        except ConnectFailed as e:
            raise e.err from None
        except TransportError as e:
            raise OSError(str(e)) from None
        finally:
            t.close()

    def ping(self, timeout: float = 5.0) -> bool:
        try:
            status, body = self.engine_get("/_ping", timeout)
            return status == 200
        except (OSError, ValueError):
            return False

    def wait_for_engine(self, timeout: float = ENGINE_WAIT, client: SSHClient | None = None) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            try:
                status, body = self.engine_get("/_ping", timeout=5.0)
                if status == 200:
                    return
                last = f"HTTP {status}: {body[:200]!r}"
            except (OSError, ValueError) as e:
                last = str(e) or type(e).__name__
            if time.monotonic() >= deadline:
                break
            time.sleep(0.5)
        logs = ""
        if client is not None:
            from skiffbox.machine import provision

            logs = "\nLast lines of the engine's log:\n" + provision.engine_logs(client)
        host, port = self.driver.engine_endpoint()
        raise HostError(
            f"The engine on {self.name} did not answer /_ping at {host}:{port} over TLS within "
            f"{int(timeout)} s (last error: {last}). Check the machine's firewall and `machine ssh "
            f"{self.name}`; `machine provision {self.name}` reinstalls and restarts it.{logs}"
        )

    # ---- provisioning -------------------------------------------------------------------------
    def provision(self, progress: Progress = stderr_progress, upgrade: bool = False) -> None:
        from skiffbox.machine import provision as prov

        with self.lock():
            if getattr(self.driver, "skip_provision", False):
                if not self.certs_current():
                    self._issue_server_cert(progress)
                return
            if upgrade and hasattr(self.driver, "upgrade"):
                # VM drivers move to the newest boot image first (Toolbox's upgrade); data disks stay.
                progress("Checking for a newer boot image...")
                try:
                    changed = self.driver.upgrade()
                finally:  # the disk may have moved even if the reboot failed: the config must say so
                    self.save()
                if changed:
                    progress("Moved to the newest boot image")
                if self.state() != State.RUNNING:
                    # as docker-machine: a stopped machine is started to be upgraded (the new root needs the engine)
                    progress(f'Starting "{self.name}" so it can be upgraded...')
                    self.driver.start()
                    self._wait_running()
                    self.save()
            self._require_running("provision")
            progress("Waiting for SSH to be available...")
            client = self.ssh_client(timeout=SSH_WAIT, progress=progress)
            try:
                if not self.certs_current():
                    self._issue_server_cert(progress)
                cfg = prov.engine_config(self.config()["HostOptions"]["EngineOptions"], self.driver_name,
                                         self.driver.engine_port)
                progress(f"{'Upgrading' if upgrade else 'Provisioning'} {self.name} over SSH...")
                try:
                    version = prov.provision(
                        client, ca_cert=self.dir / "ca.pem", server_cert=self.dir / "server.pem",
                        server_key=self.dir / "server-key.pem", daemon_config=cfg,
                        cache_dir=self.store.cache_dir, progress=progress, upgrade=upgrade,
                    )
                except prov.ProvisionError as e:
                    raise HostError(str(e)) from None
                progress("Checking connection to the engine...")
                self.wait_for_engine(client=client)
            finally:
                client.close()
            self.skiff.update({"State": "ok", "Error": "", "GuestVersion": version})
            self.save()
            progress("The engine is up and running!")

    # ---- lifecycle ----------------------------------------------------------------------------
    def _wait_running(self, timeout: float = SSH_WAIT) -> None:
        deadline = time.monotonic() + timeout
        while self.state() != State.RUNNING:
            if time.monotonic() >= deadline:
                raise HostError(f"machine {self.name} did not reach state Running within {int(timeout)} s")
            time.sleep(1.0)

    def _after_boot(self, progress: Progress, booted_in: float = 0.0) -> None:
        """Common tail of start/restart: cert matches the (maybe new) IP, engine answering.

        The usual case needs no SSH at all: the engine starts with the VM, and the cert it holds is
        the one we issued, so `/_ping` over mutual TLS on the forwarded port is the whole check
        (an SSH login costs the booting guest CPU that skiffd's start-up wants). SSH is the fallback:
        the cert must be re-issued (new IP, new CA), or the engine did not answer within a grace
        period scaled to how slowly this VM booted (a loaded host boots and starts skiffd slowly
        alike); then the engine is started over SSH (a no-op if it is merely slow) and awaited."""
        self.save()  # drivers may learn a new IP/port on start
        if getattr(self.driver, "skip_provision", False):
            return
        current = self.certs_current()
        trace(f"certificates checked (current: {current})")
        if current and self.skiff.get("GuestVersion"):
            grace = min(ENGINE_GRACE_MAX, max(ENGINE_GRACE_MIN, booted_in * ENGINE_GRACE_FACTOR))
            progress("Waiting for the engine to answer...")
            if self._poll_ping(grace):
                trace("engine answered")
                return
            progress(f"The engine did not answer within {grace:.0f} s: checking it over SSH...")
        client = self.ssh_client(timeout=SSH_WAIT, progress=progress)
        trace("SSH connected and authenticated")
        try:
            if not self.certs_current():
                self.ensure_server_cert(progress, client=client)
            elif not self.ping(3.0):
                from skiffbox.machine import provision

                progress("Starting the engine...")
                client.run(provision.SERVICE_CTL.format(verb="start"), sudo=True, check=False)
                self.wait_for_engine(client=client)
            trace("engine answered")
        finally:
            client.close()

    def _poll_ping(self, timeout: float) -> bool:
        """Poll /_ping until it answers 200 or `timeout` passes. Before skiffd listens, QEMU's and
        VirtualBox's NAT forwards accept and then drop the connection at once, so polls are cheap."""
        deadline = time.monotonic() + timeout
        while True:
            if self.ping(min(5.0, max(1.0, deadline - time.monotonic()))):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(PING_INTERVAL)

    def start(self, progress: Progress = stderr_progress) -> None:
        with self.lock():
            trace("machine start: command running")
            t0 = time.monotonic()
            try:
                progress(f'Starting "{self.name}"...')
                self.driver.start()
            except NotSupported:
                if self.state() != State.RUNNING:
                    raise
            trace("driver started the VM (SSH answers)")
            self._wait_running()
            self._after_boot(progress, time.monotonic() - t0)  # saves: the driver may have new ports

    def stop(self, progress: Progress = stderr_progress) -> None:
        with self.lock():
            progress(f'Stopping "{self.name}"...')
            self.driver.stop()
            self.save()

    def kill(self, progress: Progress = stderr_progress) -> None:
        with self.lock():
            progress(f'Killing "{self.name}"...')
            self.driver.kill()
            self.save()

    def restart(self, progress: Progress = stderr_progress) -> None:
        with self.lock():
            progress(f'Restarting "{self.name}"...')
            t0 = time.monotonic()
            try:
                self.driver.restart()
            except NotSupported:
                # A host we do not own (generic): restart its engine, never the host.
                from skiffbox.machine import provision

                self._require_running("restart")
                with self.ssh_client() as client:
                    progress("Restarting the engine...")
                    provision.restart_engine(client)
                    self.wait_for_engine(client=client)
                return
            self._wait_running()
            self._after_boot(progress, time.monotonic() - t0)

    def remove(self, force: bool = False, progress: Progress = stderr_progress) -> None:
        with self.lock():
            progress(f'Removing "{self.name}"...')
            if getattr(self.driver, "host_outlives_remove", False) and self.skiff.get("GuestVersion"):
                try:
                    from skiffbox.machine import provision

                    with self.ssh_client(timeout=10.0) as c:
                        provision.stop_engine(c)
                        c.run("if [ -d /run/systemd/system ]; then systemctl disable -q skiffd.service; fi",
                              sudo=True, check=False)
                except Exception as e:  # the host may be gone; removing the record must still work
                    progress(f"(could not stop the engine on {self.driver.ip_address}: {e})")
            try:
                self.driver.remove()
            except Exception as e:
                if not force:
                    raise HostError(f"Error removing machine {self.name}: {e}. "
                                    f"Use `machine rm -f {self.name}` to remove its local record anyway.") from None
                progress(f"(driver remove failed: {e}; removing the local record anyway)")
            self.store.remove(self.name)
            progress(f'Successfully removed "{self.name}"')


# ---- create ---------------------------------------------------------------------------------------
def create(store: Store, name: str, driver_name: str, driver_flags: dict[str, Any],
           engine_options: dict[str, Any] | None = None, tls_sans: Iterable[str] = (),
           progress: Progress = stderr_progress) -> Host:
    validate_name(name)
    try:
        cls = driver_class(driver_name)
    except ImportError as e:
        raise HostError(f"driver {driver_name!r} cannot be loaded: {e}") from None
    with store.lock(name):
        if store.machine_dir(name).exists():
            raise MachineExists(f'Host already exists: "{name}" (remove it with `machine rm {name}` or pick another name)')
        drv = cls(name, store.machine_dir(name))
        drv.set_config_from_flags(driver_flags)
        progress("Running pre-create checks...")
        drv.pre_create_check()
        from skiffbox.machine import certs

        if certs.ensure_ca_and_client(store.certs_dir):
            progress(f"Created the CA and client certificates in {store.certs_dir}")
        store.create_dir(name)
        host = Host(store, name, driver_name, drv,
                    {"Driver": driver_name, "EngineOptions": {**_default_engine_options(), **(engine_options or {})},
                     "AuthOptions": {"ServerCertSANs": list(tls_sans)}},
                    {"State": "creating", "Error": ""})
        try:
            host.save()
            progress(f"Creating machine ({driver_name})...")
            drv.create()
            host.save()
        except BaseException as e:
            _rollback(host, progress)
            if isinstance(e, KeyboardInterrupt):
                raise
            raise HostError(f"Error creating machine: {e}\nNothing was left behind; fix the cause and run "
                            f"`machine create` again.") from None
        try:
            progress("Waiting for the machine to be running, this may take a few minutes...")
            host._wait_running()
            host.save()
            host._issue_server_cert(progress)
            host.provision(progress)
        except BaseException as e:
            host.skiff.update({"State": "error", "Error": str(e).splitlines()[0] if str(e) else type(e).__name__})
            host.save()
            if isinstance(e, KeyboardInterrupt):
                raise
            raise HostError(
                f"Error provisioning {name}: {e}\nThe machine exists but its engine is not ready: fix the cause "
                f"and run `machine provision {name}`, or remove it with `machine rm {name}`."
            ) from None
        host.skiff.update({"State": "ok", "Error": ""})
        host.save()
        return host


def _rollback(host: Host, progress: Progress) -> None:
    import shutil

    progress("Creation failed: removing what was made...")
    try:
        host.driver.remove()
    except Exception as e:  # report, but never leave the folder behind
        progress(f"(driver cleanup failed: {e})")
    shutil.rmtree(host.dir, ignore_errors=True)


# ---- ls -------------------------------------------------------------------------------------------
def describe(store: Store, name: str, timeout: float = 10.0, docker_host: str | None = None) -> dict[str, Any]:
    """One `ls` row. Never raises: problems land in State/Error like docker-machine's."""
    row: dict[str, Any] = {"Name": name, "Active": "-", "ActiveHost": False, "ActiveSwarm": False,
                           "DriverName": "", "State": "", "URL": "", "Swarm": "", "DockerVersion": "",
                           "Error": "", "ResponseTime": "", "SwarmOptions": None, "EngineOptions": None, "Ports": ""}
    t0 = time.monotonic()
    try:
        h = Host.load(store, name)
        row["DriverName"] = h.driver_name
        row["EngineOptions"] = h.host_options.get("EngineOptions")
        if h.skiff.get("State") == "error":
            row["Error"] = h.skiff.get("Error", "")
        elif h.skiff.get("State") == "creating":
            if _lock_free(store, name):
                row["Error"] = f"creation was interrupted; remove it with `machine rm -f {name}`"
            else:
                row["State"], row["Error"] = State.STARTING.value, "being created"
                return row
        st = h.state()
        row["State"] = st.value
        # Published container ports the driver forwards to the host right now (Lima-style); `{{.Ports}}` in --format.
        row["Ports"] = ", ".join(f"{p.host_ip}:{p.host_port}->{p.guest_port}/{p.proto}" for p in h.driver.port_forwards())
        if st == State.RUNNING:
            row["URL"] = h.url()
            if not h.certs_current():
                try:
                    h.ensure_server_cert(progress=lambda m: None)
                except Exception as e:
                    row["Error"] = f"certificates are stale and could not be re-issued: {e}"
            try:
                status, body = h.engine_get("/version", timeout=timeout)
                if status == 200:
                    import json

                    row["DockerVersion"] = "v" + str(json.loads(body).get("Version", "?"))
                else:
                    raise OSError(f"HTTP {status}")
            except Exception as e:
                row["DockerVersion"] = "Unknown"
                row["Error"] = row["Error"] or f"Unable to query docker version: {e}"
        # published ports the forwarder could not forward (host port taken, address refused): after the machine's own
        row["Error"] = "; ".join([e for e in [row["Error"]] if e] + h.driver.port_forward_errors())
        active = docker_host if docker_host is not None else os.environ.get("DOCKER_HOST", "")
        if row["URL"] and active == row["URL"]:
            row["Active"], row["ActiveHost"] = "*", True
    except Exception as e:
        row["State"] = row["State"] or State.ERROR.value
        row["Error"] = str(e)
    row["ResponseTime"] = f"{int((time.monotonic() - t0) * 1000)}ms"
    return row


def _lock_free(store: Store, name: str) -> bool:
    from skiffbox.machine.store import MachineLocked

    try:
        with store.lock(name, timeout=0):
            return True
    except MachineLocked:
        return False


def describe_all(store: Store, names: list[str], timeout: float = 10.0) -> list[dict[str, Any]]:
    """Query every machine in parallel; a machine slower than `timeout` shows State "Timeout"."""
    results: dict[str, tuple[float, dict[str, Any]]] = {}
    # The verdict goes by when each query finished, not by when this thread got to look: on a loaded host the
    # joins may return late, and a query whose own socket timed out at `timeout` must still count as a timeout.
    deadline = time.monotonic() + timeout

    def work(n: str) -> None:
        row = describe(store, n, timeout)
        results[n] = (time.monotonic(), row)

    threads = [threading.Thread(target=work, args=(n,), daemon=True) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    out = []
    for n in names:
        finished, r = results.get(n, (deadline, None))
        if r is None or finished > deadline:
            r = {"Name": n, "Active": "-", "ActiveHost": False, "ActiveSwarm": False, "DriverName": "",
                 "State": State.TIMEOUT.value, "URL": "", "Swarm": "", "DockerVersion": "", "ResponseTime": "",
                 "Error": f"Timed out after {timeout:g} s (raise it with --timeout)", "SwarmOptions": None,
                 "EngineOptions": None}
            try:
                r["DriverName"] = store.load(n).get("DriverName", "")
            except Exception:
                pass
        out.append(r)
    return out
