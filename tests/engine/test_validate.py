"""Request bodies are checked against the API's documented types before anything is stored (guest/api/validate.py),
and documented endpoints of features skiff lacks answer as a dockerd without them (guest/api/unsupported.py).

The bad bodies here are the ones a schemathesis run found giving a 500, or being stored and then breaking every
later `docker ps`."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import sys
from collections.abc import Iterator
from typing import Any

import docker
import pytest

from tests.engine.harness import REPO, Skiffd, TestImages


@pytest.fixture(scope="module")
def api(skiffd: Skiffd) -> Iterator[docker.APIClient]:
    c = skiffd.client()
    yield c.api
    c.close()


def _call(api: docker.APIClient, method: str, path: str, body: Any = None, raw: bytes | None = None,
          **params: str) -> tuple[int, Any]:
    data = raw if raw is not None else (json.dumps(body) if body is not None else None)
    r = api.request(method, api._url(path), data=data, params=params,
                             headers={"Content-Type": "application/json"})
    try:
        return r.status_code, r.json()
    except ValueError:
        return r.status_code, r.text


def _state(skiffd: Skiffd) -> tuple[str, str, str]:
    """What the real docker CLI lists: it must keep working, and nothing may appear after a refused request."""
    ps = skiffd.docker("ps", "-a", "--format", "{{.ID}} {{.Ports}} {{.Labels}}").stdout
    nets = skiffd.docker("network", "ls", "--format", "{{.Name}}").stdout
    vols = skiffd.docker("volume", "ls", "--format", "{{.Name}}").stdout
    return ps, nets, vols


BAD_BODIES = [
    ("POST", "/containers/create", {"Image": "x", "ExposedPorts": {"abc/xyz": {}}}, "invalid"),
    ("POST", "/containers/create", {"Image": "x", "ExposedPorts": {"80/xyz": {}}}, "invalid proto: xyz"),
    ("POST", "/containers/create", {"Image": "x", "HostConfig": {"PortBindings": {"http": []}}}, "invalid"),
    ("POST", "/containers/create", {"Image": "x", "Labels": {"a": 1}},
     "json: cannot unmarshal number 1 into Go struct field ContainerConfig.Labels of type string"),
    ("POST", "/containers/create", {"Image": "x", "Labels": {"a": {"b": "c"}}}, "cannot unmarshal object"),
    ("POST", "/containers/create", {"Image": "x", "Cmd": 5}, "cannot unmarshal number 5 into Go struct field "
                                                              "ContainerConfig.Cmd of type []string"),
    ("POST", "/containers/create", {"Image": "x", "HostConfig": "x"}, "Go struct field ContainerConfig.HostConfig"),
    ("POST", "/containers/create", {"Image": "x", "HostConfig": {"Memory": "lots"}},
     "json: cannot unmarshal string into Go struct field ContainerConfig.HostConfig.Memory of type int64"),
    ("POST", "/containers/create", {"Image": "x", "HostConfig": {"Memory": 2**70}}, "of type int64"),
    ("POST", "/containers/create", {"Image": "x", "HostConfig": {"CpuShares": 1.5}}, "number 1.5"),
    ("POST", "/containers/create", {"Image": "x", "Env": {"A": "b"}}, "cannot unmarshal object into Go struct "
                                                                      "field ContainerConfig.Env of type []string"),
    ("POST", "/containers/create", ["Image", "x"], "cannot unmarshal array into Go value"),
    ("POST", "/containers/create", {"Image": "x", "NetworkingConfig": {"EndpointsConfig": {"n": {"Aliases": "a"}}}},
     "EndpointsConfig.Aliases of type []string"),
    ("POST", "/commit?container=nosuch", {"ExposedPorts": {"x/tcp": {}}}, "invalid containerPort: x"),
    ("POST", "/networks/create", {"Name": ["a"]}, "NetworkCreateRequest.Name of type string"),
    ("POST", "/networks/create", {"Name": "n1", "Labels": {"a": True}}, "of type string"),
    ("POST", "/networks/bridge/connect", {"Container": ["a"]}, "NetworkConnectRequest.Container of type string"),
    ("POST", "/networks/bridge/disconnect", {"Container": "a", "Force": "yes"}, "of type bool"),
    ("POST", "/volumes/create", {"Name": ["ab"]}, "VolumeCreateOptions.Name of type string"),
    ("POST", "/volumes/create", {"Name": "v1", "DriverOpts": {"o": 1}}, "of type string"),
    ("POST", "/auth", {"username": 5}, "of type string"),
    ("POST", "/auth", {"username": "u", "password": "p", "serveraddress": "https://reg\u0093istry.example/v1/"},
     "invalid registry address"),  # was a UnicodeError 500 (schemathesis)
]


@pytest.mark.parametrize("method,path,body,message", BAD_BODIES, ids=[f"{m} {p} {json.dumps(b)[:40]}"
                                                                     for m, p, b, _ in BAD_BODIES])
def test_bad_body_is_refused_and_nothing_is_stored(skiffd: Skiffd, api: docker.APIClient, method: str, path: str,
                                                   body: Any, message: str) -> None:
    before = _state(skiffd)
    status, reply = _call(api, method, path, body)
    assert status == 400, reply
    assert message in reply["message"]
    assert _state(skiffd) == before


def test_deeply_nested_json_is_a_400(api: docker.APIClient) -> None:
    deep = b'{"Image": "x", "Labels": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    status, reply = _call(api, "POST", "/containers/create", raw=deep)
    assert status == 400 and "nested too deeply" in reply["message"], reply
    status, reply = _call(api, "POST", "/volumes/create", raw=b'{"Name": "x", "Labels": {"a": ' * 5000)
    assert status == 400, reply
    assert _call(api, "GET", "/_ping")[0] == 200


def test_malformed_json_is_a_400(api: docker.APIClient) -> None:
    status, reply = _call(api, "POST", "/networks/create", raw=b'{"Name": ')
    assert status == 400 and "invalid JSON" in reply["message"], reply


def test_import_from_a_bad_source_says_so(skiffd: Skiffd, api: docker.APIClient) -> None:
    """The source's own error is reported (not "reading the request body failed"), and no task error is lost."""
    status, reply = _call(api, "POST", "/images/create", raw=b"", fromSrc="notaurl", repo="bad", tag="src")
    text = json.dumps(reply)
    assert "is not '-' or an http(s) URL" in text, (status, reply)
    assert "reading the request body failed" not in text
    assert "Task exception was never retrieved" not in skiffd.log_tail(200_000)


