"""The machine store: one folder per machine, docker-machine's layout, safe against concurrent commands.

Layout (root = $MACHINE_STORAGE_PATH or platformdirs' user data dir + "skiff/machine"):

    <root>/certs/{ca.pem,ca-key.pem,cert.pem,key.pem}      per-user CA and client cert (machine/certs.py)
    <root>/machines/NAME/config.json                        host config, docker-machine shaped (machine/host.py)
    <root>/machines/NAME/{id_rsa,id_rsa.pub,ca.pem,cert.pem,key.pem,server.pem,server-key.pem,disks…}
    <root>/cache/                                           downloads and built wheels
    <root>/locks/NAME.lock                                  flock target, outlives `rm` on purpose

API (all stdlib; imported by the fast `machine env`/`ls` path, so keep it light):

    store = Store()                       # or Store(root)
    validate_name(name)                   # raises InvalidName
    with store.lock(name):                # serialises commands on one machine (re-entrant per thread)
        d = store.create_dir(name)        # exclusive: MachineExists if present
        store.save(name, config_dict)     # atomic (temp file + fsync + rename)
    store.load(name) -> dict              # MachineNotFound
    store.names() -> list[str]            # natural sort
    store.remove(name)
    atomic_write(path, bytes, mode=0o600) # for keys and certs too; `with atomic_file(path) as f:` to stream
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO, Iterator

NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9\-.]*")  # libmachine/host/host.go
NAME_MAX = 63  # the name becomes the guest's hostname
DEFAULT_NAME = "default"
CONFIG_FILE = "config.json"


class StoreError(Exception):
    """A store problem; the message says what to do next."""


class InvalidName(StoreError):
    pass


class MachineNotFound(StoreError):
    pass


class MachineExists(StoreError):
    pass


class MachineLocked(StoreError):
    pass


def validate_name(name: str) -> str:
    if not name or len(name) > NAME_MAX or not NAME_RE.fullmatch(name):
        raise InvalidName(
            f"Invalid machine name {name!r}: use letters, digits, '-' and '.', starting with a "
            f"letter or digit, at most {NAME_MAX} characters (e.g. 'default', 'dev-1')"
        )
    return name


def default_root() -> Path:
    env = os.environ.get("MACHINE_STORAGE_PATH")
    if env:
        return Path(env).expanduser()
    import platformdirs  # only here: tests and scripts usually set MACHINE_STORAGE_PATH

    return Path(platformdirs.user_data_dir("skiff", appauthor=False)) / "machine"


def natural_key(s: str) -> list[Any]:
    """Sort "m2" before "m10", as docker-machine's ls does."""
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", s)]


@contextlib.contextmanager
def atomic_file(path: Path, mode: int = 0o644, prefix: str = "") -> Iterator[BinaryIO]:
    """The host side's one way to replace a file: what the block writes to the yielded file goes to a temp file
    (named `prefix`…, default `.NAME.`…) in the same folder, which is fsynced, renamed over `path` and the folder
    fsynced once the block ends. Readers see old or new, never half, and the new survives a power loss; an
    exception in the block (or a full disk) leaves the old file and no temp file."""
    import tempfile  # not on the read-only fast path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=prefix or f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode) if hasattr(os, "fchmod") else None
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def atomic_write(path: Path, data: bytes | str, mode: int = 0o644) -> None:
    """`data` as the new content of `path`, by atomic_file."""
    with atomic_file(path, mode) as f:
        f.write(data.encode() if isinstance(data, str) else data)


def fsync_dir(path: Path) -> None:
    """Make a rename in `path` durable (POSIX; Windows cannot open a folder to fsync it)."""
    if hasattr(os, "O_DIRECTORY"):
        dfd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


