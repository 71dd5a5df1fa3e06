"""Swarm services and their tasks on this single-node swarm: the records (kept in one state file, written
atomically on every change), create/update/rollback/remove with dockerd's checks and messages, the views the
API shows, and service/task logs. The orchestrator (guest/swarm/orchestrator.py) runs the tasks.

The cluster (swarm membership, the node, secrets, configs) is reached only through guest/swarm/contracts.py.
"""

from __future__ import annotations

import asyncio
import copy
import heapq
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from skiffbox.guest.contracts import ContainersForTasks, EventSink, ImagesForTasks, NetworksForTasks
from skiffbox.guest.errors import Conflict, EngineError, InvalidParameter, NotFound, SystemError_
from skiffbox.guest.network.overlay import TASK_LABEL
from skiffbox.guest.swarm import ids, placement, specs, tasks
from skiffbox.guest.swarm.contracts import SwarmCluster
from skiffbox.guest.swarm.orchestrator import Orchestrator
from skiffbox.guest.util.atomicfile import atomic_write_json
from skiffbox.guest.util.filters import Filters, match_labels
from skiffbox.guest.util.timefmt import now_rfc3339

log = logging.getLogger("skiffd.swarm")

SERVICE_FILTERS = {"id", "label", "mode", "name"}
TASK_FILTERS = {"id", "name", "label", "service", "node", "desired-state", "_up-to-date"}
_MODE_FILTER = {"replicated": "Replicated", "global": "Global", "replicated-job": "ReplicatedJob",
                "global-job": "GlobalJob"}


