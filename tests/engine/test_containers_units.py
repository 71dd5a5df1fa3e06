"""Pure pieces of the container engine, without a daemon: spec defaults, config merging, log parsing,
attach framing and detach keys, ps status text, secure path resolution."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from skiffbox.guest.containers import attach, logs, merge, security, spec, users, views
from skiffbox.guest.containers.rootfs import secure_join
from skiffbox.guest.containers.runtime import Runtime
from skiffbox.guest.errors import InvalidParameter


def test_default_caps_and_cap_add_drop() -> None:
    assert security.capabilities(None, None, False) == security.DEFAULT_CAPS
    caps = security.capabilities(["net_admin", "CAP_SYS_TIME"], ["chown", "NET_RAW"], False)
    assert "CAP_NET_ADMIN" in caps and "CAP_SYS_TIME" in caps and "CAP_CHOWN" not in caps and "CAP_NET_RAW" not in caps
    assert security.capabilities(["NET_ADMIN"], ["ALL"], False) == ["CAP_NET_ADMIN"]
    with pytest.raises(InvalidParameter):
        security.capabilities(["NOT_A_CAP"], None, False)


def test_seccomp_profile_follows_caps() -> None:
    prof = security._default_profile()
    default = security.seccomp_to_oci(prof, security.DEFAULT_CAPS)
    allowed = {n for r in default["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" and not r.get("args") for n in r["names"]}
    assert default["defaultAction"] == "SCMP_ACT_ERRNO" and default["defaultErrnoRet"] == 1
    assert {"read", "execve", "clone3"} - allowed == {"clone3"}  # clone3 gets ENOSYS so libc falls back
    assert "mount" not in allowed and "init_module" not in allowed and "chroot" in allowed
    admin = security.seccomp_to_oci(prof, security.DEFAULT_CAPS + ["CAP_SYS_ADMIN"])
    allowed_admin = {n for r in admin["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" for n in r["names"]}
    assert {"mount", "unshare", "setns"} <= allowed_admin


def test_spec_defaults_and_limits(tmp_path: Path) -> None:
    rec = {"Config": {"Cmd": ["sh"], "Entrypoint": None, "Env": ["A=1"], "Hostname": "h1", "Tty": True,
                      "WorkingDir": "/w"},
           "HostConfig": {"Memory": 64 << 20, "NanoCpus": 1_500_000_000, "PidsLimit": 9, "ReadonlyRootfs": True,
                          "Binds": [f"{tmp_path}:/data:ro"], "Tmpfs": {"/run": "size=1m"}}}
    s = spec.build_spec(rec, users.ExecUser(), spec.SpecInputs(rootfs=tmp_path, cgroup_path="/skiff/x",
                                                              extra_mounts=spec.bind_mounts(rec["HostConfig"])))
    p = s["process"]
    assert p["args"] == ["sh"] and p["cwd"] == "/w" and p["terminal"] is True
    assert "A=1" in p["env"] and "HOSTNAME=h1" in p["env"] and "TERM=xterm" in p["env"] and "HOME=/" in p["env"]
    assert s["root"]["readonly"] is True and s["hostname"] == "h1"
    lx = s["linux"]
    assert lx["cgroupsPath"] == "/skiff/x" and "/proc/kcore" in lx["maskedPaths"]
    assert "/proc/sysrq-trigger" in lx["readonlyPaths"]
    assert {n["type"] for n in lx["namespaces"]} == {"mount", "pid", "ipc", "uts", "network"}
    r = lx["resources"]
    assert r["memory"]["limit"] == 64 << 20 and r["cpu"] == {"period": 100000, "quota": 150000}
    assert r["pids"] == {"limit": 9} and r["devices"][0] == {"allow": False, "access": "rwm"}
    dests = {m["destination"]: m for m in s["mounts"]}
    assert dests["/data"]["options"][:2] == ["rbind", "ro"] and "size=1m" in dests["/run"]["options"]
    assert "size=67108864" in dests["/dev/shm"]["options"]
    with pytest.raises(InvalidParameter):
        spec.build_spec({**rec, "HostConfig": {"Memory": 1024}}, users.ExecUser(),
                        spec.SpecInputs(rootfs=tmp_path, cgroup_path="/x"))


def test_resolve_user(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n")
    (tmp_path / "etc" / "group").write_text("root:x:0:\napp:x:1000:\nextra:x:2000:app\n")
    u = users.resolve_user(tmp_path, "app")
    assert (u.uid, u.gid, u.additional_gids, u.home) == (1000, 1000, [2000], "/home/app")
    u = users.resolve_user(tmp_path, "1000:extra", ["0"])
    assert (u.uid, u.gid, u.additional_gids) == (1000, 2000, [0])
    assert users.resolve_user(tmp_path, "4242").uid == 4242
    with pytest.raises(InvalidParameter):
        users.resolve_user(tmp_path, "nobody-here")
    # /etc/passwd pointing outside the root is read inside the root
    os.remove(tmp_path / "etc" / "passwd")
    os.symlink("/etc/passwd", tmp_path / "etc" / "passwd")
    with pytest.raises(InvalidParameter):
        users.resolve_user(tmp_path, "app")


def test_merge_image_config() -> None:
    img = {"Cmd": ["sh"], "Entrypoint": ["/ep"], "Env": ["PATH=/bin", "A=img"], "WorkingDir": "/app",
           "Labels": {"l": "img"}, "ExposedPorts": {"80/tcp": {}}, "StopSignal": "SIGQUIT", "User": "app"}
    c = merge.merge_image_config({"Env": ["A=user", "B=2"], "Labels": {"m": "u"}}, img)
    assert c["Cmd"] == ["sh"] and c["Entrypoint"] == ["/ep"] and c["Env"] == ["PATH=/bin", "A=user", "B=2"]
    assert c["WorkingDir"] == "/app" and c["Labels"] == {"l": "img", "m": "u"} and c["StopSignal"] == "SIGQUIT"
    c = merge.merge_image_config({"Entrypoint": ["/other"]}, img)
    assert c["Entrypoint"] == ["/other"] and not c["Cmd"]  # a new entrypoint drops the image's CMD
    c = merge.merge_image_config({"Entrypoint": [""], "Cmd": ["ls"]}, img)
    assert c["Entrypoint"] is None and c["Cmd"] == ["ls"]
    rt = Runtime("crun", "/usr/bin/crun", Path("/nonexistent"))
    hc = merge.normalize_host_config({"NetworkMode": "default"}, rt.resolve)
    assert hc["NetworkMode"] == "bridge" and hc["LogConfig"]["Type"] == "json-file"
    assert hc["Runtime"] == "runc"  # dockerd's name for the default runtime, whichever binary serves it
    assert merge.normalize_host_config({"Runtime": "crun"}, rt.resolve)["Runtime"] == "crun"
    with pytest.raises(InvalidParameter, match="Unknown runtime specified nvidia"):
        merge.normalize_host_config({"Runtime": "nvidia"}, rt.resolve)
    assert hc["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}
    with pytest.raises(InvalidParameter):
        merge.normalize_host_config({"AutoRemove": True, "RestartPolicy": {"Name": "always"}}, rt.resolve)


def test_commit_changes() -> None:
    cfg = merge.apply_changes({"Env": ["A=1"]}, ['CMD ["a", "b"]', "ENTRYPOINT echo hi", "ENV B=2 C=3",
                                                  "EXPOSE 8080", "LABEL x=y", "WORKDIR /srv", "USER 7"])
    assert cfg["Cmd"] == ["a", "b"] and cfg["Entrypoint"] == ["/bin/sh", "-c", "echo hi"]
    assert cfg["Env"] == ["A=1", "B=2", "C=3"] and "8080/tcp" in cfg["ExposedPorts"]
    assert cfg["Labels"] == {"x": "y"} and cfg["WorkingDir"] == "/srv" and cfg["User"] == "7"
    with pytest.raises(InvalidParameter):
        merge.apply_changes({}, ["RUN rm -rf /"])


def test_k8s_file_parsing_and_tail(tmp_path: Path) -> None:
    f = tmp_path / "ctr.log"
    f.write_bytes(b"2026-11-28T04:05:05.348192984+00:00 stdout F hello\n"
                  b"2026-11-28T04:05:05.348192984+00:00 stdout P partial\n"
                  b"2026-11-28T06:05:05.649720785+02:00 stdout F  rest\n"
                  b"2026-11-28T04:05:06.000000001+00:00 stderr F \n"
                  b"2026-11-28T04:05:07.000000000+00:00 stdout F last\n")
    entries, off = logs.read_entries(f)
    assert [e.data for e in entries] == [b"hello\n", b"partial", b" rest\n", b"\n", b"last\n"]
    assert [e.stream for e in entries] == [1, 1, 1, 2, 1]
    assert entries[2].ts_text == "2026-11-28T04:05:05.649720785Z" and off == f.stat().st_size
    tail2, _ = logs.read_entries(f, logs._tail_offset(f, 2))
    assert [e.data for e in tail2] == [b"\n", b"last\n"]
    tail3, _ = logs.read_entries(f, logs._tail_offset(f, 3))
    assert tail3[0].data == b"partial"  # a partial chunk belongs to the line it starts
    assert logs._tail_offset(f, 0) == f.stat().st_size


def test_frames_and_detach_keys() -> None:
    assert attach.frame(1, b"hi") == b"\x01\x00\x00\x00\x00\x00\x00\x02hi"
    assert attach.parse_detach_keys(None) == b"\x10\x11"
    assert attach.parse_detach_keys("ctrl-a,x") == b"\x01x"
    with pytest.raises(InvalidParameter):
        attach.parse_detach_keys("ctrl-ab")
    sc = attach._DetachScanner(b"\x10\x11")
    assert sc.feed(b"ab\x10") == (b"ab", False)
    assert sc.feed(b"c") == (b"\x10c", False)  # a lone ctrl-p is passed on
    assert sc.feed(b"\x10\x11rest") == (b"", True)


def test_human_duration_and_secure_join(tmp_path: Path) -> None:
    assert [views.human_duration(s) for s in (0.5, 1, 59, 60, 119, 3599, 3600, 7200, 86400 * 3)] == [
        "Less than a second", "1 second", "59 seconds", "About a minute", "About a minute", "59 minutes",
        "About an hour", "2 hours", "3 days"]
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    os.symlink("/", root / "up")
    os.symlink("../../../../etc", root / "etc" / "rel")
    assert secure_join(root, "/up/etc/passwd") == root / "etc" / "passwd"
    assert secure_join(root, "etc/rel/x") == root / "etc" / "x"
    assert secure_join(root, "../../..") == root
    assert secure_join(root, "/up", follow_last=False) == root / "up"
