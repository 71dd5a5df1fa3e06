"""Instruction values Docker parses and prints in its own ways: ports, signals, and the Go formatting
(`%q` / `%v` of a list, time.Duration) that history entries show."""

from __future__ import annotations

import json
import re
from typing import Any

from skiffbox.guest.errors import InvalidParameter
from skiffbox.guest.util.humanize import go_duration

_SIGNALS = {"ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT", "KILL", "PIPE",
            "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM", "TRAP", "TSTP", "TTIN", "TTOU",
            "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ"}


def go_quote_list(items: list[str] | None) -> str:
    """Go's `%q` of a []string, as Docker prints CMD/ENTRYPOINT in history: `["a" "b c"]`."""
    return "[" + " ".join(json.dumps(s, ensure_ascii=False) for s in (items or [])) + "]"


def go_list(items: list[str] | None) -> str:
    """Go's `%v` of a []string: `[/data hello]`."""
    return "[" + " ".join(items or []) + "]"


def valid_signal(sig: str) -> bool:
    s = sig.upper()
    if s.isdigit():
        return 0 < int(s) <= 64
    s = s[3:] if s.startswith("SIG") else s
    return s in _SIGNALS or re.match(r"^RTMIN(\+\d+)?$|^RTMAX(-\d+)?$", s) is not None


def port_specs(spec: str) -> list[str]:
    """EXPOSE's `80`, `80/udp`, `7000-7002/tcp` as ExposedPorts keys (nat.ParsePortSpecs)."""
    port, _, proto = spec.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in ("tcp", "udp", "sctp"):
        raise InvalidParameter(f"invalid proto: {proto}")
    if ":" in port:
        port = port.rsplit(":", 1)[1]
    lo, _, hi = port.partition("-")
    try:
        a = int(lo)
        b = int(hi) if hi else a
    except ValueError:
        raise InvalidParameter(f"Invalid containerPort: {port}") from None
    if not (0 < a <= 65535 and 0 < b <= 65535 and a <= b):
        raise InvalidParameter(f"Invalid containerPort: {port}")
    return [f"{p}/{proto}" for p in range(a, b + 1)]


def health_text(hc: dict[str, Any]) -> str:
    """The HEALTHCHECK history text: Docker prints its HealthConfig struct with `%v`."""

    def d(key: str) -> str:
        return go_duration(int(hc.get(key) or 0))

    return (f"&{{{go_quote_list(hc.get('Test'))} \"{d('Interval')}\" \"{d('Timeout')}\" "
            f"\"{d('StartPeriod')}\" \"{d('StartInterval')}\" "
            f"'\\x{int(hc.get('Retries') or 0):02x}'}}")
