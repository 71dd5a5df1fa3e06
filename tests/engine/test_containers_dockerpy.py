"""docker-py's everyday container flows (its `run()` uses logs+wait, not attach; `remove=True` is client-side)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import docker
import pytest

from tests.engine.containers_fixtures import remove_all
from tests.engine.harness import Skiffd, TestImages, wait_for


@pytest.fixture(scope="module")
def client(skiffd: Skiffd, images: TestImages) -> Iterator[docker.DockerClient]:
    c = skiffd.client()
    c.images.pull(images.busybox)
    yield c
    remove_all(skiffd)
    c.close()


def test_run_returns_output_and_raises_on_failure(client: docker.DockerClient, images: TestImages) -> None:
    assert client.containers.run(images.busybox, "echo hi", remove=True) == b"hi\n"
    out = client.containers.run(images.busybox, ["sh", "-c", "echo a; echo b >&2"], stdout=True, stderr=True, remove=True)
    assert sorted(out.split()) == [b"a", b"b"]
    with pytest.raises(docker.errors.ContainerError) as ei:
        client.containers.run(images.busybox, ["sh", "-c", "echo bad >&2; exit 4"], remove=True)
    assert ei.value.exit_status == 4 and b"bad" in ei.value.stderr


def test_detached_lifecycle(client: docker.DockerClient, images: TestImages) -> None:
    ctr = client.containers.run(images.busybox, ["sh", "-c", "echo up; sleep 1000"], detach=True, name="dpy",
                                labels={"suite": "dpy"}, environment={"E": "1"})
    assert ctr.status in ("created", "running")
    ctr.reload()
    assert ctr.status == "running" and ctr.labels == {"suite": "dpy"}
    assert [c.name for c in client.containers.list(filters={"label": "suite=dpy"})] == ["dpy"]
    deadline = time.monotonic() + 10
    while b"up" not in ctr.logs() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ctr.logs() == b"up\n"
    assert ctr.exec_run("sh -c 'echo $E'").output == b"1\n"
    ctr.stop(timeout=0)
    assert ctr.wait()["StatusCode"] == 137
    ctr.remove()
    with pytest.raises(docker.errors.NotFound):
        client.containers.get("dpy")


def test_attach_socket_and_wait(client: docker.DockerClient, images: TestImages) -> None:
    ctr = client.containers.create(images.busybox, ["sh", "-c", "read x; echo got:$x"], stdin_open=True)
    sock = client.api.attach_socket(ctr.id, params={"stdin": 1, "stdout": 1, "stream": 1})
    ctr.start()
    raw = sock._sock
    raw.sendall(b"value\n")
    data = b""
    deadline = time.monotonic() + 10
    while b"got:value" not in data and time.monotonic() < deadline:
        chunk = raw.recv(4096)
        if not chunk:
            break
        data += chunk
    assert data[:8] == b"\x01\x00\x00\x00\x00\x00\x00\x0a" and b"got:value\n" in data
    sock.close()
    assert ctr.wait(condition="not-running")["StatusCode"] == 0
    ctr.remove()


def test_prune_and_list_filters(client: docker.DockerClient, images: TestImages) -> None:
    a = client.containers.run(images.busybox, "true", detach=True, labels={"p": "1"})
    b = client.containers.run(images.busybox, "sleep 1000", detach=True)
    a.wait()
    exited = [c.id for c in client.containers.list(all=True, filters={"status": "exited"})]
    assert a.id in exited and b.id not in exited
    assert [c.id for c in client.containers.list(all=True, filters={"ancestor": images.busybox})].count(b.id) == 1
    res = client.containers.prune(filters={"label": "p=1"})
    assert res["ContainersDeleted"] == [a.id]
    b.remove(force=True)


def test_create_options_as_dockerd_takes_them(client: docker.DockerClient, skiffd: Skiffd, images: TestImages) -> None:
    """What docker-py 7.0.0's own suite checks against dockerd (API 1.41): a bare env name stays in Config.Env
    (the process does not get it), an unknown log driver is refused, the pre-1.44 container MAC address is the
    bridge endpoint's, a legacy link sets moby's variables and is removed with DELETE /containers/PARENT/ALIAS?link=1."""
    api = docker.APIClient(base_url=skiffd.host, version="1.41")
    cid = api.create_container(images.busybox, ["env"], environment={"Foo": None, "Other": "one", "Blank": ""})["Id"]
    env = api.inspect_container(cid)["Config"]["Env"]
    assert "Foo" in env and "Other=one" in env and "Blank=" in env
    api.start(cid)
    api.wait(cid)
    out = api.logs(cid).decode()
    assert "Other=one" in out and "Foo" not in out
    with pytest.raises(docker.errors.APIError) as ei:
        api.create_container(images.busybox, ["true"], host_config=api.create_host_config(
            log_config=docker.types.LogConfig(type="asdf", config={})))
    assert ei.value.explanation == "logger: no log driver named 'asdf' is registered"
    mac = "02:42:ac:11:00:0a"
    cid = api.create_container(images.busybox, ["sleep", "60"], mac_address=mac)["Id"]
    api.start(cid)
    assert api.inspect_container(cid)["NetworkSettings"]["MacAddress"] == mac
    api.kill(cid)
    child = api.create_container(images.busybox, ["sleep", "60"], name="linkchild", environment={"FOO": "1"},
                                 ports=[80, (53, "udp")])["Id"]
    api.start(child)
    ip = api.inspect_container(child)["NetworkSettings"]["IPAddress"]
    parent = api.create_container(images.busybox, ["sh", "-c", "env; sleep 60"], name="linkparent",
                                  host_config=api.create_host_config(links={"linkchild": "my-link"}))["Id"]
    api.start(parent)
    wait_for(lambda: b"MY_LINK_NAME" in api.logs(parent), what="the linked container's env")
    env = api.logs(parent).decode().splitlines()
    assert {"MY_LINK_NAME=/linkparent/my-link", "MY_LINK_ENV_FOO=1", f"MY_LINK_PORT=udp://{ip}:53",
            f"MY_LINK_PORT_80_TCP=tcp://{ip}:80", f"MY_LINK_PORT_80_TCP_ADDR={ip}", "MY_LINK_PORT_80_TCP_PORT=80",
            "MY_LINK_PORT_80_TCP_PROTO=tcp", f"MY_LINK_PORT_53_UDP=udp://{ip}:53"} <= set(env)
    assert not any(e.startswith(("MY_LINK_ENV_PATH", "MY_LINK_ENV_HOME")) for e in env)
    with pytest.raises(docker.errors.NotFound):
        api.remove_container("linkparent/nosuchalias", link=True)
    api.remove_container("linkparent/my-link", link=True)
    assert not api.inspect_container(parent)["HostConfig"]["Links"]
    assert {c["Id"] for c in api.containers()} >= {child, parent}
    for c in (cid, child, parent):
        api.remove_container(c, force=True)


def test_attach_output_not_lost_behind_the_101(client: docker.DockerClient, images: TestImages) -> None:
    """docker-py reads a hijacked stream from the socket beneath the buffered reader that read the `101` headers:
    output sent before the client has read them lands in that buffer and is lost (its test_attach_no_stream).
    The engine holds the stream back until the client has taken the headers off the socket."""
    ctr = client.containers.run(images.busybox, "echo hello", detach=True)
    try:
        ctr.wait()
        lost = sum(client.api.attach(ctr.id, stream=False, logs=True) != b"hello\n" for _ in range(200))
        assert lost == 0, f"{lost} of 200 attaches lost the output"
    finally:
        ctr.remove(force=True)



def test_force_remove_while_it_exits(client: docker.DockerClient, images: TestImages) -> None:
    """`rm -f` right after the start of a command that ends at once: the kill may find the process gone before its
    exit is handled — that is a container that stopped meanwhile, not a 500 (crun: "open pidfd: No such process")."""
    api = client.api
    for _ in range(60):
        cid = api.create_container(images.busybox, "true")["Id"]
        api.start(cid)
        api.remove_container(cid, force=True)
