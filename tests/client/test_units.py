"""The client's pure parts, checked against docker's own rules (no engine needed)."""

from __future__ import annotations

import io
import os
import json
import struct

import pytest

from skiffbox.cli.skiffclient import flags as F
from skiffbox.cli.skiffclient.config import ConfigError, GlobalOptions, parse_host, resolve_endpoint
from skiffbox.cli.skiffclient.formatting import (container_row, displayable_ports, familiar_name, human_duration, human_size,
                                        image_rows, indent_raw, normalize_name, parse_size, render_rows, tabwrite,
                                        CONTAINER_HEADERS, TemplateError)
from skiffbox.cli.skiffclient.progress import StreamError, display_stream, progress_string
from skiffbox.cli.skiffclient.commands.run import parse_publish
from skiffbox.guest.util.timefmt import parse_go_duration
from skiffbox.cli.skiffclient.streams import _EscapeProxy, parse_detach_keys
from skiffbox.client.streams import demux


# ---- flags (pflag semantics) --------------------------------------------------------------------

def _cmd(**kw) -> F.Command:
    return F.Command("run", "[OPTIONS] IMAGE [COMMAND] [ARG...]", "x", None, [
        F.Flag("interactive", "i"), F.Flag("tty", "t"), F.Flag("detach", "d"), F.Flag("rm"),
        F.Flag("publish", "p", kind="list"), F.Flag("name", kind="string"), F.Flag("last", "n", kind="int", default=-1),
        F.Flag("sig-proxy", default=True)], **kw)


def test_flags_combined_shorthands_and_values() -> None:
    o, args = F.parse(_cmd(min_args=1, interspersed=False), ["-it", "-p80:80", "-p", "81:81", "--name=web", "--rm",
                                                             "img", "ls", "-l", "--name", "x"])
    assert o["interactive"] and o["tty"] and o["rm"] and not o["detach"]
    assert o["publish"] == ["80:80", "81:81"] and o["name"] == "web"
    assert args == ["img", "ls", "-l", "--name", "x"]  # flags end at the image
    o, _ = F.parse(_cmd(), ["--sig-proxy=false", "-n5"])
    assert o["sig_proxy"] is False and o["last"] == 5
    assert o["_given"] == {"sig_proxy", "last"}


def test_flags_errors_match_docker() -> None:
    with pytest.raises(F.FlagError) as e:
        F.parse(_cmd(), ["--foo"])
    assert str(e.value).startswith("unknown flag: --foo\n\nUsage:  skiff run [OPTIONS] IMAGE [COMMAND] [ARG...]")
    assert e.value.status == 125
    with pytest.raises(F.FlagError) as e:
        F.parse(_cmd(), ["-n"])
    assert str(e.value).startswith("flag needs an argument: 'n' in -n")
    with pytest.raises(F.FlagError) as e:
        F.parse(_cmd(), ["-n", "x"])
    assert str(e.value).startswith('invalid argument "x" for "-n, --last" flag: strconv.ParseInt: parsing "x": '
                                   'invalid syntax')
    with pytest.raises(F.FlagError) as e:
        F.parse(_cmd(), ["-z"])
    assert str(e.value).startswith("unknown shorthand flag: 'z' in -z")
    with pytest.raises(F.ArgsError) as e:
        F.parse(_cmd(min_args=1), [])
    assert str(e.value) == ("skiff: 'skiff run' requires at least 1 argument\n\nUsage:  skiff run [OPTIONS] IMAGE "
                            "[COMMAND] [ARG...]\n\nSee 'skiff run --help' for more information")
    with pytest.raises(F.HelpRequested):
        F.parse(_cmd(), ["--help"])


# ---- units, durations, ports --------------------------------------------------------------------

@pytest.mark.parametrize("n,want", [(0, "0B"), (999, "999B"), (1000, "1kB"), (1982464, "1.98MB"), (4_260_000, "4.26MB"),
                                    (999_500, "1e+03kB"), (10**12, "1TB")])
def test_human_size_is_go_units(n: int, want: str) -> None:
    assert human_size(n) == want


@pytest.mark.parametrize("secs,want", [(0.5, "Less than a second"), (1, "1 second"), (59, "59 seconds"),
                                       (60, "About a minute"), (119, "About a minute"), (120, "2 minutes"),
                                       (3599, "59 minutes"), (3600, "About an hour"), (5400, "2 hours"),
                                       (47 * 3600, "47 hours"), (48 * 3600, "2 days"), (14 * 86400, "2 weeks"),
                                       (60 * 86400, "2 months"), (800 * 86400, "2 years")])
