"""Builders for fake API objects (runs, Jobs, pods) and a merge-patch applier; see conftest."""


from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from kinflow._names import job_name
from kinflow_operator.resource import ChildRun, Observation, ObservedJob, ObservedPod, ObservedRun, format_time

NOW = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)
RUN = "wf"
UID = "uid-1"


def at(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


def run_body(tasks: list[dict[str, Any]], status: dict[str, Any] | None = None, *, cancel: bool = False,
             generation: int = 1, rv: str = "100", labels: dict[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"workflow": "wf", "entrypoint": "examples.dag:dag_workflow", "tasks": tasks}
    if cancel:
        spec["cancel"] = True
    return {
        "apiVersion": "kinflow.io/v1alpha1", "kind": "WorkflowRun",
        "metadata": {"name": RUN, "namespace": "ns", "uid": UID, "generation": generation,
                     "resourceVersion": rv, "labels": labels or {}},
        "spec": spec,
        "status": status or {},
    }


def job_body(task: str, attempt: int = 1, *, created: datetime = NOW, ready: int = 0, active: int = 1,
             condition: tuple[str, str] | None = None, finished_at: datetime | None = None,
             resume: int = 0, owner: str = UID) -> dict[str, Any]:
    status: dict[str, Any] = {"active": active, "ready": ready}
    if condition:
        kind, reason = condition
        status["active"] = 0
        status["conditions"] = [{"type": kind, "status": "True", "reason": reason, "message": f"{reason} msg",
                                 "lastTransitionTime": format_time(finished_at or created)}]
        if kind == "Complete":
            status["succeeded"] = 1
            status["completionTime"] = format_time(finished_at or created)
        else:
            status["failed"] = 1
    return {
        "metadata": {"name": job_name(RUN, task, attempt, resume), "namespace": "ns",
                     "creationTimestamp": format_time(created),
                     "labels": {"kinflow.io/run": RUN, "kinflow.io/task": task, "kinflow.io/attempt": str(attempt)},
                     "ownerReferences": [{"uid": owner, "controller": True}]},
        "status": status,
    }


def observe(body: dict[str, Any], jobs: list[dict[str, Any]] = (), pods: list[dict[str, Any]] = (),
            children: list[ChildRun] = (), rejected: dict[str, str] | None = None,
            events: tuple = ()) -> Observation:
    observed_jobs = {j.name: j for j in (ObservedJob.from_body(b) for b in jobs)}
    observed_pods = {p.job: p for p in (ObservedPod.from_body(b) for b in pods)}
    return Observation(run=ObservedRun.from_body(body), jobs=observed_jobs, pods=observed_pods,
                       children=tuple(children), rejected_jobs=rejected or {}, events=tuple(events))


def task(name: str, *parents: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "parents": list(parents), **extra}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch, as the API server applies our status patches."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def patched(body: dict[str, Any], status_patch: dict[str, Any], rv: str | None = None) -> dict[str, Any]:
    """The run after a status patch (and a new resourceVersion)."""
    out = dict(body)
    out["status"] = merge_patch(body.get("status") or {}, status_patch)
    out["metadata"] = dict(body["metadata"], resourceVersion=rv or str(int(body["metadata"]["resourceVersion"]) + 1))
    return out


def report(body: dict[str, Any], name: str, phase: str, **keys: Any) -> dict[str, Any]:
    """The runner's report for task `name` from its current Job (or keys["reportedJob"])."""
    entry = body["status"]["tasks"][name]
    patch = {"phase": phase, "reportedJob": keys.pop("reportedJob", entry.get("job")), **keys}
    return patched(body, {"tasks": {name: patch}})
