"""Single-node swarm mode, the cluster part: init/leave, the node, secrets, configs, persistence over a restart,
through the real docker CLI and docker-py against a real skiffd (answers compared with dockerd 20.10's)."""

from __future__ import annotations

import asyncio
import json
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from skiffbox.guest.errors import Unavailable
from skiffbox.guest.events import EventBus
from skiffbox.guest.swarm.cluster import Cluster, as_contract
from skiffbox.guest.swarm.contracts import SecretPayload
from tests.engine.harness import NetNS, Skiffd, TestImages, rmtree, tempdir

NOT_A_MANAGER = ('This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to connect this '
                 'node to swarm and try again.')


@pytest.fixture
def api(skiffd: Skiffd) -> Iterator[docker.APIClient]:
    c = docker.APIClient(base_url=skiffd.host, version="1.41", timeout=60)
    _leave(c)
    yield c
    _leave(c)
    c.close()


def _leave(c: docker.APIClient) -> None:
    assert c.leave_swarm(force=True)  # also when not in a swarm (docker-py takes that 503 as done)


def _init(c: docker.APIClient, **kw: object) -> str:
    return str(c.init_swarm("127.0.0.1", listen_addr="0.0.0.0:4567", **kw))


def _update(c: docker.APIClient, kind: str, oid: str, version: int, spec: dict[str, object]) -> tuple[int, str]:
    """docker-py has no secret/config update: the raw call, its status and error message."""
    r = c._post_json(c._url(f"/{kind}/{{0}}/update", oid), data=spec, params={"version": version})
    return r.status_code, r.json()["message"] if r.content else ""


def _status(fn: object, *a: object, **kw: object) -> tuple[int, str]:
    with pytest.raises(docker.errors.APIError) as e:
        fn(*a, **kw)  # type: ignore[operator]
    return e.value.response.status_code, str(e.value.explanation)


def test_outside_a_swarm_every_cluster_endpoint_answers_503(api: docker.APIClient) -> None:
    assert _status(api.inspect_swarm) == (503, NOT_A_MANAGER)
    assert _status(api.nodes) == (503, NOT_A_MANAGER)
    assert _status(api.secrets) == (503, NOT_A_MANAGER)
    assert _status(api.configs) == (503, NOT_A_MANAGER)
    assert _status(api.get_unlock_key) == (503, NOT_A_MANAGER)
    r = api._post(api._url("/swarm/leave"), params={"force": True})  # docker-py's leave_swarm hides this 503
    assert (r.status_code, r.json()["message"]) == (503, "This node is not part of a swarm")
    assert api.info()["Swarm"]["LocalNodeState"] == "inactive"


def test_init_inspect_info_and_leave(api: docker.APIClient, skiffd: Skiffd) -> None:
    node_id = _init(api)
    assert len(node_id) == 25
    sw = api.inspect_swarm()
    assert sw["Spec"]["Raft"]["SnapshotInterval"] == 10000 and sw["Spec"]["Name"] == "default"
    assert sw["DefaultAddrPool"] == ["10.0.0.0/8"] and sw["SubnetSize"] == 24 and sw["DataPathPort"] == 4789
    assert sw["JoinTokens"]["Worker"].startswith("SWMTKN-1-") and sw["JoinTokens"]["Worker"] != sw["JoinTokens"]["Manager"]
    assert sw["TLSInfo"]["TrustRoot"].startswith("-----BEGIN CERTIFICATE-----")
    # the join tokens carry the CA's digest
    assert sw["JoinTokens"]["Worker"].split("-")[2] == sw["JoinTokens"]["Manager"].split("-")[2]
    info = api.info()["Swarm"]
    assert info["LocalNodeState"] == "active" and info["ControlAvailable"] is True
    assert info["NodeID"] == node_id and info["NodeAddr"] == "127.0.0.1"
    assert info["Nodes"] == 1 and info["Managers"] == 1
    assert info["RemoteManagers"] == [{"NodeID": node_id, "Addr": "127.0.0.1:4567"}]
    assert info["Cluster"]["ID"] == sw["ID"] and "JoinTokens" not in info["Cluster"]
    # the docker CLI's view
    out = json.loads(skiffd.docker("info", "--format", "{{json .Swarm}}").stdout)
    assert out["LocalNodeState"] == "active" and out["NodeID"] == node_id
    assert skiffd.docker("swarm", "join-token", "-q", "worker").stdout.strip() == sw["JoinTokens"]["Worker"]

    code, msg = _status(_init, api)
    assert code == 503 and "already part of a swarm" in msg
    # --force-new-cluster on a manager keeps its swarm, at a new version
    assert _init(api, force_new_cluster=True) == node_id
    sw_forced = api.inspect_swarm()
    assert sw_forced["ID"] == sw["ID"] and sw_forced["Version"]["Index"] > sw["Version"]["Index"]
    code, msg = _status(api.join_swarm, ["127.0.0.1:2377"], sw["JoinTokens"]["Worker"])
    assert code == 503 and "already part of a swarm" in msg
    code, msg = _status(api.leave_swarm)
    assert code == 503 and "Use `--force`" in msg
    assert api.leave_swarm(force=True)
    assert _status(api.inspect_swarm)[0] == 503
    assert api.info()["Swarm"]["LocalNodeState"] == "inactive"


