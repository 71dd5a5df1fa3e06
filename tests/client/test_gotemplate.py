from __future__ import annotations

import pytest

from skiffbox.client import gotemplate as gt

CFG = {"Name": "dev", "Driver": {"IPAddress": "10.0.0.2", "SSHPort": 22, "Tags": ["a", "b"]},
       "HostOptions": {"EngineOptions": {"TlsVerify": True, "Labels": []}}, "Nil": None}


@pytest.mark.parametrize(
    "fmt,expected",
    [
        ("{{.Driver.IPAddress}}", "10.0.0.2"),
        ("{{ .Name }}:{{.Driver.SSHPort}}", "dev:22"),
        ("{{json .Driver.Tags}}", '["a","b"]'),
        ("{{.Driver.Tags | json}}", '["a","b"]'),
        ("{{.Driver.Tags}}", "[a b]"),
        ("{{.HostOptions.EngineOptions.TlsVerify}}", "true"),
        ("{{.Missing}}", "<no value>"),
        ("{{.Nil}}", "<nil>"),
        ("{{upper .Name}}", "DEV"),
        ("{{.Name}}\\t{{.Name}}", "dev\tdev"),
        ("{{json .Driver}}", '{"IPAddress":"10.0.0.2","SSHPort":22,"Tags":["a","b"]}'),
        ("no actions", "no actions"),
    ],
)
def test_render(fmt: str, expected: str) -> None:
    assert gt.render(fmt, CFG) == expected


@pytest.mark.parametrize("fmt", ["{{range .X}}{{end}}", "{{.Name", "{{nosuch .Name}}", "{{Name}}"])
def test_errors(fmt: str) -> None:
    with pytest.raises(gt.TemplateError):
        gt.render(fmt, CFG)


def test_tabwrite_matches_docker_machine_readme() -> None:
    lines = [
        "NAME\tACTIVE\tDRIVER\tSTATE\tURL\tSWARM\tDOCKER\tERRORS",
        "default\t-\tvirtualbox\tRunning\ttcp://192.168.99.188:2376\t\tv1.9.1\t",
    ]
    out = gt.tabwrite(lines).splitlines()
    assert out[0].rstrip() == "NAME      ACTIVE   DRIVER       STATE     URL                         SWARM   DOCKER   ERRORS"
    assert out[1].rstrip() == "default   -        virtualbox   Running   tcp://192.168.99.188:2376           v1.9.1"


def test_table_headers() -> None:
    out = gt.render_table("{{.Name}}\t{{.Driver.IPAddress}}", [CFG], {"Name": "NAME", "IPAddress": "IP"})
    assert out.splitlines() == ["NAME   IP", "dev    10.0.0.2"]
