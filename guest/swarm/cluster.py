"""Single-node swarm mode: the cluster's state, its one node, secrets and configs.

Before `swarm init` every cluster endpoint answers as a dockerd outside a swarm does (503); after it this node is
the swarm's only manager and worker, which is all a one-machine engine can be (joining others is out of reach).
The whole cluster is one JSON document written atomically and durably under the data root (swarm/state.json,
mode 0600 as it holds the secrets): a daemon restart finds the swarm as it was, and `swarm leave --force` deletes
it. The version index, which every swarm object's `Version.Index` comes from, is kept apart (swarm/index): it only
ever grows, across restarts and across leaving and re-initialising, as raft's does.

The services part (guest/swarm/services.py) sees this only through guest/swarm/contracts.py:SwarmCluster.
"""

from __future__ import annotations

import copy
import ipaddress
import logging
import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from skiffbox.guest.contracts import EventSink
from skiffbox.guest.errors import Conflict, InvalidParameter, NotFound, Unavailable
from skiffbox.guest.swarm import ca, ids, netaddr, nodes
from skiffbox.guest.swarm.contracts import NOT_A_MANAGER, NOT_IN_SWARM, SecretPayload, SwarmCluster
from skiffbox.guest.swarm.objects import Obj, check_version, rpc_error, stamp
from skiffbox.guest.swarm.payloads import Payloads, Users
from skiffbox.guest.util.atomicfile import atomic_write, atomic_write_json, fsync_dir
from skiffbox.guest.util.filters import Filters
from skiffbox.guest.util.timefmt import now_rfc3339

log = logging.getLogger("skiffd")

ALREADY_IN_SWARM = ('This node is already part of a swarm. Use "docker swarm leave" to leave this swarm and join '
                    'another one.')
MANAGER_MUST_FORCE = ("You are attempting to leave the swarm on a node that is participating as a manager. Removing "
                      "the last manager erases all current state of the swarm. Use `--force` to ignore this message. ")
NOT_LOCKED = "swarm is not locked"

DEFAULT_LISTEN_PORT = 2377
DEFAULT_DATA_PATH_PORT = 4789
DEFAULT_ADDR_POOL = ["10.0.0.0/8"]
DEFAULT_SUBNET_SIZE = 24
# swarmkit's defaults, as `swarm inspect` shows them after an init that gave none.
DEFAULT_SPEC: dict[str, Any] = {
    "Name": "default", "Labels": {},
    "Orchestration": {"TaskHistoryRetentionLimit": 5},
    "Raft": {"SnapshotInterval": 10000, "KeepOldSnapshots": 0, "LogEntriesForSlowFollowers": 500,
             "ElectionTick": 10, "HeartbeatTick": 1},
    "Dispatcher": {"HeartbeatPeriod": 5_000_000_000},
    "CAConfig": {"NodeCertExpiry": 7_776_000_000_000_000},
    "TaskDefaults": {},
    "EncryptionConfig": {"AutoLockManagers": False},
}
# Indexes are handed out from a block reserved on disk first, so none is ever handed out twice, even after a crash.
_INDEX_BLOCK = 1000
_INDEX_JUMP = 1_000_000

Hook = Callable[[], Awaitable[None]]


# Spec fields Go keeps as pointers: an explicit 0 is a value, not "unset".
_POINTERS = {"TaskHistoryRetentionLimit", "KeepOldSnapshots"}


