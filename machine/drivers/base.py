"""The one interface every driver implements, after libmachine's `drivers.Driver`.

A driver knows how to make, run and remove one VM (or reach one existing host) and how to reach it
over SSH. It knows nothing about TLS, provisioning or the store layout beyond the folder it is handed:
those live in machine/certs.py, machine/provision.py and machine/store.py.

Driver state is a plain JSON-able dict (`to_config`/`from_config`) kept in the machine's config.json
under "Driver", so a driver object can be rebuilt by any later command.
"""

from __future__ import annotations

import enum
import socket
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar


class State(str, enum.Enum):
    """docker-machine's states (libmachine/state/state.go), printed verbatim by `status` and `ls`."""

    NONE = ""
    RUNNING = "Running"
    PAUSED = "Paused"
    SAVED = "Saved"
    STOPPED = "Stopped"
    STOPPING = "Stopping"
    STARTING = "Starting"
    ERROR = "Error"
    TIMEOUT = "Timeout"


class DriverError(Exception):
    """A driver step failed; the message says what to do next."""


class NotSupported(DriverError):
    """The driver cannot do this (e.g. `stop` on a generic host)."""


@dataclass
class CreateFlag:
    """One `machine create` flag a driver adds, with its environment variable (docker-machine style)."""

    name: str  # e.g. "qemu-memory" (without leading dashes)
    help: str
    default: Any = None
    envvar: str | None = None
    type: type = str
    is_flag: bool = False  # boolean switch without a value


@dataclass
class SSHEndpoint:
    host: str
    port: int
    user: str
    key_path: Path


@dataclass
class PortForward:
    """A host port that reaches a guest port (engine, SSH, or a published container port)."""

    host_ip: str
    host_port: int
    guest_port: int
    proto: str = "tcp"


class Driver(ABC):
    """Base driver. Subclasses set `name` and implement the abstract methods.

    `machine_dir` is the machine's own folder in the store (keys, disks, driver files go there).
    """

    name: ClassVar[str]
    # Port the engine listens on inside the guest (TLS); 2376 by convention.
    engine_port: int = 2376

    def __init__(self, machine_name: str, machine_dir: Path) -> None:
        self.machine_name = machine_name
        self.machine_dir = Path(machine_dir)
        self.ssh_user = "docker"
        self.ssh_port = 22
        self.ip_address = ""

    # ---- flags and persistence -------------------------------------------------------------
    @classmethod
    def create_flags(cls) -> list[CreateFlag]:
        return []

    def set_config_from_flags(self, flags: dict[str, Any]) -> None:
        """Take the values of `create_flags()` (keys are flag names with '-' → '_')."""

    def to_config(self) -> dict[str, Any]:
        return {
            "MachineName": self.machine_name,
            "IPAddress": self.ip_address,
            "SSHUser": self.ssh_user,
            "SSHPort": self.ssh_port,
        }

    def load_config(self, data: dict[str, Any]) -> None:
        self.ip_address = data.get("IPAddress", "")
        self.ssh_user = data.get("SSHUser", self.ssh_user)
        self.ssh_port = int(data.get("SSHPort", self.ssh_port))

    # ---- lifecycle -------------------------------------------------------------------------
    def pre_create_check(self) -> None:
        """Validate everything (binaries, images, flags) before anything is created."""

    @abstractmethod
    def create(self) -> None:
        """Make the VM (or record the existing host) and leave it running and reachable by SSH."""

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def stop(self) -> None:
        """Graceful shutdown with a bounded wait, then power off."""

    @abstractmethod
    def kill(self) -> None: ...

    def restart(self) -> None:
        self.stop()
        self.start()

    @abstractmethod
    def remove(self) -> None:
        """Remove the VM and everything the driver made; must succeed on a half-created machine."""

    @abstractmethod
    def state(self) -> State: ...

    # ---- addressing ------------------------------------------------------------------------
    @abstractmethod
    def ip(self) -> str:
        """The address users see (`machine ip`): the VM's own IP, or 127.0.0.1 for NAT drivers."""

    def ssh_key_path(self) -> Path:
        return self.machine_dir / "id_rsa"

    def ssh_endpoint(self) -> SSHEndpoint:
        return SSHEndpoint(self.ssh_hostname(), self.ssh_port, self.ssh_user, self.ssh_key_path())

    def ssh_hostname(self) -> str:
        return self.ip()

    def engine_endpoint(self) -> tuple[str, int]:
        """Where the host reaches the engine's TLS port (may be a localhost forward)."""
        return self.ip(), self.engine_port

    def url(self) -> str:
        host, port = self.engine_endpoint()
        return f"tcp://{host}:{port}"

    def extra_cert_sans(self) -> list[str]:
        """Addresses beyond ip()/127.0.0.1/localhost/name that the server cert must name."""
        return []

    def port_forwards(self) -> list[PortForward]:
        """Published container ports currently forwarded to the host (Lima-style)."""
        return []

    def port_forward_errors(self) -> list[str]:
        """Published container ports that are not forwarded to the host, and why (for `ls` ERRORS, `inspect`)."""
        return []

    def shared_folders(self) -> list[tuple[str, str]]:
        """(host path, guest mount point) pairs the guest should mount."""
        return []


def tcp_reachable(host: str, port: int, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


_REGISTRY: dict[str, str] = {
    # name -> "module:Class"; imported lazily so `machine env` never imports paramiko or a driver.
    "generic": "skiffbox.machine.drivers.generic:GenericDriver",
    "qemu": "skiffbox.machine.drivers.qemu:QemuDriver",
    "virtualbox": "skiffbox.machine.drivers.virtualbox:VirtualBoxDriver",
    "none": "skiffbox.machine.drivers.none:NoneDriver",
}


def driver_class(name: str) -> type[Driver]:
    import importlib

    try:
        target = _REGISTRY[name]
    except KeyError:
        raise DriverError(
            f"unknown driver {name!r}; available: {', '.join(sorted(_REGISTRY))}"
        ) from None
    mod, _, cls = target.partition(":")
    found: type[Driver] = getattr(importlib.import_module(mod), cls)
    return found


def driver_names() -> list[str]:
    return sorted(_REGISTRY)


__all__ = [
    "CreateFlag",
    "Driver",
    "DriverError",
    "NotSupported",
    "PortForward",
    "SSHEndpoint",
    "State",
    "driver_class",
    "driver_names",
    "tcp_reachable",
]
