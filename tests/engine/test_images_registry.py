"""The registry client against a scripted registry: bearer and basic auth (from X-Registry-Auth and
`docker login`), redirects to another host without the Authorization header, Range resume after a
dropped connection, and a daemon killed with SIGKILL in the middle of a pull."""

from __future__ import annotations

import base64
import json
import subprocess
import time
from pathlib import Path

import docker.errors
import pytest

from tests.engine.harness import NetNS, Registry, Skiffd, busybox_rootfs_layer, wait_for
from tests.engine.images_fixtures import FakeRegistry, RegistryProxy, image_routes, push_random_image, sha


@pytest.fixture(scope="module")
def base_layer() -> bytes:
    return busybox_rootfs_layer()


def _auths(log: list[dict], prefix: str) -> set[str]:
    return {e["auth"] for e in log if e["path"].startswith(prefix)}


def test_anonymous_bearer_token(fresh_skiffd: Skiffd, netns: NetNS, tmp_path: Path, base_layer: bytes) -> None:
    routes, digest = image_routes("lib/bb", "1.0", [base_layer])
    fake = FakeRegistry(netns, tmp_path, 5301, routes, auth=("bearer", "", ""))
    try:
        out = fresh_skiffd.docker("pull", f"{fake.addr}/lib/bb:1.0").stdout
        assert f"Digest: {digest}" in out
        log = fake.log()
    finally:
        fake.stop()
    tok = [e for e in log if e["path"].startswith("/token")]
    assert tok and "scope=repository%3Alib%2Fbb%3Apull" in tok[0]["path"] and "service=fake-registry" in tok[0]["path"]
    assert tok[0]["auth"] == ""  # anonymous
    blob_auth = _auths(log, "/v2/lib/bb/blobs/")
    assert len(blob_auth) == 1 and blob_auth.pop().startswith("Bearer tok-")
    manifests = [e for e in log if "/manifests/" in e["path"]]
    assert manifests[0]["auth"] == "" and manifests[-1]["auth"].startswith("Bearer tok-")  # challenge, then token


def test_bearer_with_credentials_and_login(fresh_skiffd: Skiffd, netns: NetNS, tmp_path: Path, base_layer: bytes) -> None:
    routes, _ = image_routes("private/bb", "v1", [base_layer])
    fake = FakeRegistry(netns, tmp_path, 5302, routes, auth=("bearer", "alice", "s3cret"))
    ref = f"{fake.addr}/private/bb:v1"
    try:
        r = fresh_skiffd.docker("pull", ref, check=False)
        assert r.returncode == 1 and "unauthorized" in r.stderr.lower()
        # docker-py sends the credentials in X-Registry-Auth
        c = fresh_skiffd.client()
        with pytest.raises(docker.errors.APIError):
            c.images.pull(ref, auth_config={"username": "alice", "password": "wrong"})
        img = c.images.pull(ref, auth_config={"username": "alice", "password": "s3cret"})
        assert img.tags == [ref]
        basic = "Basic " + base64.b64encode(b"alice:s3cret").decode()
        tok = [e for e in fake.log() if e["path"].startswith("/token")]
        assert basic in {e["auth"] for e in tok} and any("account=alice" in e["path"] for e in tok)
        # docker login → POST /auth, then the CLI sends the stored credentials itself
        bad = fresh_skiffd.docker("login", "-u", "alice", "--password-stdin", fake.addr, input="nope\n", check=False)
        assert bad.returncode == 1
        good = fresh_skiffd.docker("login", "-u", "alice", "--password-stdin", fake.addr, input="s3cret\n")
        assert "Login Succeeded" in good.stdout
        fresh_skiffd.docker("rmi", ref)
        fresh_skiffd.docker("pull", ref)
    finally:
        fake.stop()


def test_basic_auth_registry(fresh_skiffd: Skiffd, netns: NetNS, tmp_path: Path, base_layer: bytes) -> None:
    routes, _ = image_routes("b/bb", "latest", [base_layer])
    fake = FakeRegistry(netns, tmp_path, 5303, routes, auth=("basic", "bob", "pw"))
    try:
        c = fresh_skiffd.client()
        c.images.pull(f"{fake.addr}/b/bb", tag="latest", auth_config={"username": "bob", "password": "pw"})
        want = "Basic " + base64.b64encode(b"bob:pw").decode()
        assert _auths(fake.log(), "/v2/b/bb/blobs/") == {want}
    finally:
        fake.stop()


