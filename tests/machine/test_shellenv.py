"""Every `machine env` shell format, byte for byte against docker-machine's templates."""

from __future__ import annotations

import pytest

from skiffbox.machine import shellenv

PAIRS = [
    ("DOCKER_TLS_VERIFY", "1"),
    ("DOCKER_HOST", "tcp://10.0.0.2:2376"),
    ("DOCKER_CERT_PATH", "/s/machines/dev"),
    ("DOCKER_MACHINE_NAME", "dev"),
]
ARGV = ["machine", "env", "dev"]

SET = {
    "bash": 'export DOCKER_TLS_VERIFY="1"\nexport DOCKER_HOST="tcp://10.0.0.2:2376"\n'
    'export DOCKER_CERT_PATH="/s/machines/dev"\nexport DOCKER_MACHINE_NAME="dev"\n'
    '# Run this command to configure your shell: \n# eval "$(machine env dev)"\n',
    "fish": 'set -gx DOCKER_TLS_VERIFY "1";\nset -gx DOCKER_HOST "tcp://10.0.0.2:2376";\n'
    'set -gx DOCKER_CERT_PATH "/s/machines/dev";\nset -gx DOCKER_MACHINE_NAME "dev";\n'
    "# Run this command to configure your shell: \n# eval (machine env dev)\n",
    "powershell": '$Env:DOCKER_TLS_VERIFY = "1"\n$Env:DOCKER_HOST = "tcp://10.0.0.2:2376"\n'
    '$Env:DOCKER_CERT_PATH = "/s/machines/dev"\n$Env:DOCKER_MACHINE_NAME = "dev"\n'
    "# Run this command to configure your shell: \n# & machine env dev | Invoke-Expression\n",
    "cmd": "SET DOCKER_TLS_VERIFY=1\nSET DOCKER_HOST=tcp://10.0.0.2:2376\n"
    "SET DOCKER_CERT_PATH=/s/machines/dev\nSET DOCKER_MACHINE_NAME=dev\n"
    "REM Run this command to configure your shell: \n"
    "REM \t@FOR /f \"tokens=*\" %i IN ('machine env dev') DO @%i\n",
    "tcsh": 'setenv DOCKER_TLS_VERIFY "1";\nsetenv DOCKER_HOST "tcp://10.0.0.2:2376";\n'
    'setenv DOCKER_CERT_PATH "/s/machines/dev";\nsetenv DOCKER_MACHINE_NAME "dev";\n'
    ": Run this command to configure your shell: \n: eval `machine env dev`\n",
    "emacs": '(setenv "DOCKER_TLS_VERIFY" "1")\n(setenv "DOCKER_HOST" "tcp://10.0.0.2:2376")\n'
    '(setenv "DOCKER_CERT_PATH" "/s/machines/dev")\n(setenv "DOCKER_MACHINE_NAME" "dev")\n'
    ";; Run this command to configure your shell: \n"
    ';; (with-temp-buffer (shell-command "machine env dev" (current-buffer)) (eval-buffer))\n',
}

UNSET_FIRST = {
    "bash": "unset DOCKER_TLS_VERIFY\n",
    "zsh": "unset DOCKER_TLS_VERIFY\n",
    "fish": "set -e DOCKER_TLS_VERIFY;\n",
    "powershell": "Remove-Item Env:\\\\DOCKER_TLS_VERIFY\n",
    "cmd": "SET DOCKER_TLS_VERIFY=\n",
    "tcsh": "unsetenv DOCKER_TLS_VERIFY;\n",
    "emacs": '(setenv "DOCKER_TLS_VERIFY" nil)\n',
}


@pytest.mark.parametrize("shell", sorted(SET))
def test_set_formats(shell: str) -> None:
    assert shellenv.render(shell, PAIRS, ARGV) == SET[shell]


def test_aliases() -> None:
    assert shellenv.render("zsh", PAIRS, ARGV) == SET["bash"]
    assert shellenv.render("sh", PAIRS, ARGV) == SET["bash"]
    assert shellenv.render("pwsh", PAIRS, ARGV) == SET["powershell"]
    assert shellenv.render("csh", PAIRS, ARGV) == SET["tcsh"]
    assert shellenv.render("powershell.exe", PAIRS, ARGV) == SET["powershell"]


@pytest.mark.parametrize("shell", sorted(UNSET_FIRST))
def test_unset_formats(shell: str) -> None:
    out = shellenv.render(shell, PAIRS, ["machine", "env", "-u"], unset=True)
    assert out.startswith(UNSET_FIRST[shell])
    assert out.count("DOCKER_") == 4
    assert "10.0.0.2" not in out


def test_argv0_with_space_is_quoted() -> None:
    out = shellenv.usage_hint("bash", ["/Program Files/machine", "env"])
    assert '# eval "$("/Program Files/machine" env)"' in out


@pytest.mark.parametrize(
    "env,plat,expected",
    [
        ({"SHELL": "/bin/bash"}, "linux", "bash"),
        ({"SHELL": "/usr/bin/zsh"}, "darwin", "zsh"),
        ({"SHELL": "/usr/local/bin/fish"}, "darwin", "fish"),
        ({"SHELL": "/bin/bash", "__fish_bin_dir": "/usr/bin"}, "linux", "fish"),
        ({"SHELL": "/bin/tcsh"}, "freebsd", "tcsh"),
        ({}, "linux", "sh"),
        ({"SHELL": "C:\\Program Files\\Git\\usr\\bin\\bash.exe"}, "win32", "bash"),
    ],
)
def test_detect_shell(env: dict, plat: str, expected: str) -> None:
    assert shellenv.detect_shell(env, plat) == expected


def test_detect_windows_without_shell_defaults_to_cmd_or_powershell(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PSModulePath", raising=False)
    assert shellenv.detect_shell({}, "win32") in ("cmd", "powershell")
    monkeypatch.setenv("PSModulePath", "a:b:c")
    assert shellenv.detect_shell({}, "win32") == "powershell"


@pytest.mark.parametrize(
    "env,expected",
    [
        ({}, ("NO_PROXY", "10.0.0.2")),
        ({"NO_PROXY": "localhost"}, ("NO_PROXY", "localhost,10.0.0.2")),
        ({"no_proxy": "a,10.0.0.2", "NO_PROXY": "x"}, ("no_proxy", "a,10.0.0.2")),
        ({"no_proxy": "a"}, ("no_proxy", "a,10.0.0.2")),
    ],
)
def test_no_proxy(env: dict, expected: tuple[str, str]) -> None:
    assert shellenv.no_proxy_pair("10.0.0.2", env) == expected