def test_events_with_bad_query_fail_before_streaming(api: docker.APIClient) -> None:
    for params in ({"filters": "notjson"}, {"since": "garbage"}, {"until": "garbage"}):
        status, reply = _call(api, "GET", "/events", **params)
        assert status == 400, (params, reply)
        assert reply["message"], params


def test_good_bodies_still_work(skiffd: Skiffd, api: docker.APIClient, images: TestImages) -> None:
    """What real clients send passes: strslice Cmd as a string (dockerd stores a one-element list), nulls."""
    skiffd.docker("pull", "-q", images.busybox)
    status, reply = _call(api, "POST", "/containers/create", {
        "Image": images.busybox, "Cmd": "true", "Entrypoint": None, "Env": None, "Labels": {"a": "b"},
        "ExposedPorts": {"80/tcp": {}, "53/udp": {}, "9000": {}},
        "HostConfig": {"Memory": 64 << 20, "PortBindings": None, "Binds": None, "Unknown": [1]},
        "SomethingNew": {"ignored": True}}, name="validate-good")
    assert status == 201, reply
    try:
        info = api.inspect_container("validate-good")
        assert info["Config"]["Cmd"] == ["true"]

        assert info["HostConfig"]["Memory"] == 64 << 20
        ps = skiffd.docker("ps", "-a", "--filter", "name=validate-good", "--format", "{{.Ports}} {{.Labels}}").stdout
        assert "80/tcp" in ps and "a=b" in ps
    finally:
        api.remove_container("validate-good", force=True)
    assert api.create_network("validate-net", labels={"x": "y"})["Id"]
    api.remove_network("validate-net")
    assert api.create_volume("validate-vol", driver_opts={"type": "tmpfs", "device": "tmpfs"})["Name"]
    api.remove_volume("validate-vol")