def test_redirected_blobs_drop_authorization_and_resume(fresh_skiffd: Skiffd, netns: NetNS, tmp_path: Path,
                                                        base_layer: bytes) -> None:
    routes, _ = image_routes("r/bb", "latest", [base_layer])
    layer_path = next(p for p in routes if "/blobs/" in p and len(routes[p][2]) > 100_000)
    fake = FakeRegistry(netns, tmp_path, 5304, routes, auth=("bearer", "", ""), redirect={layer_path: 1},
                        cdn_port=5305, cut_once=[layer_path])
    try:
        out = fresh_skiffd.docker("pull", f"{fake.addr}/r/bb").stdout
        assert "Pull complete" in out
        log = fake.log()
    finally:
        fake.stop()
    cdn = [e for e in log if e["port"] == 5305]
    assert cdn and all(e["auth"] == "" for e in cdn)  # no credentials sent to the other host
    assert [e for e in log if e["port"] == 5304 and e["path"] == layer_path][0]["auth"].startswith("Bearer ")
    # the first GET was cut halfway; the second asked only for the rest
    gets = [e for e in cdn if e["path"] == layer_path and e["method"] == "GET"]
    assert len(gets) == 2 and gets[0]["range"] == "" and gets[1]["range"].startswith("bytes=")
    assert int(gets[1]["range"][6:].split("-")[0]) > 0