def test_init_checks_its_addresses_and_spec(api: docker.APIClient) -> None:
    assert _status(api.init_swarm, "0.0.0.0") == (400, "advertise address must be a non-zero IP address or network "
                                                       "interface (with optional port number)")
    assert _status(api.init_swarm, "no-such-if0") [0] == 400
    # inside the test's namespace only lo has an address: nothing to advertise by default, as dockerd says
    assert _status(api.init_swarm) == (400, "could not find the system's IP address")
    assert _status(_init, api, swarm_spec={"Name": "other"}) == (400, 'swarm spec must be named "default"')
    assert _status(_init, api, data_path_port=80) == (400, "Datapath port number is not in valid range "
                                                           "(1024-49151) : 80")
    assert _status(_init, api, default_addr_pool=["bogus"]) == (400, "invalid base pool bogus: invalid CIDR "
                                                                     "address: bogus")
    assert _status(api.inspect_swarm)[0] == 503  # nothing half-made


def test_init_options_and_update(api: docker.APIClient) -> None:
    spec = api.create_swarm_spec(snapshot_interval=5000, node_cert_expiry=7776000000000000,
                                 ca_force_rotate=6000000000000, autolock_managers=True, task_history_retention_limit=0)
    _init(api, swarm_spec=spec, default_addr_pool=["2.0.0.0/16"], subnet_size=26, data_path_port=4242)
    sw = api.inspect_swarm()
    assert sw["Spec"]["Raft"]["SnapshotInterval"] == 5000 and sw["Spec"]["Raft"]["LogEntriesForSlowFollowers"] == 500
    assert sw["Spec"]["CAConfig"]["ForceRotate"] == 6000000000000
    assert sw["Spec"]["Orchestration"]["TaskHistoryRetentionLimit"] == 0  # an explicit 0 is kept, as dockerd
    assert sw["Spec"]["EncryptionConfig"]["AutoLockManagers"] is True
    assert (sw["DefaultAddrPool"], sw["SubnetSize"], sw["DataPathPort"]) == (["2.0.0.0/16"], 26, 4242)
    key1 = api.get_unlock_key()["UnlockKey"]
    assert key1.startswith("SWMKEY-1-")
    assert _status(api.unlock_swarm, key1) == (409, "swarm is not locked")

    # an update from an old version is refused, as raft refuses it
    code, msg = _status(api.update_swarm, version=sw["Version"]["Index"] - 1, swarm_spec=sw["Spec"])
    assert (code, msg) == (500, "rpc error: code = Unknown desc = update out of sequence")
    new_spec = dict(sw["Spec"], Labels={"team": "a"})
    assert api.update_swarm(version=sw["Version"]["Index"], swarm_spec=new_spec, rotate_worker_token=True,
                            rotate_manager_unlock_key=True)
    sw2 = api.inspect_swarm()
    assert sw2["Version"]["Index"] > sw["Version"]["Index"] and sw2["Spec"]["Labels"] == {"team": "a"}
    assert sw2["JoinTokens"]["Worker"] != sw["JoinTokens"]["Worker"]
    assert sw2["JoinTokens"]["Manager"] == sw["JoinTokens"]["Manager"]
    assert api.get_unlock_key()["UnlockKey"] not in ("", key1)
    # switching autolock off drops the key
    api.update_swarm(version=sw2["Version"]["Index"], swarm_spec=dict(sw2["Spec"], EncryptionConfig={"AutoLockManagers": False}))
    assert api.get_unlock_key()["UnlockKey"] == ""
    assert _status(api.update_swarm, version=None, swarm_spec={})[0] == 400


