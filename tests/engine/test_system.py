"""/_ping, /version, /info, errors and API version handling, through the real docker CLI and docker-py."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path


from tests.engine.harness import Skiffd


def raw_request(sock: str, request: bytes) -> bytes:
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock)
    s.sendall(request)
    out = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        out += d
    s.close()
    return out


def test_docker_version_and_info(skiffd: Skiffd) -> None:
    v = json.loads(skiffd.docker("version", "--format", "{{json .Server}}").stdout)
    assert v["ApiVersion"] == "1.50"
    assert v["MinAPIVersion"] == "1.24"
    assert v["Os"] == "linux"
    info = json.loads(skiffd.docker("info", "--format", "{{json .}}").stdout)
    assert info["Driver"] == "overlay2"
    assert info["Swarm"]["LocalNodeState"] == "inactive"
    assert info["NCPU"] >= 1 and info["MemTotal"] > 0
    assert info["DockerRootDir"] == str(skiffd.data_root)
    assert info["CgroupVersion"] in ("1", "2")
    assert "runc" in info["Runtimes"]


def test_docker_py_negotiates(skiffd: Skiffd) -> None:
    c = skiffd.client()
    assert c.api.api_version == "1.50"
    assert c.ping() is True
    assert c.info()["OSType"] == "linux"


def test_ping_head_has_no_body_and_headers(skiffd: Skiffd) -> None:
    out = raw_request(skiffd.sock, b"HEAD /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"Api-Version: 1.50" in head and b"Ostype: linux" in head
    assert body == b""


def test_versions_in_path(skiffd: Skiffd) -> None:
    for v, ok in (("1.24", True), ("1.44", True), ("1.50", True), ("1.23", False), ("1.51", False)):
        out = raw_request(skiffd.sock, f"GET /v{v}/version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        head, _, body = out.partition(b"\r\n\r\n")
        if ok:
            assert head.startswith(b"HTTP/1.1 200"), out
        else:
            assert head.startswith(b"HTTP/1.1 400"), out
            assert b"Content-Type: application/json\r\n" in head
            assert b"client version" in body


def test_errors_are_json(skiffd: Skiffd) -> None:
    out = raw_request(skiffd.sock, b"GET /v1.50/nonexistent HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 404")
    assert b"\r\nContent-Type: application/json\r\n" in head
    assert "message" in json.loads(body)
    # Garbage instead of HTTP gets a 400, not a dropped daemon.
    out = raw_request(skiffd.sock, b"NOT HTTP AT ALL\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400")
    assert raw_request(skiffd.sock, b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").endswith(b"OK")


def _make_certs(d: Path) -> dict[str, Path]:
    """A CA, a server cert and two client certs (one from a foreign CA), with openssl."""
    def sh(*a: str) -> None:
        subprocess.run(a, cwd=d, check=True, capture_output=True)

    for ca in ("ca", "evil-ca"):
        sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={ca}",
           "-keyout", f"{ca}-key.pem", "-out", f"{ca}.pem")
    (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    (d / "cli.cnf").write_text("extendedKeyUsage=clientAuth\n")
    for name, ca, ext in (("server", "ca", "san.cnf"), ("client", "ca", "cli.cnf"), ("evil", "evil-ca", "cli.cnf")):
        sh("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}-key.pem", "-out", f"{name}.csr")
        sh("openssl", "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}-key.pem", "-CAcreateserial",
           "-days", "2", "-extfile", ext, "-out", f"{name}.pem")
    return {p.stem: p for p in d.glob("*.pem")}


def test_mutual_tls(netns, tmp_path: Path) -> None:
    certs = _make_certs(tmp_path)
    port = 23760
    d = tmp_path / "daemon"
    daemon = Skiffd(netns, d, ["-H", f"tcp://127.0.0.1:{port}", "--tlsverify", "--tlscacert", str(certs["ca"]),
                               "--tlscert", str(certs["server"]), "--tlskey", str(certs["server-key"])])
    try:
        cfg = tmp_path / "client-certs"
        cfg.mkdir()
        for src, dst in (("ca", "ca.pem"), ("client", "cert.pem"), ("client-key", "key.pem")):
            (cfg / dst).write_bytes(certs[src].read_bytes())
        env_cmd = ["env", f"DOCKER_HOST=tcp://127.0.0.1:{port}", "DOCKER_TLS_VERIFY=1", f"DOCKER_CERT_PATH={cfg}",
                   f"DOCKER_CONFIG={tmp_path}", "docker", "version", "--format", "{{.Server.APIVersion}}"]
        r = netns.run(env_cmd)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "1.50"
        # A client certificate from another CA is refused during the handshake.
        (cfg / "cert.pem").write_bytes(certs["evil"].read_bytes())
        (cfg / "key.pem").write_bytes(certs["evil-key"].read_bytes())
        r = netns.run(env_cmd)
        assert r.returncode != 0
        # And so is a client with no certificate at all.
        r = netns.run(["curl", "-s", "--cacert", str(certs["ca"]), f"https://127.0.0.1:{port}/_ping"])
        assert r.stdout != "OK"
    finally:
        daemon.stop()


def _tls_daemon(netns, tmp_path: Path, port: int) -> tuple[Skiffd, Path]:
    """A skiffd requiring client certificates on `port`, and a DOCKER_CERT_PATH folder with a client's."""
    certs = _make_certs(tmp_path)
    daemon = Skiffd(netns, tmp_path / "daemon", ["-H", f"tcp://127.0.0.1:{port}", "--tlsverify", "--tlscacert",
                                                 str(certs["ca"]), "--tlscert", str(certs["server"]),
                                                 "--tlskey", str(certs["server-key"])])
    cfg = tmp_path / "client-certs"
    cfg.mkdir()
    for src, dst in (("ca", "ca.pem"), ("client", "cert.pem"), ("client-key", "key.pem")):
        (cfg / dst).write_bytes(certs[src].read_bytes())
    return daemon, cfg


