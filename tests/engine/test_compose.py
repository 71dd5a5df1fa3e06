"""Debian's docker-compose (v1.29, Python, over docker-py) against skiffd: a two-service stack with a web server and
a client reaching it by service name, a named volume and a custom network; `up`, `ps`, `logs`, `down -v`."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.engine.harness import Skiffd, TestImages, rmtree, tempdir

COMPOSE = shutil.which("docker-compose")

STACK = """\
version: "3.8"
services:
  web:
    image: {image}
    command: ["sh", "-c", "mkdir -p /www && cp /data/index.html /www/ 2>/dev/null || echo hello-compose > /www/index.html; exec httpd -f -p 80 -h /www"]
    networks: [appnet]
    volumes: ["webdata:/data"]
    ports: ["127.0.0.1:28383:80"]
  client:
    image: {image}
    command: ["sh", "-c", "for i in $$(seq 1 30); do wget -qO- http://web/ && break; sleep 1; done; echo client-done; exec sleep 300"]
    depends_on: [web]
    networks:
      appnet:
        aliases: [cli]
networks:
  appnet:
    driver: bridge
volumes:
  webdata: {{}}
"""


@pytest.fixture()
def project(skiffd: Skiffd, images: TestImages):
    skiffd.docker("pull", "-q", images.busybox)
    d = tempdir("skcompose-")
    (d / "docker-compose.yml").write_text(STACK.format(image=images.busybox))
    yield d
    compose(skiffd, d, "down", "-v", "-t", "1", check=False)
    rmtree(d)


def compose(skiffd: Skiffd, d: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = skiffd.env()
    env["COMPOSE_INTERACTIVE_NO_CLI"] = "1"
    r = subprocess.run([COMPOSE, "-p", "sktest", *args], cwd=d, env=env, capture_output=True, text=True, timeout=300)
    if check and r.returncode != 0:
        raise AssertionError(f"docker-compose {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


@pytest.mark.slow
@pytest.mark.skipif(COMPOSE is None, reason="docker-compose is not installed")
def test_compose_stack(skiffd: Skiffd, project: Path) -> None:
    version = subprocess.run([COMPOSE, "version", "--short"], capture_output=True, text=True).stdout.strip()
    assert version.startswith("1.29"), version  # Debian 12's compose v1
    compose(skiffd, project, "up", "-d")
    ps = compose(skiffd, project, "ps").stdout
    assert "sktest_web_1" in ps and "sktest_client_1" in ps and ps.count("Up") == 2
    deadline = time.monotonic() + 60
    logs = ""
    while time.monotonic() < deadline:
        logs = compose(skiffd, project, "logs", "--no-color", "client").stdout
        if "client-done" in logs:
            break
        time.sleep(1)
    assert "hello-compose" in logs and "client-done" in logs, logs
    # the published port answers on the VM side
    assert skiffd.ns.run(["timeout", "10", "busybox", "wget", "-qO-", "http://127.0.0.1:28383/"]).stdout == "hello-compose\n"
    net = json.loads(skiffd.docker("network", "inspect", "sktest_appnet").stdout)[0]
    assert net["Labels"]["com.docker.compose.project"] == "sktest"
    assert sorted(c["Name"] for c in net["Containers"].values()) == ["sktest_client_1", "sktest_web_1"]
    vol = json.loads(skiffd.docker("volume", "inspect", "sktest_webdata").stdout)[0]
    assert vol["Labels"]["com.docker.compose.project"] == "sktest"
    # the alias and the service name both resolve inside the network
    out = skiffd.docker("exec", "sktest_web_1", "sh", "-c", "nslookup cli >/dev/null && nslookup client >/dev/null && echo ok").stdout
    assert out.strip() == "ok"
    compose(skiffd, project, "down", "-v", "-t", "1")
    assert "sktest" not in skiffd.docker("ps", "-a", "--format", "{{.Names}}").stdout
    assert "sktest_appnet" not in skiffd.docker("network", "ls", "--format", "{{.Name}}").stdout
    assert "sktest_webdata" not in skiffd.docker("volume", "ls", "-q").stdout
