from __future__ import annotations

import ssl
import stat
import threading
from pathlib import Path

import pytest

from skiffbox.machine import certs


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_ca_client_server_chain(tmp_path: Path) -> None:
    cd = tmp_path / "certs"
    assert certs.ensure_ca_and_client(cd) is True
    assert certs.ensure_ca_and_client(cd) is False  # valid ones are kept
    for f in ("ca-key.pem", "key.pem"):
        assert _mode(cd / f) == 0o600
    srv, srvkey = tmp_path / "server.pem", tmp_path / "server-key.pem"
    certs.issue_server_cert(cd / "ca.pem", cd / "ca-key.pem", srv, srvkey, ["10.1.2.3", "127.0.0.1", "localhost", "dev"])
    assert _mode(srvkey) == 0o600
    assert sorted(certs.server_cert_sans(srv)) == sorted(["10.1.2.3", "127.0.0.1", "localhost", "dev"])
    assert certs.cert_valid(srv, cd / "ca.pem")
    assert certs.cert_valid(cd / "cert.pem", cd / "ca.pem")
    # A different CA does not validate it
    other = tmp_path / "other"
    certs.ensure_ca_and_client(other)
    assert not certs.cert_valid(srv, other / "ca.pem")


def test_mutual_tls_handshake(tmp_path: Path) -> None:
    """The certs work for a real TLS server requiring client certs, and a client without one is refused."""
    cd = tmp_path / "certs"
    certs.ensure_ca_and_client(cd)
    srv, srvkey = tmp_path / "server.pem", tmp_path / "server-key.pem"
    certs.issue_server_cert(cd / "ca.pem", cd / "ca-key.pem", srv, srvkey, ["127.0.0.1", "localhost"])
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(srv, srvkey)
    sctx.load_verify_locations(cd / "ca.pem")
    sctx.verify_mode = ssl.CERT_REQUIRED
    import socket

    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4)
    port = lsock.getsockname()[1]
    results: list[str] = []

    def serve(n: int) -> None:
        for _ in range(n):
            c, _ = lsock.accept()
            try:
                with sctx.wrap_socket(c, server_side=True) as s:
                    s.sendall(b"ok")
                    results.append("ok")
            except (ssl.SSLError, OSError) as e:
                results.append(type(e).__name__)

    t = threading.Thread(target=serve, args=(2,), daemon=True)
    t.start()
    good = ssl.create_default_context(cafile=str(cd / "ca.pem"))
    good.load_cert_chain(cd / "cert.pem", cd / "key.pem")
    with socket.create_connection(("127.0.0.1", port)) as raw, good.wrap_socket(raw, server_hostname="127.0.0.1") as s:
        assert s.recv(2) == b"ok"
    bad = ssl.create_default_context(cafile=str(cd / "ca.pem"))  # no client cert
    with pytest.raises((ssl.SSLError, ConnectionError)):
        with socket.create_connection(("127.0.0.1", port)) as raw, bad.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.recv(2)
    t.join(5)
    lsock.close()
    assert results[0] == "ok" and results[1] != "ok"


def test_ssh_key(tmp_path: Path) -> None:
    pub = certs.generate_ssh_key(tmp_path / "id_rsa")
    assert pub.startswith("ssh-rsa ")
    assert _mode(tmp_path / "id_rsa") == 0o600
    assert (tmp_path / "id_rsa").read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert (tmp_path / "id_rsa.pub").read_text().strip() == pub