class SwarmServices:
    def __init__(self, root: Path, run_root: Path, events: EventSink, cluster: SwarmCluster,
                 containers: ContainersForTasks, images: ImagesForTasks, networks: NetworksForTasks) -> None:
        self.dir = root / "swarm-services"
        self.files_root = run_root / "swarm-tasks"
        self.events, self.cluster = events, cluster
        self.containers, self.images, self.networks = containers, images, networks
        self.services: dict[str, dict[str, Any]] = {}
        self.tasks: dict[str, dict[str, Any]] = {}
        self.lock = asyncio.Lock()
        self.orchestrator = Orchestrator(self)
        cluster.on_leave(self.leave)
        cluster.set_users(self.users_of)

    # -- state ---------------------------------------------------------------------------------------------

    @property
    def _state_file(self) -> Path:
        return self.dir / "state.json"

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self._state_file, {"services": self.services, "tasks": self.tasks}, mode=0o600)

    async def start(self) -> None:
        try:
            state = json.loads(self._state_file.read_text())
            self.services, self.tasks = dict(state["services"]), dict(state["tasks"])
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError) as e:  # set aside: the daemon starts, the services are lost
            aside = self._state_file.with_name(f"state.json.unreadable-{int(time.time())}")
            log.error("swarm services: %s is unreadable (%s); moved to %s", self._state_file, e, aside)
            os.replace(self._state_file, aside)
        try:
            self.cluster.require_manager()
        except EngineError:  # the node left (or lost) its swarm while we were down: its services go
            if self.services or self.tasks:
                await self.leave()
            else:
                await self._sweep(keep=set())
            return
        await self._sweep(keep=set(self.tasks))
        self.orchestrator.recover()
        self.orchestrator.start()

    async def _sweep(self, keep: set[str]) -> None:
        """Remove task containers no task knows: made just before a crash lost the state that named them."""
        for c in await self.containers.list(all_=True, limit=None, size=False, filters={"label": [TASK_LABEL]}):
            if (c.get("Labels") or {}).get(TASK_LABEL) not in keep:
                log.warning("swarm services: removing %s, a task container no task knows", c["Id"][:12])
                try:
                    await self.containers.remove(c["Id"], force=True, volumes=True)
                except EngineError as e:
                    log.warning("swarm services: removing %s: %s", c["Id"][:12], e.message)

    async def close(self) -> None:
        await self.orchestrator.close()

    async def leave(self) -> None:
        """Leaving the swarm removes every service and its tasks' containers."""
        await self.orchestrator.close()
        async with self.lock:
            for t in list(self.tasks.values()):
                await self.orchestrator.drop_task(t)
            for svc in self.services.values():
                self.events.publish("service", "remove", svc["ID"], {"name": svc["Spec"]["Name"]}, scope="swarm")
            self.services.clear()
            self.save()
            await self._sweep(keep=set())
        self.orchestrator.reset()

    # -- lookups ---------------------------------------------------------------------------------------------

    def get(self, ref: str) -> dict[str, Any]:
        self.cluster.require_manager()
        return self._find(ref)

    def _find(self, ref: str) -> dict[str, Any]:
        if ref in self.services:
            return self.services[ref]
        for s in self.services.values():
            if s["Spec"]["Name"] == ref:
                return s
        hits = [s for s in self.services.values() if ref and s["ID"].startswith(ref)]
        if len(hits) == 1:
            return hits[0]
        if hits:
            raise NotFound(f"service {ref} is ambiguous ({len(hits)} matches found)")
        raise NotFound(f"service {ref} not found")

    def task(self, ref: str) -> dict[str, Any]:
        self.cluster.require_manager()
        if ref in self.tasks:
            return self.tasks[ref]
        hits = [t for t in self.tasks.values() if ref and t["ID"].startswith(ref)]
        if len(hits) == 1:
            return hits[0]
        raise NotFound(f"task {ref} {'is ambiguous' if hits else 'not found'}")

    def users_of(self, kind: str, oid: str) -> list[str]:
        """The services whose spec references secret or config `oid` (the cluster refuses to remove it then)."""
        key, field = ("Secrets", "SecretID") if kind == "secret" else ("Configs", "ConfigID")
        return [s["Spec"]["Name"] for s in self.services.values()
                if any(r.get(field) == oid for r in s["Spec"]["TaskTemplate"]["ContainerSpec"].get(key) or [])]

    def tasks_of(self, service_id: str) -> list[dict[str, Any]]:
        return sorted((t for t in self.tasks.values() if t["ServiceID"] == service_id), key=lambda t: t["CreatedAt"])

    # -- create, update, remove ------------------------------------------------------------------------------

    def _normalize(self, spec: dict[str, Any]) -> dict[str, Any]:
        def net(ref: str) -> str:
            return str(self.networks.resolve(ref)["Id"])

        def secret(ref: str) -> None:
            try:
                self.cluster.secret(ref)
            except NotFound:
                raise specs.invalid(f"secret reference {ref!r} not found") from None

        def config(ref: str) -> None:
            try:
                self.cluster.config(ref)
            except NotFound:
                raise specs.invalid(f"config reference {ref!r} not found") from None

        out = specs.normalize(spec, net, secret, config)
        placement.parse((out["TaskTemplate"].get("Placement") or {}).get("Constraints") or [])
        return out

    async def create(self, spec: dict[str, Any]) -> str:
        self.cluster.require_manager()
        if not isinstance(spec, dict):
            raise InvalidParameter("invalid JSON body")
        spec = self._normalize(spec)
        async with self.lock:
            if any(s["Spec"]["Name"] == spec["Name"] for s in self.services.values()):
                raise Conflict(specs.grpc_error("AlreadyExists", "name conflicts with an existing object: service "
                                                f"{spec['Name']} already exists"))
            now = now_rfc3339()
            sid = ids.new_id()
            svc: dict[str, Any] = {"ID": sid, "Version": {"Index": self.cluster.next_index()}, "CreatedAt": now,
                                   "UpdatedAt": now, "Spec": spec}
            if specs.mode_of(spec) in specs.JOB_MODES:
                svc["JobStatus"] = {"JobIteration": {}, "LastExecution": now}
            self.services[sid] = svc
            self.save()
        self.events.publish("service", "create", sid, {"name": spec["Name"]}, scope="swarm")
        self.orchestrator.wake()
        return sid

    async def update(self, ref: str, version: int | None, spec: dict[str, Any], rollback: str | None) -> list[str]:
        self.cluster.require_manager()
        if version is None:
            raise InvalidParameter("invalid service version ''")
        if not isinstance(spec, dict):
            raise InvalidParameter("invalid JSON body")
        async with self.lock:
            svc = self._find(ref)
            if svc["Version"]["Index"] != version:
                # swarmkit's store error reaches clients as a 500 with the gRPC text (docker-py's retry matches it)
                raise SystemError_(specs.grpc_error("Unknown", "update out of sequence"))
            now = now_rfc3339()
            if rollback == "previous":
                if not svc.get("PreviousSpec"):
                    raise InvalidParameter(specs.grpc_error("FailedPrecondition",
                                                            f"service {svc['ID']} does not have a previous spec"))
                svc["Spec"], svc["PreviousSpec"] = svc["PreviousSpec"], svc["Spec"]
                svc["UpdateStatus"] = {"State": "rollback_started", "StartedAt": now,
                                       "Message": "manually requested rollback"}
            else:
                new = self._normalize(spec)
                specs.check_update(svc["Spec"], new)
                svc["PreviousSpec"], svc["Spec"] = svc["Spec"], new
                svc.pop("UpdateStatus", None)
            if specs.mode_of(svc["Spec"]) in specs.JOB_MODES:
                js = svc.setdefault("JobStatus", {"JobIteration": {}})
                js["JobIteration"] = {"Index": int(js.get("JobIteration", {}).get("Index") or 0) + 1}
                js["LastExecution"] = now
            svc["UpdatedAt"] = now
            svc["Version"] = {"Index": self.cluster.next_index()}
            self.save()
        self.events.publish("service", "update", svc["ID"], {"name": svc["Spec"]["Name"]}, scope="swarm")
        self.orchestrator.wake()
        return []

    async def remove(self, ref: str) -> None:
        self.cluster.require_manager()
        async with self.lock:
            svc = self._find(ref)
            del self.services[svc["ID"]]
            self.save()
            # Its containers go now (dockerd removes them soon after): a network the service used can be removed
            # as soon as the client's next request, as after dockerd's.
            for t in self.tasks_of(svc["ID"]):
                await self.orchestrator.drop_task(t)
            self.save()
        self.events.publish("service", "remove", svc["ID"], {"name": svc["Spec"]["Name"]}, scope="swarm")
        self.orchestrator.wake()

    # -- views ------------------------------------------------------------------------------------------------

    def inspect(self, ref: str, insert_defaults: bool = False) -> dict[str, Any]:
        return self.view(self.get(ref), insert_defaults)

    def view(self, svc: dict[str, Any], insert_defaults: bool = False, status: bool = False) -> dict[str, Any]:
        out = {k: copy.deepcopy(v) for k, v in svc.items() if not k.startswith("_")}
        if insert_defaults:
            out["Spec"] = specs.with_defaults(out["Spec"])
            if out.get("PreviousSpec"):
                out["PreviousSpec"] = specs.with_defaults(out["PreviousSpec"])
        ep = svc["Spec"].get("EndpointSpec") or {}
        out["Endpoint"] = {"Spec": copy.deepcopy(ep)}
        if ep.get("Ports"):
            out["Endpoint"]["Ports"] = copy.deepcopy(ep["Ports"])
        # after Endpoint: dockerd's field order
        for k in ("UpdateStatus", "JobStatus"):
            if k in out:
                out[k] = out.pop(k)
        if status:
            out["ServiceStatus"] = self.status(svc)
        return out

    def status(self, svc: dict[str, Any]) -> dict[str, int]:
        mode = specs.mode_of(svc["Spec"])
        mine = self.tasks_of(svc["ID"])
        running = sum(1 for t in mine if t["Status"]["State"] == "running" and t["DesiredState"] == "running")
        out = {"RunningTasks": running, "DesiredTasks": 0, "CompletedTasks": 0}
        m = svc["Spec"]["Mode"][mode]
        if mode == "Replicated":
            out["DesiredTasks"] = int(m.get("Replicas") or 0)
        elif mode == "Global":
            out["DesiredTasks"] = 1
        else:
            done = sum(1 for t in self.orchestrator.current_job_tasks(svc) if t["Status"]["State"] == "complete")
            out["CompletedTasks"] = done
            total = int(m.get("TotalCompletions") or 0) if mode == "ReplicatedJob" else 1
            out["DesiredTasks"] = max(0, min(int(m.get("MaxConcurrent") or 1), total - done)) \
                if mode == "ReplicatedJob" else (0 if done else 1)
        return out

    def ls(self, filters: Filters, status: bool = False) -> list[dict[str, Any]]:
        self.cluster.require_manager()
        for k in filters:
            if k not in SERVICE_FILTERS:
                raise InvalidParameter(f"Invalid filter '{k}'")
        for m in filters.get("mode", []):
            if m not in _MODE_FILTER:
                raise InvalidParameter(f"Invalid filter: 'mode={m}'")
        out = []
        for svc in sorted(self.services.values(), key=lambda s: s["CreatedAt"]):
            spec = svc["Spec"]
            if "id" in filters and not any(svc["ID"].startswith(v) for v in filters["id"]):
                continue
            if "name" in filters and not any(spec["Name"].startswith(v) for v in filters["name"]):
                continue
            if "label" in filters and not match_labels(spec.get("Labels"), filters["label"]):
                continue
            if "mode" in filters and specs.mode_of(spec) not in {_MODE_FILTER[m] for m in filters["mode"]}:
                continue
            out.append(self.view(svc, status=status))
        return out

    def list_tasks(self, filters: Filters) -> list[dict[str, Any]]:
        self.cluster.require_manager()
        for k in filters:
            if k not in TASK_FILTERS:
                raise InvalidParameter(f"Invalid filter '{k}'")
        services = None
        if "service" in filters:
            services = set()
            for ref in filters["service"]:
                try:
                    services.add(self._find(ref)["ID"])
                except NotFound:
                    pass
        out = []
        for t in sorted(self.tasks.values(), key=lambda t: t["CreatedAt"]):
            svc = self.services.get(t["ServiceID"])
            if t["DesiredState"] == "remove" or svc is None:
                continue
            if services is not None and t["ServiceID"] not in services:
                continue
            if "id" in filters and not any(t["ID"].startswith(v) for v in filters["id"]):
                continue
            if "name" in filters:
                tname = f"{svc['Spec']['Name']}.{t.get('Slot') or t['NodeID']}"
                if not any(tname.startswith(v) for v in filters["name"]):
                    continue
            if "node" in filters and t["NodeID"] not in filters["node"] and "self" not in filters["node"]:
                continue
            if "desired-state" in filters and t["DesiredState"] not in filters["desired-state"]:
                continue
            if filters.get("_up-to-date") and not self.orchestrator.up_to_date(t, svc):
                continue  # (the docker CLI's progress display asks for the tasks of the current spec)
            # swarmkit matches a task's labels filter on its service's labels (`docker stack ps` filters so)
            if "label" in filters and not match_labels(svc["Spec"].get("Labels"), filters["label"]):
                continue
            out.append(tasks.public(t))
        return out

    def inspect_task(self, ref: str) -> dict[str, Any]:
        return tasks.public(self.task(ref))

    # -- logs -------------------------------------------------------------------------------------------------

    def log_sources(self, task_list: list[dict[str, Any]]) -> list[tuple[dict[str, Any], Any]]:
        out = []
        for t in task_list:
            cid = t.get("_container")
            if not cid:
                continue
            try:
                out.append((t, self.containers.get(cid)))
            except NotFound:
                continue
        return out

    async def logs(self, task_list: Callable[[], list[dict[str, Any]]], *, stdout: bool, stderr: bool, follow: bool,
                   tail: int | None, since: float | None, until: float | None,
                   more: Callable[[], bool] = lambda: False) -> AsyncIterator[tuple[dict[str, Any], Any]]:
        """(task, log entry) for each line of the tasks' containers, oldest first. With `follow`, lines as they come
        from these and from tasks started later, until the client goes away or, once every container followed has
        stopped, `more()` says no task will come (a task's own logs; a service that was removed)."""
        if not follow:
            streams = [self._tagged(t, c, stdout, stderr, tail, since, until) for t, c in self.log_sources(task_list())]
            async for item in _merge_sorted(streams):
                yield item
            return
        queue: asyncio.Queue[tuple[dict[str, Any], Any]] = asyncio.Queue()

        async def pump(t: dict[str, Any], c: Any, tail: int | None) -> None:
            async for e in self.containers.log_entries(c, stdout=stdout, stderr=stderr, follow=True, tail=tail,
                                                       since=since, until=until):
                await queue.put((t, e))

        pumps: dict[str, asyncio.Task[None]] = {}
        first = True
        try:
            while True:
                for t, c in self.log_sources(task_list()):
                    if t["ID"] not in pumps:  # a task started after the request reads from its start
                        pumps[t["ID"]] = asyncio.get_running_loop().create_task(pump(t, c, tail if first else None))
                first = False
                try:
                    yield await asyncio.wait_for(queue.get(), 1.0)
                except asyncio.TimeoutError:
                    if all(p.done() for p in pumps.values()) and queue.empty() and not more():
                        return
        finally:
            for p in pumps.values():
                p.cancel()

    async def _tagged(self, t: dict[str, Any], c: Any, stdout: bool, stderr: bool, tail: int | None,
                      since: float | None, until: float | None) -> AsyncIterator[tuple[float, tuple[dict[str, Any], Any]]]:
        async for e in self.containers.log_entries(c, stdout=stdout, stderr=stderr, follow=False, tail=tail,
                                                   since=since, until=until):
            yield e.ts, (t, e)


async def _merge_sorted(streams: list[AsyncIterator[tuple[float, Any]]]) -> AsyncIterator[Any]:
    """Each container's lines are in order: merge them by time."""
    items = []
    for s in streams:
        items.append([x async for x in s])
    for _, item in heapq.merge(*items, key=lambda x: x[0]):
        yield item
