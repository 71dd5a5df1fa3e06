"""`machine ssh` through the system's `ssh` client, as docker-machine does by default.

OpenSSH is there on Linux, macOS and Windows 10+ (C:\\Windows\\System32\\OpenSSH); it gives a real
terminal (raw mode, resizes, ~. escapes) where paramiko's line mode on Windows cannot. paramiko
(machine/ssh.py) stays the fallback when no `ssh` is on PATH, and `--native-ssh` (MACHINE_NATIVE_SSH)
forces it, as docker-machine's flag of that name does.

The options are docker-machine's (libmachine/ssh/client.go): no user config, no host-key checks or
records (machines are re-created on the same address), no password prompts, no multiplexing, only
the machine's key.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys

from skiffbox.machine.drivers.base import SSHEndpoint

BASE_OPTIONS = (
    "-F", "/dev/null",  # OpenSSH for Windows reads /dev/null as NUL too
    "-o", "ConnectionAttempts=3",
    "-o", "ConnectTimeout=10",
    "-o", "ControlMaster=no",
    "-o", "ControlPath=none",
    "-o", "LogLevel=quiet",
    "-o", "PasswordAuthentication=no",
    "-o", "ServerAliveInterval=60",
    "-o", "StrictHostKeyChecking=no",
    "-o", "UserKnownHostsFile=/dev/null",
)


class KeyPermissionError(Exception):
    """The key file is readable by others: OpenSSH would refuse it."""


def native_forced() -> bool:
    return os.environ.get("MACHINE_NATIVE_SSH", "") not in ("", "0", "false")


def system_ssh() -> str | None:
    """The system ssh client to use, or None: paramiko then (none on PATH, or --native-ssh)."""
    return None if native_forced() else shutil.which("ssh")


def argv(binary: str, ep: SSHEndpoint, command: list[str], *, platform: str = sys.platform) -> list[str]:
    """The ssh command line for `machine ssh`: docker-machine's options, then the command's words as
    given (ssh joins them with spaces, so `machine ssh m 'echo a; echo b'` runs two commands)."""
    key = str(ep.key_path)
    if platform != "win32":  # Windows OpenSSH checks the file's ACL itself
        try:
            mode = stat.S_IMODE(os.stat(key).st_mode)
        except OSError:
            raise KeyPermissionError(f"SSH key {key} is missing; re-create the machine or restore the key") from None
        if mode & 0o077:
            raise KeyPermissionError(f"permissions {mode:04o} for SSH key {key} are too open (ssh refuses it): "
                                     f"run `chmod 600 {key}`, or use `machine --native-ssh ssh ...`")
    return [binary, *BASE_OPTIONS, "-o", "IdentitiesOnly=yes", "-i", key, "-p", str(ep.port),
            f"{ep.user}@{ep.host}", *command]


def run(binary: str, ep: SSHEndpoint, command: list[str]) -> int:
    """Run ssh with our stdin/stdout/stderr (a terminal stays the user's); its exit status."""
    try:
        return subprocess.call(argv(binary, ep, command))
    except KeyboardInterrupt:
        return 130
