"""Volume API without containers: create/ls/inspect/rm/prune, options, filters, names and /system/df, through the
real docker CLI and docker-py."""

from __future__ import annotations

import json
import os
from pathlib import Path

import docker
import pytest

from tests.engine.harness import Skiffd


def _ls(skiffd: Skiffd, *args: str) -> list[str]:
    return sorted(skiffd.docker("volume", "ls", "-q", *args).stdout.split())


def test_create_inspect_rm(skiffd: Skiffd) -> None:
    assert skiffd.docker("volume", "create", "--label", "a=b", "vol-one").stdout.strip() == "vol-one"
    info = json.loads(skiffd.docker("volume", "inspect", "vol-one").stdout)[0]
    assert info["Name"] == "vol-one" and info["Driver"] == "local" and info["Scope"] == "local"
    assert info["Labels"] == {"a": "b"} and info["Options"] == {}
    assert info["Mountpoint"] == str(skiffd.data_root / "volumes" / "vol-one" / "_data")
    assert Path(info["Mountpoint"]).is_dir()
    assert info["CreatedAt"].endswith("Z")
    assert not any(k.startswith("_") for k in info)
    # creating it again is fine and returns the same volume
    assert skiffd.docker("volume", "create", "vol-one").stdout.strip() == "vol-one"
    skiffd.docker("volume", "rm", "vol-one")
    assert not (skiffd.data_root / "volumes" / "vol-one").exists()
    r = skiffd.docker("volume", "inspect", "vol-one", check=False)
    assert r.returncode != 0 and "no such volume" in r.stderr
    r = skiffd.docker("volume", "rm", "vol-one", check=False)
    assert r.returncode != 0 and "no such volume" in r.stderr
    skiffd.docker("volume", "rm", "-f", "vol-one")  # force: a missing volume is not an error


def test_names_and_options(skiffd: Skiffd) -> None:
    for bad in ("a", "-x", "bad/name", "bad name"):
        r = skiffd.docker("volume", "create", bad, check=False)
        assert r.returncode != 0, bad
    r = skiffd.docker("volume", "create", "-o", "bogus=1", "optvol", check=False)
    assert r.returncode != 0 and "invalid option key" in r.stderr
    r = skiffd.docker("volume", "create", "-d", "nfsplugin", "plugvol", check=False)
    assert r.returncode != 0 and "not found" in r.stderr
    skiffd.docker("volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=16m,mode=0777", "tmpvol")
    try:
        info = json.loads(skiffd.docker("volume", "inspect", "tmpvol").stdout)[0]
        assert info["Options"] == {"type": "tmpfs", "device": "tmpfs", "o": "size=16m,mode=0777"}
    finally:
        skiffd.docker("volume", "rm", "tmpvol")
    anon = skiffd.docker("volume", "create").stdout.strip()
    assert len(anon) == 64
    skiffd.docker("volume", "rm", anon)


def test_filters_and_prune(skiffd: Skiffd) -> None:
    skiffd.docker("volume", "create", "--label", "grp=x", "--label", "keep=1", "flt-a")
    skiffd.docker("volume", "create", "--label", "grp=y", "flt-b")
    skiffd.docker("volume", "create", "other-c")
    try:
        assert _ls(skiffd, "--filter", "label=grp") == ["flt-a", "flt-b"]
        assert _ls(skiffd, "--filter", "label=grp=y") == ["flt-b"]
        assert _ls(skiffd, "--filter", "name=flt-") == ["flt-a", "flt-b"]
        assert set(_ls(skiffd, "--filter", "dangling=true")) >= {"flt-a", "flt-b", "other-c"}
        assert _ls(skiffd, "--filter", "dangling=false") == []
        assert "flt-a" in _ls(skiffd, "--filter", "driver=local")
        # Since API 1.42, prune only takes anonymous volumes unless --all.
        out = skiffd.docker("volume", "prune", "-f").stdout
        assert "flt-a" not in out and "flt-a" in _ls(skiffd)
        out = skiffd.docker("volume", "prune", "-f", "--all", "--filter", "label!=keep").stdout
        assert "flt-b" in out and "other-c" in out and "flt-a" not in out
        assert "flt-b" not in _ls(skiffd) and "flt-a" in _ls(skiffd)
    finally:
        skiffd.docker("volume", "rm", "-f", "flt-a", "flt-b", "other-c")


def test_system_df_counts_volume_bytes(skiffd: Skiffd) -> None:
    skiffd.docker("volume", "create", "dfvol")
    try:
        data = skiffd.data_root / "volumes" / "dfvol" / "_data"
        (data / "blob").write_bytes(b"x" * 12345)
        os.link(data / "blob", data / "blob-link")  # a hard link is counted once
        (data / "sub").mkdir()
        (data / "sub" / "f").write_bytes(b"y" * 100)
        df = skiffd.client().df()
        vol = next(v for v in df["Volumes"] if v["Name"] == "dfvol")
        assert vol["UsageData"] == {"Size": 12445, "RefCount": 0}
        out = skiffd.docker("system", "df", "-v", "--format", "{{json .Volumes}}").stdout
        assert "dfvol" in out
    finally:
        skiffd.docker("volume", "rm", "dfvol")


def test_docker_py(skiffd: Skiffd) -> None:
    c = skiffd.client()
    v = c.volumes.create("pyvol", labels={"py": "1"})
    try:
        assert v.attrs["Labels"] == {"py": "1"}
        assert [x.name for x in c.volumes.list(filters={"label": "py=1"})] == ["pyvol"]
        assert c.volumes.get("pyvol").attrs["Driver"] == "local"
        with pytest.raises(docker.errors.NotFound):
            c.volumes.get("no-such-volume")
    finally:
        v.remove()
    assert "pyvol" not in [x.name for x in c.volumes.list()]
