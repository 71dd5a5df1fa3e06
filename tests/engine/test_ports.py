"""Host port allocation (guest/network/ports.py) against this machine's real sockets: taken ports and
addresses the host lacks are refused with dockerd's words, and a refusal holds nothing."""

from __future__ import annotations

import socket

import pytest

from skiffbox.guest.errors import SystemError_
from skiffbox.guest.network.ports import PortAllocator

OWNER = "c0ffee" * 10 + "abcd"


def _bindings(ip: str, port: str = "") -> dict[str, dict[str, list[dict[str, str]]]]:
    return {"PortBindings": {"80/tcp": [{"HostIp": ip, "HostPort": port}]}}


def test_an_address_the_host_lacks_is_refused_as_dockerd_does() -> None:
    alloc = PortAllocator()
    # 192.0.2.0/24 is TEST-NET-1: no machine has it, and nothing is sent (only a bind is tried)
    with pytest.raises(SystemError_) as e:
        alloc.allocate(OWNER, {}, _bindings("192.0.2.1", "8080"))
    assert str(e.value) == ("driver failed programming external connectivity on endpoint c0ffeec0ffee: Error starting "
                            "userland proxy: listen tcp4 192.0.2.1:8080: bind: cannot assign requested address")
    with pytest.raises(SystemError_, match="listen tcp4 192.0.2.1:"):  # an ephemeral port, same refusal
        alloc.allocate(OWNER, {}, _bindings("192.0.2.1"))
    # the refusals held nothing: the owner's next allocation on loopback gets its port
    ms = alloc.allocate(OWNER, {}, _bindings("127.0.0.1"))
    assert len(ms) == 1 and ms[0].host_ip == "127.0.0.1" and ms[0].host_port > 0


def test_a_port_another_program_listens_on_is_already_allocated() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(SystemError_, match=f"Bind for 127.0.0.1:{port} failed: port is already allocated"):
            PortAllocator().allocate(OWNER, {}, _bindings("127.0.0.1", str(port)))