def test_human_duration_is_go_units(secs: float, want: str) -> None:
    assert human_duration(secs) == want


def test_parse_size_and_duration() -> None:
    assert parse_size("512m") == 512 * 1024 * 1024 and parse_size("1g") == 1024 ** 3 and parse_size("100") == 100
    assert parse_go_duration("1m30s") == 90 * 10**9 and parse_go_duration("500ms") == 5 * 10**8
    with pytest.raises(ValueError):
        parse_go_duration("5x")


def test_displayable_ports_groups_like_docker() -> None:
    ports = [{"PrivatePort": 80, "Type": "tcp", "IP": "0.0.0.0", "PublicPort": 8080},
             {"PrivatePort": 9000, "Type": "tcp"}, {"PrivatePort": 9001, "Type": "tcp"},
             {"PrivatePort": 53, "Type": "udp"},
             {"PrivatePort": 443, "Type": "tcp", "IP": "::", "PublicPort": 8443}]
    assert displayable_ports(ports) == "53/udp, 9000-9001/tcp, 0.0.0.0:8080->80/tcp, [::]:8443->443/tcp"


def test_parse_publish() -> None:
    exposed, binds = parse_publish(["8080:80", "127.0.0.1::53/udp", "9000-9001:7000-7001", "443", "[::1]:8443:443"])
    assert binds["80/tcp"] == [{"HostIp": "", "HostPort": "8080"}]
    assert binds["53/udp"] == [{"HostIp": "127.0.0.1", "HostPort": ""}]
    assert binds["7001/tcp"] == [{"HostIp": "", "HostPort": "9001"}]
    assert binds["443/tcp"] == [{"HostIp": "", "HostPort": ""}, {"HostIp": "::1", "HostPort": "8443"}]
    assert set(exposed) == {"80/tcp", "53/udp", "7000/tcp", "7001/tcp", "443/tcp"}


def test_reference_normalisation() -> None:
    assert normalize_name("busybox") == "docker.io/library/busybox"
    assert normalize_name("me/app") == "docker.io/me/app"
    assert normalize_name("localhost:5000/app") == "localhost:5000/app"
    assert familiar_name("docker.io/library/busybox") == "busybox"
    assert familiar_name("127.0.0.1:5000/test/busybox") == "127.0.0.1:5000/test/busybox"


# ---- tables and templates -----------------------------------------------------------------------

def test_tabwrite_is_go_tabwriter() -> None:
    # minwidth 10, padding 3; the last cell is never padded
    assert tabwrite("A\tBB\tC\nxxxxxxxxxxxxx\ty\tz\n") == "A               BB        C\nxxxxxxxxxxxxx   y         z\n"
    # columns are aligned only across contiguous lines that have them (docker version's sections)
    text = "Client:\n Version:\t1\n\nServer:\n  Longer label:\t2\n"
    assert tabwrite(text, 20, 1) == "Client:\n Version:           1\n\nServer:\n  Longer label:     2\n"


def test_render_rows_table_json_custom_and_label() -> None:
    c = {"Id": "a" * 64, "Names": ["/web"], "Image": "busybox", "ImageID": "sha256:" + "b" * 64,
         "Command": "sleep 1000000000", "Created": 0, "Ports": [], "Labels": {"com.x.app": "y", "k": "v"},
         "State": "running", "Status": "Up 2 seconds", "Mounts": []}
    rows = [container_row(c, now=10)]
    out = render_rows('table {{.ID}}\t{{.Command}}\t{{.Label "com.x.app"}}', rows, CONTAINER_HEADERS)
    assert out == 'CONTAINER ID   COMMAND              app\naaaaaaaaaaaa   "sleep 1000000000"   y\n'
    js = json.loads(render_rows("json", rows, CONTAINER_HEADERS))
    assert js["Names"] == "web" and js["RunningFor"] == "10 seconds ago" and js["Labels"] == "com.x.app=y,k=v"
    assert list(js) == sorted(js)  # Go marshals the formatter context as a map: sorted keys
    assert render_rows("{{.Names}}:{{.State}}", rows, CONTAINER_HEADERS) == "web:running\n"
    with pytest.raises(TemplateError):
        render_rows("{{.Nope}}", rows, CONTAINER_HEADERS)


