"""`machine env` output for each shell, and shell detection (docker-machine's commands/env.go formats).

API (stdlib only; on the fast `machine env` path):
    SHELLS                                             # accepted --shell values
    detect_shell(environ=os.environ, platform=sys.platform) -> str
    render(shell, pairs, usage_cmd, unset=False) -> str   # pairs: [(VAR, value)]; usage_cmd: argv as typed
    no_proxy_pair(ip, environ) -> (var, value)         # idempotently add ip to no_proxy/NO_PROXY
"""

from __future__ import annotations

import os
import sys
from typing import Mapping, Sequence

SHELLS = ("bash", "zsh", "sh", "fish", "powershell", "pwsh", "cmd", "tcsh", "csh", "emacs")

# shell -> (prefix, delimiter, suffix) for setting and for unsetting a variable.
_SET = {
    "fish": ("set -gx ", ' "', '";\n'),
    "powershell": ("$Env:", ' = "', '"\n'),
    "cmd": ("SET ", "=", "\n"),
    "tcsh": ("setenv ", ' "', '";\n'),
    "emacs": ('(setenv "', '" "', '")\n'),
    "posix": ("export ", '="', '"\n'),
}
_UNSET = {
    "fish": ("set -e ", "", ";\n"),
    "powershell": ("Remove-Item Env:\\\\", "", "\n"),
    "cmd": ("SET ", "=", "\n"),
    "tcsh": ("unsetenv ", "", ";\n"),
    "emacs": ('(setenv "', '" nil', ")\n"),
    "posix": ("unset ", "", "\n"),
}


def canonical(shell: str) -> str:
    s = shell.lower()
    if s.endswith(".exe"):
        s = s[:-4]
    if s == "pwsh":
        return "powershell"
    if s == "csh":
        return "tcsh"
    if s in _SET:
        return s
    return "posix"  # bash, zsh, sh, dash, ksh, ...


def detect_shell(environ: Mapping[str, str] | None = None, platform: str | None = None) -> str:
    """$SHELL's basename on Unix (fish also via __fish_bin_dir); on Windows without $SHELL, look at the
    parent processes for powershell/pwsh, else cmd."""
    env = os.environ if environ is None else environ
    plat = sys.platform if platform is None else platform
    if env.get("__fish_bin_dir"):
        return "fish"
    sh = env.get("SHELL", "")
    if sh:
        return os.path.basename(sh.replace("\\", "/")).removesuffix(".exe")
    if plat == "win32":
        return _windows_parent_shell() or "cmd"
    return "sh"


def _windows_parent_shell() -> str | None:
    """Walk up the parent processes (via PowerShell's environment hint, then psutil if present)."""
    if os.environ.get("PSModulePath", "").count(os.pathsep) >= 2:
        # PowerShell sets a three-part PSModulePath for its children; cmd.exe leaves the system one.
        return "powershell"
    try:
        import psutil  # optional

        p = psutil.Process().parent()
        while p is not None:
            n = p.name().lower()
            if n.startswith(("powershell", "pwsh")):
                return "powershell"
            if n.startswith("cmd"):
                return "cmd"
            p = p.parent()
    except Exception:
        pass
    return None


def _quote_argv0(argv: Sequence[str]) -> list[str]:
    args = list(argv)
    if args and (" " in args[0] or "\\" in args[0]):
        args[0] = f'"{args[0]}"'
    return args


def usage_hint(shell: str, argv: Sequence[str]) -> str:
    cmdline = " ".join(_quote_argv0(argv))
    kind = canonical(shell)
    comment = "#"
    if kind == "fish":
        cmd = f"eval ({cmdline})"
    elif kind == "powershell":
        cmd = f"& {cmdline} | Invoke-Expression"
    elif kind == "cmd":
        cmd = f"\t@FOR /f \"tokens=*\" %i IN ('{cmdline}') DO @%i"
        comment = "REM"
    elif kind == "emacs":
        cmd = f'(with-temp-buffer (shell-command "{cmdline}" (current-buffer)) (eval-buffer))'
        comment = ";;"
    elif kind == "tcsh":
        cmd = f"eval `{cmdline}`"
        comment = ":"
    else:
        cmd = f'eval "$({cmdline})"'
    return f"{comment} Run this command to configure your shell: \n{comment} {cmd}\n"


def render(shell: str, pairs: Sequence[tuple[str, str]], usage_argv: Sequence[str], unset: bool = False) -> str:
    kind = canonical(shell)
    prefix, delim, suffix = (_UNSET if unset else _SET)[kind]
    lines = []
    for var, value in pairs:
        if unset:
            # cmd cannot unset: it sets to empty; the others take the name only
            lines.append(f"{prefix}{var}{delim}{suffix}")
        else:
            lines.append(f"{prefix}{var}{delim}{value}{suffix}")
    return "".join(lines) + usage_hint(shell, usage_argv)


def no_proxy_pair(ip: str, environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    """Prefer an existing lowercase no_proxy; add the machine's IP once."""
    env = os.environ if environ is None else environ
    var, value = "no_proxy", env.get("no_proxy", "")
    if not value:
        var, value = "NO_PROXY", env.get("NO_PROXY", "")
    parts = [p.strip() for p in value.split(",") if p.strip()]
    if ip not in parts:
        parts.append(ip)
    return var, ",".join(parts)