def test_limits_are_checked_at_create_and_update(skiffd: Skiffd, api: docker.APIClient, images: TestImages) -> None:
    """A cpuset the machine lacks is a 400 at create and on update, running or not (it was a 500 at start, and a
    crun error 500 on update of a running container)."""
    skiffd.docker("pull", "-q", images.busybox)
    before = _state(skiffd)
    for hc, message in (({"CpusetCpus": "0-4096"}, "Requested CPUs are not available"),
                        ({"CpusetCpus": "a-b"}, "Invalid value a-b for cpuset cpus"),
                        ({"CpusetMems": "7"}, "Requested memory nodes are not available"),
                        ({"Memory": 1024}, "Minimum memory limit")):
        status, reply = _call(api, "POST", "/containers/create", {"Image": images.busybox, "HostConfig": hc})
        assert status == 400 and message in reply["message"], (hc, reply)
    assert _state(skiffd) == before
    skiffd.docker("run", "-d", "--name", "validate-upd", images.busybox, "sleep", "60")
    try:
        for body in ({"CpusetCpus": "0-4096"}, {"CpusetMems": "9"}):
            status, reply = _call(api, "POST", "/containers/validate-upd/update", body)
            assert status == 400 and "not available" in reply["message"], reply
        skiffd.docker("stop", "-t", "0", "validate-upd")
        status, reply = _call(api, "POST", "/containers/validate-upd/update", {"CpusetCpus": "0-4096"})
        assert status == 400, reply
        assert api.inspect_container("validate-upd")["HostConfig"]["CpusetCpus"] == ""
    finally:
        skiffd.docker("rm", "-f", "validate-upd")


def test_null_elements_are_zero_values(skiffd: Skiffd, api: docker.APIClient, images: TestImages) -> None:
    """A null in a string list or map is Go's zero value, as dockerd decodes it (exec with Cmd [null] was a 500)."""
    skiffd.docker("pull", "-q", images.busybox)
    skiffd.docker("run", "-d", "--name", "validate-exec", images.busybox, "sleep", "60")
    try:
        status, reply = _call(api, "POST", "/containers/validate-exec/exec", {"Cmd": [None, "x"], "Env": [None]})
        assert status == 201, reply
        assert api.exec_inspect(reply["Id"])["ProcessConfig"]["entrypoint"] == ""
    finally:
        skiffd.docker("rm", "-f", "validate-exec")


# -- Go's field matching: exact name first, else case-insensitive ----------------------------------------------
def _checked(method: str, path: str, raw: bytes) -> Any:
    from skiffbox.guest.api.validate import BodyValidator, decode_json

    body = decode_json(raw)
    BodyValidator.load().check(method, path, body)
    return body


def test_field_names_match_as_go_matches_them() -> None:
    body = _checked("POST", "/containers/create", b'{"image": "x", "HOSTCONFIG": {"CPURealtimeRuntime": 5, '
                    b'"cpurealtimeperiod": 7, "OOM\\u212aillDisable": true, "Unknown": 1}, "labels": {"aB": "c"}}')
    assert body == {"Image": "x", "HostConfig": {"CpuRealtimeRuntime": 5, "CpuRealtimePeriod": 7,
                                                 "OomKillDisable": True, "Unknown": 1}, "Labels": {"aB": "c"}}
    # Map keys are data, not fields: they keep their case.
    assert _checked("POST", "/volumes/create", b'{"labels": {"Name": "x"}}') == {"Labels": {"Name": "x"}}
    # Keys landing on one field are decoded in order and the last wins, wherever the exact spelling stands.
    assert _checked("POST", "/containers/x/update", b'{"Memory": 1, "memory": 2}') == {"Memory": 2}
    assert _checked("POST", "/containers/x/update", b'{"memory": 1, "Memory": 2}') == {"Memory": 2}
    assert _checked("POST", "/containers/x/update", b'{"Memory": 1, "memory": 2, "Memory": 3}') == {"Memory": 3}
    # Only ASCII case and the two runes Unicode folds into ASCII letters match (as bytes.EqualFold).
    assert _checked("POST", "/volumes/create", '{"Nameé": "x", "ſizeBytes": 1}'.encode()) == {"Nameé": "x",
                                                                                               "ſizeBytes": 1}
    assert _checked("POST", "/volumes/create", '{"NAMEſ": "x"}'.encode()) == {"NAMEſ": "x"}
    assert _checked("POST", "/volumes/create", '{"driveropt\u017f": {}}'.encode()) == {"DriverOpts": {}}
    # The types are checked under the field's own name.
    with pytest.raises(Exception, match="Go struct field ContainerConfig.HostConfig.Memory of type int64"):
        _checked("POST", "/containers/create", b'{"hostconfig": {"MEMORY": "lots"}}')


