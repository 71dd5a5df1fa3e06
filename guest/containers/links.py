"""Legacy links' environment variables (`--link NAME:ALIAS` on the default bridge), as moby's links.ToEnv
writes them: ALIAS_NAME=/PARENT/ALIAS, ALIAS_ENV_X for the linked container's own Env (not HOME or PATH),
and ALIAS_PORT… for its exposed ports at its bridge address. The hosts entries are the network's
(guest/network/joins.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from skiffbox.guest.containers.store import Container
from skiffbox.guest.errors import NotFound


def legacy_links(c: Container, lookup: Callable[[str], Container]) -> list[tuple[Container, str]]:
    """(linked container, alias) of each legacy link whose container exists. None on a user-defined network:
    links there are DNS aliases (guest/network/resolver.py), as dockerd registers no legacy link there."""
    mode = c.host_config.get("NetworkMode") or "default"
    if mode not in ("default", "bridge", "host", "none") and not mode.startswith("container:"):
        return []
    out = []
    for link in c.host_config.get("Links") or []:
        target, _, alias = link.partition(":")
        try:
            out.append((lookup(target.lstrip("/")), (alias or target).rsplit("/", 1)[-1]))
        except NotFound:
            continue
    return out


def link_env(c: Container, lookup: Callable[[str], Container]) -> list[str]:
    env: list[str] = []
    for child, alias in legacy_links(c, lookup):
        env += _one(c.name, alias, child)
    return env


def inspect_links(c: Container, lookup: Callable[[str], Container]) -> list[str] | None:
    """`HostConfig.Links` as dockerd's inspect shows them (from its link graph): `/child:/parent/alias`, only
    those whose container exists, null when none (and always on a user-defined network)."""
    return [f"/{child.name}:/{c.name}/{alias}" for child, alias in legacy_links(c, lookup)] or None


def _one(parent: str, alias: str, child: Container) -> list[str]:
    prefix = alias.upper().replace("-", "_")
    nets: dict[str, Any] = (child.rec.get("NetworkSettings") or {}).get("Networks") or {}
    ip = (nets.get("bridge") or {}).get("IPAddress") or ""
    out: list[str] = []
    ports = sorted(((int(n), proto) for n, _, proto in
                    (p.partition("/") for p in (child.config.get("ExposedPorts") or {}))
                    if n.isdigit()), key=lambda p: (p[0], p[1] != "tcp"))
    if ports and ip:
        n, proto = ports[0]
        out.append(f"{prefix}_PORT={proto}://{ip}:{n}")
        for n, proto in ports:
            key = f"{prefix}_PORT_{n}_{proto.upper()}"
            out += [f"{key}={proto}://{ip}:{n}", f"{key}_ADDR={ip}", f"{key}_PORT={n}", f"{key}_PROTO={proto}"]
    out.append(f"{prefix}_NAME=/{parent}/{alias}")
    for kv in child.config.get("Env") or []:
        k, sep, v = kv.partition("=")
        if sep and k not in ("HOME", "PATH"):
            out.append(f"{prefix}_ENV_{k}={v}")
    return out