def test_image_rows_expand_tags_and_dangling() -> None:
    imgs = [{"Id": "sha256:" + "c" * 64, "RepoTags": ["busybox:latest", "busybox:1", "me/x:2"],
             "RepoDigests": ["busybox@sha256:" + "d" * 64], "Created": 0, "Size": 1000, "SharedSize": -1,
             "Containers": -1},
            {"Id": "sha256:" + "e" * 64, "RepoTags": [], "RepoDigests": [], "Created": 0, "Size": 5}]
    rows = image_rows(imgs, digests=False, trunc=True, need_digest=False, now=0)
    assert [(r["Repository"], r["Tag"], r["Digest"]) for r in rows] == [
        ("busybox", "latest", "<none>"), ("busybox", "1", "<none>"), ("me/x", "2", "<none>"),
        ("<none>", "<none>", "<none>")]
    rows = image_rows(imgs[:1], digests=True, trunc=True, need_digest=True, now=0)
    assert rows[0]["Digest"] == "sha256:" + "d" * 64


def test_indent_raw_keeps_bytes() -> None:
    raw = b'[{"a":"x\\u003cy","b":[],"c":{},"d":[1,{"e":null}],"f":1.50}]'
    out = indent_raw(raw)
    assert out == ('[\n    {\n        "a": "x\\u003cy",\n        "b": [],\n        "c": {},\n        "d": [\n'
                   '            1,\n            {\n                "e": null\n            }\n        ],\n'
                   '        "f": 1.50\n    }\n]')


# ---- progress -----------------------------------------------------------------------------------

PULL = [{"status": "Pulling from test/busybox", "id": "latest"},
        {"status": "Pulling fs layer", "progressDetail": {}, "id": "aaa"},
        {"status": "Pulling fs layer", "progressDetail": {}, "id": "bbb"},
        {"status": "Downloading", "progressDetail": {"current": 500, "total": 1000}, "progress": "[=>  ]", "id": "aaa"},
        {"status": "Download complete", "progressDetail": {}, "id": "aaa"},
        {"status": "Pull complete", "progressDetail": {}, "id": "aaa"},
        {"status": "Pull complete", "progressDetail": {}, "id": "bbb"},
        {"status": "Digest: sha256:123"}, {"status": "Status: Downloaded newer image for x"}]


def test_progress_plain_hides_bars() -> None:
    out = io.StringIO()
    display_stream(iter(PULL), out, is_tty=False)
    assert out.getvalue() == ("latest: Pulling from test/busybox\naaa: Pulling fs layer\nbbb: Pulling fs layer\n"
                              "aaa: Download complete\naaa: Pull complete\nbbb: Pull complete\nDigest: sha256:123\n"
                              "Status: Downloaded newer image for x\n")


def test_progress_terminal_redraws_lines_in_place() -> None:
    out = io.StringIO()
    display_stream(iter(PULL[:4]), out, is_tty=True)
    text = out.getvalue()
    # layer aaa is two lines above the cursor when its bar is drawn: up 2, clear, draw, down 2
    assert "\x1b[1B\x1b[2A\x1b[2K\raaa: Downloading [=========================>                         ]     500B/1kB\r" \
           "\x1b[2B" in text
    assert progress_string({"current": 500, "total": 1000}, 80) == "    500B/1kB"  # %8v, no bar when narrow


def test_progress_error_raises() -> None:
    with pytest.raises(StreamError, match="manifest unknown"):
        display_stream(iter([{"errorDetail": {"message": "manifest unknown"}, "error": "manifest unknown"}]),
                       io.StringIO(), is_tty=False)


# ---- streams ------------------------------------------------------------------------------------

def test_demux_frames_split_anywhere() -> None:
    frames = b"".join(struct.pack(">BxxxI", s, len(p)) + p for s, p in [(1, b"out\n"), (2, b"err\n"), (1, b"x" * 70000)])
    chunks = [frames[i:i + 7] for i in range(0, len(frames), 7)]
    it = iter(chunks)
    got: dict[int, bytes] = {1: b"", 2: b""}
    for stream, data in demux(lambda: next(it, b"")):
        got[stream] += data
    assert got == {1: b"out\n" + b"x" * 70000, 2: b"err\n"}


def test_detach_keys() -> None:
    assert parse_detach_keys("ctrl-p,ctrl-q") == b"\x10\x11"
    assert parse_detach_keys("a,ctrl-@") == b"a\x00"
    p = _EscapeProxy(b"\x10\x11")
    assert p.feed(b"ab\x10") == (b"ab", False)  # a partial match is held back …
    assert p.feed(b"c") == (b"\x10c", False)  # … and released when it turns out not to be the sequence
    assert p.feed(b"x\x10\x11y") == (b"x", True)


# ---- configuration ------------------------------------------------------------------------------

