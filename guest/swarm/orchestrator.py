"""The orchestrator: one loop that makes each service's tasks match its spec on this node, as swarmkit's
replicated, global and job orchestrators, restart supervisor and updater do together.

Each pass (on a change, on a task container's exit, and once a second for the delays) it observes every task's
container, removes the tasks of removed services, fills each slot that has no live task (honouring the
restart policy: condition, delay, attempts), scales down, and replaces tasks whose spec is out of date in
batches of the update config's parallelism (stop-first or start-first, `Delay` apart; a replacement that
fails pauses the update, rolls it back or continues, per `FailureAction`). Ended tasks are kept per slot up to the
swarm's TaskHistoryRetentionLimit (5 by default); older ones are removed with their containers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from skiffbox.guest.errors import EngineError, NotFound, SystemError_
from skiffbox.guest.swarm import placement, specs, tasks
from skiffbox.guest.util.timefmt import now_rfc3339

if TYPE_CHECKING:
    from skiffbox.guest.swarm.services import SwarmServices

log = logging.getLogger("skiffd.swarm")

TICK = 1.0
BATCH = 10  # tasks started per service and pass


class Orchestrator:
    def __init__(self, m: SwarmServices) -> None:
        self.m = m
        self._wake = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self._watched: dict[str, asyncio.Future[Any]] = {}
        self._stops: dict[str, asyncio.Task[None]] = {}  # by task ID: containers being stopped
        self._pulls: dict[str, asyncio.Task[Any]] = {}

    # -- the loop -----------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._loop is None or self._loop.done():
            self._loop = asyncio.get_running_loop().create_task(self._run())

    def recover(self) -> None:
        """After a daemon restart: a task that was still being prepared (no container yet) never will be."""
        for t in self.m.tasks.values():
            if t["Status"]["State"] not in tasks.TERMINAL and not t.get("_container"):
                self._end(t, "rejected", "preparing", self.m.cluster.next_index(),
                          "the daemon restarted while the task was being prepared")

    def wake(self) -> None:
        self.start()
        self._wake.set()

    async def close(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.cancel()
            try:
                await loop
            except (asyncio.CancelledError, Exception):
                pass
        for stop in self._stops.values():  # a stop cut short is done again after a restart (reconcile)
            stop.cancel()
        self._stops.clear()
        for f in self._watched.values():
            f.cancel()
        self._watched.clear()
        for p in self._pulls.values():
            p.cancel()
        self._pulls.clear()

    def reset(self) -> None:
        self._wake.clear()

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), TICK)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            try:
                async with self.m.lock:
                    if await self.reconcile():
                        self.m.save()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("swarm orchestrator pass failed")

    async def reconcile(self) -> bool:
        m = self.m
        changed = False
        for t in list(m.tasks.values()):
            changed |= self._observe(t)
        for t in list(m.tasks.values()):
            if t["DesiredState"] == "remove" or t["ServiceID"] not in m.services:
                if not self._container_running(t):
                    await self.drop_task(t)
                    changed = True
                    continue
            if t["DesiredState"] not in ("running", "complete") and self._container_running(t):
                self._stop(t)  # (again, if a daemon restart cut the first stop short)
        for svc in list(m.services.values()):
            mode = specs.mode_of(svc["Spec"])
            if mode in specs.JOB_MODES:
                changed |= await self._reconcile_job(svc, mode)
            else:
                changed |= await self._reconcile_service(svc, mode)
        return changed

    # -- observing containers ---------------------------------------------------------------------------

    def _container(self, t: dict[str, Any]) -> Any:
        cid = t.get("_container")
        if not cid:
            return None
        try:
            return self.m.containers.get(cid)
        except NotFound:
            return None

    def _container_running(self, t: dict[str, Any]) -> bool:
        c = self._container(t)
        return bool(c is not None and (c.running or c.state.get("Restarting")))

    def _observe(self, t: dict[str, Any]) -> bool:
        st = t["Status"]
        if st["State"] in tasks.TERMINAL or not t.get("_container"):
            return False
        c = self._container(t)
        idx = self.m.cluster.next_index
        if c is None:
            self._end(t, "orphaned" if t.get("_stopping") else "failed", "removed", idx(),
                      None if t.get("_stopping") else "task: container removed")
            return True
        if c.running:
            self._watch(t, c)
            cstat = {"ContainerID": c.id, "PID": int(c.state.get("Pid") or 0), "ExitCode": 0}
            health = (c.state.get("Health") or {}).get("Status")
            if health == "unhealthy" and not t.get("_stopping"):
                # dockerd's executor fails the task and stops its container; the restart policy does the rest
                self._end(t, "failed", "started", idx(), "task: container is unhealthy", cstat)
                self._stop(t)
                return True
            # with a healthcheck, a task is running once its container is healthy
            want = "starting" if health == "starting" else "running"
            if st["State"] != want:
                tasks.set_state(t, want, "starting" if want == "starting" else "started", idx(), container=cstat)
                svc = self.m.services.get(t["ServiceID"])
                if svc is not None:
                    t["Status"]["PortStatus"] = tasks.port_status(svc)
                t["NetworksAttachments"] = tasks.attachments(c.rec, self.m.networks.resolve)
                return True
            return False
        if st["State"] not in ("running", "starting"):
            return False
        code = int(c.state.get("ExitCode") or 0)
        cstat = {"ContainerID": c.id, "PID": 0, "ExitCode": code}
        if t.get("_stopping"):
            self._end(t, "shutdown", "shutdown", idx(), None, cstat)
        elif code == 0:
            self._end(t, "complete", "finished", idx(), None, cstat)
        else:
            self._end(t, "failed", "started", idx(), f"task: non-zero exit ({code})", cstat)
        return True

    def _end(self, t: dict[str, Any], state: str, message: str, index: int, err: str | None,
             container: dict[str, Any] | None = None) -> None:
        tasks.set_state(t, state, message, index, err, container)
        t["_ended"] = time.time()
        if t["DesiredState"] == "running":
            t["DesiredState"] = "shutdown"
        f = self._watched.pop(t["ID"], None)
        if f is not None:
            f.cancel()

    def _watch(self, t: dict[str, Any], c: Any) -> None:
        if t["ID"] in self._watched:
            return
        f = self.m.containers.exit_future(c)
        f.add_done_callback(lambda _f: self._wake.set())
        self._watched[t["ID"]] = f

    # -- replicated and global services -------------------------------------------------------------------

    def _slots(self, svc: dict[str, Any], mode: str) -> Sequence[Any]:
        if mode == "Global":
            return [self.m.cluster.node_id]
        return range(1, int(svc["Spec"]["Mode"]["Replicated"].get("Replicas") or 0) + 1)  # lazy: any count

    @staticmethod
    def _slot_key(t: dict[str, Any]) -> Any:
        return t.get("Slot") or t["NodeID"]

    async def _reconcile_service(self, svc: dict[str, Any], mode: str) -> bool:
        changed = False
        by_slot: dict[Any, list[dict[str, Any]]] = {}
        for t in self.m.tasks_of(svc["ID"]):
            if t["DesiredState"] != "remove":
                by_slot.setdefault(self._slot_key(t), []).append(t)
        wanted = self._slots(svc, mode)
        changed |= self._drain([t for ts in by_slot.values() for t in ts])
        changed |= await self._retry_pending(svc, [t for ts in by_slot.values() for t in ts])
        for key, slot_tasks in by_slot.items():
            if key not in wanted:  # scaled down
                for t in slot_tasks:
                    t["DesiredState"] = "remove"
                    changed = True
        dirty: list[dict[str, Any]] = []
        started, last_used = 0, max((k for k in by_slot if isinstance(k, int)), default=0)
        for key in wanted:
            if started >= BATCH and (not isinstance(key, int) or key > last_used):
                self._wake.set()  # more next pass: the loop (and the API's writes) never wait on thousands
                break
            slot_tasks = by_slot.get(key, [])
            live = [t for t in slot_tasks if t["DesiredState"] == "running"]
            if len(live) > 1:  # start-first: the old one goes once the new one runs
                if live[-1]["Status"]["State"] == "running":
                    for t in live[:-1]:
                        self._shutdown(t)
                    changed = True
                continue
            if live:
                if not live[0].get("_replaced") and not self.up_to_date(live[0], svc):
                    dirty.append(live[0])
                continue
            if any(t["Status"]["State"] not in tasks.TERMINAL for t in slot_tasks if t.get("_container")):
                continue  # still stopping (stop-first)
            if slot_tasks and not self._may_restart(svc, key, slot_tasks[-1]):
                continue
            await self._run_task(svc, key if mode == "Replicated" else None)
            started += 1
            changed = True
        stopping = any(t.get("_stopping") and t["Status"]["State"] not in tasks.TERMINAL
                       for ts in by_slot.values() for t in ts)
        waiting = any(not [t for t in by_slot.get(k, []) if t["DesiredState"] == "running"]
                      and by_slot.get(k) and by_slot[k][-1].get("_replaced") for k in by_slot if k in wanted)
        starting = any(t["DesiredState"] == "running" and t["Status"]["State"] not in ("running", *tasks.TERMINAL)
                       for ts in by_slot.values() for t in ts)
        changed |= await self._update(svc, dirty, settled=not (stopping or waiting or starting))
        changed |= await self._prune(by_slot)
        return changed

    def up_to_date(self, t: dict[str, Any], svc: dict[str, Any]) -> bool:
        probe = tasks.new_task(svc, None, "", 0)
        return bool(t["Spec"] == probe["Spec"] and t.get("_ports") == _ports(svc))

    def _may_restart(self, svc: dict[str, Any], key: Any, last: dict[str, Any]) -> bool:
        state = last["Status"]["State"]
        if state == "shutdown" or last.get("_replaced"):
            return True  # stopped by us (update, scale), not by itself
        pol = svc["Spec"]["TaskTemplate"].get("RestartPolicy") or {}
        cond = pol.get("Condition") or "any"
        if cond == "none" or (cond == "on-failure" and state == "complete"):
            return False
        attempts = int((svc.get("_attempts") or {}).get(str(key), 0))
        if pol.get("MaxAttempts") and attempts >= int(pol["MaxAttempts"]):
            return False
        if time.time() - float(last.get("_ended") or 0) < specs.duration_s(pol.get("Delay"), 5.0):
            return False
        svc.setdefault("_attempts", {})[str(key)] = attempts + 1
        return True

    async def _update(self, svc: dict[str, Any], dirty: list[dict[str, Any]], settled: bool) -> bool:
        us = svc.get("UpdateStatus")
        rolling_back = bool(us and us["State"].startswith("rollback"))
        if not dirty:
            if settled and us and us["State"] in ("updating", "rollback_started"):
                done = "rollback_completed" if rolling_back else "completed"
                svc["UpdateStatus"] = {"State": done, "StartedAt": us["StartedAt"], "CompletedAt": now_rfc3339(),
                                       "Message": "rollback completed" if rolling_back else "update completed"}
                svc["_attempts"] = {}
                return True
            return False
        if us and us["State"] in ("paused", "rollback_paused"):
            return False
        cfg = svc["Spec"].get("RollbackConfig" if rolling_back else "UpdateConfig") or {}
        failed = self._failed_replacement(svc)
        if failed is not None and (cfg.get("FailureAction") or "pause") != "continue":
            return self._update_failed(svc, failed, cfg, rolling_back)
        changed = False
        if us is None or us["State"] not in ("updating", "rollback_started"):
            svc["UpdateStatus"] = {"State": "updating", "StartedAt": now_rfc3339(), "Message": "update in progress"}
            changed = True
        # the next batch once the last one runs (or ended by itself), `Delay` after it started
        if not settled or time.time() < float(svc.get("_next_batch") or 0):
            return changed
        n = int(cfg.get("Parallelism", 1) if cfg.get("Parallelism") is not None else 1) or len(dirty)
        for t in dirty[:n]:
            t["_replaced"] = True
            # start-first, but not for the task publishing the ingress ports on the node: two cannot bind them
            publishes = t.get("Slot") in (None, 1) and any(p.get("PublishMode") != "host" for p in _ports(svc))
            if (cfg.get("Order") or "stop-first") == "start-first" and not publishes:
                await self._run_task(svc, t.get("Slot"))  # the old one is shut down once this one runs
            else:
                self._shutdown(t)
        svc["_next_batch"] = time.time() + specs.duration_s(cfg.get("Delay"), 0.0)
        return True

    def _failed_replacement(self, svc: dict[str, Any]) -> dict[str, Any] | None:
        started = svc.get("UpdateStatus", {}).get("StartedAt") or ""
        for t in self.m.tasks_of(svc["ID"]):
            if t["CreatedAt"] >= started and t["Status"]["State"] in ("failed", "rejected") and \
                    t.get("_by_update") and not t.get("_failure_seen"):
                t["_failure_seen"] = True
                return t
        return None

    def _update_failed(self, svc: dict[str, Any], t: dict[str, Any], cfg: dict[str, Any], rolling_back: bool) -> bool:
        now = now_rfc3339()
        started = svc["UpdateStatus"]["StartedAt"]
        if (cfg.get("FailureAction") or "pause") == "rollback" and not rolling_back and svc.get("PreviousSpec"):
            svc["Spec"], svc["PreviousSpec"] = svc["PreviousSpec"], svc["Spec"]
            svc["UpdateStatus"] = {"State": "rollback_started", "StartedAt": now,
                                   "Message": f"update rolled back due to failure or early termination of task {t['ID']}"}
            svc["Version"] = {"Index": self.m.cluster.next_index()}
        else:
            what = "rollback" if rolling_back else "update"
            svc["UpdateStatus"] = {"State": "rollback_paused" if rolling_back else "paused", "StartedAt": started,
                                   "Message": f"{what} paused due to failure or early termination of task {t['ID']}"}
        return True

    # -- jobs -----------------------------------------------------------------------------------------------

    def current_job_tasks(self, svc: dict[str, Any]) -> list[dict[str, Any]]:
        it = (svc.get("JobStatus") or {}).get("JobIteration") or {}
        return [t for t in self.m.tasks_of(svc["ID"]) if (t.get("JobIteration") or {}) == it
                and t["DesiredState"] != "remove"]

    async def _reconcile_job(self, svc: dict[str, Any], mode: str) -> bool:
        changed = False
        current = self.current_job_tasks(svc)
        changed |= self._drain(current)
        changed |= await self._retry_pending(svc, current)
        for t in self.m.tasks_of(svc["ID"]):
            if t not in current and t["Status"]["State"] not in tasks.TERMINAL and not t.get("_stopping"):
                self._shutdown(t)  # an older iteration still running
                changed = True
        pol = svc["Spec"]["TaskTemplate"].get("RestartPolicy") or {}
        retry = (pol.get("Condition") or "any") != "none"
        max_attempts = int(pol.get("MaxAttempts") or 0)
        done = sum(1 for t in current if t["Status"]["State"] == "complete")
        failed = sum(1 for t in current if t["Status"]["State"] in ("failed", "rejected"))
        active = sum(1 for t in current if t["Status"]["State"] not in tasks.TERMINAL)
        gave_up = failed if not retry or (max_attempts and failed > max_attempts) else 0
        m = svc["Spec"]["Mode"][mode]
        total = int(m.get("TotalCompletions") or 1) if mode == "ReplicatedJob" else 1
        conc = int(m.get("MaxConcurrent") or 1) if mode == "ReplicatedJob" else 1
        last_end = max((float(t.get("_ended") or 0) for t in current if t["Status"]["State"] in ("failed", "rejected")),
                       default=0.0)
        if failed and time.time() - last_end < specs.duration_s(pol.get("Delay"), 5.0):
            return changed
        started = 0
        while active < conc and done + active + gave_up < total:
            if started >= BATCH:
                self._wake.set()
                break
            slot = len(current) if mode == "ReplicatedJob" else None  # swarmkit numbers a job's slots from 0
            current.append(await self._run_task(svc, slot))
            active += 1
            started += 1
            changed = True
        return changed

    # -- running and stopping tasks ----------------------------------------------------------------------

    async def _run_task(self, svc: dict[str, Any], slot: int | None,
                        pending: dict[str, Any] | None = None) -> dict[str, Any]:
        """A new task for `slot` (or the `pending` one, once this node meets its constraints), prepared and started."""
        m = self.m
        idx = m.cluster.next_index
        t = pending
        if t is None:
            t = tasks.new_task(svc, slot, m.cluster.node_id, idx())
            t["_ports"] = _ports(svc)
            if svc.get("UpdateStatus", {}).get("State") in ("updating", "rollback_started"):
                t["_by_update"] = True
            m.tasks[t["ID"]] = t
        why = self._unplaceable(t)
        if why is not None:
            if t["Status"]["State"] != "pending" or t["Status"].get("Err") != why:
                tasks.set_state(t, "pending", "pending task scheduling", idx(), err=why)
            return t
        cs = t["Spec"]["ContainerSpec"]
        try:
            if t["Status"]["State"] != "preparing":
                tasks.set_state(t, "preparing", "preparing", idx())
            if not await self._image_ready(cs["Image"]):
                return t  # pulled in the background; a later pass goes on
            files = tasks.write_files(m.files_root / t["ID"], cs, m.cluster.secret, m.cluster.config)
            nets = []
            for att in t["Spec"].get("Networks") or []:
                nets.append((str(m.networks.resolve(att["Target"])["Name"]), att))
            body = tasks.container_body(svc, t, nets, files, publish=slot in (None, 1))
            c, _ = await m.containers.create(body, tasks.container_name(svc["Spec"]["Name"], t))
            t["_container"] = c.id
            tasks.set_state(t, "ready", "prepared", idx())
        except EngineError as e:
            self._end(t, "rejected", "preparing", idx(), e.message)
            return t
        except OSError as e:
            self._end(t, "rejected", "preparing", idx(), str(e))
            return t
        try:
            tasks.set_state(t, "starting", "starting", idx())
            await m.containers.start_container(c.id)
        except EngineError as e:
            self._end(t, "failed", "starting", idx(), f"starting container failed: {e.message}",
                      {"ContainerID": c.id, "PID": 0, "ExitCode": int(c.state.get("ExitCode") or 128)})
            return t
        self._observe(t)
        return t

    def _unplaceable(self, t: dict[str, Any]) -> str | None:
        """Why this node cannot take `t` now (swarmkit's scheduler's words), or None."""
        if self.m.cluster.node_availability != "active":  # paused or drained
            return placement.UNAVAILABLE
        constraints = (t["Spec"].get("Placement") or {}).get("Constraints") or []
        if constraints and not placement.satisfied(self.m.cluster.node(self.m.cluster.node_id), constraints):
            return placement.UNSATISFIED
        return None

    def _placeable(self, t: dict[str, Any]) -> bool:
        return self._unplaceable(t) is None

    def _drain(self, ts: list[dict[str, Any]]) -> bool:
        """A drained node runs no task: its running ones are shut down (their replacements wait, pending)."""
        if self.m.cluster.node_availability != "drain":
            return False
        changed = False
        for t in ts:
            if t["DesiredState"] in ("running", "complete") and t.get("_container") \
                    and t["Status"]["State"] not in tasks.TERMINAL:
                self._shutdown(t)
                changed = True
        return changed

    async def _retry_pending(self, svc: dict[str, Any], ts: list[dict[str, Any]]) -> bool:
        """Tasks waiting for a node (placed once the node meets their constraints: its labels can change) or for
        their image (prepared once its pull is over)."""
        changed = False
        for t in ts:
            state = t["Status"]["State"]
            if t["DesiredState"] not in ("running", "complete") or t.get("_container"):
                continue
            if (state == "pending" and self._placeable(t)) or \
                    (state == "preparing" and self._pull_over(t["Spec"]["ContainerSpec"]["Image"])):
                await self._run_task(svc, t.get("Slot"), t)
                changed = True
        return changed

    def _pull_done(self, p: asyncio.Task[Any]) -> None:
        if not p.cancelled():
            p.exception()  # retrieved now (its tasks may be gone); a pass reads it again for those that wait
        self._wake.set()

    def _pull_over(self, image: str) -> bool:
        p = self._pulls.get(image)
        return p is None or p.done()

    async def _image_ready(self, image: str) -> bool:
        """Whether `image` is here; a missing one is pulled in the background (a registry can take minutes, and
        the loop holds the lock the API's writes take), and its failure rejects the tasks that wait for it."""
        try:
            await self.m.images.resolve(image)
            return True
        except NotFound:
            pass
        p = self._pulls.get(image)
        if p is None:
            p = asyncio.get_running_loop().create_task(self.m.images.pull(image))
            p.add_done_callback(self._pull_done)
            self._pulls[image] = p
            return False
        if not p.done():
            return False
        del self._pulls[image]
        err = p.exception()
        if isinstance(err, EngineError):
            raise err
        if err is not None:
            raise SystemError_(f"pulling {image}: {err}")
        await self.m.images.resolve(image)
        return True

    def _shutdown(self, t: dict[str, Any]) -> None:
        """Desired state shutdown; the container is stopped in the background (its grace period can be long)."""
        if t["DesiredState"] in ("running", "complete"):
            t["DesiredState"] = "shutdown"
        if t["Status"]["State"] not in tasks.TERMINAL:
            if t.get("_container"):
                self._stop(t)
            else:
                self._end(t, "shutdown", "shutdown", self.m.cluster.next_index(), None)

    def _stop(self, t: dict[str, Any]) -> None:
        t["_stopping"] = True
        if t["ID"] in self._stops:
            return
        cs = t["Spec"].get("ContainerSpec") or {}

        async def stop() -> None:
            try:
                await self.m.containers.stop(t["_container"], int(specs.duration_s(cs.get("StopGracePeriod"), 10.0)))
            except EngineError:
                pass
            finally:
                self._stops.pop(t["ID"], None)
                self._wake.set()

        self._stops[t["ID"]] = asyncio.get_running_loop().create_task(stop())

    async def drop_task(self, t: dict[str, Any]) -> None:
        """Forget a task: its container (killed if still running) and its secret files go with it."""
        f = self._watched.pop(t["ID"], None)
        if f is not None:
            f.cancel()
        if t.get("_container"):
            try:
                await self.m.containers.remove(t["_container"], force=True, volumes=True)  # as the executor: -v
            except NotFound:
                pass
            except EngineError as e:
                log.warning("removing task %s's container: %s", t["ID"], e.message)
        tasks.remove_files(self.m.files_root / t["ID"])
        self.m.tasks.pop(t["ID"], None)

    async def _prune(self, by_slot: dict[Any, list[dict[str, Any]]]) -> bool:
        changed = False
        for slot_tasks in by_slot.values():
            old = [t for t in slot_tasks if t["Status"]["State"] in tasks.TERMINAL and t["DesiredState"] != "running"]
            keep = self.m.cluster.task_history_limit
            for t in old[:len(old) - keep] if len(old) > keep else []:
                await self.drop_task(t)
                changed = True
        return changed


def _ports(svc: dict[str, Any]) -> Any:
    return (svc["Spec"].get("EndpointSpec") or {}).get("Ports") or []
