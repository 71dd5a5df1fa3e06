"""The `generic` driver: an existing Linux host reached over SSH (docker-machine's drivers/generic).

Nothing is created or destroyed: `create` copies the user's SSH key into the machine folder and checks
that sshd answers; `state` is a TCP dial to the SSH port; start/stop/kill are not supported (the host
is not ours to power off). `machine restart` restarts the engine instead (host.py), never the host.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from skiffbox.machine.drivers.base import CreateFlag, Driver, DriverError, NotSupported, State, tcp_reachable


def _default_key() -> str:
    for name in ("id_ed25519", "id_ecdsa", "id_rsa"):
        p = Path.home() / ".ssh" / name
        if p.is_file():
            return str(p)
    return ""


class GenericDriver(Driver):
    name = "generic"
    host_outlives_remove = True  # host.py: `rm` stops and disables skiffd there (best effort)

    def __init__(self, machine_name: str, machine_dir: Path) -> None:
        super().__init__(machine_name, machine_dir)
        self.ssh_user = "root"
        self.ssh_key_source = ""

    @classmethod
    def create_flags(cls) -> list[CreateFlag]:
        return [
            CreateFlag("generic-ip-address", "IP address or host name of the host (required)", "", "GENERIC_IP_ADDRESS"),
            CreateFlag("generic-ssh-user", "SSH user (needs root or passwordless sudo)", "root", "GENERIC_SSH_USER"),
            CreateFlag("generic-ssh-key", "SSH private key path (default: ~/.ssh/id_ed25519, id_ecdsa or id_rsa)", "", "GENERIC_SSH_KEY"),
            CreateFlag("generic-ssh-port", "SSH port", 22, "GENERIC_SSH_PORT", int),
            CreateFlag("generic-engine-port", "Port the engine listens on (TLS)", 2376, "GENERIC_ENGINE_PORT", int),
        ]

    def set_config_from_flags(self, flags: dict[str, Any]) -> None:
        self.ip_address = str(flags.get("generic_ip_address") or "")
        self.ssh_user = str(flags.get("generic_ssh_user") or "root")
        self.ssh_key_source = str(flags.get("generic_ssh_key") or "") or _default_key()
        self.ssh_port = int(flags.get("generic_ssh_port") or 22)
        self.engine_port = int(flags.get("generic_engine_port") or 2376)

    def to_config(self) -> dict[str, Any]:
        d = super().to_config()
        d.update({"SSHKey": self.ssh_key_source, "EnginePort": self.engine_port,
                  "SSHKeyPath": str(self.ssh_key_path())})
        return d

    def load_config(self, data: dict[str, Any]) -> None:
        super().load_config(data)
        self.ssh_key_source = data.get("SSHKey", "")
        self.engine_port = int(data.get("EnginePort", 2376))

    def pre_create_check(self) -> None:
        if not self.ip_address:
            raise DriverError("the generic driver needs --generic-ip-address (the host's IP or name)")
        if not self.ssh_key_source:
            raise DriverError("no SSH key: pass --generic-ssh-key PATH (a key the host's authorized_keys accepts)")
        if not Path(self.ssh_key_source).expanduser().is_file():
            raise DriverError(f"SSH key {self.ssh_key_source} does not exist (--generic-ssh-key)")

    def create(self) -> None:
        import shutil  # not on the `env` path

        src = Path(self.ssh_key_source).expanduser()
        dst = self.ssh_key_path()
        shutil.copyfile(src, dst)
        os.chmod(dst, 0o600)
        pub = Path(str(src) + ".pub")
        if pub.is_file():
            shutil.copyfile(pub, Path(str(dst) + ".pub"))
        if not tcp_reachable(self.ip_address, self.ssh_port, timeout=5.0):
            raise DriverError(
                f"cannot reach SSH on {self.ip_address}:{self.ssh_port}; check the address, port and firewall"
            )

    def start(self) -> None:
        if self.state() != State.RUNNING:
            raise NotSupported(f"the generic driver cannot power on {self.ip_address}; start that host yourself")

    def stop(self) -> None:
        raise NotSupported("the generic driver does not stop hosts (it did not create them)")

    def kill(self) -> None:
        raise NotSupported("the generic driver does not kill hosts (it did not create them)")

    def restart(self) -> None:
        raise NotSupported("the generic driver does not reboot hosts")

    def remove(self) -> None:
        """Nothing to remove on the host; host.py stops the engine if it can."""

    def state(self) -> State:
        return State.RUNNING if tcp_reachable(self.ip_address, self.ssh_port, timeout=2.0) else State.STOPPED

    def ip(self) -> str:
        if not self.ip_address:
            raise DriverError("the machine has no IP address recorded")
        return self.ip_address
