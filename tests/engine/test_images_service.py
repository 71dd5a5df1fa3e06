"""The ImageService interface other engine parts use (containers: resolve/layer_dirs/create_from_diff;
build: pull), driven in-process on a temporary data root, plus image events and the in-use rules
through a real daemon."""

from __future__ import annotations

import asyncio
import io
import json
import os
import tarfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from skiffbox.guest.config import DaemonConfig
from skiffbox.guest.errors import Conflict, NotFound
from skiffbox.guest.events import EventBus
from skiffbox.guest.images.layers import write_tar
from skiffbox.guest.images.service import ImageService
from tests.engine.harness import Skiffd, TestImages


class FakeContainers:
    def __init__(self) -> None:
        self.users: dict[str, list[tuple[str, bool]]] = {}

    def image_users(self, image_id: str) -> list[tuple[str, bool]]:
        return self.users.get(image_id, [])


def make_service(root: Path) -> tuple[ImageService, SimpleNamespace]:
    engine = SimpleNamespace(root=root, cfg=DaemonConfig(), events=EventBus(), containers=FakeContainers())
    return ImageService(engine.cfg, root, engine.events, engine.containers.image_users), engine


def diff_tar(path: Path, files: dict[str, bytes], whiteouts: list[str] = ()) -> Path:
    with tarfile.open(path, "w") as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mtime = len(data), 1700000000
            tf.addfile(ti, io.BytesIO(data))
        for w in whiteouts:
            ti = tarfile.TarInfo(w)
            tf.addfile(ti)
    return path


def test_create_from_diff_resolve_history_delete(tmp_path: Path) -> None:
    async def main() -> None:
        svc, engine = make_service(tmp_path / "root")
        base = await svc.create_from_diff(diff_tar(tmp_path / "a.tar", {"etc/a": b"a", "etc/gone": b"x"}), None,
                                          {"config": {"Cmd": ["sh"], "Env": ["A=1"]}},
                                          {"created_by": "/bin/sh -c #(nop) ADD a"}, ["local/base:v1"])
        assert base.repo_tags == ["local/base:v1"] and base.parent == ""
        assert len(base.layer_dirs()) == 1 and (base.layer_dirs()[0] / "etc/a").read_bytes() == b"a"
        # A child with a whiteout, an empty-layer step, and the config the caller gives.
        child = await svc.create_from_diff(diff_tar(tmp_path / "b.tar", {"etc/b": b"b"}, ["etc/.wh.gone"]), base,
                                           {"config": {"Cmd": ["echo", "hi"], "Env": ["A=1"]}, "author": "me"},
                                           {"created_by": "RUN touch b", "comment": "step 2"}, ["local/child"])
        meta = await svc.create_from_diff(None, child, {"config": {"Cmd": ["echo", "hi"], "Labels": {"x": "y"}}},
                                          {"created_by": "LABEL x=y"}, ["local/meta:latest"])
        assert child.parent == base.id and meta.parent == child.id
        dirs = meta.layer_dirs()
        assert dirs == child.layer_dirs() and dirs[0] == base.layer_dirs()[0]  # lowest first, shared
        assert os.lstat(dirs[1] / "etc/gone").st_rdev == 0  # whiteout converted for overlayfs
        assert all(len(str(d)) < len(str(tmp_path)) + 40 for d in dirs)
        assert meta.config["rootfs"]["diff_ids"] == child.config["rootfs"]["diff_ids"]
        assert meta.config["history"][-1]["empty_layer"] is True and meta.config["architecture"]
        for ref in ("local/meta", "local/meta:latest", meta.id, meta.id[7:19], f"sha256:{meta.id[7:17]}"):
            assert (await svc.resolve(ref)).id == meta.id
        with pytest.raises(NotFound, match="No such image: local/none:latest"):
            await svc.resolve("local/none")
        hist = svc.history("local/meta")
        assert [h["CreatedBy"] for h in hist] == ["LABEL x=y", "RUN touch b", "/bin/sh -c #(nop) ADD a"]
        assert [h["Id"] for h in hist] == [meta.id, child.id, base.id]
        assert hist[0]["Size"] == 0 and hist[1]["Size"] == 1 and hist[1]["Comment"] == "step 2"
        assert hist[2]["Tags"] == ["local/base:v1"]
        # The whole chain survives a restart (a new service on the same root).
        svc2, _ = make_service(tmp_path / "root")
        assert (await svc2.resolve("local/meta")).layer_dirs() == dirs
        # In-use and parent rules.
        engine.containers.users[meta.id] = [("c" * 64, True)]
        with pytest.raises(Conflict, match="image is being used by running container cccccccccccc"):
            await svc.delete(meta.id, force=True)
        engine.containers.users[meta.id] = [("d" * 64, False)]
        with pytest.raises(Conflict, match='container dddddddddddd is using its referenced image'):
            await svc.delete("local/meta")
        with pytest.raises(Conflict, match="image has dependent child images"):
            await svc.delete(base.id)
        out = await svc.delete("local/meta", force=True)
        assert {"Deleted": meta.id} in out
        assert meta.id not in {i["Id"] for i in await svc.list(all_=True)}
        assert (await svc.resolve(meta.id)).layer_dirs() == dirs  # still there for its container
        engine.containers.users.clear()
        out = await svc.delete("local/child")
        assert out[0] == {"Untagged": "local/child:latest"}
        deleted = [r["Deleted"] for r in out if "Deleted" in r]
        assert child.id in deleted and meta.id not in deleted  # meta was already gone from view
        assert svc.count() == 1
        await svc.delete("local/base:v1")
        assert svc.count() == 0 and svc.store.layers == {} and list(svc.store.blobs.digests()) == []
        actions = [e["Action"] for e in engine.events.history()]
        assert actions.count("tag") == 3 and "untag" in actions and actions.count("delete") == 3

    asyncio.run(main())