class _FileLock:
    """An exclusive lock on a file: flock on POSIX, msvcrt on Windows. Released when the process dies."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def try_acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if sys.platform == "win32":
                import msvcrt

                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK, errno.EDEADLK):
                return False
            raise
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd
        return True

    def holder(self) -> str:
        try:
            return self.path.read_text().strip() or "?"
        except OSError:
            return "?"

    def release(self) -> None:
        if self.fd is None:
            return
        if sys.platform == "win32":
            import msvcrt

            with contextlib.suppress(OSError):
                os.lseek(self.fd, 0, 0)
                msvcrt.locking(self.fd, msvcrt.LK_UNLCK, 1)
        os.close(self.fd)  # closing drops the flock
        self.fd = None


class Store:
    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root) if root is not None else default_root()
        self._held: dict[str, tuple[_FileLock, int, int]] = {}  # name -> (lock, owner thread, depth)
        self._mu = threading.Lock()
        self._cond = threading.Condition(self._mu)

    # ---- paths ---------------------------------------------------------------------------
    @property
    def certs_dir(self) -> Path:
        return self.root / "certs"

    @property
    def machines_dir(self) -> Path:
        return self.root / "machines"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    def machine_dir(self, name: str) -> Path:
        return self.machines_dir / validate_name(name)

    def config_path(self, name: str) -> Path:
        return self.machine_dir(name) / CONFIG_FILE

    # ---- queries ---------------------------------------------------------------------------
    def exists(self, name: str) -> bool:
        return self.config_path(name).is_file()

    def names(self) -> list[str]:
        try:
            entries = os.listdir(self.machines_dir)
        except FileNotFoundError:
            return []
        out = [n for n in entries if NAME_RE.fullmatch(n) and (self.machines_dir / n / CONFIG_FILE).is_file()]
        return sorted(out, key=natural_key)

    def load(self, name: str) -> dict[str, Any]:
        path = self.config_path(name)
        try:
            with open(path, "rb") as f:
                config: dict[str, Any] = json.load(f)
                return config
        except FileNotFoundError:
            raise MachineNotFound(
                f'Host does not exist: "{name}" (see `machine ls`; create it with `machine create {name}`)'
            ) from None
        except ValueError as e:
            raise StoreError(f"{path} is not valid JSON ({e}); fix or remove it (`machine rm -f {name}`)") from e

    # ---- changes ---------------------------------------------------------------------------
    def create_dir(self, name: str) -> Path:
        d = self.machine_dir(name)
        self.machines_dir.mkdir(parents=True, exist_ok=True)
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            raise MachineExists(
                f'Host already exists: "{name}" (remove it with `machine rm {name}` or pick another name)'
            ) from None
        return d

    def save(self, name: str, config: dict[str, Any]) -> None:
        atomic_write(self.config_path(name), json.dumps(config, indent=4, sort_keys=False) + "\n", 0o600)

    def remove(self, name: str) -> None:
        import shutil

        shutil.rmtree(self.machine_dir(name), ignore_errors=False)

    # ---- locking ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, name: str, timeout: float = 600.0) -> Iterator[None]:
        """Hold the machine's lock. Re-entrant within one thread; other threads/processes wait.

        Waits up to `timeout` seconds, then raises MachineLocked naming the holder's pid.
        """
        validate_name(name)
        me = threading.get_ident()
        deadline = time.monotonic() + timeout
        with self._cond:
            while name in self._held and self._held[name][1] != me:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise MachineLocked(f'Machine "{name}" is busy: another command in this process is '
                                        f"working on it. Wait for it to finish and retry.")
                self._cond.wait(left)
            if name in self._held:
                lk, owner, depth = self._held[name]
                self._held[name] = (lk, owner, depth + 1)
                reentered = True
            else:
                reentered = False
                self._held[name] = (_FileLock(self.root / "locks" / f"{name}.lock"), me, 1)
        try:
            if not reentered:
                lk = self._held[name][0]
                delay = 0.02
                while not lk.try_acquire():
                    if time.monotonic() >= deadline:
                        raise MachineLocked(
                            f'Machine "{name}" is busy: another machine command (pid {lk.holder()}) is '
                            f"working on it. Wait for it to finish and retry."
                        )
                    time.sleep(delay)
                    delay = min(delay * 2, 0.5)
        except BaseException:
            self._unhold(name)
            raise
        try:
            yield
        finally:
            self._unhold(name)

    def _unhold(self, name: str) -> None:
        with self._cond:
            lk, owner, depth = self._held[name]
            if depth > 1:
                self._held[name] = (lk, owner, depth - 1)
                return
            lk.release()
            del self._held[name]
            self._cond.notify_all()