def test_the_one_node(api: docker.APIClient) -> None:
    node_id = _init(api)
    [node] = api.nodes()
    assert node["ID"] == node_id and node["Spec"] == {"Labels": {}, "Role": "manager", "Availability": "active"}
    assert node["Status"] == {"State": "ready", "Addr": "127.0.0.1"}
    assert node["ManagerStatus"] == {"Leader": True, "Reachability": "reachable", "Addr": "127.0.0.1:4567"}
    assert node["Description"]["Resources"]["NanoCPUs"] > 0
    assert api.inspect_node(node_id[:5])["ID"] == node_id
    assert api.inspect_node(node["Description"]["Hostname"])["ID"] == node_id
    assert api.nodes(filters={"role": "worker"}) == [] and len(api.nodes(filters={"role": "manager"})) == 1
    assert _status(api.nodes, filters={"bogus": "x"})[0] == 400
    assert _status(api.inspect_node, "foobar01") == (404, "node foobar01 not found")
    code, msg = _status(api.remove_node, node_id, force=True)
    assert code == 400 and "must be demoted to worker before removal" in msg

    v = node["Version"]["Index"]
    api.update_node(node_id, v, {"Role": "manager", "Availability": "drain", "Name": "n1", "Labels": {"a": "b"}})
    n2 = api.inspect_node("n1")
    assert n2["Spec"] == {"Name": "n1", "Labels": {"a": "b"}, "Role": "manager", "Availability": "drain"}
    assert n2["Version"]["Index"] > v
    assert _status(api.update_node, node_id, v, n2["Spec"])[1].endswith("update out of sequence")
    code, msg = _status(api.update_node, node_id, n2["Version"]["Index"], dict(n2["Spec"], Role="worker"))
    assert (code, msg) == (400, "rpc error: code = FailedPrecondition desc = attempting to demote the last manager "
                                "of the swarm")
    assert _status(api.update_node, node_id, n2["Version"]["Index"], dict(n2["Spec"], Availability="x"))[0] == 400