def test_run_and_stdin_over_mutual_tls(netns, images, tmp_path: Path) -> None:
    """The docker CLI half-closes hijacked TLS streams (close_notify) when stdin ends; output must still arrive."""
    port = 23761
    daemon, cfg = _tls_daemon(netns, tmp_path, port)
    try:
        env = ["env", f"DOCKER_HOST=tcp://127.0.0.1:{port}", "DOCKER_TLS_VERIFY=1", f"DOCKER_CERT_PATH={cfg}", f"DOCKER_CONFIG={tmp_path}"]
        r = netns.run([*env, "docker", "pull", "-q", images.busybox], timeout=120)
        assert r.returncode == 0, r.stderr
        r = netns.run([*env, "docker", "run", "--rm", images.busybox, "echo", "hi over tls"], timeout=120)
        assert (r.returncode, r.stdout) == (0, "hi over tls\n"), r.stderr
        r = netns.run([*env, "docker", "run", "--rm", "-i", images.busybox, "sh", "-c", "cat; echo done; exit 5"],
                      input="line1\nline2\n", timeout=120)
        assert r.returncode == 5, r.stderr
        assert r.stdout == "line1\nline2\ndone\n"
    finally:
        daemon.stop()


_ATTACH_LOOP = """
import sys, docker
env = {"DOCKER_HOST": sys.argv[1], "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": sys.argv[2]}
api = docker.from_env(environment=env).api
api.pull(sys.argv[3])
ctr = api.create_container(sys.argv[3], "echo hello")
api.start(ctr)
api.wait(ctr)
print(sum(api.attach(ctr, stream=False, logs=True) != b"hello\\n" for _ in range(100)))
api.remove_container(ctr, force=True)
"""


def test_docker_py_attach_over_tls_keeps_output(netns, images, tmp_path: Path) -> None:
    """docker-py reads an attach stream beneath the buffered reader that parsed the 101 (see
    test_attach_output_not_lost_behind_the_101): over TLS the headers and the stream go in separate records, and
    a TLS read returns one record, so nothing lands in that buffer (on a Unix socket the engine waits instead)."""
    port = 23762
    daemon, cfg = _tls_daemon(netns, tmp_path, port)
    try:
        script = tmp_path / "attach_loop.py"
        script.write_text(_ATTACH_LOOP)
        # requests prefers REQUESTS_CA_BUNDLE (set on this machine) to the client's CA: unset it
        r = netns.run(["env", "-u", "REQUESTS_CA_BUNDLE", "-u", "CURL_CA_BUNDLE", sys.executable, str(script),
                       f"tcp://127.0.0.1:{port}", str(cfg), images.busybox], timeout=300)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "0", f"{r.stdout.strip()} of 100 attaches lost the output"
    finally:
        daemon.stop()
