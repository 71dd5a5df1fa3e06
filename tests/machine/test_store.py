from __future__ import annotations

import json
import multiprocessing
import stat
import threading
import time
from pathlib import Path

import pytest

from skiffbox.machine.store import (
    InvalidName,
    MachineExists,
    MachineLocked,
    MachineNotFound,
    Store,
    atomic_write,
    natural_key,
    validate_name,
)


@pytest.mark.parametrize("name", ["default", "dev-1", "a", "A.b-C9", "x" * 63, "1abc"])
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize("name", ["", "-a", ".a", "a b", "a/b", "../x", "a_b", "é", "x" * 64, "a:b", "a\n"])
def test_invalid_names(name: str) -> None:
    with pytest.raises(InvalidName):
        validate_name(name)


def test_default_root_from_env(store_root: Path) -> None:
    assert Store().root == store_root


def test_create_save_load_remove(store: Store) -> None:
    d = store.create_dir("m1")
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    with pytest.raises(MachineExists):
        store.create_dir("m1")
    store.save("m1", {"Name": "m1", "x": [1, 2]})
    assert store.load("m1") == {"Name": "m1", "x": [1, 2]}
    assert stat.S_IMODE(store.config_path("m1").stat().st_mode) == 0o600
    assert store.names() == ["m1"]
    store.remove("m1")
    assert store.names() == []
    with pytest.raises(MachineNotFound, match="machine create m1"):
        store.load("m1")


def test_names_natural_sort_and_skip_half_dirs(store: Store) -> None:
    for n in ["m10", "m2", "M1", "b"]:
        store.create_dir(n)
        store.save(n, {"Name": n})
    store.create_dir("nocfg")  # a folder without config.json is not a machine
    assert store.names() == ["b", "M1", "m2", "m10"]
    assert sorted(["m10", "m9"], key=natural_key) == ["m9", "m10"]


def test_atomic_write_leaves_no_temp_and_keeps_old_on_failure(tmp_path: Path) -> None:
    p = tmp_path / "f.json"
    atomic_write(p, b"old")

    with pytest.raises(TypeError):
        atomic_write(p, 12345)  # type: ignore[arg-type]
    assert p.read_bytes() == b"old"
    assert [x.name for x in tmp_path.iterdir()] == ["f.json"]


def test_atomic_file_streams_and_an_interrupted_write_keeps_the_old_file(tmp_path: Path) -> None:
    """The one helper behind the store, the port forwarder's state, the image cache and skiff's config/save
    files: chunks streamed in, published whole with its mode; a failure mid-stream changes nothing."""
    from skiffbox.cli.skiffclient.files import write_atomically
    from skiffbox.machine.store import atomic_file

    p = tmp_path / "f.tar"
    with atomic_file(p, 0o600) as f:
        for chunk in (b"a" * 70000, b"b"):
            f.write(chunk)
    assert p.read_bytes() == b"a" * 70000 + b"b" and p.stat().st_mode & 0o777 == 0o600

    def chunks():
        yield b"new"
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(str(p), chunks())
    assert p.read_bytes() == b"a" * 70000 + b"b"
    assert [x.name for x in tmp_path.iterdir()] == ["f.tar"]
    link = tmp_path / "link"
    link.symlink_to(p)
    write_atomically(str(link), [b"via link"], 0o644)
    assert link.is_symlink() and p.read_bytes() == b"via link"


def _hold_lock(root: str, name: str, ready, release) -> None:
    s = Store(root)
    with s.lock(name):
        ready.set()
        release.wait(10)


def test_lock_excludes_other_process(store: Store) -> None:
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    p = ctx.Process(target=_hold_lock, args=(str(store.root), "m", ready, release))
    p.start()
    try:
        assert ready.wait(10)
        t0 = time.monotonic()
        with pytest.raises(MachineLocked, match=rf"pid {p.pid}"):
            with store.lock("m", timeout=0.3):
                pass
        assert time.monotonic() - t0 >= 0.3
        # another machine is not blocked
        with store.lock("other", timeout=0.3):
            pass
    finally:
        release.set()
        p.join(10)
    with store.lock("m", timeout=5):  # free once the holder is gone
        pass


def test_lock_reentrant_and_serialises_threads(store: Store) -> None:
    store.create_dir("m")
    store.save("m", {"n": 0})
    with store.lock("m"):
        with store.lock("m"):  # re-entrant in one thread
            pass

    def bump() -> None:
        for _ in range(20):
            with store.lock("m"):
                cfg = store.load("m")
                time.sleep(0.001)
                cfg["n"] += 1
                store.save("m", cfg)

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.load("m")["n"] == 80


def _bump_proc(root: str, n: int) -> None:
    s = Store(root)
    for _ in range(n):
        with s.lock("m"):
            cfg = s.load("m")
            cfg["n"] += 1
            s.save("m", cfg)


def test_lock_serialises_processes(store: Store) -> None:
    store.create_dir("m")
    store.save("m", {"n": 0})
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_bump_proc, args=(str(store.root), 25)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert store.load("m")["n"] == 100
    json.loads(store.config_path("m").read_text())  # never corrupt