def test_secrets(api: docker.APIClient, skiffd: Skiffd) -> None:
    _init(api)
    sid = api.create_secret("s1", b"sakuya izayoi", labels={"l": "v"})["ID"]
    s = api.inspect_secret(sid)
    assert s["Spec"] == {"Name": "s1", "Labels": {"l": "v"}}  # the data never leaves the daemon
    assert api.inspect_secret("s1")["ID"] == sid and api.inspect_secret(sid[:6])["ID"] == sid
    assert _status(api.create_secret, "s1", b"x") == (409, "rpc error: code = AlreadyExists desc = secret s1 "
                                                           "already exists")
    assert _status(api.create_secret, "bad name!", b"x")[0] == 400
    assert _status(api.create_secret, "empty", b"")[1].endswith("secret data must be larger than 0 and less than "
                                                                 "512000 bytes")
    api.create_secret("s2", "いざよいさくや")
    assert [x["Spec"]["Name"] for x in api.secrets(filters={"names": ["s1"]})] == ["s1"]
    assert sorted(x["Spec"]["Name"] for x in api.secrets(filters={"name": ["s"]})) == ["s1", "s2"]
    assert [x["Spec"]["Name"] for x in api.secrets(filters={"label": ["l=v"]})] == ["s1"]
    # only labels change
    v = s["Version"]["Index"]
    assert _update(api, "secrets", sid, v, {"Name": "s9"})[0] == 400
    assert _update(api, "secrets", sid, v, {"Name": "s1", "Labels": {"x": "y"}}) == (200, "")
    assert api.inspect_secret(sid)["Spec"]["Labels"] == {"x": "y"}
    assert _update(api, "secrets", sid, v, {"Name": "s1"})[0] == 500  # out of sequence
    # the CLI agrees
    assert "s2" in skiffd.docker("secret", "ls", "--format", "{{.Name}}").stdout.split()
    # the store file is private to root: it holds the secrets
    state = skiffd.data_root / "swarm" / "state.json"
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    assert api.remove_secret(sid)
    assert _status(api.inspect_secret, sid) == (404, f"secret {sid} not found")
    assert _status(api.remove_secret, sid)[0] == 404


def test_configs(api: docker.APIClient) -> None:
    _init(api)
    cid = api.create_config("c1", "sakuya izayoi", templating={"name": "golang"})["ID"]
    c = api.inspect_config(cid)
    assert c["Spec"] == {"Name": "c1", "Labels": {}, "Data": "c2FrdXlhIGl6YXlvaQ==", "Templating": {"Name": "golang"}}
    assert _status(api.create_config, "c1", "x")[0] == 409
    v = c["Version"]["Index"]
    assert _update(api, "configs", cid, v, {"Name": "c1", "Data": "eHg=", "Labels": {}}) == (
        400, "rpc error: code = InvalidArgument desc = only updates to Labels are allowed")
    assert _update(api, "configs", cid, v, {"Name": "c1", "Data": c["Spec"]["Data"], "Labels": {"k": "v"}})[0] == 200
    assert api.configs(filters={"label": ["k"]})[0]["ID"] == cid
    assert api.remove_config(cid)
    assert _status(api.inspect_config, cid)[0] == 404


def test_state_survives_a_restart_and_leave_drops_it(api: docker.APIClient, skiffd: Skiffd) -> None:
    node_id = _init(api)
    sid = api.create_secret("kept", b"data")["ID"]
    before = api.inspect_swarm()
    skiffd.restart()
    c = docker.APIClient(base_url=skiffd.host, version="1.41", timeout=60)
    try:
        assert c.inspect_swarm() == before
        assert c.info()["Swarm"]["NodeID"] == node_id
        assert c.inspect_secret("kept")["ID"] == sid
        # the index keeps growing after the restart
        cid = c.create_config("after", "x")["ID"]
        assert c.inspect_config(cid)["Version"]["Index"] > before["Version"]["Index"]
        assert c.leave_swarm(force=True)
        assert not (skiffd.data_root / "swarm" / "state.json").exists()
        _init(c)
        assert c.secrets() == [] and c.configs() == []
        assert c.inspect_swarm()["Version"]["Index"] > before["Version"]["Index"]
    finally:
        c.close()


