"""Host listeners relayed over the machine's SSH to a guest address QEMU's user network cannot reach.

A port the engine publishes on the guest's loopback (`docker run -p 127.0.0.1:8080:80`) is a DNAT rule
that matches only connections to 127.0.0.1 made inside the VM. A QEMU `hostfwd` delivers to the guest's
user-net address instead (a packet to 127.0.0.1 cannot arrive on a network interface), so for these
ports the forwarder listens on the host itself and opens an SSH `direct-tcpip` channel per connection:
sshd in the guest then connects to 127.0.0.1:8080 from inside, exactly like `ssh -L` (Lima's approach).
TCP only (SSH forwards no datagrams). Unlike the QEMU forwards these live in the forwarder's process.
"""

from __future__ import annotations

import errno
import selectors
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from skiffbox.machine.drivers.base import SSHEndpoint

if TYPE_CHECKING:
    from skiffbox.machine.ssh import SSHClient

Opener = Callable[[tuple[str, int], tuple[str, int]], Any]  # (guest target, host peer) -> a paramiko Channel


def bind_error(host_ip: str, host_port: int, err: OSError) -> str:
    """Why a host listener could not be made, in words a user can act on."""
    where = f"[{host_ip}]:{host_port}" if ":" in host_ip else f"{host_ip}:{host_port}"
    if err.errno == errno.EADDRINUSE:
        return f"host port {where} is taken by another program"
    if err.errno == errno.EADDRNOTAVAIL:
        return f"this host has no address {host_ip} to listen on"
    return f"cannot listen on {where}: {err.strerror or err}"


class SSHRelay:
    """The forwarder's second backend: add/remove a host listener relaying to `guest_ip:guest_port`."""

    def __init__(self, endpoint: SSHEndpoint | None = None, opener: Opener | None = None) -> None:
        self.endpoint = endpoint
        self._opener = opener or self._ssh_channel
        self._ssh: SSHClient | None = None  # connected on first use, again after it drops
        self._ssh_lock = threading.Lock()
        self._lock = threading.Lock()
        self._listeners: dict[tuple[str, int], tuple[socket.socket, tuple[str, int]]] = {}
        self._conns: dict[tuple[str, int], set[socket.socket]] = {}
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._sel.register(self._wake_r, selectors.EVENT_READ)
        self._closed = False
        self._thread = threading.Thread(target=self._accept_loop, name="relay-accept", daemon=True)
        self._thread.start()

    # ---- the backend interface ----------------------------------------------------------------
    def add(self, host_ip: str, host_port: int, guest_ip: str, guest_port: int) -> str | None:
        """None once `host_ip:host_port` listens, else why it cannot."""
        s = socket.socket(socket.AF_INET6 if ":" in host_ip else socket.AF_INET, socket.SOCK_STREAM)
        if hasattr(socket, "SO_EXCLUSIVEADDRUSE"):  # Windows: SO_REUSEADDR would let us steal a bound port
            s.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)
        else:  # POSIX: ignore TIME_WAIT leftovers; a listening socket still refuses us
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host_ip, host_port))
            s.listen(64)
        except OSError as e:
            s.close()
            return bind_error(host_ip, host_port, e)
        s.setblocking(False)
        with self._lock:
            self._listeners[(host_ip, host_port)] = (s, (guest_ip, guest_port))
            self._conns[(host_ip, host_port)] = set()
            self._sel.register(s, selectors.EVENT_READ, (host_ip, host_port))
        self._wake()
        return None

    def remove(self, host_ip: str, host_port: int) -> None:
        """Stop listening and cut the connections relayed through it (their container is gone)."""
        with self._lock:
            entry = self._listeners.pop((host_ip, host_port), None)
            conns = self._conns.pop((host_ip, host_port), set())
            if entry is not None:
                self._sel.unregister(entry[0])
        if entry is not None:
            entry[0].close()
        for c in conns:
            _shut(c)
        self._wake()

    def close(self) -> None:
        for key in list(self._listeners):
            self.remove(*key)
        self._closed = True
        self._wake()
        self._thread.join(5)
        with self._ssh_lock:
            if self._ssh is not None:
                self._ssh.close()
                self._ssh = None

    # ---- inside -------------------------------------------------------------------------------
    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def _accept_loop(self) -> None:
        while not self._closed:
            for key, _ in self._sel.select():
                if key.fileobj is self._wake_r:
                    self._wake_r.recv(4096)
                    continue
                with self._lock:
                    entry = self._listeners.get(key.data)
                if entry is None:
                    continue
                try:
                    conn, peer = entry[0].accept()
                except OSError:  # BlockingIOError (another wakeup took it) or removed meanwhile
                    continue
                conn.setblocking(True)
                threading.Thread(target=self._serve, args=(key.data, conn, peer[:2], entry[1]),
                                 name="relay-conn", daemon=True).start()
        self._sel.close()
        self._wake_r.close()
        self._wake_w.close()

    def _serve(self, listener: tuple[str, int], conn: socket.socket, peer: tuple[str, int],
               target: tuple[str, int]) -> None:
        with self._lock:
            conns = self._conns.get(listener)
            if conns is None:  # removed while this connection was being accepted
                conn.close()
                return
            conns.add(conn)
        try:
            try:
                chan = self._opener(target, peer)
            except Exception as e:  # guest refused, SSH down: the client sees the connection closed
                print(f"relay to guest {target[0]}:{target[1]} failed: {e}", flush=True)
                return
            try:
                _pump(conn, chan)
            finally:
                chan.close()
        finally:
            with self._lock:
                self._conns.get(listener, set()).discard(conn)
            conn.close()

    def _ssh_channel(self, target: tuple[str, int], peer: tuple[str, int]) -> Any:
        from skiffbox.machine.ssh import connect

        if self.endpoint is None:
            raise OSError("the forwarder was started without the machine's SSH endpoint")
        with self._ssh_lock:
            if self._ssh is None or not self._ssh.active:
                if self._ssh is not None:
                    self._ssh.close()
                self._ssh = connect(self.endpoint)
            ssh = self._ssh
        return ssh.open_tcp(target, peer, timeout=15)


def _pump(conn: socket.socket, chan: Any) -> None:
    """Copy both ways until both sides are done, passing a half-close on (one thread per direction, so
    neither side's full buffer can stall the other direction)."""

    def up() -> None:
        try:
            while data := conn.recv(65536):
                chan.sendall(data)
            chan.shutdown_write()
        except OSError:
            chan.close()

    t = threading.Thread(target=up, name="relay-up", daemon=True)
    t.start()
    try:
        while data := chan.recv(65536):
            conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
    except OSError:
        _shut(conn)
    while t.is_alive():  # the client may still send; once the guest side is gone entirely, stop waiting
        t.join(1.0)
        if chan.closed:
            _shut(conn)


def _shut(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
