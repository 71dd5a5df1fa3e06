"""`skiff context`: a Skiff machine selected with `context use` is a docker context, so both clients reach it
without DOCKER_HOST, and `context ls/show/inspect` print what docker prints for the same store."""

from __future__ import annotations

import json
from pathlib import Path

from tests.client.compare import normalize
from tests.client.test_tls_machine import TLSEngine, machine_store, tls_engine  # noqa: F401  (fixture)
from tests.engine.harness import TestImages


def test_context_use_machine_serves_both_clients(tls_engine: TLSEngine, tmp_path: Path,  # noqa: F811
                                                 images: TestImages) -> None:
    e = tls_engine
    machine_store(e, tmp_path / "store", "ctxbox")
    cfg = tmp_path / "dockercfg"
    env = {k: v for k, v in e.env().items() if not k.startswith("DOCKER_")}
    env.update(MACHINE_STORAGE_PATH=str(tmp_path / "store"), DOCKER_CONFIG=str(cfg), DOCKER_CLI_HINTS="false")

    def both(*args: str):
        return e.run("docker", *args, env=env), e.run("skiff", *args, env=env)

    s = e.run("skiff", "context", "ls", env=env)
    assert s.returncode == 0 and s.stdout.splitlines()[0].split() == ["NAME", "DESCRIPTION", "DOCKER", "ENDPOINT",
                                                                       "ERROR"], s
    assert "default *" in s.stdout and "ctxbox      Skiff machine ctxbox" in s.stdout and e.url in s.stdout, s
    s = e.run("skiff", "context", "use", "ctxbox", env=env)
    assert (s.returncode, s.stdout, s.stderr) == (0, "ctxbox\n", 'Current context is now "ctxbox"\n'), s
    assert json.loads((cfg / "config.json").read_text())["currentContext"] == "ctxbox"
    # both clients now reach the machine's engine (TLS with the store's client certificate), no DOCKER_HOST
    d, s = both("images", "--format", "{{.Repository}}:{{.Tag}}")
    assert d.returncode == s.returncode == 0 and images.busybox in s.stdout and d.stdout == s.stdout, (d, s)
    s = e.run("skiff", "run", "--rm", images.busybox, "echo", "via context", env=env)
    assert (s.returncode, s.stdout) == (0, "via context\n"), s
    for args in (["version", "--format", "{{.Client.Context}}"], ["context", "ls"], ["context", "show"], ["context", "inspect"], ["context", "ls", "-q"],
                 ["context", "ls", "--format", "json"], ["context", "inspect", "-f", "{{.Endpoints.docker.Host}}"],
                 ["context", "inspect", "default"], ["context", "use", "nosuch"], ["--context", "nosuch", "ps"],
                 ["-H", e.url, "--context", "ctxbox", "ps"], ["context", "use"]):
        d, s = both(*args)
        assert (d.returncode, normalize(d.stdout), normalize(d.stderr)) == \
            (s.returncode, normalize(s.stdout), normalize(s.stderr)), (d, s)
    d = e.run("docker", "context", "use", "default", env=env)
    assert d.returncode == 0
    assert e.run("skiff", "context", "show", env=env).stdout == "default\n"
    s = e.run("skiff", "--context", "ctxbox", "version", "--format", "{{.Server.Os}}", env=env)
    assert (s.returncode, s.stdout) == (0, "linux\n"), s
    d, s = both("context", "use", "default")
    assert (d.stdout, d.stderr) == (s.stdout, s.stderr) and "currentContext" not in (cfg / "config.json").read_text()