def test_write_tar_roundtrip_through_create_from_diff(tmp_path: Path) -> None:
    """What the containers engineer does for commit: tar an upper dir, then register it."""
    async def main() -> None:
        svc, _ = make_service(tmp_path / "root")
        upper = tmp_path / "upper"
        (upper / "data").mkdir(parents=True)
        (upper / "data" / "f").write_text("content")
        os.mknod(upper / "deleted", 0o020000, os.makedev(0, 0))
        os.setxattr(upper / "data", "trusted.overlay.opaque", b"y")
        t = tmp_path / "diff.tar"
        with open(t, "wb") as f:
            write_tar(upper, f)
        img = await svc.create_from_diff(t, None, {"config": {}}, {"created_by": "commit"}, [])
        d = img.layer_dirs()[0]
        assert (d / "data/f").read_text() == "content"
        assert os.getxattr(d / "data", "trusted.overlay.opaque") == b"y"
        assert os.lstat(d / "deleted").st_rdev == 0
        assert img.repo_tags == [] and (await svc.list())[0]["RepoTags"] == []

    asyncio.run(main())


def test_image_events(fresh_skiffd: Skiffd, images: TestImages, tmp_path: Path) -> None:
    d = fresh_skiffd
    since = str(int(time.time()) - 1)
    d.docker("pull", "-q", images.multilayer)
    d.docker("tag", images.multilayer, "ev/x:1")
    d.docker("save", "-o", str(tmp_path / "x.tar"), "ev/x:1")
    d.docker("rmi", "ev/x:1")
    d.docker("load", "-i", str(tmp_path / "x.tar"))
    d.docker("rmi", "-f", "ev/x:1", images.multilayer)
    d.docker("image", "prune", "-f")
    until = str(int(time.time()) + 1)
    out = d.docker("events", "--since", since, "--until", until, "--filter", "type=image", "--format", "{{json .}}").stdout
    evs = [json.loads(l) for l in out.splitlines()]
    actions = [e["Action"] for e in evs]
    for a in ("pull", "tag", "save", "untag", "load", "delete", "prune"):
        assert a in actions, actions
    pull = next(e for e in evs if e["Action"] == "pull")
    assert pull["Actor"]["ID"] == images.multilayer and pull["Actor"]["Attributes"]["name"] == images.multilayer
    assert pull["Actor"]["Attributes"]["org.skiff.test"] == "multilayer"  # image labels ride along, as in moby
    tag = next(e for e in evs if e["Action"] == "tag")
    assert tag["Actor"]["ID"].startswith("sha256:") and tag["Actor"]["Attributes"]["name"] == "ev/x:1"


def test_rmi_of_image_used_by_container(fresh_skiffd: Skiffd, images: TestImages) -> None:
    d = fresh_skiffd
    d.docker("pull", "-q", images.busybox_oci)
    iid = d.client().images.get(images.busybox_oci).id
    cid = d.docker("create", images.busybox_oci, "true").stdout.strip()
    r = d.docker("rmi", images.busybox_oci, check=False)
    assert r.returncode == 1 and "conflict: unable to remove repository reference" in r.stderr
    assert "(must force)" in r.stderr and iid[7:19] in r.stderr
    out = d.docker("rmi", "-f", images.busybox_oci).stdout.splitlines()
    assert f"Deleted: {iid}" in out
    assert iid not in d.docker("images", "-aq", "--no-trunc").stdout
    # The container still has its layers: it runs.
    d.docker("start", "-a", cid)
    d.docker("rm", cid)
    d.docker("image", "prune", "-f")  # forgets the deleted image now nothing uses it
    assert list((d.data_root / "image" / "l").iterdir()) == []


def test_gc_keeps_pinned_layers(tmp_path: Path) -> None:
    """A layer a pull has finished but not yet registered in an image survives a concurrent rmi's gc."""
    from skiffbox.guest.images.archive import add_layer_from_tar

    async def main() -> None:
        svc, _ = make_service(tmp_path / "root")
        layer = await add_layer_from_tar(svc, diff_tar(tmp_path / "x.tar", {"x": b"x"}), None)
        with svc.pinned([layer.chain_id]):
            await svc.gc()
            assert layer.chain_id in svc.store.layers
        removed = await svc.gc()
        assert [c for c, _ in removed] == [layer.chain_id] and svc.store.layers == {}
        assert list((tmp_path / "root" / "image" / "l").iterdir()) == []

    asyncio.run(main())
