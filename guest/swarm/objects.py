"""What every swarm object shares: Version/CreatedAt/UpdatedAt, lookups by ID, name or ID prefix, version checks,
and swarmkit's error wording (its gRPC status text reaches clients through dockerd unchanged)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from skiffbox.guest.errors import EngineError, InvalidParameter, NotFound

_NAME = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9-_.]*[a-zA-Z0-9])?$")

Obj = dict[str, Any]


class OutOfSequence(EngineError):
    """A write based on an old Version.Index: dockerd answers it with a 500 (swarmkit's code Unknown)."""

    status = 500

    def __init__(self) -> None:
        super().__init__(rpc_error("Unknown", "update out of sequence"))


def rpc_error(code: str, desc: str) -> str:
    return f"rpc error: code = {code} desc = {desc}"


def parse_version(kind: str, raw: str | None) -> int:
    """The `version` query parameter of an update (Go's strconv.ParseUint, worded as dockerd words it)."""
    text = raw or ""
    if not text.isdigit():
        why = "invalid syntax"
        raise InvalidParameter(f"invalid {kind} version '{text}': strconv.ParseUint: parsing \"{text}\": {why}")
    return int(text)


def check_version(obj: Obj, version: int) -> None:
    if obj["Version"]["Index"] != version:
        raise OutOfSequence()


def check_name(name: Any) -> str:
    if not name:
        raise InvalidParameter(rpc_error("InvalidArgument", "name must be provided"))
    if not isinstance(name, str) or len(name) > 64 or not _NAME.match(name):
        raise InvalidParameter(rpc_error("InvalidArgument", "invalid name, only 64 [a-zA-Z0-9-_.] characters "
                                                            "allowed, and the start and end character must be "
                                                            "[a-zA-Z0-9]"))
    return name


def stamp(obj: Obj, index: int, now: str, created: bool = False) -> None:
    obj["Version"] = {"Index": index}
    if created:
        obj["CreatedAt"] = now
    obj["UpdatedAt"] = now


def find(kind: str, objs: dict[str, Obj], ref: str, name_of: Any = None) -> Obj:
    """By full ID, then by name, then by a unique ID prefix (moby's getSecret/getNode/...)."""
    if ref in objs:
        return objs[ref]
    names = name_of or (lambda o: o["Spec"].get("Name"))
    by_name = [o for o in objs.values() if names(o) == ref]
    if by_name:
        return by_name[0]
    by_prefix = [o for i, o in objs.items() if ref and i.startswith(ref)]
    if len(by_prefix) > 1:
        raise InvalidParameter(f"{kind} {ref} is ambiguous ({len(by_prefix)} matches found)")
    if not by_prefix:
        raise NotFound(f"{kind} {ref} not found")
    return by_prefix[0]


def by_index(objs: Iterable[Obj]) -> list[Obj]:
    return sorted(objs, key=lambda o: o["CreatedAt"])
