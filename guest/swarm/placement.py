"""Placement constraints (`node.id==…`, `node.labels.zone!=…`) as swarmkit's scheduler reads them, against the
swarm's one node: a task whose constraints this node does not meet stays pending, as on dockerd."""

from __future__ import annotations

import re
from typing import Any

from skiffbox.guest.swarm.specs import invalid

_OPERATOR = re.compile(r"(==|!=)")
_KEY = re.compile(r"^(node|engine)\.[a-zA-Z0-9._-]+$")
UNSATISFIED = "no suitable node (scheduling constraints not satisfied on 1 node)"
UNAVAILABLE = "no suitable node (1 node not available for new tasks)"


def parse(constraints: list[str]) -> list[tuple[str, bool, str]]:
    """(key, equal?, value) per constraint; swarmkit's message for a malformed one."""
    out = []
    for c in constraints:
        parts = _OPERATOR.split(c, maxsplit=1)
        if len(parts) != 3 or _OPERATOR.search(parts[2]):
            raise invalid("constraint expected one operator from ==, !=")
        key, op, value = parts[0].strip(), parts[1], parts[2].strip()
        if not _KEY.match(key):
            raise invalid(f"key '{key}' is invalid")
        out.append((key, op == "==", value))
    return out


def _facts(node: dict[str, Any], key: str) -> list[str] | None:
    desc, spec = node.get("Description") or {}, node.get("Spec") or {}
    plat = desc.get("Platform") or {}
    simple = {"node.id": node.get("ID"), "node.hostname": desc.get("Hostname"), "node.role": spec.get("Role"),
              "node.platform.os": plat.get("OS"), "node.platform.arch": plat.get("Architecture")}
    if key in simple:
        return [str(simple[key] or "")]
    for prefix, labels in (("node.labels.", spec.get("Labels")), ("engine.labels.", (desc.get("Engine") or {}).get("Labels"))):
        if key.startswith(prefix):
            name = key[len(prefix):]
            known = labels or {}
            return [str(known[name])] if name in known else None
    return None


def satisfied(node: dict[str, Any], constraints: list[str]) -> bool:
    for key, equal, value in parse(constraints):
        facts = _facts(node, key)
        if facts is None:  # a label the node does not have: only != is met
            if equal:
                return False
            continue
        match = any(f.lower() == value.lower() for f in facts)
        if match != equal:
            return False
    return True