@pytest.mark.slow
def test_sigkill_mid_pull_leaves_store_consistent(fresh_skiffd: Skiffd, netns: NetNS, registry: Registry,
                                                  tmp_path: Path) -> None:
    d = fresh_skiffd
    ref = push_random_image(registry, tmp_path, "test/big:v1", [12 << 20, 12 << 20])
    proxy = RegistryProxy(netns, tmp_path, 5106, rate=3_000_000)
    slow_ref = ref.replace(registry.addr, proxy.addr)
    try:
        p = subprocess.Popen(["docker", "pull", slow_ref], env=d.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        blobs = d.data_root / "image" / "blobs" / "tmp"
        # Wait until the big layers are streaming (temp blobs growing), then kill the daemon outright.
        wait_for(lambda: sum(f.stat().st_size for f in blobs.iterdir()) > 3_000_000, timeout=60, what="download in progress")
        d.kill()
        p.wait(30)
        assert p.returncode != 0
        tmp_layers = [x for x in (d.data_root / "image" / "l").iterdir() if x.name.startswith(".tmp-")]
        assert tmp_layers  # the kill really happened mid-unpack
        d.start()
        # Nothing half-made is visible, and restart removed the temp files.
        assert d.docker("images", "-aq").stdout.strip() == ""
        assert [x.name for x in (d.data_root / "image" / "l").iterdir() if x.name.startswith(".tmp-")] == []
        assert list(blobs.iterdir()) == []
        # A new pull succeeds and gives the right image.
        d.docker("pull", ref)
        info = d.client().images.get(ref).attrs
        assert len(info["RootFS"]["Layers"]) == 3
        assert info["Size"] > 24 << 20
    finally:
        proxy.stop()


def test_insecure_registry_setting(netns: NetNS, tmp_path: Path, base_layer: bytes) -> None:
    """A non-loopback registry is spoken to over HTTPS unless listed in insecure-registries."""
    ip = "10.77.0.1"
    netns.run(["ip", "addr", "add", f"{ip}/32", "dev", "lo"], check=False)
    routes, _ = image_routes("ins/bb", "latest", [base_layer])
    fake = FakeRegistry(netns, tmp_path, 5401, routes, host=ip)
    from tests.engine.harness import rmtree, tempdir

    secure = Skiffd(netns, tempdir("skiffd-sec-"))
    insecure = Skiffd(netns, tempdir("skiffd-ins-"), ["--insecure-registry", f"{ip}:5401"])
    try:
        r = secure.docker("pull", f"{fake.addr}/ins/bb", check=False)
        assert r.returncode == 1 and f'https://{ip}:5401/v2/' in r.stderr
        assert insecure.docker("pull", f"{fake.addr}/ins/bb").returncode == 0
        info = insecure.client().info()
        assert info["RegistryConfig"]["IndexConfigs"][f"{ip}:5401"]["Secure"] is False
    finally:
        for d in (secure, insecure):
            d.stop()
            rmtree(d.workdir)
        fake.stop()
        netns.run(["ip", "addr", "del", f"{ip}/32", "dev", "lo"], check=False)


def test_docker_manifest_list_variants_and_attestations(fresh_skiffd: Skiffd, netns: NetNS, tmp_path: Path,
                                                        base_layer: bytes) -> None:
    """A Docker schema-2 manifest list with arm/v7, arm64 (no variant) and amd64 images plus a BuildKit
    attestation entry: the host gets amd64, `linux/arm64/v8` matches the variant-less arm64 entry,
    `linux/arm/v6` falls back to nothing (v7 is newer), the attestation is never chosen."""
    import io
    import tarfile

    def marker(arch: str) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            data = arch.encode()
            ti = tarfile.TarInfo("arch")
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
        return buf.getvalue()

    routes: dict = {}
    entries = []
    for arch, variant in (("arm", "v7"), ("arm64", ""), ("amd64", "")):
        cfg = {"architecture": arch, "os": "linux", **({"variant": variant} if variant else {}),
               "rootfs": {"type": "layers", "diff_ids": [sha(marker(arch))]}}
        r, mdigest = image_routes("ml/bb", f"{arch}{variant}", [marker(arch)], cfg)
        routes.update(r)
        mbody = r[f"/v2/ml/bb/manifests/{arch}{variant}"][2]
        plat = {"architecture": arch, "os": "linux", **({"variant": variant} if variant else {})}
        entries.append({"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "digest": mdigest,
                        "size": len(mbody), "platform": plat})
    att_routes, att_digest = image_routes("ml/bb", "att", [marker("attestation")])
    routes.update(att_routes)
    entries.insert(0, {"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "digest": att_digest,
                       "size": len(att_routes["/v2/ml/bb/manifests/att"][2]),
                       "platform": {"architecture": "unknown", "os": "unknown"},
                       "annotations": {"vnd.docker.reference.type": "attestation-manifest"}})
    lst = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
                      "manifests": entries}).encode()
    routes["/v2/ml/bb/manifests/latest"] = (200, {"Content-Type": "application/vnd.docker.distribution.manifest.list.v2+json"}, lst)
    fake = FakeRegistry(netns, tmp_path, 5501, routes)
    ref = f"{fake.addr}/ml/bb"
    try:
        d = fresh_skiffd
        c = d.client()

        def arch_of() -> str:
            top = Path(c.images.get(ref).attrs["GraphDriver"]["Data"]["UpperDir"])
            return (top / "arch").read_text()

        assert f"Digest: {sha(lst)}" in d.docker("pull", ref).stdout
        assert arch_of() == "amd64"
        d.docker("pull", "--platform", "linux/arm64/v8", ref)
        assert arch_of() == "arm64"
        d.docker("pull", "--platform", "linux/arm/v7", ref)
        assert arch_of() == "arm" and c.images.get(ref).attrs["Variant"] == "v7"
        r = d.docker("pull", "--platform", "linux/arm/v6", ref, check=False)
        assert r.returncode == 1 and "no matching manifest for linux/arm/v6" in r.stderr
        r = d.docker("pull", "--platform", "unknown/unknown", ref, check=False)
        assert r.returncode == 1
    finally:
        fake.stop()


@pytest.mark.slow
def test_sigterm_mid_pull_stops_promptly(fresh_skiffd: Skiffd, netns: NetNS, registry: Registry, tmp_path: Path) -> None:
    d = fresh_skiffd
    ref = push_random_image(registry, tmp_path, "test/big2:v1", [16 << 20])
    proxy = RegistryProxy(netns, tmp_path, 5107, rate=2_000_000)
    try:
        p = subprocess.Popen(["docker", "pull", ref.replace(registry.addr, proxy.addr)], env=d.env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        blobs = d.data_root / "image" / "blobs" / "tmp"
        wait_for(lambda: sum(f.stat().st_size for f in blobs.iterdir()) > 2_000_000, timeout=60, what="download in progress")
        t0 = time.monotonic()
        d.stop()  # SIGTERM
        assert d.proc is not None and d.proc.returncode == 0
        assert time.monotonic() - t0 < 8  # the worker threads stop at their next chunk
        p.wait(30)
        d.start()
        assert d.docker("images", "-aq").stdout.strip() == ""
        assert list(blobs.iterdir()) == []
    finally:
        proxy.stop()
