"""What should happen next to one run: a pure function of what was observed.

`decide(observation, now)` looks at the run (spec + status), its Jobs, their
pods and its direct children, and returns a `Plan`: one status merge patch,
Jobs to create, Jobs to delete, Events to post, children to cancel, and when
to look again. It does no I/O, so every rule below has a unit test.

Reconciliation is level-based: the plan is computed from the whole current
state each time, so running it twice, or after a restart, does the same
thing. Everything the operator needs to resume is in the run's status
(`attempt`, `job`, `retryAt`) and in the Jobs themselves.

A task entry moves through these states (operator-owned fields in brackets):

    not started   no entry, or no [attempt]
    running       [job] set: the Job for [attempt] was (or is being) created
    reported      the runner wrote phase + reportedJob == [job]
    retry wait    [attempt] set, [job] cleared, [retryAt] in the future
    final         [completionTime] set: Succeeded, Failed or Cancelled

The runner may overwrite `phase` with a late report from an old Job (it writes
without a precondition), so the state is derived from the operator's fields
and `phase` is trusted only when `reportedJob == job`.

API writes per task attempt that succeeds (the acceptance test counts them):
1 Job create, 1 status patch that marks it Running (shared with the patch that
records the previous task's result, when one task follows another), 1 Event
(TaskStarted), and the runner's own report patch; the operator's patch that
records the result is shared with the next task's start or the run's end
(+1 Event RunSucceeded per run). So a chain of n tasks costs about 3n + 2
operator writes; a retry adds 1 status patch and 1 Event.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from kinflow import _constants as C
from kinflow._names import job_name

from .resource import (
    ChildCounts,
    ChildRun,
    Condition,
    Observation,
    ObservedJob,
    ObservedPod,
    RunSpec,
    TaskSpec,
    TaskStatus,
    format_time,
    parse_time,
)

# A Job that completed without its runner's report is given this long for the
# report to arrive (the watch of the run and of the Job are separate streams).
REPORT_GRACE_SECONDS = 10.0
CONDITION = "Succeeded"
_REASON = re.compile(r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
_MESSAGE_LIMIT = 1024


@dataclass(frozen=True)
class JobToCreate:
    task: str
    attempt: int
    resume: int
    name: str


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str
    task: str | None = None  # the task it is about, for the operator's own log line


@dataclass(frozen=True)
class Plan:
    """What to do, in this order: create Jobs, patch status, delete Jobs, post Events,
    cancel children, look again after `requeue_after` seconds (None: only on change)."""

    status_patch: dict[str, Any] = field(default_factory=dict)
    create_jobs: tuple[JobToCreate, ...] = ()
    delete_jobs: tuple[str, ...] = ()
    events: tuple[Event, ...] = ()
    cancel_children: tuple[str, ...] = ()
    requeue_after: float | None = None

    @property
    def empty(self) -> bool:
        return not (self.status_patch or self.create_jobs or self.delete_jobs
                    or self.events or self.cancel_children)


def decide(obs: Observation, now: datetime) -> Plan:
    """The next step for the observed run (see the module docstring)."""
    return _Decision(obs, now).run()


def child_counts(children: Iterable[ChildRun]) -> ChildCounts:
    counts: ChildCounts = {"total": 0, "succeeded": 0, "failed": 0, "running": 0}
    for child in children:
        counts["total"] += 1
        if child.phase == "Succeeded":
            counts["succeeded"] += 1
        elif child.finished:
            counts["failed"] += 1
        else:
            counts["running"] += 1
    return counts


def topological_order(tasks: Iterable[TaskSpec]) -> list[str] | None:
    """Task names parents-first, or None if the parents form a cycle."""
    tasks = list(tasks)
    names = {t.name for t in tasks}
    pending = {t.name: {p for p in t.parents if p in names} for t in tasks}
    order: list[str] = []
    while pending:
        ready = [n for n, ps in pending.items() if not ps]
        if not ready:
            return None
        for n in ready:
            order.append(n)
            del pending[n]
        for ps in pending.values():
            ps.difference_update(ready)
    return order


class _Decision:
    """One decide() call: accumulates the patch and side effects as it walks the DAG."""

    def __init__(self, obs: Observation, now: datetime) -> None:
        self.obs = obs
        self.run_ = obs.run
        self.now = now
        self.stamp = format_time(now)
        self.status = obs.run.status
        self.old_tasks: Mapping[str, TaskStatus] = self.status.get("tasks") or {}
        # Only Jobs this run owns: a Job of an earlier run with the same name is not ours.
        self.jobs: dict[str, ObservedJob] = {
            n: j for n, j in obs.jobs.items() if not j.owner_uid or j.owner_uid == obs.run.uid
        }
        self.task_patch: dict[str, dict[str, Any]] = {}
        self.run_patch: dict[str, Any] = {}
        self.creates: list[JobToCreate] = []
        self.deletes: list[str] = []
        self.events: list[Event] = []
        self.wakeups: list[datetime] = []

    # --- the view of a task: stored status + what this decision changes --------

    def entry(self, name: str) -> dict[str, Any]:
        merged = dict(self.old_tasks.get(name) or {})
        for k, v in self.task_patch.get(name, {}).items():
            if v is None:
                merged.pop(k, None)
            else:
                merged[k] = v
        return merged

    def set_task(self, name: str, **values: Any) -> None:
        """Record changes to a task entry; None deletes a key (merge-patch null)."""
        old = self.entry(name)
        changes = {k: v for k, v in values.items() if old.get(k) != v and not (v is None and k not in old)}
        if changes:
            self.task_patch.setdefault(name, {}).update(changes)

    def state(self, name: str) -> str:
        e = self.entry(name)
        if e.get("completionTime"):
            return "final"
        job = e.get("job")
        if job and e.get("reportedJob") == job and e.get("phase") in ("Succeeded", "Failed", "Waiting"):
            return "reported"
        if job:
            return "running"
        if e.get("attempt"):
            return "retry"
        return "new"

    def final_phase(self, name: str) -> str | None:
        """Succeeded / Failed / Cancelled for a finished task (repairing a clobbered phase)."""
        if self.state(name) != "final":
            return None
        e = self.entry(name)
        phase = e.get("phase")
        if phase in ("Failed", "Cancelled"):
            return phase
        if phase == "Succeeded" and name in self.outputs():
            return "Succeeded"
        return "Cancelled" if self.run_.cancel_requested else "Failed"

    def outputs(self) -> dict[str, Any]:
        out = dict(self.status.get("output") or {})
        out.update(self.run_patch.get("output") or {})
        return out

    # --- the walk --------------------------------------------------------------

    def run(self) -> Plan:
        spec = self.run_.spec
        self.sync_children()
        if self.status.get("phase") in C.TERMINAL_PHASES and self.status.get("completionTime"):
            self.after_the_end()
            return self.plan()
        if spec is None:
            self.finish("Failed", "InvalidSpec", self.run_.spec_error or "the spec does not parse")
            return self.plan()
        order = topological_order(spec.tasks)
        if order is None:
            self.finish("Failed", "InvalidSpec", "spec.tasks[].parents: the tasks' parents form a cycle")
            return self.plan()
        if self.run_.cancel_requested:
            self.cancel_everything(spec)
            return self.plan()

        for name in order:  # 1. take in what happened: reports, finished and stuck Jobs
            self.observe_task(spec.task(name))
        failed = [n for n in order if not spec.task(n).onFailure and self.final_phase(n) == "Failed"]
        for name in order:  # 2. what to start, retry or stop
            self.advance_task(spec.task(name), spec, failed)
        self.delete_orphan_jobs()
        self.summarise(spec, order, failed)
        return self.plan()

    def observe_task(self, task: TaskSpec) -> None:
        name = task.name
        state = self.state(name)
        e = self.entry(name)
        if state == "reported":
            if e.get("phase") == "Succeeded":
                self.set_task(name, completionTime=self.stamp, retryAt=None, error=None)
                self.run_patch.setdefault("output", {})[name] = e.get("output")
            elif e.get("phase") == "Failed":
                error = dict(e.get("error") or {})
                self.fail_attempt(task, error, retryable=error.get("retryable", True), write_error=False)
            return
        if state != "running":
            return
        job = self.jobs.get(e["job"])
        if job is None:
            return  # not created yet, or not seen yet: advance_task (re)creates it
        pod = self.obs.pods.get(job.name)
        if job.deleting and job.finished is None:
            self.fail_attempt(task, _error("PodFailed", f"Job {job.name} was deleted before the task reported"))
        elif job.finished == "Failed":
            if job.reason == "DeadlineExceeded" or (pod is not None and pod.deadline_exceeded):
                msg = f"attempt {e.get('attempt')} ran longer than executionTimeout {task.executionTimeout}"
                ended = (pod.finished_at if pod is not None else None) or job.finished_at or self.now
                self.fail_attempt(task, _error("ExecutionTimeout", msg + self.deadlock_hint(task, ended)))
            else:
                self.fail_attempt(task, _error("PodFailed", _pod_failure_message(job, pod)))
        elif job.finished == "Complete":
            since = job.finished_at or job.created
            deadline = since + timedelta(seconds=REPORT_GRACE_SECONDS)
            if self.now >= deadline:
                msg = f"the pod of Job {job.name} exited 0 without reporting an outcome"
                self.fail_attempt(task, _error("PodFailed", msg))
            else:
                self.wakeups.append(deadline)
        elif not (job.started or (pod is not None and pod.started)):
            deadline = job.created + timedelta(seconds=task.schedule_timeout)
            if self.now >= deadline:
                msg = (f"the pod of Job {job.name} did not start within scheduleTimeout "
                       f"{task.scheduleTimeout}")
                if self.run_.labels.get(C.LABEL_PARENT):
                    msg += (f"; if parent run {self.run_.labels[C.LABEL_PARENT]} waits for this run in a "
                            "non-durable task, its pod may hold the slot this pod needs: make the parent "
                            "a durable task (@wf.durable_task), which gives its pod back while it waits")
                self.fail_attempt(task, _error("ScheduleTimeout", msg))
                self.deletes.append(job.name)
            else:
                self.wakeups.append(deadline)

    def deadlock_hint(self, task: TaskSpec, ended: datetime) -> str:
        """Why a plain task timed out, when it looks like it starved its own children.

        Starved children are those whose pods had not started when the task's pod
        was killed: still not started, or started (maybe even finished) only once
        the freed slot let them (pod start times have one-second resolution, hence
        the margin).
        """
        if task.durable:
            return ""
        from kinflow.spawn import label_value

        mine = label_value(task.name)
        margin = ended - timedelta(seconds=2)
        stuck = [c.name for c in self.obs.children
                 if c.parent_task == mine
                 and ((not c.started and not c.finished) or (c.started_at is not None and c.started_at >= margin))]
        if not stuck:
            return ""
        return (f" while waiting for {len(stuck)} child run(s) whose pods could not start while it ran "
                f"(e.g. {stuck[0]}): likely a deadlock, the task's pod holds the slot its children need. "
                "Make it a durable task (@wf.durable_task / @kf.durable_task), which gives its pod back "
                "while it waits, or give the cluster more slots")

    def fail_attempt(self, task: TaskSpec, error: dict[str, Any], *, retryable: bool = True,
                     write_error: bool = True) -> None:
        """The current attempt failed: schedule the next one, or fail the task for good."""
        name = task.name
        e = self.entry(name)
        attempt = int(e.get("attempt") or 1)
        described = f"{error.get('type', 'Error')}: {error.get('message', '')}".strip()
        error_patch = {"error": error} if write_error else {}
        if retryable and attempt <= task.retries:
            delay = task.backoff.delay(attempt)
            retry_at = self.now + timedelta(seconds=delay)
            self.set_task(name, phase="Pending", attempt=attempt + 1, job=None,
                          retryAt=format_time(retry_at), **error_patch)
            self.events.append(Event("Warning", "TaskRetrying",
                                     f"task {name} attempt {attempt} failed ({described}); "
                                     f"attempt {attempt + 1} in {delay:g}s", name))
        else:
            why = "" if retryable else " (not retryable)"
            self.set_task(name, phase="Failed", completionTime=self.stamp, retryAt=None, **error_patch)
            self.events.append(Event("Warning", "TaskFailed",
                                     f"task {name} failed on attempt {attempt}{why}: {described}"[:_MESSAGE_LIMIT],
                                     name))

    def advance_task(self, task: TaskSpec, spec: RunSpec, failed: list[str]) -> None:
        name = task.name
        state = self.state(name)
        e = self.entry(name)
        if state == "final":
            return
        if failed and not task.onFailure:
            why = f"task {failed[0]} failed"
            self.set_task(name, phase="Cancelled", completionTime=self.stamp, retryAt=None,
                          error=_error("Cancelled", f"not finished because {why}", retryable=False))
            if e.get("job"):
                self.deletes.append(e["job"])
            return
        if state == "reported" and e.get("phase") == "Waiting":
            self.advance_waiting(task, e)
            return
        if state == "running":
            if e["job"] in self.obs.rejected_jobs:
                self.fail_attempt(task, _error("JobRejected", self.obs.rejected_jobs[e["job"]], retryable=False),
                                  retryable=False)
            elif e["job"] not in self.jobs:
                self.create_job(name, int(e.get("attempt") or 1), int(e.get("resumes") or 0))
            return
        if state == "retry":
            retry_at = parse_time(e.get("retryAt"))
            if retry_at is None or self.now >= retry_at:
                self.start(task, int(e["attempt"]))
            else:
                self.wakeups.append(retry_at)
            return
        # state == "new"
        if task.onFailure:
            if failed:
                self.start(task, 1)
            return
        if all(self.final_phase(p) == "Succeeded" for p in task.parents):
            self.start(task, 1)

    def advance_waiting(self, task: TaskSpec, e: Mapping[str, Any]) -> None:
        """A durable task waits; resume it with a new Job when the wait is over.

        The wait is over when ANY of its parts is: all its `children` finished,
        its `until` time came, or its event arrived. A wait of one kind is
        simply that kind; a task that awaits several things at once (an event
        with a timeout, asyncio.wait) is resumed by the first, and its replay
        suspends again if it still needs the rest. A resumption is not a retry:
        same attempt, `resumes` + 1, a new Job; the wait is cleared in the same
        status write that names the Job, so a resume happens once.
        """
        wait = e.get("wait") or {}
        reasons = []
        until = parse_time(wait.get("until"))
        if until is not None:
            if self.now >= until:
                reasons.append("its time came")
            else:
                self.wakeups.append(until)
        if wait.get("children"):
            finished = {c.name for c in self.obs.children if c.finished}
            if set(wait["children"]) <= finished:
                reasons.append(f"its {len(wait['children'])} children finished")
        if wait.get("event"):
            event = self.event_for(wait)
            if event is not None:
                delivered = dict(e.get("delivered") or {})
                delivered[wait.get("eventId") or "event0"] = {
                    "key": event.key, "data": event.data, "event": event.name,
                    "sentAt": format_time(event.created),
                }
                self.set_task(task.name, delivered=delivered)
                reasons.append(f"event {event.key!r} arrived ({event.name})")
        if reasons:
            resume = int(e.get("resumes") or 0) + 1
            self.start(task, int(e.get("attempt") or 1), resume=resume, why="; ".join(reasons))

    def event_for(self, wait: Mapping[str, Any]) -> Any:
        """The first sent event this wait takes: same key, for this run or for all,
        created at or after the wait began. creationTimestamp has one-second
        resolution, so the comparison is to the second."""
        since = parse_time(wait.get("eventSince"))
        if since is not None:
            since = since.replace(microsecond=0)
        matching = [
            ev for ev in self.obs.events
            if ev.key == wait["event"] and ev.run in ("", self.run_.name)
            and (since is None or ev.created >= since)
        ]
        return min(matching, key=lambda ev: (ev.created, ev.name), default=None)

    def start(self, task: TaskSpec, attempt: int, resume: int = 0, why: str = "") -> None:
        name = task.name
        job = job_name(self.run_.name, name, attempt, resume)
        if job in self.obs.rejected_jobs:  # the API refused this Job: say why, do not retry
            self.set_task(name, phase="Failed", attempt=attempt, resumes=resume, job=job, retryAt=None,
                          completionTime=self.stamp,
                          error=_error("JobRejected", self.obs.rejected_jobs[job], retryable=False))
            self.events.append(Event("Warning", "TaskFailed", f"task {name}: Job {job} was rejected: "
                                     f"{self.obs.rejected_jobs[job]}"[:_MESSAGE_LIMIT], name))
            return
        self.create_job(name, attempt, resume)
        # startTime stays the attempt's start across resumptions (see docs/design.md).
        start_time = self.stamp if not resume else (self.entry(name).get("startTime") or self.stamp)
        self.set_task(name, phase="Running", attempt=attempt, resumes=resume, job=job,
                      startTime=start_time, retryAt=None, wait=None)
        if resume:
            self.events.append(Event("Normal", "TaskResumed",
                                     f"task {name} resumption {resume} of attempt {attempt} started as Job "
                                     f"{job}: {why or 'its wait is over'}"[:_MESSAGE_LIMIT], name))
        else:
            self.events.append(Event("Normal", "TaskStarted",
                                     f"task {name} attempt {attempt} started as Job {job}", name))

    def create_job(self, task: str, attempt: int, resume: int) -> None:
        name = job_name(self.run_.name, task, attempt, resume)
        if name not in self.jobs:
            self.creates.append(JobToCreate(task, attempt, resume, name))

    def delete_orphan_jobs(self) -> None:
        """Delete unfinished Jobs that are no task's current attempt (moved-on retries,
        Jobs left behind by a crash between a status write and a delete)."""
        current = {self.entry(n).get("job") for n in self._task_names()} | self.earlier_executions()
        for job in self.jobs.values():
            if job.finished is None and not job.deleting and job.name not in current:
                self.deletes.append(job.name)

    def earlier_executions(self) -> set[str]:
        """Jobs of a durable task's earlier executions: each reported Waiting and exits by
        itself, maybe before the Job controller marks its Job Complete. Not orphans."""
        out = set()
        for n in self._task_names():
            e = self.entry(n)
            out.update(job_name(self.run_.name, n, int(e.get("attempt") or 1), r)
                       for r in range(int(e.get("resumes") or 0)))
        return out

    def _task_names(self) -> list[str]:
        return [t.name for t in self.run_.spec.tasks] if self.run_.spec else list(self.old_tasks)

    # --- run level ---------------------------------------------------------------

    def summarise(self, spec: RunSpec, order: list[str], failed: list[str]) -> None:
        normal = [t.name for t in spec.tasks if not t.onFailure]
        self.set_progress(spec)
        if any(self.job_started(n) for n in order) and not self.status.get("startTime"):
            self.set_run("startTime", self.stamp)

        if all(self.final_phase(n) == "Succeeded" for n in normal):
            self.finish("Succeeded", "Succeeded", f"all {len(normal)} tasks succeeded")
        elif failed and all(self.state(n) == "final" for n in order):
            e = self.entry(failed[0])
            error = e.get("error") or {}
            reason = error.get("type") or "TaskFailed"
            message = f"task {failed[0]} failed: {reason}: {error.get('message', '')}"
            self.finish("Failed", reason if _REASON.match(reason) else "TaskFailed", message)
        else:
            states = {n: self.state(n) for n in order}
            if any(s == "running" for s in states.values()):
                phase = "Running"
            elif any(s == "reported" and self.entry(n).get("phase") == "Waiting" for n, s in states.items()):
                phase = "Waiting"
            elif any(s in ("retry", "final", "reported") for s in states.values()):
                phase = "Running"
            else:
                phase = "Pending"
            self.set_run("phase", phase)
            self.set_condition("Unknown", phase, "")

    def set_progress(self, spec: RunSpec) -> None:
        """Finished/total tasks; the onFailure task counts only once it has run."""
        counted = [t.name for t in spec.tasks if not t.onFailure or self.entry(t.name)]
        done = sum(1 for n in counted if self.state(n) == "final")
        self.set_run("taskProgress", f"{done}/{len(counted)}")

    def job_started(self, name: str) -> bool:
        return bool(self.entry(name).get("job"))

    def finish(self, phase: str, reason: str, message: str) -> None:
        self.set_run("phase", phase)
        self.set_run("completionTime", self.stamp)
        self.set_condition("True" if phase == "Succeeded" else "False", reason, message)
        self.events.append(Event("Normal" if phase == "Succeeded" else "Warning",
                                 f"Run{phase}", message[:_MESSAGE_LIMIT]))

    def cancel_everything(self, spec: RunSpec) -> None:
        for task in spec.tasks:
            if self.state(task.name) == "final" or (task.onFailure and not self.entry(task.name)):
                continue
            self.set_task(task.name, phase="Cancelled", completionTime=self.stamp, retryAt=None,
                          error=_error("Cancelled", "the run was cancelled", retryable=False))
        for job in self.jobs.values():
            if job.finished is None and not job.deleting:
                self.deletes.append(job.name)
        self.set_progress(spec)
        self.finish("Cancelled", "Cancelled", "the run was cancelled (spec.cancel)")

    def after_the_end(self) -> None:
        """A finished run: stop any Job still going (a crash may have left one)."""
        current_reported = {
            e.get("job") for e in self.old_tasks.values()
            if e.get("reportedJob") and e.get("reportedJob") == e.get("job")
            and e.get("phase") in ("Succeeded", "Failed")
        }
        current_reported |= self.earlier_executions()
        for job in self.jobs.values():
            if job.finished is None and not job.deleting and job.name not in current_reported:
                self.deletes.append(job.name)

    def sync_children(self) -> None:
        counts = child_counts(self.obs.children)
        old = self.status.get("children")
        if counts["total"] == 0 and not old:
            return
        if old != counts:
            self.run_patch["children"] = counts
        self.set_run("childProgress", f"{counts['succeeded']}/{counts['total']}")

    def set_run(self, key: str, value: Any) -> None:
        if self.status.get(key) != value:
            self.run_patch[key] = value
        else:
            self.run_patch.pop(key, None)

    def set_condition(self, status: str, reason: str, message: str) -> None:
        old = next((c for c in self.status.get("conditions") or () if c.get("type") == CONDITION), None)
        cond: Condition = {
            "type": CONDITION,
            "status": status,  # type: ignore[typeddict-item]
            "reason": reason,
            "message": message[:_MESSAGE_LIMIT],
            "observedGeneration": self.run_.generation,
            "lastTransitionTime": (old or {}).get("lastTransitionTime", self.stamp)
            if old and old.get("status") == status else self.stamp,
        }
        if old != cond:
            others = [c for c in self.status.get("conditions") or () if c.get("type") != CONDITION]
            self.run_patch["conditions"] = others + [cond]

    def plan(self) -> Plan:
        patch: dict[str, Any] = dict(self.run_patch)
        if self.task_patch:
            patch["tasks"] = {n: dict(p) for n, p in self.task_patch.items()}
        if self.status.get("observedGeneration") != self.run_.generation:
            patch["observedGeneration"] = self.run_.generation
        cancel: tuple[str, ...] = ()
        if self.run_.cancel_requested:
            cancel = tuple(sorted(c.name for c in self.obs.children if not c.cancel and not c.finished))
        requeue = None
        if self.wakeups:
            requeue = max(0.0, (min(self.wakeups) - self.now).total_seconds())
        return Plan(
            status_patch=patch,
            create_jobs=tuple(self.creates),
            delete_jobs=tuple(dict.fromkeys(self.deletes)),
            events=tuple(self.events),
            cancel_children=cancel,
            requeue_after=requeue,
        )


def _error(type_: str, message: str, *, retryable: bool = True) -> dict[str, Any]:
    return {"type": type_, "message": message, "retryable": retryable}


def _pod_failure_message(job: ObservedJob, pod: ObservedPod | None) -> str:
    parts = [f"the pod of Job {job.name} ended without a report"]
    if pod is not None and pod.exit_code is not None:
        parts.append(f"exit code {pod.exit_code}")
    if pod is not None and pod.reason:
        parts.append(f"reason {pod.reason}")
    if job.reason:
        parts.append(f"Job condition {job.reason}")
    msg = parts[0] + (" (" + ", ".join(parts[1:]) + ")" if len(parts) > 1 else "")
    detail = (pod.message if pod is not None and pod.message else "") or job.message
    return f"{msg}: {detail}"[:_MESSAGE_LIMIT] if detail else msg