def test_parse_host_forms() -> None:
    assert parse_host("unix:///run/x.sock", False).address == "/run/x.sock"
    ep = parse_host("tcp://10.0.0.1", False)
    assert (ep.address, ep.port, ep.url) == ("10.0.0.1", 2375, "tcp://10.0.0.1:2375")
    assert parse_host("tcp://10.0.0.1", True).port == 2376
    ep = parse_host("foo", False)
    assert (ep.scheme, ep.address, ep.port) == ("tcp", "foo", 2375)
    with pytest.raises(ConfigError):
        parse_host("ftp://x", False)


def test_tls_env_like_docker(tmp_path, monkeypatch) -> None:
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("x")
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:2376")
    monkeypatch.setenv("DOCKER_CERT_PATH", str(tmp_path))
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "0")  # any non-empty value turns verification on, as in the Go CLI
    ep = resolve_endpoint(GlobalOptions(hosts=[]))
    assert ep.tls and ep.verify and ep.ca == str(tmp_path / "ca.pem") and ep.cert == str(tmp_path / "cert.pem")
    monkeypatch.delenv("DOCKER_TLS_VERIFY")
    ep = resolve_endpoint(GlobalOptions(hosts=[]))
    assert not ep.tls
    ep = resolve_endpoint(GlobalOptions(hosts=["tcp://h:1"], tls=True))
    assert ep.tls and not ep.verify and ep.ca is None


# ---- start-up cost ------------------------------------------------------------------------------

def test_ps_path_does_not_import_heavy_modules() -> None:
    """`skiff ps`/`images` must stay within 2x of the Go client's wall time (bench/client.py); the modules
    below each cost milliseconds at start-up, so the default listing path must not load them."""
    import subprocess
    import sys

    from tests.srcview import source_view

    code = f"""
import sys
sys.path.insert(0, {str(source_view())!r})
from skiffbox.cli.skiff import main
from skiffbox.cli.skiffclient.commands import containers, images
from skiffbox.cli.skiffclient import config
from skiffbox.client import api, transport
from skiffbox.cli.skiffclient.formatting import container_row, image_rows, render_rows, CONTAINER_TABLE, CONTAINER_HEADERS
rows = [container_row({{"Id": "a" * 64, "Names": ["/x"], "Image": "i", "Command": "c", "Created": 1, "Labels": {{}},
                       "Ports": [{{"PrivatePort": 80, "Type": "tcp", "IP": "0.0.0.0", "PublicPort": 8080}}],
                       "State": "running", "Status": "Up"}})]
render_rows(CONTAINER_TABLE, rows, CONTAINER_HEADERS)
transport.loads(b'[{{"Id": "x", "Created": 1.5, "Labels": null}}]')
config.resolve_endpoint(config.GlobalOptions(hosts=["unix:///nonexistent"]))
heavy = {{"re", "json", "typing", "dataclasses", "socket", "urllib.parse", "ipaddress", "enum", "pathlib", "ssl",
         "skiffbox.client.gotemplate", "http.client", "email"}}
print(sorted(heavy & set(sys.modules)))
"""
    r = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                       cwd=str(__import__("pathlib").Path(__file__).resolve().parents[2]))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_registry_credentials_from_docker_config(tmp_path, monkeypatch) -> None:
    """config.json `auths` (base64 user:pass, Hub under its legacy key) and credential helpers, as docker reads them."""
    import base64
    import stat

    from skiffbox.cli.skiffclient import config

    helper = tmp_path / "bin" / "docker-credential-fake"
    helper.parent.mkdir()
    helper.write_text('#!/bin/sh\nread server\necho "{\\"ServerURL\\":\\"$server\\",\\"Username\\":\\"hu\\",'
                      '\\"Secret\\":\\"hs\\"}"\n')
    helper.chmod(helper.stat().st_mode | stat.S_IEXEC)
    (tmp_path / "config.json").write_text(json.dumps({
        "auths": {"https://index.docker.io/v1/": {"auth": base64.b64encode(b"hub:pw").decode()},
                  "http://reg.example:5000/v2/": {"auth": base64.b64encode(b"u:p:x").decode()}},
        "credHelpers": {"helped.example": "fake"}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    monkeypatch.setenv("PATH", f"{helper.parent}:{os.environ['PATH']}")
    monkeypatch.setattr(config, "_cfg_cache", None)
    assert config.credentials("docker.io") == {"serveraddress": "https://index.docker.io/v1/", "username": "hub",
                                               "password": "pw"}
    assert config.credentials("reg.example:5000")["password"] == "p:x"  # normalised key, ':' kept in the password
    assert config.credentials("helped.example") == {"username": "hu", "password": "hs",
                                                    "serveraddress": "helped.example"}
    assert config.credentials("other.example") == {}
    assert config.encode_auth({}) == "e30="  # what the CLI sends without credentials