def test_docker_py_spelling_of_realtime_cpu(skiffd: Skiffd, api: docker.APIClient, images: TestImages) -> None:
    """docker-py sends CPURealtimeRuntime/CPURealtimePeriod; dockerd (Go) takes them as the documented fields."""
    skiffd.docker("pull", "-q", images.busybox)
    ctr = api.create_container(images.busybox, "true", host_config=api.create_host_config(
        cpu_rt_period=1000, cpu_rt_runtime=500))
    try:
        hc = api.inspect_container(ctr)["HostConfig"]
        assert (hc["CpuRealtimeRuntime"], hc["CpuRealtimePeriod"]) == (500, 1000)
        assert "CPURealtimeRuntime" not in hc
    finally:
        api.remove_container(ctr, force=True)


# -- query parameters: refused where dockerd refuses them, with its words ---------------------------------------
@pytest.mark.parametrize("value,parsed,message", [
    ("12", 12, None), ("+7", 7, None), ("-0", 0, None), ("9223372036854775807", 2**63 - 1, None),
    ("-9223372036854775808", -(2**63), None),
    ("", None, 'strconv.Atoi: parsing "": invalid syntax'), ("x", None, 'strconv.Atoi: parsing "x": invalid syntax'),
    (" 1", None, "invalid syntax"), ("1_000", None, "invalid syntax"), ("1.5", None, "invalid syntax"),
    ("+", None, "invalid syntax"), ("٣", None, "invalid syntax"),  # Python's int() takes the Arabic-Indic 3
    ("9223372036854775808", None, 'parsing "9223372036854775808": value out of range'),
    ("99999999999999999999x", None, "value out of range"),  # Go reports the overflow it meets first
])
def test_integers_parse_as_strconv(value: str, parsed: int | None, message: str | None) -> None:
    from skiffbox.guest.api.validate import go_parse_int
    from skiffbox.guest.errors import InvalidParameter

    if message is None:
        assert go_parse_int(value) == parsed
    else:
        with pytest.raises(InvalidParameter) as e:
            go_parse_int(value)
        assert message in str(e.value)


def test_filters_take_dockerds_two_forms_only() -> None:
    from skiffbox.guest.errors import InvalidParameter
    from skiffbox.guest.util.filters import parse_filters

    assert parse_filters('{"label": {"a=b": true, "c": false}}') == {"label": ["a=b", "c"]}  # Args.Get: every key
    assert parse_filters('{"label": ["a=b", null]}') == {"label": ["a=b", ""]}
    assert parse_filters("null") == {} and parse_filters('{"label": null}') == {"label": []}
    for bad in ("notjson", "[]", "5", '{"label": "a"}', '{"label": {"a": 1}}', '{"a": {"x": true}, "b": ["y"]}',
                '{"a": [1]}'):
        with pytest.raises(InvalidParameter, match="^invalid filter"):
            parse_filters(bad)


