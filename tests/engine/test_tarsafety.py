"""One safe tar extraction (guest/images/tarsafety.py) behind image layers, build contexts and ADD archives:
the same hostile tar is refused the same way by every path, and the few documented differences (what a
context keeps that a layer refuses) hold. Ends with a hostile context sent to a real skiffd's POST /build."""

from __future__ import annotations

import asyncio
import bz2
import io
import os
import tarfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from skiffbox.guest.build.context import ContextError, extract_archive, receive
from skiffbox.guest.errors import InvalidParameter
from skiffbox.guest.images.layers import LayerError
from skiffbox.guest.images.tarsafety import Limits
from tests.engine.harness import Skiffd
from tests.engine.test_layers_hostile import do_unpack, tar_of

DOCKERFILE = ("Dockerfile", "file", b"FROM scratch\n")


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


def as_context(data: bytes, dest: Path, limits: Limits | None = None) -> Path:
    return asyncio.run(receive(_one(data), dest, "Dockerfile", limits)).root


def as_layer(data: bytes, dest: Path, limits: Limits | None = None) -> Path:
    do_unpack(data, dest, limits)
    return dest


def as_add_archive(data: bytes, dest: Path, limits: Limits | None = None) -> Path:
    dest.mkdir()
    archive = dest.parent / f"{dest.name}.tar"
    archive.write_bytes(data)
    extract_archive(archive, dest)
    return dest


PATHS: dict[str, tuple[Callable[..., Path], type[InvalidParameter]]] = {
    "layer": (as_layer, LayerError), "context": (as_context, ContextError), "add": (as_add_archive, ContextError)}


def unknown_type_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("odd")
        ti.type = b"Z"
        tf.addfile(ti)
    return buf.getvalue()


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("entries,msg", [
    ([("../escape", "file", b"x")], "'..' is not allowed"),
    ([("a/../../escape", "file", b"x")], "'..' is not allowed"),
    ([("/abs-evil", "file", b"x")], "absolute paths are not allowed"),  # a context used to place it inside
    ([("hl", "hard", "../../etc/passwd")], "'..' is not allowed"),
    ([("d", "dir"), ("hl", "hard", "d")], "is a directory"),
    ([("hl", "hard", "nothere")], "is not in the"),
    ([("link", "sym", "/"), ("link/pwned", "file", b"x")], "goes through a symlink"),
    ([("f", "file", b"x"), ("f/g", "file", b"y")], "goes through a symlink or a file"),
    (None, "unsupported entry type"),  # a context used to skip it silently
])
def test_every_path_refuses_the_same_hostile_tar(tmp_path: Path, path: str, entries: list | None, msg: str) -> None:
    extract, error = PATHS[path]
    data = unknown_type_tar() if entries is None else tar_of(DOCKERFILE, *entries)
    with pytest.raises(error, match=msg):
        extract(data, tmp_path / "tree")
    assert sorted(p.name for p in tmp_path.iterdir()) in (["tree"], ["tree", "tree.tar"])
    assert not Path("/abs-evil").exists() and not Path("/pwned").exists()


@pytest.mark.parametrize("path", ["layer", "context"])
def test_every_path_bounds_bombs(tmp_path: Path, path: str) -> None:
    extract, error = PATHS[path]
    with pytest.raises(error, match="more than 20 entries"):
        extract(tar_of(*[(f"f{i}", "file", b"") for i in range(50)]), tmp_path / "a", Limits(max_entries=20))
    with pytest.raises(error, match="larger than the limit"):
        extract(tar_of(("big", "file", b"\0" * 300_000)), tmp_path / "b", Limits(max_size=100_000))
    with pytest.raises(error, match="too deep"):
        extract(tar_of(("/".join(["d"] * 40) + "/f", "file", b"x")), tmp_path / "c", Limits(max_depth=20))


def test_context_compression_bomb_is_stopped_early(tmp_path: Path) -> None:
    # bzip2 squeezes zeros far beyond gzip's ~1000:1; the context refuses it while decompressing
    bomb = bz2.compress(tar_of(DOCKERFILE, ("z", "file", b"\0" * (40 << 20))), 9)
    with pytest.raises(ContextError, match="compression bomb"):
        as_context(bomb, tmp_path / "c", Limits(max_ratio=100, ratio_floor=1 << 20))
    assert not (tmp_path / "c").exists() or sum(p.stat().st_size for p in (tmp_path / "c").rglob("*") if p.is_file()) < 8 << 20


def test_documented_differences_between_a_context_and_a_layer(tmp_path: Path) -> None:
    # A symlink out of the tree: a context keeps it as a link (COPY copies links, never follows them),
    # a layer refuses it.
    climbing = tar_of(DOCKERFILE, ("sub", "dir"), ("sub/up", "sym", "../../outside"))
    root = as_context(climbing, tmp_path / "ctx")
    assert os.readlink(root / "sub/up") == "../../outside"
    with pytest.raises(LayerError, match="points outside the image"):
        as_layer(climbing, tmp_path / "layer")
    # Device nodes: skipped in a context, refused in a layer; never created by either.
    dev = tar_of(DOCKERFILE, ("null", "chr", None, {"dev": (1, 3)}))
    assert not (as_context(dev, tmp_path / "ctx2") / "null").exists()
    with pytest.raises(LayerError, match="device file 'null' is not allowed"):
        as_layer(dev, tmp_path / "layer2")
    # Owners: a layer and an ADD archive keep them, a context does not (COPY makes files root-owned).
    owned = tar_of(DOCKERFILE, ("f", "file", b"x", {"uid": 1234, "gid": 5678}))
    assert os.stat(as_layer(owned, tmp_path / "layer3") / "f").st_uid == 1234
    assert os.stat(as_add_archive(owned, tmp_path / "add3") / "f").st_gid == 5678
    assert os.stat(as_context(owned, tmp_path / "ctx3") / "f").st_uid == 0


@pytest.mark.parametrize("path", PATHS)
def test_hard_link_to_a_symlink_in_the_tree_is_kept(tmp_path: Path, path: str) -> None:
    """Docker writes one for a hard-linked symlink; a context used to refuse it ("not a file"). The link is
    a second name for a symlink inode, which nothing here follows."""
    extract, _ = PATHS[path]
    root = extract(tar_of(DOCKERFILE, ("s", "sym", "Dockerfile"), ("h", "hard", "s")), tmp_path / "tree")
    assert os.readlink(root / "h") == "Dockerfile"
    assert os.lstat(root / "h").st_ino == os.lstat(root / "s").st_ino


# ---------------------------------------------------------------------------------------------
# Through a real daemon
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,msg", [
    ("../skiff-tarsafety-evil", "'..' is not allowed"),
    ("/skiff-tarsafety-evil", "absolute paths are not allowed"),
])
def test_hostile_build_context_is_a_400(skiffd: Skiffd, name: str, msg: str) -> None:
    import docker.errors

    data = tar_of(DOCKERFILE, ("ok.txt", "file", b"fine"), (name, "file", b"pwned"))
    with pytest.raises(docker.errors.APIError) as err:
        list(skiffd.client().api.build(fileobj=io.BytesIO(data), custom_context=True, decode=True))
    assert err.value.response.status_code == 400
    assert msg in str(err.value.explanation) and "build context" in str(err.value.explanation)
    assert os.listdir(skiffd.data_root / "build" / "tmp") == []
    assert not any(p.name == "skiff-tarsafety-evil" for p in skiffd.data_root.rglob("*"))
    assert not Path("/skiff-tarsafety-evil").exists()
