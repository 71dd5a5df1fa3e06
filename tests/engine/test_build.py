"""`docker build` end to end: the real docker CLI (DOCKER_BUILDKIT=0, classic /build) and docker-py
against a real skiffd, with RUN steps in real containers."""

from __future__ import annotations

import json
import os
import shutil
import io
import tarfile
from pathlib import Path

import pytest

from tests.engine import harness
from tests.engine.harness import Skiffd, tempdir

Images = harness.TestImages  # (not named Test*: pytest would try to collect it)

pytestmark = pytest.mark.slow  # every test here builds images (pyproject's marker: "… or build an image")


@pytest.fixture()
def ctxdir() -> Path:
    d = tempdir("skiff-buildctx-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def write(d: Path, files: dict[str, str | bytes]) -> None:
    for name, data in files.items():
        p = d / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)


def inspect(skiffd: Skiffd, ref: str) -> dict:
    return json.loads(skiffd.docker("image", "inspect", ref).stdout)[0]


def test_cli_build_config_copy_run(skiffd: Skiffd, images: Images, ctxdir: Path) -> None:
    write(ctxdir, {
        "Dockerfile": f"FROM {images.busybox}\nENV GREETING=hello\nCOPY a.txt /app/\nWORKDIR /app\n"
                      "RUN echo \"$GREETING from run\" > run.txt && echo to-stderr >&2\nCMD [\"cat\", \"a.txt\", \"run.txt\"]\n",
        "a.txt": "file a\n",
    })
    r = skiffd.docker("build", "-t", "bt:one", str(ctxdir))
    out = r.stdout
    assert "Step 1/6 : FROM" in out and "Step 6/6 : CMD" in out
    assert "to-stderr" in out + r.stderr
    assert "Successfully built" in out and "Successfully tagged bt:one" in out
    run = skiffd.docker("run", "--rm", "bt:one")
    assert run.stdout == "file a\nhello from run\n"
    cfg = inspect(skiffd, "bt:one")["Config"]
    assert cfg["WorkingDir"] == "/app" and "GREETING=hello" in cfg["Env"]
    hist = skiffd.docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", "bt:one").stdout.splitlines()
    assert hist[0] == '/bin/sh -c #(nop)  CMD ["cat" "a.txt" "run.txt"]'
    assert hist[1].startswith('/bin/sh -c echo "$GREETING from run"')
    assert hist[2] == "/bin/sh -c #(nop) WORKDIR /app"
    assert hist[3].startswith("/bin/sh -c #(nop) COPY file:") and hist[3].endswith(" in /app/ ")
    assert hist[4] == "/bin/sh -c #(nop)  ENV GREETING=hello"


def test_multistage_build_args_and_target(skiffd: Skiffd, images: Images, ctxdir: Path) -> None:
    write(ctxdir, {
        "Dockerfile": (
            f"ARG BASE={images.busybox}\n"
            "FROM $BASE AS builder\n"
            "ARG FLAVOR=plain\n"
            "ARG UNUSED_DEFAULT=x\n"
            "RUN mkdir -p /out && echo \"flavor=$FLAVOR\" > /out/result && echo built > /out/marker\n"
            "FROM builder AS tester\n"
            "RUN test -f /out/marker && echo tested > /out/tested\n"
            "FROM $BASE\n"
            "ARG FLAVOR\n"
            "COPY --from=builder /out/result /result\n"
            "COPY --from=0 /out/marker /marker\n"
            "RUN echo \"final sees $FLAVOR\" > /final\n"
            "CMD cat /result /marker /final\n"
        ),
    })
    r = skiffd.docker("build", "--build-arg", "FLAVOR=spicy", "--build-arg", "NOBODY=1", "-t", "bt:multi", str(ctxdir))
    assert "Step 1/13 : ARG BASE=" in r.stdout
    assert "[Warning] One or more build-args [NOBODY] were not consumed" in r.stdout
    assert skiffd.docker("run", "--rm", "bt:multi").stdout == "flavor=spicy\nbuilt\nfinal sees spicy\n"
    hist = skiffd.docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", "bt:multi").stdout
    assert "|1 FLAVOR=spicy /bin/sh -c echo \"final sees $FLAVOR\" > /final" in hist
    # --target stops at that stage; the stage after it is not built
    r = skiffd.docker("build", "--target", "tester", "-t", "bt:tester", str(ctxdir))
    assert "Step 7/7 : RUN test -f /out/marker" in r.stdout
    assert skiffd.docker("run", "--rm", "bt:tester", "cat", "/out/result", "/out/tested").stdout == "flavor=plain\ntested\n"
    r = skiffd.docker("build", "--target", "nope", str(ctxdir), check=False)
    assert r.returncode != 0 and "failed to reach build target nope in Dockerfile" in r.stderr