def test_query_check_follows_the_spec_and_dockerd() -> None:
    from skiffbox.guest.api.validate import BodyValidator
    from skiffbox.guest.errors import InvalidParameter

    v = BodyValidator.load()
    ok = [("GET", "/containers/json", {"limit": ["", "x"], "all": ["whatever"], "filters": ['{"a":["b"]}']}),
          ("GET", "/containers/abc/logs", {"since": ["1600000000.5"]}),  # a timestamp: the handler's to parse
          ("POST", "/build", {"memory": ["lots"]}),  # Int64ValueOrZero: dockerd reads junk as 0
          ("POST", "/containers/abc/stop", {"t": ["-1"]}), ("GET", "/nosuch", {"limit": ["x"]}),
          ("GET", "/images/json", {"filters": [""]})]
    for method, path, query in ok:
        v.check_query(method, path, query)
    bad = [("GET", "/containers/json", {"limit": ["x", "1"]}, 'strconv.Atoi: parsing "x": invalid syntax'),
           ("POST", "/containers/abc/resize", {"w": ["80"]}, 'strconv.Atoi: parsing "": invalid syntax'),
           ("POST", "/exec/abc/resize", {"h": ["1e3"], "w": ["8"]}, 'parsing "1e3"'),
           ("GET", "/images/search", {"limit": ["ten"]}, 'invalid limit specified: strconv.Atoi: parsing "ten"'),
           ("POST", "/build/prune", {"keep-storage": ["1GB"]},
            'keep-storage is in bytes and expects an integer, got 1GB: strconv.Atoi: parsing "1GB": invalid syntax'),
           ("GET", "/volumes", {"filters": ["{"]}, "invalid filter"),
           ("GET", "/images/sha256:abc/json", {}, None)]
    for method, path, query, message in bad:
        if message is None:
            v.check_query(method, path, query)
            continue
        with pytest.raises(InvalidParameter) as e:
            v.check_query(method, path, query)
        assert message in str(e.value), (path, query)


def test_bad_queries_over_the_api(skiffd: Skiffd, api: docker.APIClient, images: TestImages) -> None:
    """What dockerd refuses is a 400 before anything runs; booleans read as dockerd reads them; the CLI works."""
    assert _call(api, "GET", "/containers/json", limit="x") == (
        400, {"message": 'strconv.Atoi: parsing "x": invalid syntax'})
    status, reply = _call(api, "GET", "/networks", filters='{"name": "bridge"}')
    assert status == 400 and reply["message"].startswith("invalid filter"), reply
    assert _call(api, "POST", "/containers/nosuch/stop", t="soon")[0] == 400
    skiffd.docker("pull", "-q", images.busybox)
    skiffd.docker("create", "--name", "validate-q", images.busybox, "true")
    try:
        names = lambda **q: [c["Names"][0] for c in _call(api, "GET", "/containers/json", **q)[1]]  # noqa: E731
        assert "/validate-q" in names(all="1") and "/validate-q" in names(all="True ")
        for off in ("none", "NO", "0", "false", ""):
            assert "/validate-q" not in names(all=off), off
        assert "/validate-q" in names(all="1", limit="+5")
        assert _call(api, "POST", "/containers/validate-q/resize", h="24")[0] == 400
        assert "validate-q" in skiffd.docker("ps", "-a", "--filter", "name=validate-q", "--format", "{{.Names}}").stdout
    finally:
        skiffd.docker("rm", "-f", "validate-q")
    # Build's memory and CPU sizes are read as moby's Int64ValueOrZero: junk is 0, not an error.
    ctx = io.BytesIO()
    with tarfile.open(fileobj=ctx, mode="w") as tf:
        df = f"FROM {images.busybox}\nLABEL validate=q\n".encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(df)
        tf.addfile(info, io.BytesIO(df))
    r = api.request("POST", api._url("/build"), data=ctx.getvalue(), headers={"Content-Type": "application/x-tar"},
                    params={"t": "validate-build:q", "memory": "lots", "cpushares": "1.5", "shmsize": ""})
    assert r.status_code == 200 and "Successfully tagged validate-build:q" in r.text, r.text
    skiffd.docker("rmi", "validate-build:q")


# -- features skiff does not have ---------------------------------------------------------------------------------
NOT_A_MANAGER = ('This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to connect '
                 'this node to swarm and try again.')


@pytest.mark.parametrize("method,path", [
    ("GET", "/swarm"), ("POST", "/swarm/update"), ("GET", "/swarm/unlockkey"), ("GET", "/nodes"),
    ("GET", "/nodes/abc"), ("DELETE", "/nodes/abc"), ("GET", "/services"), ("POST", "/services/create"),
    ("GET", "/services/abc/logs"), ("GET", "/tasks"), ("GET", "/tasks/abc"), ("GET", "/secrets"),
    ("POST", "/secrets/create"), ("GET", "/configs"), ("DELETE", "/configs/abc"),
])
def test_swarm_endpoints_answer_as_a_dockerd_outside_a_swarm(api: docker.APIClient, method: str, path: str) -> None:
    assert _call(api, method, path) == (503, {"message": NOT_A_MANAGER})


