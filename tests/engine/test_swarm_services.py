"""Swarm services on a real skiffd (one-node swarm): tasks run as the engine's containers, secrets and configs are
readable inside them, an update replaces the tasks, removal and leaving the swarm remove the containers, and the
services and their tasks survive a daemon restart."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import docker
import pytest

from tests.engine.harness import Skiffd, TestImages, wait_for

pytestmark = pytest.mark.timeout(300)


@pytest.fixture()
def swarm(fresh_skiffd: Skiffd) -> Iterator[tuple[Skiffd, Any]]:
    api = docker.APIClient(base_url=fresh_skiffd.host, version="1.41", timeout=120)
    api.init_swarm("127.0.0.1")
    try:
        yield fresh_skiffd, api
    finally:
        try:
            api.leave_swarm(force=True)
        finally:
            for c in api.containers(all=True):  # a failed test's leftovers: the fixture still stops clean
                api.remove_container(c["Id"], force=True)


def _tasks(api: Any, service: str, **kw: str) -> list[dict[str, Any]]:
    return list(api.tasks(filters={"service": service, **kw}))


def _running(api: Any, service: str, n: int = 1, timeout: float = 60) -> list[dict[str, Any]]:
    def live() -> list[dict[str, Any]]:
        return [t for t in _tasks(api, service) if t["Status"]["State"] == "running" and t["DesiredState"] == "running"]

    def ok() -> bool:
        return len(live()) == n

    try:
        wait_for(ok, timeout=timeout, interval=0.2, what=f"{n} running task(s) of {service}")
    except TimeoutError:
        states = [(t["DesiredState"], t["Status"]) for t in _tasks(api, service)]
        raise AssertionError(f"not {n} running task(s) of {service}: {states}") from None
    return live()


def _spec(image: str, cmd: list[str], **kw: Any) -> Any:
    return docker.types.TaskTemplate(docker.types.ContainerSpec(image, cmd, **kw))


def test_tasks_run_as_containers_with_secrets_and_configs(swarm: tuple[Skiffd, Any], images: TestImages) -> None:
    d, api = swarm
    sec = api.create_secret("pw", b"s3cret")
    cfg = api.create_config("app.conf", b"key=value\n")
    tt = _spec(images.busybox, ["sleep", "300"], env={"A": "1"}, labels={"ctr": "label"},
               secrets=[docker.types.SecretReference(sec["ID"], "pw")],
               configs=[docker.types.ConfigReference(cfg["ID"], "app.conf", filename="/etc/app.conf")],
               hosts={"db.local": "10.1.2.3"}, hostname="web-host")
    sid = api.create_service(tt, name="web", mode=docker.types.ServiceMode("replicated", 2))["ID"]
    running = _running(api, sid, 2)
    assert sorted(t["Slot"] for t in running) == [1, 2]
    ctrs = api.containers(filters={"label": f"com.docker.swarm.service.id={sid}"})
    assert len(ctrs) == 2
    for t in running:
        cid = t["Status"]["ContainerStatus"]["ContainerID"]
        info = api.inspect_container(cid)
        assert info["Name"] == f"/web.{t['Slot']}.{t['ID']}"
        labels = info["Config"]["Labels"]
        assert labels["com.docker.swarm.task.id"] == t["ID"] and labels["com.docker.swarm.service.name"] == "web"
        assert labels["ctr"] == "label" and "A=1" in info["Config"]["Env"]

        def sh(cmd: str) -> bytes:
            return api.exec_start(api.exec_create(cid, ["sh", "-c", cmd]))  # type: ignore[no-any-return]

        assert sh("cat /run/secrets/pw") == b"s3cret"
        assert sh("cat /etc/app.conf") == b"key=value\n"
        assert sh("hostname").strip() == b"web-host"
        assert b"10.1.2.3\tdb.local" in sh("cat /etc/hosts") or b"10.1.2.3 db.local" in sh("cat /etc/hosts")
    status = api.services(filters={"id": sid}, status=True)[0]["ServiceStatus"]
    assert status == {"RunningTasks": 2, "DesiredTasks": 2, "CompletedTasks": 0}
    logs = b"".join(api.service_logs(sid, stdout=True, details=True, is_tty=False))
    assert logs == b""  # sleep writes nothing: the endpoint answers, empty


def test_update_replaces_tasks_and_rollback(swarm: tuple[Skiffd, Any], images: TestImages) -> None:
    d, api = swarm
    sid = api.create_service(_spec(images.busybox, ["sleep", "301"]), name="upd")["ID"]
    [first] = _running(api, sid)
    info = api.inspect_service(sid)
    with pytest.raises(docker.errors.APIError, match="update out of sequence"):
        api.update_service(sid, info["Version"]["Index"] - 1, _spec(images.busybox, ["sleep", "302"]), name="upd")
    api.update_service(sid, info["Version"]["Index"], _spec(images.busybox, ["sleep", "302"]), name="upd")

    def replaced() -> bool:
        ts = _tasks(api, sid)
        return any(t["Status"]["State"] == "running" and t["ID"] != first["ID"] for t in ts)

    wait_for(replaced, timeout=60, interval=0.2, what="the updated task")
    info = api.inspect_service(sid)
    assert info["PreviousSpec"]["TaskTemplate"]["ContainerSpec"]["Command"] == ["sleep", "301"]
    wait_for(lambda: api.inspect_service(sid).get("UpdateStatus", {}).get("State") == "completed", timeout=30,
             what="update completed")
    old = api.inspect_task(first["ID"])
    assert old["DesiredState"] == "shutdown" and old["Status"]["State"] == "shutdown"
    assert not api.inspect_container(old["Status"]["ContainerStatus"]["ContainerID"])["State"]["Running"]
    [new] = _running(api, sid)
    assert api.inspect_container(new["Status"]["ContainerStatus"]["ContainerID"])["Config"]["Entrypoint"] == \
        ["sleep", "302"]
    # rollback: the previous spec comes back and replaces the task again
    info = api.inspect_service(sid)
    api._result(api._post_json(api._url("/services/{0}/update", sid), data=info["Spec"],
                               params={"version": info["Version"]["Index"], "rollback": "previous"}), True)
    info = api.inspect_service(sid)
    assert info["Spec"]["TaskTemplate"]["ContainerSpec"]["Command"] == ["sleep", "301"]
    assert info["UpdateStatus"]["State"] == "rollback_started"
    wait_for(lambda: api.inspect_service(sid)["UpdateStatus"]["State"] == "rollback_completed", timeout=60,
             what="rollback completed")
    [back] = _running(api, sid)
    assert back["ID"] not in (first["ID"], new["ID"])
    # start-first: the new task runs before the old one is shut down
    sf = api.create_service(_spec(images.busybox, ["sleep", "312"]), name="sf",
                            update_config=docker.types.UpdateConfig(order="start-first"))["ID"]
    [old_t] = _running(api, sf)
    info = api.inspect_service(sf)
    api.update_service(sf, info["Version"]["Index"], _spec(images.busybox, ["sleep", "313"]), name="sf",
                       update_config=docker.types.UpdateConfig(order="start-first"))
    wait_for(lambda: api.inspect_service(sf).get("UpdateStatus", {}).get("State") == "completed", timeout=60,
             interval=0.2, what="the start-first update completed")
    [new_t] = _running(api, sf)
    assert new_t["ID"] != old_t["ID"] and api.inspect_task(old_t["ID"])["DesiredState"] == "shutdown"
    assert new_t["CreatedAt"] < api.inspect_task(old_t["ID"])["Status"]["Timestamp"]


def test_restart_policy_and_jobs(swarm: tuple[Skiffd, Any], images: TestImages) -> None:
    d, api = swarm
    pol = docker.types.RestartPolicy("on-failure", delay=100_000_000, max_attempts=2)
    fail = api.create_service(docker.types.TaskTemplate(docker.types.ContainerSpec(images.busybox, ["false"]),
                                                        restart_policy=pol), name="fails")["ID"]
    job = api.create_service(_spec(images.busybox, ["echo", "done"]), name="job",
                             mode=docker.types.ServiceMode("replicated-job", 3))["ID"]
    wait_for(lambda: len([t for t in _tasks(api, fail) if t["Status"]["State"] == "failed"]) == 3, timeout=60,
             interval=0.2, what="three failed attempts")
    time.sleep(1.5)  # no fourth
    ts = _tasks(api, fail)
    assert len(ts) == 3 and all(t["Status"]["Err"] == "task: non-zero exit (1)" for t in ts)
    wait_for(lambda: len([t for t in _tasks(api, job) if t["Status"]["State"] == "complete"]) == 3, timeout=60,
             interval=0.2, what="three completed job tasks")
    status = api.services(filters={"id": job}, status=True)[0]["ServiceStatus"]
    assert status["CompletedTasks"] == 3 and status["RunningTasks"] == 0
    logs = b"".join(api.service_logs(job, stdout=True, is_tty=False))
    assert logs.count(b"done\n") == 3
    # the docker CLI follows a job to its end (it reads slots from 0, JobIteration, the _up-to-date filter)
    out = d.docker("service", "create", "--detach=false", "--name", "clijob", "--mode", "replicated-job",
                   "--replicas", "2", "--max-concurrent", "2", images.busybox, "true", timeout=60)
    assert "job complete" in out.stdout + out.stderr
    # a task that keeps failing: the slot keeps the swarm's TaskHistoryRetentionLimit (5) ended tasks, and their
    # containers; older ones go
    flap = api.create_service(docker.types.TaskTemplate(
        docker.types.ContainerSpec(images.busybox, ["false"]),
        restart_policy=docker.types.RestartPolicy("any", delay=50_000_000)), name="flap")["ID"]
    seen: set[str] = set()

    def many() -> bool:
        seen.update(t["ID"] for t in _tasks(api, flap))
        return len(seen) >= 9

    wait_for(many, timeout=90, interval=0.2, what="nine attempts")
    ts = _tasks(api, flap)
    assert 5 <= len(ts) <= 6, [t["Status"]["State"] for t in ts]
    assert len(api.containers(all=True, filters={"label": f"com.docker.swarm.service.id={flap}"})) <= 6


def test_remove_leave_and_restart(swarm: tuple[Skiffd, Any], images: TestImages) -> None:
    d, api = swarm
    keep = api.create_service(_spec(images.busybox, ["sleep", "303"]), name="keep")["ID"]
    gone = api.create_service(_spec(images.busybox, ["sleep", "304"], mounts=[docker.types.Mount("/data", "")]),
                              name="gone", mode="global")["ID"]
    [k] = _running(api, keep)
    [g] = _running(api, gone)
    assert len(api.volumes()["Volumes"]) == 1
    assert api.inspect_container(g["Status"]["ContainerStatus"]["ContainerID"])["Name"] == \
        f"/gone.{g['NodeID']}.{g['ID']}"
    api.remove_service(gone)
    wait_for(lambda: not api.containers(all=True, filters={"label": f"com.docker.swarm.service.id={gone}"}),
             timeout=30, interval=0.2, what="the removed service's container gone")
    assert not api.volumes()["Volumes"]  # its anonymous volume went with it (the executor removes with -v)
    # the daemon restarts: the service, its task and its running container are still there, nothing doubled
    d.restart()
    assert api.inspect_service(keep)["Spec"]["Name"] == "keep"
    time.sleep(2)
    [k2] = _running(api, keep)
    assert k2["ID"] == k["ID"]
    assert len(api.containers(all=True)) == 1
    api.leave_swarm(force=True)
    assert api.containers(all=True) == []
    with pytest.raises(docker.errors.APIError) as e:
        api.services()
    assert e.value.status_code == 503


def test_overlay_network_names_and_published_port(swarm: tuple[Skiffd, Any], images: TestImages) -> None:
    """Tasks on an overlay network reach a service by its name; an ingress port is published on the node."""
    d, api = swarm
    net = api.create_network("appnet", driver="overlay")["Id"]
    serve = "mkdir -p /www && echo hello-$(hostname) > /www/index.html && httpd -f -p 80 -h /www"
    web = api.create_service(_spec(images.busybox, ["sh", "-c", serve]), name="web", networks=["appnet"],
                             endpoint_spec=docker.types.EndpointSpec(ports={8080: 80}))["ID"]
    cli = api.create_service(_spec(images.busybox, ["sleep", "305"]), name="cli", networks=[net])["ID"]
    _running(api, web)
    [c] = _running(api, cli)
    assert api.inspect_service(web)["Spec"]["Networks"] == [{"Target": net}]
    [att] = c["NetworksAttachments"]
    assert att["Network"]["ID"] == net and att["Network"]["Spec"]["Name"] == "appnet"
    assert re.fullmatch(r"[0-9.]+/[0-9]+", att["Addresses"][0])
    cid = c["Status"]["ContainerStatus"]["ContainerID"]
    assert net in {n["NetworkID"] for n in api.inspect_container(cid)["NetworkSettings"]["Networks"].values()}
    get = ["sh", "-c", "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc web 80"]
    wait_for(lambda: b"hello-" in api.exec_start(api.exec_create(cid, get)), timeout=20, interval=0.5,
             what="the web service by name")
    r = d.ns.run(["curl", "-s", "--max-time", "5", "http://127.0.0.1:8080/"], capture_output=True, text=True)
    assert r.stdout.startswith("hello-"), (r.stdout, r.stderr)
    # a host-mode port is the task's own, in its PortStatus
    hostport = api.create_service(_spec(images.busybox, ["sh", "-c", serve]), name="hostport",
                                  endpoint_spec=docker.types.EndpointSpec(ports={8090: (80, "tcp", "host")}))["ID"]
    [h] = _running(api, hostport)
    assert h["Status"]["PortStatus"] == {"Ports": [{"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8090,
                                                    "PublishMode": "host"}]}
    r = d.ns.run(["curl", "-s", "--max-time", "5", "http://127.0.0.1:8090/"], capture_output=True, text=True)
    assert r.stdout.startswith("hello-"), (r.stdout, r.stderr)


def test_healthcheck_gates_running_and_fails_unhealthy_tasks(swarm: tuple[Skiffd, Any], images: TestImages) -> None:
    d, api = swarm
    second = 1_000_000_000
    ok = docker.types.Healthcheck(test=["CMD", "test", "-f", "/tmp/ok"], interval=second // 4, retries=50)
    slow = api.create_service(_spec(images.busybox, ["sh", "-c", "sleep 2; touch /tmp/ok; exec sleep 306"],
                                    healthcheck=ok), name="slow")["ID"]
    wait_for(lambda: [t["Status"]["State"] for t in _tasks(api, slow)] == ["starting"], timeout=30, interval=0.1,
             what="a task starting until healthy")
    _running(api, slow)
    bad = docker.types.Healthcheck(test=["CMD", "false"], interval=second // 4, retries=1)
    sick = api.create_service(docker.types.TaskTemplate(
        docker.types.ContainerSpec(images.busybox, ["sleep", "307"], healthcheck=bad),
        restart_policy=docker.types.RestartPolicy("any", delay=second // 10, max_attempts=1)), name="sick")["ID"]
    wait_for(lambda: len([t for t in _tasks(api, sick) if t["Status"]["State"] == "failed"]) == 2, timeout=60,
             interval=0.2, what="unhealthy tasks failed and replaced")
    failed = [t for t in _tasks(api, sick) if t["Status"]["State"] == "failed"]
    assert all(t["Status"]["Err"] == "task: container is unhealthy" for t in failed)
    for t in failed:  # their containers were stopped
        wait_for(lambda t=t: not api.inspect_container(t["Status"]["ContainerStatus"]["ContainerID"])["State"]["Running"],
                 timeout=30, what="the unhealthy task's container stopped")


def test_placement_constraints(swarm: tuple[Skiffd, Any], images: TestImages) -> None:
    """A task whose constraints the node does not meet stays pending; it runs once a node label makes it fit."""
    d, api = swarm
    with pytest.raises(docker.errors.APIError, match="constraint expected one operator"):
        api.create_service(docker.types.TaskTemplate(docker.types.ContainerSpec(images.busybox, ["true"]),
                                                     placement=["node.labels.zone"]), name="bad")
    node = api.nodes()[0]
    here = api.create_service(docker.types.TaskTemplate(docker.types.ContainerSpec(images.busybox, ["sleep", "308"]),
                                                        placement=[f"node.id=={node['ID']}", "node.role==manager"]),
                              name="here")["ID"]
    zoned = api.create_service(docker.types.TaskTemplate(docker.types.ContainerSpec(images.busybox, ["sleep", "309"]),
                                                         placement=["node.labels.zone==a"]), name="zoned")["ID"]
    _running(api, here)
    wait_for(lambda: [t["Status"]["State"] for t in _tasks(api, zoned)] == ["pending"], timeout=20,
             what="the unplaceable task pending")
    [t] = _tasks(api, zoned)
    assert t["Status"]["Err"] == "no suitable node (scheduling constraints not satisfied on 1 node)"
    assert not api.containers(all=True, filters={"label": f"com.docker.swarm.service.id={zoned}"})
    spec = node["Spec"]
    spec["Labels"] = {"zone": "a"}
    api.update_node(node["ID"], node["Version"]["Index"], spec)
    [t2] = _running(api, zoned)
    assert t2["ID"] == t["ID"]
    # drained: the node's tasks are shut down and their replacements wait; active again: they run
    node = api.inspect_node(node["ID"])
    api.update_node(node["ID"], node["Version"]["Index"], {**node["Spec"], "Availability": "drain"})
    wait_for(lambda: api.inspect_task(t2["ID"])["Status"]["State"] == "shutdown", timeout=30, interval=0.2,
             what="the zoned task shut down by the drain")
    wait_for(lambda: [x["Status"].get("Err") for x in _tasks(api, zoned, **{"desired-state": "running"})]
             == ["no suitable node (1 node not available for new tasks)"], timeout=30, interval=0.2,
             what="its replacement pending")
    node = api.inspect_node(node["ID"])
    api.update_node(node["ID"], node["Version"]["Index"], {**node["Spec"], "Availability": "active"})
    _running(api, zoned)
    _running(api, here)


def test_huge_replica_count_keeps_the_daemon_responsive(swarm: tuple[Skiffd, Any], images: TestImages) -> None:
    """Any replica count is taken (as dockerd takes it); tasks start a few at a time, the API keeps answering, and
    removal takes every container that was made."""
    d, api = swarm
    sid = api.create_service(_spec(images.busybox, ["sleep", "310"]), name="many",
                             mode=docker.types.ServiceMode("replicated", 2**62))["ID"]
    wait_for(lambda: len(_tasks(api, sid)) >= 3, timeout=30, interval=0.2, what="the first tasks")
    t0 = time.monotonic()
    assert api.services(filters={"id": sid}, status=True)[0]["ServiceStatus"]["DesiredTasks"] == 2**62
    assert time.monotonic() - t0 < 5
    api.remove_service(sid)
    assert not api.containers(all=True, filters={"label": f"com.docker.swarm.service.id={sid}"})


def test_missing_image_rejects_the_task(swarm: tuple[Skiffd, Any], images: TestImages) -> None:
    d, api = swarm
    sid = api.create_service(docker.types.TaskTemplate(
        docker.types.ContainerSpec(f"{images.registry}/test/nosuchimage:latest", ["true"]),
        restart_policy=docker.types.RestartPolicy("none")), name="noimage")["ID"]
    wait_for(lambda: [t["Status"]["State"] for t in _tasks(api, sid)] == ["rejected"], timeout=60, interval=0.2,
             what="the task rejected")
    [t] = _tasks(api, sid)
    assert "nosuchimage" in t["Status"]["Err"] and t["DesiredState"] == "shutdown"
    assert api.services(filters={"id": sid}, status=True)[0]["ServiceStatus"]["RunningTasks"] == 0


def test_task_containers_no_state_names_are_removed_at_start(swarm: tuple[Skiffd, Any], images: TestImages) -> None:
    """A crash that lost the record of a task (or the whole state file) leaves no stray container running: the
    daemon removes it at start and runs the service's tasks again."""
    import json

    d, api = swarm
    sid = api.create_service(_spec(images.busybox, ["sleep", "311"]), name="crashy")["ID"]
    [t] = _running(api, sid)
    d.kill()
    state_file = d.data_root / "swarm-services" / "state.json"
    state = json.loads(state_file.read_text())
    del state["tasks"][t["ID"]]  # as if the daemon died before saving it
    state_file.write_text(json.dumps(state))
    d.start()
    [t2] = _running(api, sid)
    assert t2["ID"] != t["ID"]
    assert [c["Id"] for c in api.containers(all=True)] == [t2["Status"]["ContainerStatus"]["ContainerID"]]
    d.kill()
    state_file.write_text("{not json")
    d.start()
    assert list(state_file.parent.glob("state.json.unreadable-*"))
    assert api.services() == [] and api.containers(all=True) == []


