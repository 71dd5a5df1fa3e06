"""Engine plugins made from a local context: create, list, inspect, configure, remove, over a restart; never run
(enable is a 501 that says why). Through docker-py and the real docker CLI against a real skiffd."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.engine.harness import Skiffd

CONFIG = {"description": "a test plugin", "entrypoint": ["/dummy"], "network": {"type": "host"},
          "interface": {"types": ["docker.volumedriver/1.0"], "socket": "dummy.sock"},
          "env": [{"name": "DEBUG", "settable": ["value"], "value": "0"}, {"name": "FIXED", "value": "1"}]}


@pytest.fixture
def api(skiffd: Skiffd) -> Iterator[docker.APIClient]:
    c = docker.APIClient(base_url=skiffd.host, version="1.41", timeout=60)
    yield c
    for p in c.plugins():
        c.remove_plugin(p["Name"], force=True)
    c.close()


def _context(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    (ctx / "rootfs" / "dummy").mkdir(parents=True)
    (ctx / "rootfs" / "dummy" / "file.txt").write_text("hi\n")
    (ctx / "config.json").write_text(json.dumps(CONFIG))
    return ctx


def _status(fn: object, *a: object) -> tuple[int, str]:
    with pytest.raises(docker.errors.APIError) as e:
        fn(*a)  # type: ignore[operator]
    return e.value.response.status_code, str(e.value.explanation)


def test_create_inspect_set_remove(api: docker.APIClient, skiffd: Skiffd, tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    assert api.create_plugin("docker-sdk-py/dummy", str(ctx))
    p = api.inspect_plugin("docker-sdk-py/dummy")
    assert p["Name"] == "docker-sdk-py/dummy:latest" and p["Enabled"] is False and len(p["Id"]) == 64
    assert p["Config"]["Entrypoint"] == ["/dummy"] and p["Config"]["Network"] == {"Type": "host"}
    assert p["Config"]["Interface"] == {"Socket": "dummy.sock", "Types": ["docker.volumedriver/1.0"]}
    assert p["Config"]["rootfs"]["diff_ids"][0].startswith("sha256:")
    assert p["Settings"]["Env"] == ["DEBUG=0", "FIXED=1"]
    assert api.inspect_plugin(p["Id"][:10])["Id"] == p["Id"]
    assert _status(api.inspect_plugin, "docker-sdk-py/dummy:v2") == (404, 'plugin "docker-sdk-py/dummy:v2" not found')
    assert _status(api.create_plugin, "docker-sdk-py/dummy", str(ctx)) == (
        409, "plugin docker-sdk-py/dummy:latest already exists")
    assert _status(api.create_plugin, "Bad_Name!", str(ctx))[0] == 400

    assert api.configure_plugin("docker-sdk-py/dummy", {"DEBUG": "1"})
    assert api.inspect_plugin("docker-sdk-py/dummy")["Settings"]["Env"] == ["FIXED=1", "DEBUG=1"]
    assert _status(api.configure_plugin, "docker-sdk-py/dummy", {"NOPE": "1"}) == (
        400, 'setting "NOPE" not found in the plugin configuration')
    assert _status(api.configure_plugin, "docker-sdk-py/dummy", {"FIXED": "2"})[0] == 400

    # never run: enabling says why, disabling finds it disabled
    code, msg = _status(api.enable_plugin, "docker-sdk-py/dummy")
    assert code == 501 and "does not run engine plugins" in msg
    assert _status(api.disable_plugin, "docker-sdk-py/dummy")[0] == 409
    assert [x["Name"] for x in api.plugins()] == ["docker-sdk-py/dummy:latest"]
    assert skiffd.docker("plugin", "ls", "--format", "{{.Name}} {{.Enabled}}").stdout.split() == [
        "docker-sdk-py/dummy:latest", "false"]

    # it survives a restart, then goes for good
    skiffd.restart()
    c = docker.APIClient(base_url=skiffd.host, version="1.41", timeout=60)
    try:
        assert c.inspect_plugin("docker-sdk-py/dummy")["Settings"]["Env"] == ["FIXED=1", "DEBUG=1"]
        assert c.remove_plugin("docker-sdk-py/dummy")
        assert _status(c.inspect_plugin, "docker-sdk-py/dummy")[0] == 404
        assert _status(c.remove_plugin, "docker-sdk-py/dummy")[0] == 404
    finally:
        c.close()
    assert [d.name for d in (skiffd.data_root / "plugins").iterdir() if not d.name.startswith(".tmp-")] == []


def test_cli_create_and_bad_contexts(api: docker.APIClient, skiffd: Skiffd, tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    skiffd.docker("plugin", "create", "local/p1:v1", str(ctx))
    out = json.loads(skiffd.docker("plugin", "inspect", "local/p1:v1").stdout)
    assert out[0]["Config"]["Description"] == "a test plugin"
    def ls(**flt: list[str]) -> list[str]:  # docker-py's plugins() takes no filters
        return [p["Name"] for p in api._result(api._get(api._url("/plugins"), params={"filters": json.dumps(flt)}), True)]
    assert ls(capability=["volumedriver"]) == ["local/p1:v1"]
    assert ls(capability=["networkdriver"]) == [] and ls(enable=["true"]) == [] and ls(enable=["false"]) == ["local/p1:v1"]
    r = skiffd.docker("plugin", "enable", "local/p1:v1", check=False)
    assert r.returncode != 0 and "does not run engine plugins" in r.stderr
    skiffd.docker("plugin", "rm", "local/p1:v1")

    (ctx / "config.json").unlink()
    assert _status(api.create_plugin, "local/noconf", str(ctx)) == (400, "invalid plugin context: config.json not found")
    (ctx / "config.json").write_text("{not json")
    assert _status(api.create_plugin, "local/badconf", str(ctx))[0] == 400
    r = api._post(api._url("/plugins/create"), params={"name": "local/notar"}, data=b"not a tar at all")
    assert r.status_code == 400 and r.json()["message"].startswith("failed to read from tar")
    assert api.plugins() == []
    assert [d.name for d in (skiffd.data_root / "plugins").iterdir()] == []  # nothing half-made left


def test_privileges_of_an_unreachable_plugin_are_none_as_on_dockerd(api: docker.APIClient) -> None:
    # no registry is reachable from the test's namespace: dockerd answers an empty list then
    assert api.plugin_privileges("vieux/sshfs:latest") == []
    assert _status(api.plugin_privileges, "Bad_Ref!")[0] == 400