def test_swarm_clients(skiffd: Skiffd, api: docker.APIClient) -> None:
    assert _call(api, "POST", "/swarm/leave", force="1") == (503, {"message": "This node is not part of a swarm"})
    # docker-py takes a forced leave's 503 as "not in a swarm, nothing to do" (its suite's teardown relies on it).
    assert api.leave_swarm(force=True) is True
    with pytest.raises(docker.errors.APIError) as e:
        api.leave_swarm()
    assert e.value.status_code == 503
    with pytest.raises(docker.errors.APIError) as e:
        api.inspect_swarm()
    assert e.value.status_code == 503
    r = skiffd.docker("node", "ls", check=False)
    assert r.returncode != 0 and "not a swarm manager" in r.stderr
    r = skiffd.docker("service", "ls", check=False)
    assert r.returncode != 0 and "not a swarm manager" in r.stderr
    # a swarm can be made (tests/engine/test_swarm_cluster.py), not joined: there is no other node to join
    status, reply = _call(api, "POST", "/swarm/join", {"ListenAddr": "0.0.0.0:2377", "RemoteAddrs": ["10.9.9.9"]})
    assert status == 501 and "cannot join" in reply["message"]


def test_plugins_as_a_dockerd_without_any(skiffd: Skiffd, api: docker.APIClient) -> None:
    assert _call(api, "GET", "/plugins") == (200, [])
    assert skiffd.docker("plugin", "ls", "--format", "{{.Name}}").stdout.strip() == ""
    assert _call(api, "GET", "/plugins/vieux/sshfs:latest/json") == (404, {"message":
                                                                         'plugin "vieux/sshfs:latest" not found'})
    assert _call(api, "DELETE", "/plugins/x")[0] == 404
    assert _call(api, "POST", "/plugins/x/enable")[0] == 404
    r = skiffd.docker("plugin", "inspect", "nope", check=False)
    assert r.returncode != 0 and "not found" in r.stderr
    assert _call(api, "GET", "/plugins", filters="notjson")[0] == 400


def test_every_documented_path_is_routed(api: docker.APIClient) -> None:
    """No path of the spec answers 404 "page not found" (each answers as a dockerd without that feature)."""
    doc = json.loads((REPO / "guest/api/request_schemas.json").read_text())  # checks the generated file exists
    assert doc["operations"]
    spec = _spec_paths()
    missing = []
    for method, path in spec:
        concrete = path.replace("{id}", "nosuchthing").replace("{name}", "nosuchthing")
        status, reply = _call(api, method, concrete)
        if status == 404 and isinstance(reply, dict) and reply.get("message") == "page not found":
            missing.append(f"{method} {path}")
        if status == 405:
            missing.append(f"{method} {path} (405)")
    assert missing == [], missing


def _spec_paths() -> list[tuple[str, str]]:
    import yaml

    spec = yaml.safe_load((REPO / "docs/reference/docker-engine-api-v1.50.yaml").read_text())
    skip = {("GET", "/events"), ("POST", "/containers/{id}/attach"), ("POST", "/containers/{id}/wait"),
            ("GET", "/containers/{id}/attach/ws"), ("POST", "/session")}  # long-lived or hijacking
    return [(m.upper(), p) for p, item in spec["paths"].items() for m in item
            if m != "parameters" and (m.upper(), p) not in skip]


def test_request_schemas_are_generated_from_the_vendored_spec() -> None:
    r = subprocess.run([sys.executable, str(REPO / "scripts/gen_request_schemas.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_distribution_inspect(skiffd: Skiffd, api: docker.APIClient, images: TestImages) -> None:
    """`GET /distribution/{name}/json` asks the registry, pulling nothing (docker-py's get_registry_data)."""
    single = api.inspect_distribution(images.busybox)
    assert single["Descriptor"]["digest"].startswith("sha256:") and single["Descriptor"]["size"] > 0
    assert single["Platforms"] and single["Platforms"][0]["os"] == "linux"
    multi = api.inspect_distribution(images.multiarch)
    assert {p["architecture"] for p in multi["Platforms"]} == {"amd64", "arm64"}
    status, reply = _call(api, "GET", f"/distribution/{images.registry}/nosuchrepo:latest/json")
    assert status == 404, reply