def test_dockerignore_and_context_rules(skiffd: Skiffd, images: Images, ctxdir: Path) -> None:
    write(ctxdir, {
        "Dockerfile": f"FROM {images.busybox}\nCOPY . /ctx/\nRUN cd /ctx && find . | sort > /listing\nCMD cat /listing\n",
        ".dockerignore": "# comments are ignored\n*.log\n!keep.log\nsecrets/\n**/node_modules\nDockerfile\n",
        "app.py": "print()\n", "debug.log": "x", "keep.log": "k", "secrets/key": "s",
        "web/node_modules/m.js": "m", "web/index.js": "i",
    })
    skiffd.docker("build", "-t", "bt:ignore", str(ctxdir))
    listing = skiffd.docker("run", "--rm", "bt:ignore").stdout.split()
    assert listing == [".", "./.dockerignore", "./app.py", "./keep.log", "./web", "./web/index.js"]


def test_dockerignore_applied_by_the_daemon(skiffd: Skiffd, images: Images) -> None:
    """A client that sends the raw directory (no client-side filtering) still gets .dockerignore applied."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in {"Dockerfile": f"FROM {images.busybox}\nCOPY . /ctx/\n", ".dockerignore": "*.secret\n",
                           "a.txt": "a", "b.secret": "b"}.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data.encode()))
    client = skiffd.client()
    resp = client.api.build(fileobj=io.BytesIO(buf.getvalue()), custom_context=True, tag="bt:raw", decode=True)
    msgs = list(resp)
    assert not [m for m in msgs if "error" in m], msgs
    out = skiffd.docker("run", "--rm", "bt:raw", "ls", "-A", "/ctx").stdout.split()
    assert out == [".dockerignore", "Dockerfile", "a.txt"]


def test_cache_hit_then_miss_after_file_change(skiffd: Skiffd, images: Images, ctxdir: Path) -> None:
    write(ctxdir, {
        "Dockerfile": (f"FROM {images.busybox}\nENV STAGE=cache\nRUN echo slow-step > /slow\n"
                       "COPY src.txt /src.txt\nRUN cat /src.txt > /copied\nCMD cat /copied\n"),
        "src.txt": "version 1\n",
    })
    first = skiffd.docker("build", "-t", "bt:cache", str(ctxdir)).stdout
    assert "Using cache" not in first
    id1 = inspect(skiffd, "bt:cache")["Id"]
    again = skiffd.docker("build", "-t", "bt:cache", str(ctxdir)).stdout
    assert again.count(" ---> Using cache") == 5
    assert "Running in" not in again
    assert inspect(skiffd, "bt:cache")["Id"] == id1
    # touching a file (mtime only) keeps the cache, as in Docker
    os.utime(ctxdir / "src.txt", (1, 1))
    assert skiffd.docker("build", "-t", "bt:cache", str(ctxdir)).stdout.count("Using cache") == 5
    (ctxdir / "src.txt").write_text("version 2\n")
    changed = skiffd.docker("build", "-t", "bt:cache", str(ctxdir)).stdout
    steps = changed.split("Step ")[1:]
    assert ["Using cache" in s for s in steps] == [False, True, True, False, False, False]
    assert "Running in" in steps[4]
    assert skiffd.docker("run", "--rm", "bt:cache").stdout == "version 2\n"
    assert inspect(skiffd, "bt:cache")["Id"] != id1
    nocache = skiffd.docker("build", "--no-cache", "-t", "bt:cache", str(ctxdir)).stdout
    assert "Using cache" not in nocache


def test_failing_run_reports_and_leaves_no_tag(skiffd: Skiffd, images: Images, ctxdir: Path) -> None:
    write(ctxdir, {"Dockerfile": f"FROM {images.busybox}\nRUN echo fine > /f\nCMD true\n"})
    skiffd.docker("build", "-t", "bt:fail", str(ctxdir))
    good = inspect(skiffd, "bt:fail")["Id"]
    before = set(skiffd.docker("ps", "-aq", "--no-trunc").stdout.split())
    write(ctxdir, {"Dockerfile": f"FROM {images.busybox}\nRUN echo fine > /f\n"
                                 "RUN echo output-before-failure && echo oops >&2 && exit 3\nCMD true\n"})
    r = skiffd.docker("build", "-t", "bt:fail", "-t", "bt:never", str(ctxdir), check=False)
    assert r.returncode == 3
    assert "Step 3/4 : RUN echo output-before-failure" in r.stdout
    assert "output-before-failure" in r.stdout and "oops" in r.stdout
    assert "The command '/bin/sh -c echo output-before-failure && echo oops >&2 && exit 3' returned a non-zero code: 3" in r.stderr
    assert "Successfully" not in r.stdout
    assert inspect(skiffd, "bt:fail")["Id"] == good  # the old tag is untouched
    assert skiffd.docker("image", "inspect", "bt:never", check=False).returncode != 0
    # Docker keeps the failed step's container for inspection (without --force-rm) ...
    left = set(skiffd.docker("ps", "-aq", "--no-trunc").stdout.split()) - before
    assert len(left) == 1
    skiffd.docker("rm", left.pop())
    # ... and removes it with --force-rm
    r = skiffd.docker("build", "--force-rm", str(ctxdir), check=False)
    assert r.returncode == 3
    assert set(skiffd.docker("ps", "-aq", "--no-trunc").stdout.split()) == before


def test_parse_errors_point_at_the_line(skiffd: Skiffd, images: Images, ctxdir: Path) -> None:
    write(ctxdir, {"Dockerfile": f"FROM {images.busybox}\nRUN true\nFOO bar\n"})
    r = skiffd.docker("build", str(ctxdir), check=False)
    assert r.returncode == 1
    assert "dockerfile parse error on line 3: unknown instruction: FOO" in r.stderr
    write(ctxdir, {"Dockerfile": f"FROM {images.busybox}\nCOPY missing.txt /x\n"})
    r = skiffd.docker("build", str(ctxdir), check=False)
    assert r.returncode == 1
    assert "COPY failed: file not found in build context or excluded by .dockerignore: stat missing.txt" in r.stderr
    r = skiffd.docker("build", "-f", "Nope", str(ctxdir), check=False)
    assert r.returncode == 1 and "Nope" in r.stderr


def test_quiet_iidfile_labels(skiffd: Skiffd, images: Images, ctxdir: Path) -> None:
    write(ctxdir, {"Dockerfile": f"FROM {images.busybox}\nLABEL from.file=yes\n"})
    iid = ctxdir / "iid"
    r = skiffd.docker("build", "-q", "--iidfile", str(iid), "--label", "from.cli=a b", "-t", "bt:quiet", str(ctxdir))
    assert r.stdout.strip() == iid.read_text().strip()
    assert r.stdout.strip().startswith("sha256:") and "Step" not in r.stdout
    info = inspect(skiffd, "bt:quiet")
    assert info["Id"] == iid.read_text().strip()
    assert info["Config"]["Labels"] == {"from.file": "yes", "from.cli": "a b"}


def test_instruction_set(skiffd: Skiffd, images: Images, ctxdir: Path) -> None:
    tar_buf = io.BytesIO()
    with tarfile.open(fileobj=tar_buf, mode="w:gz") as tf:
        data = b"inside the archive\n"
        ti = tarfile.TarInfo("pkg/readme")
        ti.size, ti.uid, ti.gid = len(data), 1234, 5678
        tf.addfile(ti, io.BytesIO(data))
    write(ctxdir, {
        "Dockerfile": (
            "# escape=`\n"
            f"FROM {images.busybox}\n"
            "ENV DIR=/srv `\n    NAME=demo\n"
            "ADD bundle.tar.gz /opt/\n"
            "COPY --chown=www:www f1.txt f2.txt ${DIR}/\n"
            "COPY --chown=1000 f1.txt /owned/\n"
            "COPY f*.txt /glob/\n"
            "WORKDIR $DIR\n"
            "WORKDIR sub\n"
            "USER www\n"
            "RUN id -u > /tmp/uid && pwd > /tmp/pwd\n"
            "USER root\n"
            "SHELL [\"/bin/sh\", \"-ec\"]\n"
            "RUN echo shell-ok > /shell\n"
            "EXPOSE 8080 53/udp\n"
            "VOLUME /data\n"
            "STOPSIGNAL SIGINT\n"
            "HEALTHCHECK --interval=5s --retries=2 CMD true\n"
            "ONBUILD RUN echo triggered > /onbuild\n"
            "MAINTAINER someone\n"
            "ENTRYPOINT [\"/bin/sh\", \"-c\"]\n"
            "CMD [\"echo hi\"]\n"
        ),
        "bundle.tar.gz": tar_buf.getvalue(), "f1.txt": "one\n", "f2.txt": "two\n",
    })
    skiffd.docker("build", "-t", "bt:all", str(ctxdir))
    sh = lambda cmd: skiffd.docker("run", "--rm", "--entrypoint", "sh", "bt:all", "-c", cmd).stdout  # noqa: E731
    assert sh("cat /opt/pkg/readme; stat -c '%u:%g' /opt/pkg/readme") == "inside the archive\n1234:5678\n"
    assert sh("stat -c '%u:%g %n' /srv/f1.txt /srv/f2.txt /owned/f1.txt /srv") == "33:33 /srv/f1.txt\n33:33 /srv/f2.txt\n1000:1000 /owned/f1.txt\n33:33 /srv\n"
    assert sh("ls /glob") == "f1.txt\nf2.txt\n"
    assert sh("cat /tmp/uid /tmp/pwd /shell") == "33\n/srv/sub\nshell-ok\n"
    assert skiffd.docker("run", "--rm", "bt:all").stdout == "hi\n"
    info = inspect(skiffd, "bt:all")
    cfg = info["Config"]
    assert cfg["WorkingDir"] == "/srv/sub" and cfg["User"] == "root"
    assert cfg["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}}
    assert cfg["Volumes"] == {"/data": {}}
    assert cfg["StopSignal"] == "SIGINT"
    assert cfg["Healthcheck"] == {"Test": ["CMD-SHELL", "true"], "Interval": 5_000_000_000, "Retries": 2}
    assert cfg["OnBuild"] == ["RUN echo triggered > /onbuild"]
    assert cfg["Shell"] == ["/bin/sh", "-ec"]
    assert cfg["Entrypoint"] == ["/bin/sh", "-c"] and cfg["Cmd"] == ["echo hi"]
    assert "DIR=/srv" in cfg["Env"] and "NAME=demo" in cfg["Env"]
    assert info["Author"] == "someone"
    # ONBUILD triggers run in a build FROM this image
    child = ctxdir / "child"
    write(child, {"Dockerfile": "FROM bt:all\nRUN cat /onbuild\n"})
    r = skiffd.docker("build", "-t", "bt:child", str(child))
    assert "# Executing 1 build trigger" in r.stdout
    assert sh("true") == ""
    assert skiffd.docker("run", "--rm", "--entrypoint", "cat", "bt:child", "/onbuild").stdout == "triggered\n"
    assert inspect(skiffd, "bt:child")["Config"]["OnBuild"] in (None, [])


def test_from_scratch_and_stage_copy(skiffd: Skiffd, images: Images, ctxdir: Path) -> None:
    write(ctxdir, {
        "Dockerfile": (f"FROM {images.busybox} AS tools\nRUN mkdir -p /rootfs/bin && cp /bin/busybox /rootfs/bin/ "
                       "&& ln -s busybox /rootfs/bin/sh && ln -s busybox /rootfs/bin/echo\n"
                       "FROM scratch\nCOPY --from=tools /rootfs/ /\nCMD [\"/bin/echo\", \"from scratch\"]\n"),
    })
    skiffd.docker("build", "-t", "bt:scratch", str(ctxdir))
    assert skiffd.docker("run", "--rm", "bt:scratch").stdout == "from scratch\n"
    assert len(inspect(skiffd, "bt:scratch")["RootFS"]["Layers"]) == 1


def test_docker_py_build(skiffd: Skiffd, images: Images, ctxdir: Path) -> None:
    import docker

    write(ctxdir, {"Dockerfile": f"FROM {images.busybox}\nARG WHO=nobody\nRUN echo hello $WHO > /hello\nCMD cat /hello\n"})
    client = skiffd.client()
    img, logs = client.images.build(path=str(ctxdir), tag="bt:py", buildargs={"WHO": "docker-py"}, rm=True)
    logs = list(logs)
    assert any("aux" in m for m in logs)
    assert "bt:py" in img.tags
    assert client.containers.run("bt:py", remove=True) == b"hello docker-py\n"
    write(ctxdir, {"Dockerfile": f"FROM {images.busybox}\nRUN exit 7\n"})
    with pytest.raises(docker.errors.BuildError) as ei:
        client.images.build(path=str(ctxdir), tag="bt:pyfail", forcerm=True)
    assert "returned a non-zero code: 7" in str(ei.value)


def test_stdin_dockerfile_and_outside_dockerfile(skiffd: Skiffd, images: Images, ctxdir: Path) -> None:
    df = f"FROM {images.busybox}\nRUN echo from-stdin > /s\n"
    r = skiffd.docker("build", "-t", "bt:stdin", "-", input=df)
    assert "Successfully tagged bt:stdin" in r.stdout
    assert skiffd.docker("run", "--rm", "bt:stdin", "cat", "/s").stdout == "from-stdin\n"
    # -f pointing outside the context: the CLI ships it under a generated name
    write(ctxdir, {"ctx/data.txt": "d\n", "elsewhere/Build.df": f"FROM {images.busybox}\nCOPY data.txt /\n"})
    skiffd.docker("build", "-f", str(ctxdir / "elsewhere/Build.df"), "-t", "bt:outside", str(ctxdir / "ctx"))
    assert skiffd.docker("run", "--rm", "bt:outside", "cat", "/data.txt").stdout == "d\n"
    # docker-py's way: the Dockerfile under a random name in the tar, excluded by a generated .dockerignore, and the
    # query `dockerfile=NAME&dockerfile=CONTENT` (a tuple); dockerd reads the first value (Go's FormValue)
    write(ctxdir, {"ctx/.dockerignore": ".dockerignore\n",
                   "elsewhere/py.df": f"FROM {images.busybox}\nCOPY . /src\nWORKDIR /src\n"})
    client = skiffd.client()
    img, _ = client.images.build(path=str(ctxdir / "ctx"), dockerfile=str(ctxdir / "elsewhere/py.df"), tag="bt:pydf")
    try:
        listing = client.containers.run("bt:pydf", "ls -a", remove=True).split()
        assert sorted(listing) == [b".", b"..", b"data.txt"]  # neither the Dockerfile nor .dockerignore copied
    finally:
        client.images.remove(img.id, force=True)
    # --compress: the context arrives gzipped
    skiffd.docker("build", "--compress", "--no-cache", "-f", str(ctxdir / "elsewhere/Build.df"), "-t", "bt:gz",
                  str(ctxdir / "ctx"))
    assert skiffd.docker("run", "--rm", "bt:gz", "cat", "/data.txt").stdout == "d\n"


def _build_dirs(skiffd: Skiffd) -> list[str]:
    return os.listdir(skiffd.data_root / "build" / "tmp")


def test_cancelled_build_cleans_up(skiffd: Skiffd, images: Images, ctxdir: Path) -> None:
    import subprocess
    import time

    write(ctxdir, {"Dockerfile": f"FROM {images.busybox}\nCOPY . /ctx\nRUN echo started && sleep 60\n"})
    before = set(skiffd.docker("ps", "-aq", "--no-trunc").stdout.split())
    p = subprocess.Popen(["docker", "build", "-t", "bt:cancel", str(ctxdir)], env=skiffd.env(),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert p.stdout is not None
        for line in p.stdout:
            if "started" in line:
                break
        p.terminate()  # the client goes away, as with Ctrl-C
        p.wait(10)
    finally:
        if p.poll() is None:
            p.kill()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if set(skiffd.docker("ps", "-aq", "--no-trunc").stdout.split()) == before and not _build_dirs(skiffd):
            break
        time.sleep(0.2)
    assert set(skiffd.docker("ps", "-aq", "--no-trunc").stdout.split()) == before
    assert _build_dirs(skiffd) == []  # (also checks that every earlier build in this module cleaned up)
    assert skiffd.docker("image", "inspect", "bt:cancel", check=False).returncode != 0


def test_daemon_killed_mid_build_recovers(fresh_skiffd: Skiffd, images: Images, ctxdir: Path) -> None:
    import subprocess

    d = fresh_skiffd
    write(ctxdir, {"Dockerfile": f"FROM {images.busybox}\nRUN echo started && sleep 60\n"})
    p = subprocess.Popen(["docker", "build", str(ctxdir)], env=d.env(), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    try:
        assert p.stdout is not None
        for line in p.stdout:
            if "started" in line:
                break
        assert _build_dirs(d)
        # (output can come before the engine has recorded the container as running; wait for that)
        harness.wait_for(lambda: d.docker("ps", "-q").stdout.strip() != "", what="RUN container running")
        d.kill()
        p.wait(20)
    finally:
        if p.poll() is None:
            p.kill()
    d.start()
    assert _build_dirs(d) == []
    # the interrupted step's container is an ordinary (dead) container: removable
    for cid in d.docker("ps", "-aq").stdout.split():
        d.docker("rm", "-f", cid)
    write(ctxdir, {"Dockerfile": f"FROM {images.busybox}\nRUN echo after-restart\n"})
    assert "after-restart" in d.docker("build", str(ctxdir)).stdout


def test_add_from_url_and_network_modes(skiffd: Skiffd, images: Images, ctxdir: Path) -> None:
    import subprocess

    served = ctxdir / "served"
    write(served, {"remote.txt": "fetched over http\n"})
    srv = subprocess.Popen(skiffd.ns.cmd(["python3", "-m", "http.server",
                                          "--bind", "127.0.0.1", "8765", "--directory", str(served)]),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        harness.wait_for(lambda: skiffd.ns.run(["curl", "-sf", "http://127.0.0.1:8765/remote.txt"]).returncode == 0,
                         what="http server")
        write(ctxdir, {"Dockerfile": (f"FROM {images.busybox}\nADD http://127.0.0.1:8765/remote.txt /dl/\n"
                                      "RUN cat /dl/remote.txt > /copy\n")})
        # --network host: the RUN container shares the daemon's namespace (where the server listens)
        skiffd.docker("build", "--network", "host", "-t", "bt:url", str(ctxdir))
        assert skiffd.docker("run", "--rm", "bt:url", "cat", "/dl/remote.txt").stdout == "fetched over http\n"
        write(ctxdir, {"Dockerfile": f"FROM {images.busybox}\nRUN printf 'GET /remote.txt HTTP/1.0\\r\\n\\r\\n' | nc -w 2 127.0.0.1 8765\n"})
        r = skiffd.docker("build", "--network", "none", str(ctxdir), check=False)
        assert r.returncode != 0  # no network at all
        r = skiffd.docker("build", "--network", "host", str(ctxdir))
        assert "fetched over http" in r.stdout
    finally:
        srv.terminate()
        srv.wait(10)


def test_pull_option_and_builder_prune(skiffd: Skiffd, images: Images, ctxdir: Path) -> None:
    write(ctxdir, {"Dockerfile": f"FROM {images.busybox}\nENV PRUNE=1\nRUN echo x > /x\n"})
    r = skiffd.docker("build", "--pull", "-t", "bt:prune", str(ctxdir))
    assert "Pulling from test/busybox" in r.stdout and "Digest: sha256:" in r.stdout  # FROM pulled, progress shown
    assert skiffd.docker("build", "-t", "bt:prune", str(ctxdir)).stdout.count("Using cache") == 2
    r = skiffd.docker("builder", "prune", "-f")
    assert "Total reclaimed space" in r.stdout
    assert "Using cache" not in skiffd.docker("build", "-t", "bt:prune", str(ctxdir)).stdout


def test_predefined_proxy_args(skiffd: Skiffd, images: Images, ctxdir: Path) -> None:
    write(ctxdir, {"Dockerfile": f"FROM {images.busybox}\nRUN echo \"proxy=$http_proxy\" > /p\n"})
    r = skiffd.docker("build", "--build-arg", "http_proxy=http://proxy.example:3128", "-t", "bt:proxy", str(ctxdir))
    assert "not consumed" not in r.stdout  # usable without an ARG line
    assert skiffd.docker("run", "--rm", "bt:proxy", "cat", "/p").stdout == "proxy=http://proxy.example:3128\n"
    hist = skiffd.docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", "bt:proxy").stdout.splitlines()
    assert hist[0] == '|0 /bin/sh -c echo "proxy=$http_proxy" > /p'  # kept out of history and the cache key
    assert "Using cache" in skiffd.docker("build", "--build-arg", "http_proxy=http://other:1", str(ctxdir)).stdout
    assert "http_proxy" not in json.dumps(inspect(skiffd, "bt:proxy")["Config"]["Env"])


def test_cache_from(skiffd: Skiffd, images: Images, ctxdir: Path) -> None:
    """`--cache-from` as dockerd's classic builder: the named images are the only cache sources (the local step
    cache counts for their ancestors only; a name that is no image leaves nothing to hit), and an image without
    its intermediate images (loaded, pulled) serves as cache through its history and layers."""
    def build(tag: str, *flags: str) -> str:
        return skiffd.docker("build", *flags, "-t", tag, str(ctxdir)).stdout

    lines = [f"FROM {images.busybox}", "ENV FOO=bar", "RUN touch /baz", "RUN touch /bax"]
    write(ctxdir, {"Dockerfile": "\n".join(lines) + "\n"})
    tar = ctxdir.parent / (ctxdir.name + ".tar")
    try:
        assert build("cf:one").count("Using cache") == 0
        first = inspect(skiffd, "cf:one")["Id"]
        assert build("cf:two", "--cache-from", "cf:one").count("Using cache") == 3
        assert build("cf:two", "--cache-from", "nosuchtag").count("Using cache") == 0
        assert build("cf:two").count("Using cache") == 3  # without --cache-from: the local cache again
        # a loaded image has no intermediate images and no step-cache entries: its history is the cache
        skiffd.docker("save", "-o", str(tar), "cf:one")
        skiffd.docker("rmi", "cf:one", "cf:two")
        skiffd.docker("image", "prune", "-f")
        skiffd.docker("load", "-i", str(tar))
        assert inspect(skiffd, "cf:one")["Parent"] == ""
        assert build("cf:three").count("Using cache") == 0
        skiffd.docker("rmi", "cf:three")
        out = build("cf:four", "--cache-from", "cf:one")
        assert out.count("Using cache") == 3 and inspect(skiffd, "cf:four")["Id"] == first
        write(ctxdir, {"Dockerfile": "\n".join(lines[:3] + ["RUN touch /other"]) + "\n"})
        out = build("cf:five", "--cache-from", "cf:one")
        assert out.count("Using cache") == 2  # ENV and the first RUN, rebuilt over the loaded image's layer
        assert skiffd.docker("run", "--rm", "cf:five", "ls", "/baz", "/other").stdout.split() == ["/baz", "/other"]
        assert inspect(skiffd, "cf:five")["RootFS"]["Layers"][:-1] == inspect(skiffd, "cf:one")["RootFS"]["Layers"][:-1]
    finally:
        tar.unlink(missing_ok=True)
        skiffd.docker("rmi", "-f", "cf:one", "cf:two", "cf:three", "cf:four", "cf:five", check=False)