def test_docker_stack_deploy_ps_redeploy_rm(swarm: tuple[Skiffd, Any], images: TestImages, tmp_path: Any) -> None:
    """The docker CLI's stack workflow: a compose file's network, secret, config and services made, its tasks
    listed by the stack's label, a second deploy taken as an update, and `stack rm` leaving nothing."""
    d, api = swarm
    (tmp_path / "pw.txt").write_text("stack-secret\n")
    compose = tmp_path / "stack.yml"
    compose.write_text(f"""
version: "3.8"
services:
  web:
    image: {images.busybox}
    command: ["sh", "-c", "mkdir -p /www && cat /run/secrets/pw /etc/app.conf > /www/index.html && httpd -f -p 80 -h /www"]
    ports: ["8081:80"]
    secrets: [pw]
    configs: [{{source: conf, target: /etc/app.conf}}]
    deploy: {{replicas: 2}}
    networks: [back]
networks:
  back: {{}}
secrets:
  pw: {{file: {tmp_path}/pw.txt}}
configs:
  conf: {{file: {tmp_path}/pw.txt}}
""")
    d.docker("stack", "deploy", "-c", str(compose), "app")
    web = api.inspect_service("app_web")["ID"]
    _running(api, web, 2)
    ps = d.docker("stack", "ps", "app", "--format", "{{.Name}} {{.DesiredState}}").stdout.split("\n")
    assert sorted(filter(None, ps)) == ["app_web.1 Running", "app_web.2 Running"]
    r = d.ns.run(["curl", "-s", "--max-time", "5", "http://127.0.0.1:8081/"], capture_output=True, text=True)
    assert r.stdout == "stack-secret\nstack-secret\n", r
    d.docker("stack", "deploy", "-c", str(compose), "app")  # again: the same secret and config are no change
    d.docker("stack", "rm", "app")
    assert api.containers(all=True) == []
    assert not [n for n in api.networks() if n["Name"] == "app_back"]
    assert api.secrets() == [] and api.configs() == []


