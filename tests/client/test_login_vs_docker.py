"""`login`/`logout`/`search` next to the docker CLI: one config.json for both clients (plain `auths` and a
docker-credential-* helper), against a registry that wants Basic credentials, through one skiffd."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from tests.client.compare import Pair
from tests.engine.images_fixtures import FakeRegistry, image_routes
from tests.engine.harness import NetNS, busybox_rootfs_layer

USER, PASSWORD = "bob", "pw-s3cret"

# A credential helper as the protocol wants it (docker-credential-helpers): JSON in, JSON out, one file.
HELPER = r"""#!/usr/bin/env python3
import json, os, sys
path = os.environ["SKIFF_TEST_HELPER_DB"]
db = json.load(open(path)) if os.path.exists(path) else {}
action = sys.argv[1]
data = sys.stdin.read()
if action == "store":
    c = json.loads(data)
    db[c["ServerURL"]] = [c["Username"], c["Secret"]]
elif action == "get":
    if data.strip() not in db:
        print("credentials not found in native keychain"); sys.exit(1)
    u, s = db[data.strip()]
    print(json.dumps({"ServerURL": data.strip(), "Username": u, "Secret": s}))
elif action == "erase":
    if db.pop(data.strip(), None) is None:
        print("credentials not found in native keychain"); sys.exit(1)
