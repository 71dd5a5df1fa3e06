"""version, info, system df, networks, volumes, global flags and errors: skiff next to the docker CLI."""

from __future__ import annotations

import json
import re

import pytest

from tests.client.compare import Pair


def _server_part(text: str) -> str:
    return text.split("\nServer:", 1)[1]


def test_version_like_docker(pair: Pair) -> None:
    d, s = pair.both("version")
    assert d.returncode == s.returncode == 0
    assert _server_part(s.stdout) == _server_part(d.stdout)  # the client part names each client, by design
    assert s.stdout.startswith("Client: Skiff Client\n Version:           0.1.0\n API version:       1.50\n")
    pair.assert_same("version", "--format", "{{json .Server}}", times=False)
    pair.assert_same("version", "--format", "{{.Server.Version}} {{.Server.APIVersion}}", times=False)
    pair.assert_same("version", "--foo")


def test_version_downgrades_like_docker(pair: Pair) -> None:
    d, s = pair.both("version", env={"DOCKER_API_VERSION": "1.44"})
    assert " API version:       1.44 (downgraded from 1.50)\n" in s.stdout
    assert " API version:       1.44 (downgraded from 1.50)\n" in d.stdout


_VOLATILE = re.compile(r"^  (File Descriptors|Goroutines|System Time|EventsListeners):.*$|^ Runtimes: .*$", re.M)


def test_info_like_docker(pair: Pair) -> None:
    d, s = pair.both("info")
    assert d.returncode == s.returncode == 0
    assert _VOLATILE.sub("", _server_part(s.stdout)) == _VOLATILE.sub("", _server_part(d.stdout))
    assert set(s.stdout.split(" Runtimes: ")[1].split("\n")[0].split()) == \
        set(d.stdout.split(" Runtimes: ")[1].split("\n")[0].split())  # Go prints a map: any order
    pair.assert_same("info", "--format", "{{.Driver}} {{.OSType}} {{json .Swarm.LocalNodeState}}")
    pair.assert_same("system", "info", "--format", "{{.Images}}")


def test_system_df_like_docker(pair: Pair) -> None:
    assert pair.docker("pull", "-q", pair.images.busybox).returncode == 0
    pair.docker("run", "--name", "df1", pair.images.busybox, "sh", "-c", "echo x > /file")
    pair.assert_same("system", "df")
    pair.assert_same("system", "df", "-v", unordered=False)
    pair.assert_same("system", "df", "--format", "{{json .}}")
    pair.assert_same("system", "df", "--format", "table {{.Type}}\t{{.Reclaimable}}")


