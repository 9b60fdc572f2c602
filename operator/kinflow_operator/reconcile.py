"""One reconcile loop per run: gather what is known, decide, apply, look again later.

- Serialised per run (an asyncio.Lock): events for a run that arrive while it
  is being reconciled only mark it dirty, and the running reconcile goes round
  once more, so a burst of Job events costs one or two decides, not one each.
- No GET on the happy path: the run comes from the kopf index (or from our own
  last patch's response, whichever is newer), its Jobs and pods from indexes.
- A 409 on the status patch means the decision was made on stale data: read
  the run (one GET) and decide again.
- Exact timing without kopf timers or daemons: decide() returns when to look
  again (a retry's `retryAt`, a schedule-timeout deadline), and we keep one
  `loop.call_later` per run. The times live in the run's status, so after a
  restart the first reconcile of each run schedules them again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import metrics
from .apply import ApiError, Conflict, JobRejected, Kube, apply_plan
from .config import get_config
from .decide import decide
from .resource import ChildRun, Observation, ObservedEvent, ObservedJob, ObservedPod, ObservedRun, utcnow

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, run name)
MAX_CONFLICT_ROUNDS = 5
CHILD_COUNT_INTERVAL = 1.0  # at most one children-count reconcile per parent per second
RECENT_JOB_SECONDS = 30.0


@dataclass
class _RunState:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    dirty: bool = False
    timer: asyncio.TimerHandle | None = None
    newest: dict[str, Any] | None = None  # our last patch's response
    recent_jobs: dict[str, tuple[float, ObservedJob]] = field(default_factory=dict)
    rejected_jobs: dict[str, str] = field(default_factory=dict)
    errors: int = 0
    poke_pending: bool = False
    last_poke: float = 0.0


class Reconciler:
    """Owns the per-run locks and timers; the indexes are kopf's, handed in by handlers."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.states: dict[Key, _RunState] = {}
        self.indexes: dict[str, Mapping[Any, Iterable[Any]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def all_runs(self) -> Iterable[dict[str, Any]]:
        """Every run the operator knows, from the runs index (for the phase gauge)."""
        for bodies in list(self.indexes.get("run_index", {}).values()):
            yield from bodies

    def bind(self, **indexes: Mapping[Any, Iterable[Any]]) -> None:
        """Remember kopf's index objects (the same objects every call) for timer wake-ups."""
        self.indexes.update(indexes)

    def _state(self, key: Key) -> _RunState:
        return self.states.setdefault(key, _RunState())

    def forget(self, key: Key) -> None:
        state = self.states.pop(key, None)
        if state and state.timer:
            state.timer.cancel()

    # --- triggers ----------------------------------------------------------------

    async def reconcile(self, key: Key) -> None:
        """Reconcile the run now, or make the reconcile in progress go round once more."""
        state = self._state(key)
        state.dirty = True
        if state.lock.locked():
            return
        async with state.lock:
            while state.dirty:
                state.dirty = False
                await self._reconcile_once(key, state)

    def poke_parent(self, key: Key) -> None:
        """A child changed: recount the parent's children, at most once a second."""
        state = self._state(key)
        if state.poke_pending:
            return
        state.poke_pending = True
        delay = max(0.0, state.last_poke + CHILD_COUNT_INTERVAL - time.monotonic())

        def fire() -> None:
            state.poke_pending = False
            state.last_poke = time.monotonic()
            self._spawn(key)

        asyncio.get_running_loop().call_later(delay, fire)

    def child_finished(self, key: Key, child: str) -> bool:
        """A child reached a final phase: if its parent waits for it in a durable task,
        reconcile the parent now (not at the coalesced once-a-second recount), so the
        resume latency is one reconcile. True if it did."""
        body = next(iter(self.indexes.get("run_index", {}).get(key, ())), None)
        if body is None:
            return False
        for entry in ((body.get("status") or {}).get("tasks") or {}).values():
            if entry.get("phase") == "Waiting" and child in ((entry.get("wait") or {}).get("children") or ()):
                self._spawn(key)
                return True
        return False

    def event_sent(self, namespace: str, event: ObservedEvent) -> list[str]:
        """An event was sent: reconcile every run in the namespace whose task waits for its key."""
        runs = [r for r in self.indexes.get("waiting_index", {}).get((namespace, event.key), ())
                if not event.run or r == event.run]
        for run in dict.fromkeys(runs):
            self._spawn((namespace, run))
        return runs

    def _spawn(self, key: Key) -> None:
        task = asyncio.ensure_future(self.reconcile(key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _schedule(self, key: Key, state: _RunState, delay: float | None) -> None:
        if state.timer:
            state.timer.cancel()
            state.timer = None
        if delay is not None:
            # A few ms late rather than early: decide() compares with the exact time.
            state.timer = asyncio.get_running_loop().call_later(delay + 0.005, self._spawn, key)

    # --- one round ---------------------------------------------------------------

    async def _reconcile_once(self, key: Key, state: _RunState) -> None:
        metrics.reconciles.inc()
        with metrics.reconcile_seconds.time():
            await self._reconcile_rounds(key, state)

    async def _reconcile_rounds(self, key: Key, state: _RunState) -> None:
        for _ in range(MAX_CONFLICT_ROUNDS):
            body = self._run_body(key, state)
            if body is None:
                return
            obs = self.observe(key, body, state)
            plan = decide(obs, utcnow())
            if plan.empty:
                self._schedule(key, state, plan.requeue_after)
                state.errors = 0
                return
            try:
                patched = await apply_plan(self.kube, obs.run, plan, default_image=get_config().task_image,
                                           created=lambda job: self._remember_job(state, job))
            except Conflict:
                metrics.conflicts.inc()
                fresh = await self._get(key)
                if fresh is None:
                    self.forget(key)
                    return
                state.newest = fresh
                continue
            except JobRejected as exc:
                state.rejected_jobs[exc.job] = exc.message
                continue
            except (ApiError, OSError) as exc:
                return self._backoff(key, state, exc)
            except Exception as exc:  # noqa: BLE001 -- keep the loop alive; say what broke
                log.exception("reconcile failed", extra={"run": f"{key[0]}/{key[1]}"})
                return self._backoff(key, state, exc)
            if patched is not None:
                state.newest = patched
            state.errors = 0
            self._schedule(key, state, plan.requeue_after)
            return
        self._backoff(key, state, RuntimeError("the run kept changing under the operator"))

    def _backoff(self, key: Key, state: _RunState, exc: BaseException) -> None:
        state.errors += 1
        delay = min(60.0, 2.0 ** state.errors)
        log.warning("reconcile failed (%s); again in %.0fs", exc, delay, extra={"run": f"{key[0]}/{key[1]}"})
        self._schedule(key, state, delay)

    async def _get(self, key: Key) -> dict[str, Any] | None:
        try:
            return await self.kube.get_run(*key)
        except ApiError as exc:
            log.warning("could not read the run: %s", exc, extra={"run": f"{key[0]}/{key[1]}"})
            return None

    def _remember_job(self, state: _RunState, body: Mapping[str, Any]) -> None:
        job = ObservedJob.from_body(body)
        state.recent_jobs[job.name] = (time.monotonic(), job)

    def _run_body(self, key: Key, state: _RunState) -> dict[str, Any] | None:
        """The newest version of the run we know: from the index or our own last patch."""
        indexed = next(iter(self.indexes.get("run_index", {}).get(key, ())), None)
        if indexed is None:
            return None  # deleted (or never seen)
        mine = state.newest
        if mine is None or mine.get("metadata", {}).get("uid") != indexed["metadata"].get("uid"):
            return indexed
        return mine if _newer(mine, indexed) else indexed

    def observe(self, key: Key, body: Mapping[str, Any], state: _RunState) -> Observation:
        jobs: dict[str, ObservedJob] = {j.name: j for j in self.indexes.get("job_index", {}).get(key, ())}
        now = time.monotonic()
        for name, (seen, job) in list(state.recent_jobs.items()):
            if name in jobs or now - seen > RECENT_JOB_SECONDS:
                del state.recent_jobs[name]
            else:
                jobs[name] = job
        pods: dict[str, ObservedPod] = {}
        for pod in self.indexes.get("pod_index", {}).get(key, ()):
            if pod.job not in pods or pod.started:
                pods[pod.job] = pod
        children = tuple(self._with_started(key[0], c) for c in self.indexes.get("child_index", {}).get(key, ()))
        return Observation(run=ObservedRun.from_body(body), jobs=jobs, pods=pods, children=children,
                           rejected_jobs=dict(state.rejected_jobs), events=self._events_for(key[0], body))

    def _with_started(self, namespace: str, child: ChildRun) -> ChildRun:
        """When did a pod of the child start? (A deadlocked parent's children start only
        once its pod is gone, if at all.)"""
        pods = [p for p in self.indexes.get("pod_index", {}).get((namespace, child.name), ()) if p.started]
        starts = [p.start_time for p in pods if p.start_time is not None]
        return dataclasses.replace(child, started=bool(pods), started_at=min(starts, default=None))

    def _events_for(self, namespace: str, body: Mapping[str, Any]) -> tuple[ObservedEvent, ...]:
        """The sent events with the keys this run's waiting tasks wait for."""
        keys = {(e.get("wait") or {}).get("event") for e in ((body.get("status") or {}).get("tasks") or {}).values()
                if e.get("phase") == "Waiting"}
        index = self.indexes.get("event_index", {})
        return tuple(ev for k in keys if k for ev in index.get((namespace, k), ()))


def _newer(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Is `a` a later version than `b`? resourceVersions are opaque, but etcd's are
    increasing integers; if they do not parse, trust the index (a 409 corrects us)."""
    try:
        return int(a["metadata"]["resourceVersion"]) > int(b["metadata"]["resourceVersion"])
    except (KeyError, TypeError, ValueError):
        return False
