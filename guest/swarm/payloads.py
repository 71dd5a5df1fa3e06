"""Secrets and configs: named, versioned payloads that services mount into their tasks.

The two differ in what reads show (a secret's Data never leaves the daemon, a config's does) and in their size
limit; everything else (names, labels-only updates, in-use checks) is swarmkit's one behaviour for both.
The objects live in the cluster's state (guest/swarm/cluster.py persists it); Spec.Data is kept base64-encoded,
as the API carries it.
"""

from __future__ import annotations

import base64
import binascii
import copy
import re
from collections.abc import Callable
from typing import Any

from skiffbox.guest.errors import Conflict, InvalidParameter
from skiffbox.guest.swarm import ids
from skiffbox.guest.swarm.contracts import SecretPayload
from skiffbox.guest.swarm.objects import Obj, by_index, check_name, check_version, find, rpc_error, stamp
from skiffbox.guest.util.filters import Filters, match_labels

LIST_FILTERS = {"id", "label", "name", "names"}
# swarmkit's MaxSecretSize and MaxConfigSize
_MAX_SIZE = {"secret": 500 * 1024, "config": 1000 * 1024}
_B64_CHARS = re.compile(r"[^A-Za-z0-9+/=]")

# (kind, object ID) -> names of the services that reference it; the services part answers (see Cluster.set_users).
Users = Callable[[str, str], list[str]]


def decode_data(data: Any) -> bytes:
    """Spec.Data as Go decodes a []byte field (standard base64), with its error text."""
    if data is None:
        return b""
    text = str(data)
    bad = _B64_CHARS.search(text)
    try:
        if bad:
            raise ValueError
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        pos = bad.start() if bad else max(len(text.rstrip("=")) // 4 * 4, 0)
        raise InvalidParameter(f"illegal base64 data at input byte {pos}") from None


def _driver(given: Any) -> dict[str, Any]:
    """A Driver/Templating object as Go decodes it into swarm.Driver: field names match case-insensitively
    (docker-py sends `{"name": "golang"}`), Options only when given."""
    fields = {str(k).lower(): v for k, v in dict(given).items()}
    out: dict[str, Any] = {"Name": str(fields.get("name") or "")}
    if fields.get("options"):
        out["Options"] = dict(fields["options"])
    return out


class Payloads:
    """One kind (`secret` or `config`) over its table in the cluster's state."""

    def __init__(self, kind: str, table: Callable[[], dict[str, Obj]], commit: Callable[[str, str, Obj], None],
                 next_index: Callable[[], int], now: Callable[[], str]) -> None:
        self.kind = kind
        self._table = table
        self._commit = commit  # (kind, action, object) after a change: persist, publish the event
        self._next_index = next_index
        self._now = now
        self.users: Users = lambda kind, oid: []

    def public(self, obj: Obj) -> Obj:
        out = copy.deepcopy(obj)
        if self.kind == "secret":
            out["Spec"].pop("Data", None)
        return out

    def get(self, ref: str) -> Obj:
        return find(self.kind, self._table(), ref)

    def inspect(self, ref: str) -> Obj:
        return self.public(self.get(ref))

    def payload(self, ref: str) -> SecretPayload:
        obj = self.get(ref)
        return SecretPayload(obj["ID"], obj["Spec"]["Name"], decode_data(obj["Spec"].get("Data")))

    def ls(self, f: Filters) -> list[Obj]:
        def keep(o: Obj) -> bool:
            name = o["Spec"]["Name"]
            return ((not f.get("id") or any(o["ID"].startswith(p) for p in f["id"]))
                    and (not f.get("name") or any(name.startswith(p) for p in f["name"]))
                    and (not f.get("names") or name in f["names"])
                    and match_labels(o["Spec"].get("Labels"), f.get("label", [])))
        return [self.public(o) for o in by_index(self._table().values()) if keep(o)]

    def create(self, spec: dict[str, Any]) -> str:
        name = check_name(spec.get("Name"))
        data = decode_data(spec.get("Data"))
        if not 0 < len(data) < _MAX_SIZE[self.kind]:
            raise InvalidParameter(rpc_error("InvalidArgument", f"{self.kind} data must be larger than 0 and less "
                                                                f"than {_MAX_SIZE[self.kind]} bytes"))
        if any(o["Spec"]["Name"] == name for o in self._table().values()):
            raise Conflict(rpc_error("AlreadyExists", f"{self.kind} {name} already exists"))
        stored: dict[str, Any] = {"Name": name, "Labels": dict(spec.get("Labels") or {}),
                                  "Data": base64.b64encode(data).decode()}
        for extra in ("Driver", "Templating"):
            if spec.get(extra):
                stored[extra] = _driver(spec[extra])
        obj: Obj = {"ID": ids.new_id(), "Spec": stored}
        stamp(obj, self._next_index(), self._now(), created=True)
        self._table()[obj["ID"]] = obj
        self._commit(self.kind, "create", obj)
        return str(obj["ID"])

    def update(self, ref: str, version: int, spec: dict[str, Any]) -> None:
        obj = self.get(ref)
        check_version(obj, version)
        old = obj["Spec"]
        # swarmkit: a secret's update may leave Data out or send it unchanged (`docker stack deploy` again does)
        same_data = ((self.kind == "secret" and spec.get("Data") is None)
                     or decode_data(spec.get("Data")) == decode_data(old.get("Data")))
        if spec.get("Name") != old["Name"] or not same_data:
            raise InvalidParameter(rpc_error("InvalidArgument", "only updates to Labels are allowed"))
        updated = copy.deepcopy(obj)
        updated["Spec"]["Labels"] = dict(spec.get("Labels") or {})
        stamp(updated, self._next_index(), self._now())
        self._table()[obj["ID"]] = updated
        self._commit(self.kind, "update", updated)

    def remove(self, ref: str) -> None:
        obj = self.get(ref)
        name = obj["Spec"]["Name"]
        users = self.users(self.kind, obj["ID"])
        if users:
            plural = "s" if len(users) > 1 else ""
            raise InvalidParameter(rpc_error("InvalidArgument", f"{self.kind} '{name}' is in use by the following "
                                                                f"service{plural}: {', '.join(users)}"))
        del self._table()[obj["ID"]]
        self._commit(self.kind, "remove", obj)