def test_service_logs_follow_new_tasks_until_removed(swarm: tuple[Skiffd, Any], images: TestImages) -> None:
    """`service logs -f` goes on with the tasks that replace the first ones, and ends when the service is removed."""
    import threading

    d, api = swarm
    sid = api.create_service(docker.types.TaskTemplate(
        docker.types.ContainerSpec(images.busybox, ["sh", "-c", "echo line-$(hostname); sleep 1"]),
        restart_policy=docker.types.RestartPolicy("any", delay=200_000_000)), name="chatty")["ID"]
    lines: list[bytes] = []
    stream = api.service_logs(sid, stdout=True, follow=True, details=True, is_tty=False)
    reader = threading.Thread(target=lambda: lines.extend(stream), daemon=True)
    reader.start()

    def tasks_seen() -> set[bytes]:
        return {ln.split(b"com.docker.swarm.task.id=")[1].split(b" ")[0] for ln in list(lines)}

    wait_for(lambda: len(tasks_seen()) >= 3, timeout=60, interval=0.2, what="lines from three tasks in one stream")
    assert all(b" line-" in ln for ln in lines)
    api.remove_service(sid)
    reader.join(15)
    assert not reader.is_alive(), "the follow did not end with the service"


def test_a_stop_cut_short_by_a_restart_is_done_again(swarm: tuple[Skiffd, Any], images: TestImages) -> None:
    """`sleep` ignores SIGTERM, so replacing its task takes the 10 s grace period; a daemon restart in the middle
    does not leave the old container running beside the new one."""
    d, api = swarm
    sid = api.create_service(_spec(images.busybox, ["sleep", "314"]), name="slowstop")["ID"]
    [old] = _running(api, sid)
    info = api.inspect_service(sid)
    api.update_service(sid, info["Version"]["Index"], _spec(images.busybox, ["sleep", "315"]), name="slowstop")
    wait_for(lambda: api.inspect_task(old["ID"])["DesiredState"] == "shutdown", timeout=20, interval=0.1,
             what="the old task shutting down")
    d.restart()
    old_cid = old["Status"]["ContainerStatus"]["ContainerID"]
    wait_for(lambda: not api.inspect_container(old_cid)["State"]["Running"], timeout=40, interval=0.5,
             what="the old container stopped after the restart")
    [new] = _running(api, sid)
    assert new["ID"] != old["ID"]
    assert len(api.containers()) == 1
