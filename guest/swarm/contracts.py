"""What the swarm's services and tasks need from the cluster, and the messages clients match on.

The cluster (guest/swarm/cluster.py: swarm state, the node, secrets, configs) and the services/tasks part
(guest/swarm/services.py and its neighbours) are built separately and meet only here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

# moby daemon/cluster/errors.go, word for word: clients (docker-py's teardown, the docker CLI) match on them.
NOT_IN_SWARM = "This node is not part of a swarm"
NOT_A_MANAGER = ('This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to connect '
                 'this node to swarm and try again.')


@dataclass(frozen=True)
class SecretPayload:
    """A secret's or config's bytes as a task mounts them (ID and Name are the object's, not the reference's)."""

    id: str
    name: str
    data: bytes


class SwarmCluster(Protocol):
    def require_manager(self) -> None:
        """Raise Unavailable(NOT_A_MANAGER) unless this node is in a swarm (it is then always its manager)."""

    @property
    def node_id(self) -> str:
        """This node's swarm ID (only meaningful when in a swarm)."""

    @property
    def task_history_limit(self) -> int:
        """The swarm's Orchestration.TaskHistoryRetentionLimit: how many ended tasks a slot keeps (5 unless set)."""

    @property
    def node_availability(self) -> str:
        """This node's Spec.Availability: "active", "pause" (no new tasks) or "drain" (no tasks at all), as
        `docker node update --availability` sets it; "active" outside a swarm."""

    def next_index(self) -> int:
        """The next cluster-wide version index (swarm objects' `Version.Index`; increases on every change and
        survives restarts, as raft's does)."""

    def node(self, ref: str) -> dict[str, Any]:
        """The node (ID, Spec with Role and Labels, Description with Hostname, Platform, Engine.Labels) by ID or
        name (NotFound otherwise): placement constraints are checked against it."""

    def secret(self, ref: str) -> SecretPayload:
        """A secret by ID or name (NotFound otherwise)."""

    def config(self, ref: str) -> SecretPayload:
        """A config by ID or name (NotFound otherwise)."""

    def set_users(self, users: Callable[[str, str], list[str]]) -> None:
        """Tell the cluster who uses a secret or config: `users(kind, id)` (kind "secret" or "config") names the
        services that reference it. Removing one in use is then refused with swarmkit's 400."""

    def on_leave(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Run `hook` when the node leaves the swarm, before the cluster's own state is dropped (services remove
        their tasks' containers)."""
