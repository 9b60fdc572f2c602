"""The shapes the operator reads: the run's spec, its status, its Jobs and pods.

One type style per boundary (see STYLE.md): pydantic with extra="forbid" for the
spec a user writes, TypedDict for raw status JSON, frozen dataclasses for what
the operator observed. Everything here is pure: no API calls.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal, TypedDict

from pydantic import BaseModel, ConfigDict, Field

from kinflow import _constants as C

# --- durations and times ---------------------------------------------------

_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in a duration like "90s", "5m", "1h30m", "250ms" (the CRD's pattern)."""
    pos, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"not a duration: {text!r} (expected e.g. 30s, 5m, 1h30m)")
    return total


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with milliseconds: retry timing is checked to sub-second precision."""
    moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_time(text: str | None) -> datetime | None:
    """An RFC 3339 timestamp from the API (with or without fraction), or None."""
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- the spec (what users write) --------------------------------------------


class Backoff(BaseModel):
    """Delay before retry n: min(seconds * factor**(n-1), maxSeconds)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    seconds: float = Field(1.0, ge=0)
    factor: float = Field(2.0, ge=1)
    maxSeconds: float = Field(60.0, ge=0)

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (1 for the first retry)."""
        try:
            raw = self.seconds * self.factor ** (retry - 1)
        except OverflowError:
            raw = math.inf
        return min(raw, self.maxSeconds)


class TaskSpec(BaseModel):
    """One task of the DAG, as in spec.tasks[]."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]{0,62}$")
    parents: tuple[str, ...] = ()
    durable: bool = False
    onFailure: bool = False
    retries: int = Field(0, ge=0)
    backoff: Backoff = Backoff()
    executionTimeout: str = C.DEFAULT_EXECUTION_TIMEOUT
    scheduleTimeout: str = C.DEFAULT_SCHEDULE_TIMEOUT

    @property
    def execution_timeout(self) -> float:
        return parse_duration(self.executionTimeout)

    @property
    def schedule_timeout(self) -> float:
        return parse_duration(self.scheduleTimeout)