def _has_route(pair: Pair, method: str, path: str) -> bool:
    """Probe the engine: a missing route answers 404 "page not found"."""
    import socket

    s = socket.socket(socket.AF_UNIX)
    s.connect(pair.daemon.sock)
    s.sendall(f"{method} /v1.50{path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    return b"page not found" not in data


def test_networks_like_docker(pair: Pair) -> None:
    p = pair
    if not _has_route(p, "GET", "/networks"):
        pytest.skip("engine has no /networks yet")
    d = p.docker("network", "create", "--subnet", "10.77.0.0/24", "--label", "a=b", "net-d")
    s = p.skiff("network", "create", "--subnet", "10.77.1.0/24", "--label", "a=b", "net-s")
    assert d.returncode == s.returncode == 0 and len(s.stdout.strip()) == 64
    for args in (["network", "ls"], ["network", "ls", "-q"], ["network", "ls", "--no-trunc"],
                 ["network", "ls", "--format", "{{json .}}"], ["network", "ls", "-f", "label=a=b"],
                 ["network", "ls", "--format", "table {{.Name}}\t{{.Driver}}\t{{.Internal}}\t{{.Labels}}"],
                 ["network", "inspect", "net-d"], ["network", "inspect", "-f", "{{.Name}} {{json .IPAM.Config}}",
                                                   "net-s"], ["network", "inspect", "nosuch"], ["network", "rm", "nosuch"],
                 ["network", "create", "net-d"], ["inspect", "--type", "network", "bridge"]):
        p.assert_same(*args, times=False)
    ci = p.skiff("network", "inspect", "net-s").json()[0]
    assert ci["IPAM"]["Config"][0]["Subnet"] == "10.77.1.0/24" and ci["Labels"] == {"a": "b"}
    d, s = p.docker("network", "rm", "net-d"), p.skiff("network", "rm", "net-s")
    assert (d.returncode, d.stdout) == (0, "net-d\n") and (s.returncode, s.stdout) == (0, "net-s\n")


def test_network_connect_like_docker(pair: Pair) -> None:
    p = pair
    assert p.docker("pull", "-q", p.images.busybox).returncode == 0
    p.docker("network", "create", "conn-net")
    p.docker("run", "-d", "--name", "conn-c", p.images.busybox, "sleep", "300")
    r = p.skiff("network", "connect", "--alias", "db", "conn-net", "conn-c")
    if "no attribute" in r.stderr:
        pytest.skip("engine has no network connect yet")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    nets = p.docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", "conn-c").json()
    assert "db" in (nets["conn-net"].get("Aliases") or []) and "conn-net" in nets
    r = p.skiff("network", "disconnect", "conn-net", "conn-c")
    assert r.returncode == 0
    assert "conn-net" not in p.docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", "conn-c").json()
    p.assert_same("network", "connect", "nosuch-net", "conn-c")


def test_volumes_like_docker(pair: Pair) -> None:
    p = pair
    if not _has_route(p, "GET", "/volumes"):
        pytest.skip("engine has no /volumes yet")
    d = p.docker("volume", "create", "--label", "a=b", "vol-d")
    s = p.skiff("volume", "create", "--label", "a=b", "vol-s")
    assert (d.stdout, s.stdout) == ("vol-d\n", "vol-s\n")
    anon = p.skiff("volume", "create")
    assert anon.returncode == 0 and len(anon.stdout.strip()) == 64
    for args in (["volume", "ls"], ["volume", "ls", "-q"], ["volume", "ls", "--format", "{{json .}}"],
                 ["volume", "ls", "-f", "label=a=b"], ["volume", "inspect", "vol-d"],
                 ["volume", "inspect", "-f", "{{.Name}} {{.Driver}} {{json .Labels}}", "vol-s"],
                 ["volume", "inspect", "nosuch"], ["volume", "rm", "nosuch"], ["volume", "create", "a", "b"]):
        p.assert_same(*args, times=False)
    # a volume in use, and used by `run -v`
    assert p.docker("pull", "-q", p.images.busybox).returncode == 0
    d, s = p.assert_same("run", "--rm", "-v", "vol-s:/v", p.images.busybox, "sh", "-c", "echo hi > /v/f; cat /v/f")
    assert s.stdout == "hi\n"
    p.docker("create", "--name", "vol-user", "-v", "vol-d:/v", p.images.busybox, "true")
    p.assert_same("volume", "rm", "vol-d")
    p.docker("rm", "vol-user")
    d, s = p.docker("volume", "rm", "vol-d"), p.skiff("volume", "rm", "vol-s", anon.stdout.strip())
    assert s.returncode == 0 and s.stdout == f"vol-s\n{anon.stdout}"


# ---- global flags, connection and argument errors ------------------------------------------------

def test_host_flag_and_env_like_docker(pair: Pair) -> None:
    p = pair
    host = p.daemon.host
    d, s = p.both("-H", host, "version", "--format", "{{.Server.Version}}", env={"DOCKER_HOST": "unix:///nonexist"})
    assert (s.returncode, s.stdout) == (d.returncode, d.stdout) == (0, "0.1.0\n")
    for env in ({"DOCKER_HOST": "unix:///nonexist.sock"}, {"DOCKER_HOST": "tcp://127.0.0.1:1"}):
        d, s = p.both("ps", env=env)
        assert (s.returncode, s.stdout, s.stderr) == (d.returncode, d.stdout, d.stderr), (d, s)
    p.assert_same("-H", "a", "-H", "b", "ps")
    p.assert_same("nosuchcommand")
    p.assert_same("ps", "--foo")
    p.assert_same("ps", "-n")
    p.assert_same("ps", "-n", "x")
    p.assert_same("logs")
    p.assert_same("images", "a", "b")
    p.assert_same("port")


def test_config_file_formats_and_auth(pair: Pair, tmp_path) -> None:
    """psFormat/imagesFormat from config.json, as the docker CLI reads them."""
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "config.json").write_text(json.dumps({"psFormat": "table {{.Names}}\t{{.State}}",
                                                 "imagesFormat": "{{.Repository}}:{{.Tag}}",
                                                 "auths": {"127.0.0.1:5000": {"auth": "dTpw"}}}))
    env = {"DOCKER_CONFIG": str(cfg)}
    pair.assert_same("ps", "-a", env=env)
    pair.assert_same("images", env=env, unordered=True)
    pair.assert_same("--config", str(cfg), "ps", "-a")