def test_overlay_networks_exist_in_a_swarm_only(api: docker.APIClient, skiffd: Skiffd) -> None:
    assert _status(api.create_network, "ov0", driver="overlay") == (503, NOT_A_MANAGER)
    _init(api, default_addr_pool=["10.77.0.0/16"], subnet_size=24)
    ingress = api.inspect_network("ingress")
    assert (ingress["Driver"], ingress["Scope"], ingress["Ingress"], ingress["Attachable"]) == ("overlay", "swarm", True,
                                                                                                False)
    assert ingress["IPAM"]["Config"] == [{"Subnet": "10.77.0.0/24", "Gateway": "10.77.0.1"}]
    assert len(ingress["Id"]) == 25
    assert _status(api.create_network, "ing2", driver="overlay", ingress=True)[0] == 409

    ov = api.create_network("ov1", driver="overlay", attachable=True, labels={"k": "v"})["Id"]
    net = api.inspect_network(ov)
    assert (net["Driver"], net["Scope"], net["Attachable"], net["Labels"]) == ("overlay", "swarm", True, {"k": "v"})
    assert net["IPAM"]["Config"][0]["Subnet"] == "10.77.1.0/24"
    assert int(net["Options"]["com.docker.network.driver.overlay.vxlanid_list"]) > int(
        ingress["Options"]["com.docker.network.driver.overlay.vxlanid_list"])
    assert api.inspect_network("ov1", scope="swarm")["Id"] == ov
    assert _status(api.inspect_network, "ov1", scope="local")[0] == 404
    assert _status(api.create_network, "ov2", driver="overlay", scope="local") == (
        403, "cannot downgrade network scope for overlay networks")
    names = {n["Name"] for n in api.networks(filters={"scope": "swarm"})}
    assert names == {"ingress", "ov1"}
    assert "ov1" in skiffd.docker("network", "ls", "--filter", "driver=overlay", "--format", "{{.Name}}").stdout.split()

    # the ingress network can be replaced, as dockerd allows
    api.remove_network("ingress")
    api.create_network("ingress2", driver="overlay", ingress=True)
    assert api.inspect_network("ingress2")["Ingress"] is True

    # leaving the swarm takes its networks with it; local ones stay
    api.create_network("local1")
    try:
        assert api.leave_swarm(force=True)
        left = {n["Name"] for n in api.networks()}
        assert "local1" in left and not left & {"ov1", "ingress", "ingress2"}
    finally:
        api.remove_network("local1")


def test_containers_on_an_attachable_overlay_reach_each_other_by_name(api: docker.APIClient, skiffd: Skiffd,
                                                                      images: TestImages) -> None:
    """On one node an overlay is a local bridge: standalone containers join it (Attachable) and resolve each
    other's names, as on dockerd; the network and its containers survive a daemon restart."""
    _init(api)
    skiffd.docker("pull", "-q", images.busybox)
    api.create_network("ovc", driver="overlay", attachable=True)
    api.create_network("ovn", driver="overlay")
    try:
        # a network not made attachable is for services' tasks only, as on dockerd
        r = skiffd.docker("run", "--rm", "--network", "ovn", images.busybox, "true", check=False)
        assert r.returncode != 0 and "network ovn not manually attachable" in r.stderr
        skiffd.docker("create", "--name", "ov-b", images.busybox, "true")
        r = skiffd.docker("network", "connect", "ingress", "ov-b", check=False)
        assert r.returncode != 0 and "not manually attachable" in r.stderr
        skiffd.docker("run", "-d", "--name", "ov-a", "--network", "ovc", images.busybox, "sleep", "300")
        ip = skiffd.docker("inspect", "-f", "{{.NetworkSettings.Networks.ovc.IPAddress}}", "ov-a").stdout.strip()
        assert ip.startswith("10.0.1.")  # the pool's second subnet: ingress has the first
        skiffd.restart()
        out = skiffd.docker("run", "--rm", "--network", "ovc", images.busybox, "ping", "-c1", "-W2", "ov-a").stdout
        assert f"({ip})" in out or ip in out
        assert api.inspect_network("ovc")["Scope"] == "swarm"
    finally:
        skiffd.docker("rm", "-f", "ov-a", "ov-b", check=False)


def test_damaged_state_is_set_aside_and_orphaned_swarm_networks_go(api: docker.APIClient, skiffd: Skiffd) -> None:
    _init(api)
    api.create_network("ov-orphan", driver="overlay")
    skiffd.stop()
    state = skiffd.data_root / "swarm" / "state.json"
    state.write_text('{"swarm": ')  # a damaged disk: atomic writes never leave this
    skiffd.start()
    c = docker.APIClient(base_url=skiffd.host, version="1.41", timeout=60)
    try:
        assert c.info()["Swarm"]["LocalNodeState"] == "inactive"
        aside = list(state.parent.glob("state.json.unreadable-*"))
        assert len(aside) == 1 and aside[0].read_text() == '{"swarm": '
        aside[0].unlink()
        # outside a swarm its networks cannot stay (a crash in the middle of a leave leaves them so)
        assert {n["Name"] for n in c.networks()} & {"ov-orphan", "ingress"} == set()
    finally:
        c.close()