class RunSpec(BaseModel):
    """A WorkflowRun's spec; the CRD schema already enforced most of this."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    workflow: str
    entrypoint: str
    tasks: tuple[TaskSpec, ...] = Field(min_length=1)
    image: str | None = None
    input: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    serviceAccountName: str = C.DEFAULT_SERVICE_ACCOUNT
    podTemplate: dict[str, Any] = Field(default_factory=dict)
    cancel: bool = False

    def task(self, name: str) -> TaskSpec:
        return next(t for t in self.tasks if t.name == name)


# --- raw status JSON ---------------------------------------------------------

Phase = Literal["Pending", "Running", "Waiting", "Succeeded", "Failed", "Cancelled"]


class TaskError(TypedDict, total=False):
    type: str
    message: str
    traceback: str
    retryable: bool


class TaskWait(TypedDict, total=False):
    """What a durable task waits for; over when all `children` finished, OR `until`
    passed, OR the event arrived, whichever first (see docs/design.md)."""

    children: list[str]
    until: str
    event: str
    eventSince: str  # events created at or after this (to the second) are delivered
    eventId: str  # the checkpoint the delivered event goes under in `delivered`


class TaskStatus(TypedDict, total=False):
    """status.tasks.<name>; see docs/design.md "Status: who writes what"."""

    phase: Phase
    attempt: int
    resumes: int
    job: str
    reportedJob: str
    startTime: str
    completionTime: str
    retryAt: str
    output: Any
    error: TaskError
    wait: TaskWait
    checkpoints: dict[str, Any]  # runner-owned: replay-stable values of a durable task
    delivered: dict[str, Any]  # operator-owned: events delivered to it, by eventId


class Condition(TypedDict, total=False):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str
    observedGeneration: int
    lastTransitionTime: str


class ChildCounts(TypedDict):
    total: int
    succeeded: int
    failed: int
    running: int


class RunStatus(TypedDict, total=False):
    phase: Phase
    observedGeneration: int
    conditions: list[Condition]
    startTime: str
    completionTime: str
    taskProgress: str
    childProgress: str
    tasks: dict[str, TaskStatus]
    output: dict[str, Any]
    children: ChildCounts


# --- what the operator observed ------------------------------------------------


@dataclass(frozen=True)
class ObservedRun:
    """A WorkflowRun as read from the API (watch event, index or GET).

    `spec` is None when the stored spec does not parse (the schema should make
    that impossible); `spec_error` then says why, and decide() fails the run.
    """

    namespace: str
    name: str
    uid: str
    generation: int
    resource_version: str
    labels: Mapping[str, str]
    spec: RunSpec | None
    status: RunStatus
    spec_error: str | None = None
    cancel_requested: bool = False
    created: datetime | None = None

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> ObservedRun:
        meta = body.get("metadata", {})
        raw_spec = dict(body.get("spec") or {})
        spec: RunSpec | None
        try:
            spec, error = RunSpec.model_validate(raw_spec), None
        except ValueError as exc:  # pydantic.ValidationError is a ValueError
            spec, error = None, _short_validation_error(exc)
        return cls(
            namespace=meta.get("namespace", ""),
            name=meta.get("name", ""),
            uid=meta.get("uid", ""),
            generation=int(meta.get("generation") or 0),
            resource_version=str(meta.get("resourceVersion") or ""),
            labels=dict(meta.get("labels") or {}),
            spec=spec,
            status=dict(body.get("status") or {}),  # type: ignore[arg-type]
            spec_error=error,
            cancel_requested=bool(raw_spec.get("cancel")),
            created=parse_time(meta.get("creationTimestamp")),
        )


def _short_validation_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        parts = [
            "spec." + ".".join(str(p) for p in e.get("loc", ())) + ": " + str(e.get("msg"))
            for e in errors()
        ]
        return "; ".join(parts)
    return str(exc)


@dataclass(frozen=True)
class ObservedJob:
    """The few facts about a task Job that decide() needs."""

    name: str
    created: datetime
    active: int = 0
    ready: int = 0
    succeeded: int = 0
    failed: int = 0
    finished: Literal["Complete", "Failed"] | None = None
    reason: str = ""  # the Failed condition's reason, e.g. DeadlineExceeded
    message: str = ""
    finished_at: datetime | None = None
    deleting: bool = False
    owner_uid: str = ""  # the controller owner's uid: a Job of an earlier run of the same name differs

    @property
    def started(self) -> bool:
        """Its pod got going (so the schedule timeout no longer applies)."""
        return self.ready > 0 or self.succeeded > 0 or self.failed > 0 or self.finished is not None

    @classmethod
    def from_body(cls, body: Mapping[str, Any], now: datetime | None = None) -> ObservedJob:
        meta = body.get("metadata", {})
        status = body.get("status") or {}
        finished: Literal["Complete", "Failed"] | None = None
        reason = message = ""
        finished_at = parse_time(status.get("completionTime"))
        for cond in status.get("conditions") or ():
            if cond.get("status") != "True":
                continue
            if cond.get("type") == "Complete":
                finished = "Complete"
            elif cond.get("type") in ("Failed", "FailureTarget") and finished is None:
                finished = "Failed"
                reason, message = cond.get("reason", ""), cond.get("message", "")
                finished_at = parse_time(cond.get("lastTransitionTime")) or finished_at
        created = parse_time(meta.get("creationTimestamp")) or now or datetime.now(timezone.utc)
        owner_uid = next(
            (o.get("uid", "") for o in meta.get("ownerReferences") or () if o.get("controller")), ""
        )
        return cls(
            name=meta.get("name", ""),
            created=created,
            active=int(status.get("active") or 0),
            ready=int(status.get("ready") or 0),
            succeeded=int(status.get("succeeded") or 0),
            failed=int(status.get("failed") or 0),
            finished=finished,
            reason=reason,
            message=message,
            finished_at=finished_at,
            deleting=bool(meta.get("deletionTimestamp")),
            owner_uid=owner_uid,
        )


@dataclass(frozen=True)
class ObservedPod:
    """A task pod, by its Job: did it start, and how did its container end."""

    job: str
    phase: str = "Pending"
    exit_code: int | None = None
    reason: str = ""  # container termination reason, or the pod's reason (DeadlineExceeded...)
    message: str = ""
    deadline_exceeded: bool = False  # the kubelet killed it at activeDeadlineSeconds
    start_time: datetime | None = None  # when the kubelet started it (status.startTime)
    finished_at: datetime | None = None  # when its container ended (one-second resolution)

    @property
    def started(self) -> bool:
        return self.phase in ("Running", "Succeeded", "Failed")

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> ObservedPod:
        meta = body.get("metadata", {})
        labels = meta.get("labels") or {}
        status = body.get("status") or {}
        exit_code, reason, message = None, status.get("reason", ""), status.get("message", "")
        finished_at = None
        deadline_exceeded = status.get("reason") == "DeadlineExceeded"
        for cs in status.get("containerStatuses") or ():
            term = (cs.get("state") or {}).get("terminated")
            if term:
                exit_code = term.get("exitCode")
                finished_at = parse_time(term.get("finishedAt"))
                reason = term.get("reason") or reason
                message = term.get("message") or message
        return cls(
            job=labels.get("job-name") or labels.get("batch.kubernetes.io/job-name", ""),
            phase=status.get("phase", "Pending"),
            exit_code=exit_code,
            reason=reason or "",
            message=message or "",
            deadline_exceeded=deadline_exceeded,
            start_time=parse_time(status.get("startTime")) if status.get("phase") != "Pending" else None,
            finished_at=finished_at,
        )


@dataclass(frozen=True)
class ChildRun:
    """A direct child run, from the runs index: enough for counts, cancellation, resuming
    a durable parent, and telling a deadlocked parent why (`started`: a pod of it ran)."""

    name: str
    phase: str = "Pending"
    cancel: bool = False
    parent_task: str = ""  # the kinflow.io/parent-task label (sanitised task name)
    started: bool = True
    started_at: datetime | None = None  # its first pod's start, when known

    @property
    def finished(self) -> bool:
        return self.phase in C.TERMINAL_PHASES


@dataclass(frozen=True)
class ObservedEvent:
    """An event sent with `kinflow event send` (a core/v1 Event, see docs/design.md)."""

    name: str
    key: str
    data: Any
    created: datetime
    run: str = ""  # the targeted run, or "" for every waiting run in the namespace

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> ObservedEvent | None:
        import json

        meta = body.get("metadata", {})
        notes = meta.get("annotations") or {}
        key = notes.get(C.ANNOTATION_EVENT_KEY)
        if not key:
            return None
        try:
            data = json.loads(notes.get(C.ANNOTATION_EVENT_DATA) or "null")
        except ValueError:
            data = notes.get(C.ANNOTATION_EVENT_DATA)
        created = parse_time(meta.get("creationTimestamp")) or datetime.now(timezone.utc)
        return cls(name=meta.get("name", ""), key=key, data=data, created=created,
                   run=notes.get(C.ANNOTATION_EVENT_RUN, ""))


@dataclass(frozen=True)
class Observation:
    """Everything decide() looks at for one run, gathered by the handler."""

    run: ObservedRun
    jobs: Mapping[str, ObservedJob] = field(default_factory=dict)  # by Job name
    pods: Mapping[str, ObservedPod] = field(default_factory=dict)  # by Job name
    children: tuple[ChildRun, ...] = ()
    rejected_jobs: Mapping[str, str] = field(default_factory=dict)  # Job name -> why the API refused it
    events: tuple[ObservedEvent, ...] = ()  # sent events with the keys this run's tasks wait for


def utcnow() -> datetime:
    return datetime.now(timezone.utc)