def merge_spec(base: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """`given` over `base` where given sets a non-zero value (dockerd's MergeSwarmSpecToGRPC, field by field)."""
    out = copy.deepcopy(base)
    for k, v in given.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge_spec(out[k], v)
        elif v not in (None, 0, "", [], {}) or (k == "Labels" and v == {}) or (k in _POINTERS and v == 0):
            out[k] = copy.deepcopy(v)
    return out


def update_spec(current: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """The spec after `swarm update`: dockerd takes the request's spec whole (what it leaves out becomes Go's zero
    value, and `docker swarm update` sends the complete spec it inspected), keeping only the name; then swarmkit's
    checks."""
    def section(name: str) -> dict[str, Any]:
        value = given.get(name)
        return copy.deepcopy(value) if isinstance(value, dict) else {}

    raft = section("Raft")
    spec: dict[str, Any] = {
        "Name": current["Name"], "Labels": dict(given.get("Labels") or {}),
        "Orchestration": section("Orchestration"),
        "Raft": {"SnapshotInterval": 0, "KeepOldSnapshots": 0, **raft, "ElectionTick": raft.get("ElectionTick") or 0,
                 "HeartbeatTick": raft.get("HeartbeatTick") or 0},
        "Dispatcher": section("Dispatcher"), "CAConfig": section("CAConfig"), "TaskDefaults": section("TaskDefaults"),
        "EncryptionConfig": {"AutoLockManagers": bool(section("EncryptionConfig").get("AutoLockManagers"))},
    }
    if int(spec["Dispatcher"].get("HeartbeatPeriod") or 0) < 0:
        raise InvalidParameter(rpc_error("InvalidArgument", "heartbeat time period cannot be a negative duration"))
    expiry = int(spec["CAConfig"].get("NodeCertExpiry") or 0)
    if 0 < expiry < 3_600_000_000_000:
        raise InvalidParameter(rpc_error("InvalidArgument", "minimum certificate expiry time is: 1h0m0s"))
    return spec


class Cluster:
    """Implements guest/swarm/contracts.py:SwarmCluster."""

    def __init__(self, root: Path, events: EventSink, make_networks: Hook | None = None,
                 drop_networks: Hook | None = None, engine_labels: list[str] | None = None) -> None:
        self._dir = Path(root) / "swarm"
        self._dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self._dir, 0o700)
        self._events = events
        self._engine_labels = list(engine_labels or [])
        self._state: dict[str, Any] | None = None
        self._index = 0
        self._reserved = 0
        # The swarm's networks (guest/network/overlay.py): the ingress network is made after init; all swarm
        # networks go after the services' leave hooks removed the tasks using them.
        self._make_networks = make_networks
        self._drop_networks = drop_networks
        self._leave_hooks: list[Hook] = []
        self._lock = asyncio.Lock()  # one init or leave at a time (both wait on other work half-way)
        self.secrets = Payloads("secret", lambda: self._table("secrets"), self._commit, self.next_index, now_rfc3339)
        self.configs = Payloads("config", lambda: self._table("configs"), self._commit, self.next_index, now_rfc3339)
        self._load()

    # --- persistence -------------------------------------------------------------------------------------
    @property
    def _state_file(self) -> Path:
        return self._dir / "state.json"

    def _load(self) -> None:
        """Read the state (at start, and to undo a change whose write failed). Files a crash could not have made
        (the writes are atomic) but a damaged disk could are set aside with a log line, never fatal to the daemon."""
        try:
            self._reserved = self._index = int((self._dir / "index").read_text().strip() or 0)
        except FileNotFoundError:
            pass
        except ValueError:
            # Unknown how far it had gone: jump far past anything handed out, as indexes must only grow.
            self._reserved = self._index = self._index + _INDEX_JUMP
            log.error("swarm: %s is unreadable: version indexes go on from %d", self._dir / "index", self._index)
        try:
            self._state = _read_json(self._state_file)
        except FileNotFoundError:
            self._state = None
        except ValueError as e:
            aside = self._state_file.with_name(f"state.json.unreadable-{int(time.time())}")
            os.replace(self._state_file, aside)
            log.error("swarm: %s is unreadable (%s): moved to %s; this node starts outside a swarm",
                      self._state_file, e, aside)
            self._state = None

    def _save(self) -> None:
        if self._state is None:
            return
        atomic_write_json(self._state_file, self._state, mode=0o600)

    def _persist(self) -> None:
        """Write the state after a change; if the write fails, memory goes back to what the disk holds."""
        try:
            self._save()
        except BaseException:
            self._load()
            raise

    def _commit(self, kind: str, action: str, obj: Obj) -> None:
        """Persist a change to one object, then say so on /events."""
        self._persist()
        self._publish(kind, action, obj["ID"], obj["Spec"].get("Name", ""))

    def _publish(self, kind: str, action: str, oid: str, name: str) -> None:
        self._events.publish(kind, action, oid, {"name": name}, scope="swarm")

    def _table(self, name: str) -> dict[str, Obj]:
        st = self._need()
        table: dict[str, Obj] = st.setdefault(name, {})
        return table

    def next_index(self) -> int:
        self._index += 1
        if self._index > self._reserved:
            reserve = self._index + _INDEX_BLOCK
            atomic_write(self._dir / "index", str(reserve))
            self._reserved = reserve
        return self._index

    # --- the contract ------------------------------------------------------------------------------------
    @property
    def active(self) -> bool:
        return self._state is not None

    def _need(self) -> dict[str, Any]:
        if self._state is None:
            raise Unavailable(NOT_A_MANAGER)
        return self._state

    def require_manager(self) -> None:
        self._need()

    @property
    def node_id(self) -> str:
        return str(self._state["node"]["ID"]) if self._state else ""

    @property
    def node_availability(self) -> str:
        return str(self._state["node"]["Spec"]["Availability"]) if self._state else "active"

    @property
    def task_history_limit(self) -> int:
        orch = self._state["swarm"]["Spec"].get("Orchestration") or {} if self._state else {}
        limit = orch.get("TaskHistoryRetentionLimit")
        return 5 if limit is None else max(0, int(limit))

    def secret(self, ref: str) -> SecretPayload:
        return self.secrets.payload(ref)

    def config(self, ref: str) -> SecretPayload:
        return self.configs.payload(ref)

    def on_leave(self, hook: Hook) -> None:
        self._leave_hooks.append(hook)

    def set_users(self, users: Users) -> None:
        """Who references a secret or config: `users(kind, id)` names the services ("secret"/"config"); removing
        an object in use is refused, as swarmkit refuses it."""
        self.secrets.users = users
        self.configs.users = users

    # --- swarm ---------------------------------------------------------------------------------------------
    async def init(self, req: dict[str, Any]) -> str:
        async with self._lock:
            return await self._init(req)

    async def _init(self, req: dict[str, Any]) -> str:
        if self._state is not None and req.get("ForceNewCluster"):
            # Recovery from a lost quorum: the cluster restarts from this manager's state, which on one node is
            # all of it; raft's index moves on.
            stamp(self._state["swarm"], self.next_index(), now_rfc3339())
            self._persist()
            return str(self._state["node"]["ID"])
        if self._state is not None:
            raise Unavailable(ALREADY_IN_SWARM)
        listen_host, listen_port = netaddr.listen_addr(req.get("ListenAddr"), DEFAULT_LISTEN_PORT)
        adv_ip, adv_port = netaddr.advertise_addr(req.get("AdvertiseAddr"), listen_host, listen_port)
        data_path_addr = netaddr.data_path_addr(req.get("DataPathAddr"))
        data_port = int(req.get("DataPathPort") or DEFAULT_DATA_PATH_PORT)
        if not 1024 <= data_port <= 49151:
            raise InvalidParameter(f"Datapath port number is not in valid range (1024-49151) : {data_port}")
        pools, subnet_size = _address_pools(req.get("DefaultAddrPool"), req.get("SubnetSize"))
        spec = merge_spec(DEFAULT_SPEC, req.get("Spec") or {})
        if spec["Name"] != "default":
            raise InvalidParameter('swarm spec must be named "default"')
        tls = await ca.new_tls_info()
        now = now_rfc3339()
        node: Obj = {"ID": ids.new_id(), "Spec": nodes.new_spec()}
        stamp(node, self.next_index(), now, created=True)
        swarm: Obj = {"ID": ids.new_id(), "Spec": spec, "TLSInfo": tls, "RootRotationInProgress": False,
                      "DefaultAddrPool": pools, "SubnetSize": subnet_size, "DataPathPort": data_port,
                      "JoinTokens": {"Worker": ids.join_token(tls["TrustRoot"]),
                                     "Manager": ids.join_token(tls["TrustRoot"])}}
        stamp(swarm, self.next_index(), now, created=True)
        self._state = {"swarm": swarm, "node": node, "secrets": {}, "configs": {},
                       "unlock_key": ids.unlock_key() if spec["EncryptionConfig"]["AutoLockManagers"] else "",
                       "listen_addr": f"{listen_host}:{listen_port}", "advertise_addr": adv_ip,
                       "advertise_port": adv_port, "data_path_addr": data_path_addr}
        try:
            self._save()
        except BaseException:
            self._state = None
            raise
        if self._make_networks is not None:
            try:
                await self._make_networks()
            except Exception:
                log.exception("swarm: the ingress network could not be made (the swarm is up without it)")
        return str(node["ID"])

    def inspect(self) -> Obj:
        return copy.deepcopy(self._need()["swarm"])

    async def leave(self, force: bool) -> None:
        async with self._lock:
            await self._leave(force)

    async def _leave(self, force: bool) -> None:
        if self._state is None:
            raise Unavailable(NOT_IN_SWARM)
        if not force:
            raise Unavailable(MANAGER_MUST_FORCE)
        for hook in self._leave_hooks:
            await hook()
        if self._drop_networks is not None:
            await self._drop_networks()
        self._state_file.unlink(missing_ok=True)
        fsync_dir(self._dir)
        self._state = None

    def update(self, version: int, spec: dict[str, Any], rotate_worker: bool, rotate_manager: bool,
               rotate_unlock: bool) -> None:
        st = self._need()
        swarm = st["swarm"]
        check_version(swarm, version)
        new = copy.deepcopy(swarm)
        new["Spec"] = update_spec(swarm["Spec"], spec)
        trust = swarm["TLSInfo"]["TrustRoot"]
        if rotate_worker:
            new["JoinTokens"]["Worker"] = ids.join_token(trust)
        if rotate_manager:
            new["JoinTokens"]["Manager"] = ids.join_token(trust)
        autolock = new["Spec"]["EncryptionConfig"]["AutoLockManagers"]
        unlock_key = st["unlock_key"]
        if not autolock:
            unlock_key = ""
        elif rotate_unlock or not unlock_key:
            unlock_key = ids.unlock_key()
        stamp(new, self.next_index(), now_rfc3339())
        st["swarm"], st["unlock_key"] = new, unlock_key
        self._persist()

    def unlock_key(self) -> str:
        return str(self._need()["unlock_key"])

    def unlock(self, key: str) -> None:
        self._need()
        raise Conflict(NOT_LOCKED)  # a one-node swarm's manager is unlocked for as long as skiffd runs

    # --- nodes ---------------------------------------------------------------------------------------------
    def _public_node(self) -> Obj:
        st = self._need()
        addr = st["advertise_addr"]
        return nodes.public(st["node"], st["swarm"]["TLSInfo"], addr, f"{addr}:{st['advertise_port']}",
                            self._engine_labels)

    def node(self, ref: str) -> Obj:
        node = self._public_node()
        name = node["Spec"].get("Name") or node["Description"]["Hostname"]
        if ref and (ref == node["ID"] or ref == name or node["ID"].startswith(ref)):
            return node
        raise NotFound(f"node {ref} not found")

    def nodes(self, f: Filters) -> list[Obj]:
        node = self._public_node()
        return [node] if nodes.matches(node, f) else []

    def update_node(self, ref: str, version: int, spec: dict[str, Any]) -> None:
        st = self._need()
        self.node(ref)
        check_version(st["node"], version)
        new = copy.deepcopy(st["node"])
        new["Spec"] = nodes.check_spec(spec)
        stamp(new, self.next_index(), now_rfc3339())
        st["node"] = new
        self._commit("node", "update", new)

    def remove_node(self, ref: str, force: bool) -> None:
        node = self.node(ref)
        raise InvalidParameter(rpc_error("FailedPrecondition", f"node {node['ID']} is a cluster manager and is a "
                                                              "member of the raft cluster. It must be demoted to "
                                                              "worker before removal"))

    # --- GET /info -------------------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        st = self._state
        if st is None:
            return {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": False,
                    "Error": "", "RemoteManagers": None}
        cluster = copy.deepcopy(st["swarm"])
        cluster.pop("JoinTokens", None)
        nid = st["node"]["ID"]
        return {"NodeID": nid, "NodeAddr": st["advertise_addr"], "LocalNodeState": "active",
                "ControlAvailable": True, "Error": "",
                "RemoteManagers": [{"NodeID": nid, "Addr": f"{st['advertise_addr']}:{st['advertise_port']}"}],
                "Nodes": 1, "Managers": 1, "Cluster": cluster}

    def address_pools(self) -> tuple[list[str], int] | None:
        """Where swarm-scoped networks take their subnets from (DefaultAddrPool, SubnetSize); None outside a swarm."""
        if self._state is None:
            return None
        return list(self._state["swarm"]["DefaultAddrPool"]), int(self._state["swarm"]["SubnetSize"])

    def ping_header(self) -> str:
        """The `Swarm` header of /_ping."""
        return "active/manager" if self._state is not None else "inactive"


def as_contract(cluster: Cluster) -> SwarmCluster:
    """The cluster as the services part sees it (mypy checks here that it keeps the contract)."""
    return cluster


def _address_pools(pools: Any, size: Any) -> tuple[list[str], int]:
    out = list(pools or DEFAULT_ADDR_POOL)
    for p in out:
        try:
            ipaddress.ip_network(p, strict=False)
        except ValueError:
            raise InvalidParameter(f"invalid base pool {p}: invalid CIDR address: {p}") from None
    subnet = int(size or DEFAULT_SUBNET_SIZE)
    if not 0 < subnet <= 32:
        raise InvalidParameter(f"invalid subnet size {subnet}: it must be between 1 and 32")
    return out, subnet


def _read_json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a JSON object")
    return data