def test_node_shows_the_engine_labels(netns: NetNS) -> None:
    d = Skiffd(netns, tempdir("skiffd-labels-"), ["--label", "zone=a", "--label", "disk=ssd"])
    try:
        c = docker.APIClient(base_url=d.host, version="1.41", timeout=60)
        _init(c)
        [node] = c.nodes(filters={"label": ["zone=a"]})
        assert node["Description"]["Engine"]["Labels"] == {"zone": "a", "disk": "ssd"}
        assert c.nodes(filters={"label": ["zone=b"]}) == [] and c.nodes(filters={"node.label": ["zone"]}) == []
        c.leave_swarm(force=True)
        c.close()
    finally:
        d.stop()
        rmtree(d.workdir)


def test_a_secret_or_config_a_service_uses_cannot_be_removed(api: docker.APIClient, skiffd: Skiffd,
                                                            images: TestImages) -> None:
    _init(api)
    skiffd.docker("pull", "-q", images.busybox)
    sid = api.create_secret("used-secret", b"s3cret")["ID"]
    cid = api.create_config("used-config", b"conf")["ID"]
    spec = docker.types.ContainerSpec(images.busybox, ["sleep", "300"],
                                      secrets=[docker.types.SecretReference(sid, "used-secret")],
                                      configs=[docker.types.ConfigReference(cid, "used-config")])
    svc = api.create_service(docker.types.TaskTemplate(spec), name="uses-both")
    try:
        assert _status(api.remove_secret, sid) == (400, "rpc error: code = InvalidArgument desc = secret 'used-secret' "
                                                        "is in use by the following service: uses-both")
        assert _status(api.remove_config, "used-config")[1].endswith(
            "config 'used-config' is in use by the following service: uses-both")
    finally:
        api.remove_service(svc["ID"])
    assert api.remove_secret(sid) and api.remove_config(cid)
    # and /events told of each, with the swarm's scope
    evs = [json.loads(line) for line in api.events(since=0, until=int(time.time()) + 1,
                                                    filters={"type": ["secret"]}, decode=False)]
    assert {(e["Action"], e["Actor"]["Attributes"]["name"], e["scope"]) for e in evs} >= {
        ("create", "used-secret", "swarm"), ("remove", "used-secret", "swarm")}


def test_the_contract_the_services_part_sees(tmp_path: Path) -> None:
    """guest/swarm/contracts.py's SwarmCluster on the Cluster itself, no daemon: manager checks, the node's
    availability, payloads by ID or name, growing indexes, across a reload from disk."""
    events = EventBus()
    c = as_contract(Cluster(tmp_path, events))
    with pytest.raises(Unavailable):
        c.require_manager()
    assert c.node_availability == "active" and c.node_id == ""
    cluster = Cluster(tmp_path, events)
    nid = asyncio.run(cluster.init({"ListenAddr": "127.0.0.1:2377"}))
    c = as_contract(cluster)
    c.require_manager()
    assert c.node_id == nid and c.task_history_limit == 5
    sid = cluster.secrets.create({"Name": "pw", "Data": "aHVudGVyMg=="})
    assert c.secret("pw") == SecretPayload(sid, "pw", b"hunter2") and c.secret(sid[:5]).data == b"hunter2"
    node = cluster.node(nid)
    cluster.update_node(nid, node["Version"]["Index"], dict(node["Spec"], Availability="drain"))
    assert c.node_availability == "drain"
    i = c.next_index()
    again = as_contract(Cluster(tmp_path, events))  # a restart
    assert again.node_id == nid and again.node_availability == "drain" and again.secret("pw").data == b"hunter2"
    assert again.next_index() > i