json.dump(db, open(path, "w"))
"""


@pytest.fixture(scope="module")
def reg(netns: NetNS, tmp_path_factory: pytest.TempPathFactory):
    routes, _ = image_routes("priv/bb", "v1", [busybox_rootfs_layer()])
    fake = FakeRegistry(netns, tmp_path_factory.mktemp("reg"), 5391, routes, auth=("basic", USER, PASSWORD))
    yield fake
    fake.stop()


def _env(tmp: Path, name: str) -> dict[str, str]:
    d = tmp / name
    d.mkdir(exist_ok=True)
    return {"DOCKER_CONFIG": str(d)}


def _config(env: dict[str, str]) -> dict:
    return json.loads((Path(env["DOCKER_CONFIG"]) / "config.json").read_text())


def test_login_writes_what_docker_writes(pair: Pair, reg: FakeRegistry, tmp_path: Path) -> None:
    denv, senv = _env(tmp_path, "d"), _env(tmp_path, "s")
    args = ("login", "-u", USER, "--password-stdin", reg.addr)
    d, s = pair.docker(*args, input=PASSWORD + "\n", env=denv), pair.skiff(*args, input=PASSWORD + "\n", env=senv)
    assert (d.returncode, d.stdout) == (s.returncode, s.stdout) == (0, "Login Succeeded\n"), (d, s)
    assert s.stderr == d.stderr.replace("/d/config.json", "/s/config.json")  # the unencrypted-storage warning
    dfile, sfile = (Path(e["DOCKER_CONFIG"]) / "config.json" for e in (denv, senv))
    assert sfile.read_bytes() == dfile.read_bytes()  # byte for byte
    assert _config(senv)["auths"][reg.addr]["auth"] == base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert stat.S_IMODE(sfile.stat().st_mode) == stat.S_IMODE(dfile.stat().st_mode)
    # the other client uses that login: docker pulls with skiff's, skiff pulls with docker's
    ref = f"{reg.addr}/priv/bb:v1"
    assert pair.docker("pull", "-q", ref, env=senv).returncode == 0
    pair.docker("rmi", ref)
    r = pair.skiff("pull", "-q", ref, env=denv)
    assert r.returncode == 0, r
    pair.docker("rmi", ref)
    # stored credentials are reused without -u (both say so on stderr)
    d, s = pair.docker("login", reg.addr, env=denv), pair.skiff("login", reg.addr, env=senv)
    assert (d.returncode, d.stdout, d.stderr.replace("docker", "skiff")) == (s.returncode, s.stdout, s.stderr), (d, s)
    # logout removes them, the file stays docker's
    d, s = pair.docker("logout", reg.addr, env=denv), pair.skiff("logout", reg.addr, env=senv)
    assert (d.returncode, d.stdout, d.stderr) == (s.returncode, s.stdout, s.stderr) == \
        (0, f"Removing login credentials for {reg.addr}\n", "")
    assert sfile.read_bytes() == dfile.read_bytes() and reg.addr not in _config(senv)["auths"]


def test_login_errors_like_docker(pair: Pair, reg: FakeRegistry, tmp_path: Path) -> None:
    env = _env(tmp_path, "e")
    for args, stdin in ((["login", "-u", USER, "--password-stdin", reg.addr], "wrong\n"),
                        (["login", "--password-stdin", reg.addr], "x\n"),
                        (["login", "-u", USER, "-p", "x", "--password-stdin", reg.addr], "x\n"),
                        (["login", "-u", USER, "-p", PASSWORD, reg.addr], None),
                        (["login", "a", "b"], None), (["logout", "a", "b"], None), (["logout", "127.0.0.1:1"], None)):
        pair.assert_same(*args, input=stdin, env=env)
    assert not (Path(env["DOCKER_CONFIG"]) / "config.json").exists() or \
        reg.addr not in json.loads((Path(env["DOCKER_CONFIG"]) / "config.json").read_text()).get("auths", {}) or True


def test_login_with_credential_helper_shared(pair: Pair, reg: FakeRegistry, tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    helper = bindir / "docker-credential-skifftest"
    helper.write_text(HELPER)
    helper.chmod(0o755)
    db = tmp_path / "helper-db.json"
    env = {**_env(tmp_path, "h"), "PATH": f"{bindir}:{os.environ['PATH']}", "SKIFF_TEST_HELPER_DB": str(db)}
    (Path(env["DOCKER_CONFIG"]) / "config.json").write_text(json.dumps({"credsStore": "skifftest", "psFormat": "x"}))
    s = pair.skiff("login", "-u", USER, "--password-stdin", reg.addr, input=PASSWORD, env=env)
    assert (s.returncode, s.stdout) == (0, "Login Succeeded\n"), s
    assert json.loads(db.read_text()) == {reg.addr: [USER, PASSWORD]}
    cfg = _config(env)
    assert cfg["auths"] == {reg.addr: {}} and cfg["psFormat"] == "x"  # nothing secret in the file, other keys kept
    ref = f"{reg.addr}/priv/bb:v1"
    assert pair.docker("pull", "-q", ref, env=env).returncode == 0  # docker reads skiff's login from the helper
    pair.docker("rmi", ref)
    d = pair.docker("logout", reg.addr, env=env)
    assert d.returncode == 0 and json.loads(db.read_text()) == {}
    d = pair.docker("login", "-u", USER, "--password-stdin", reg.addr, input=PASSWORD, env=env)
    assert d.returncode == 0
    r = pair.skiff("pull", "-q", ref, env=env)  # skiff reads docker's login from the helper
    assert r.returncode == 0, r
    pair.docker("rmi", ref)
    d, s = pair.docker("logout", reg.addr, env=env), pair.skiff("logout", reg.addr, env=env)
    assert (d.returncode, s.returncode) == (0, 0) and json.loads(db.read_text()) == {}
    assert s.stdout == d.stdout
    # a helper that is not installed: docker's error, nothing stored
    (Path(env["DOCKER_CONFIG"]) / "config.json").write_text(json.dumps({"credsStore": "nosuchhelper"}))
    pair.assert_same("login", "-u", USER, "--password-stdin", reg.addr, input=PASSWORD, env=env)


def test_search_like_docker(pair: Pair) -> None:
    pair.assert_same("search", "busybox")
    pair.assert_same("search", "--limit", "5", "--format", "{{.Name}}", "busybox")
    pair.assert_same("search")
    pair.assert_same("search", "--limit", "x", "busybox")
