"""The kopf handlers: read top to bottom.

Indexes keep what reconciles need in memory (runs, their Jobs and pods, each
parent's children), so a Job event reconciles its run without a GET. Event
handlers only route: a run or one of its Jobs changed -> reconcile that run; a
child changed -> recount its parent (coalesced). Deciding is decide.py's job,
writing is apply.py's. No change-detecting handlers, timers or daemons: see
settings.py for why.

Start with `kinflow operator`, `python -m kinflow_operator`, or
`kopf run -m kinflow_operator.handlers --namespace NS` (task image from
KINFLOW_TASK_IMAGE).
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from kinflow import _constants as C

from . import metrics
from . import settings as kinflow_settings
from .apply import Kube
from .events import EventWatcher
from .kubeclient import make_api_client
from .reconcile import Reconciler
from .resource import ChildRun, ObservedJob, ObservedPod

log = logging.getLogger(__name__)
RUNS = (C.GROUP, C.VERSION, C.PLURAL)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Apply kinflow's kopf settings and make the one Reconciler."""
    kinflow_settings.configure(settings)
    memo.reconciler = Reconciler(Kube(make_api_client()))
    # Sent events come from our own server-side-filtered watch (see events.py), not kopf.
    memo.events = EventWatcher(make_api_client(), memo.reconciler.event_sent)
    memo.reconciler.bind(event_index=memo.events.index)
    metrics.runs_source = memo.reconciler.all_runs


# --- indexes: what each reconcile reads instead of the API --------------------------


def _compact(body: kopf.Body) -> dict[str, Any]:
    out = dict(body)
    out["metadata"] = {k: v for k, v in body["metadata"].items() if k != "managedFields"}
    return out


@kopf.index(*RUNS)
async def run_index(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    """(namespace, name) -> the run's body, minus managedFields."""
    return {(namespace, name): _compact(body)}


@kopf.index(*RUNS, labels={C.LABEL_PARENT: kopf.PRESENT})
async def child_index(namespace: str, name: str, labels: kopf.Labels, spec: kopf.Spec,
                      status: kopf.Status, **_: Any) -> dict[Any, Any]:
    """(namespace, parent name) -> ChildRun: what children counts and cancellation need."""
    child = ChildRun(name=name, phase=status.get("phase") or "Pending", cancel=bool(spec.get("cancel")),
                     parent_task=labels.get(C.LABEL_PARENT_TASK, ""))
    return {(namespace, labels[C.LABEL_PARENT]): child}


@kopf.index(*RUNS)
async def waiting_index(namespace: str, name: str, status: kopf.Status, **_: Any) -> dict[Any, Any]:
    """(namespace, event key) -> names of runs with a task waiting for that event."""
    keys = {(e.get("wait") or {}).get("event") for e in (status.get("tasks") or {}).values()
            if isinstance(e, dict) and e.get("phase") == "Waiting"}
    return {(namespace, k): name for k in keys if k}



@kopf.index("batch", "v1", "jobs", labels={C.LABEL_RUN: kopf.PRESENT})
async def job_index(namespace: str, labels: kopf.Labels, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    """(namespace, run name) -> ObservedJob for each of the run's Jobs."""
    return {(namespace, labels[C.LABEL_RUN]): ObservedJob.from_body(body)}


@kopf.index("v1", "pods", labels={C.LABEL_RUN: kopf.PRESENT})
async def pod_index(namespace: str, labels: kopf.Labels, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    """(namespace, run name) -> ObservedPod: did the pod start, how did it end."""
    return {(namespace, labels[C.LABEL_RUN]): ObservedPod.from_body(body)}


# --- events: route to the reconciler --------------------------------------------------


@kopf.on.event(*RUNS)
async def run_changed(type: str | None, namespace: str, name: str, labels: kopf.Labels, status: kopf.Status,
                      memo: kopf.Memo, run_index: kopf.Index, child_index: kopf.Index, job_index: kopf.Index,
                      pod_index: kopf.Index, waiting_index: kopf.Index, **_: Any) -> None:
    """A run was listed, added, changed or deleted: reconcile it, and recount its parent
    (at once when the parent waits for it in a durable task: that resumes the parent)."""
    reconciler: Reconciler = memo.reconciler
    reconciler.bind(run_index=run_index, child_index=child_index, job_index=job_index, pod_index=pod_index,
                    waiting_index=waiting_index)
    memo.events.ensure(namespace)
    if type == "DELETED":
        reconciler.forget((namespace, name))
    else:
        await reconciler.reconcile((namespace, name))
    parent = labels.get(C.LABEL_PARENT)
    if parent:
        finished = status.get("phase") in C.TERMINAL_PHASES and status.get("completionTime")
        if not (finished and reconciler.child_finished((namespace, parent), name)):
            reconciler.poke_parent((namespace, parent))



@kopf.on.event("batch", "v1", "jobs", labels={C.LABEL_RUN: kopf.PRESENT})
async def job_changed(namespace: str, labels: kopf.Labels, memo: kopf.Memo,
                      run_index: kopf.Index, child_index: kopf.Index, job_index: kopf.Index,
                      pod_index: kopf.Index, waiting_index: kopf.Index, **_: Any) -> None:
    """One of a run's Jobs changed (created, started, finished, deleted): reconcile the run."""
    reconciler: Reconciler = memo.reconciler
    reconciler.bind(run_index=run_index, child_index=child_index, job_index=job_index, pod_index=pod_index,
                    waiting_index=waiting_index)
    await reconciler.reconcile((namespace, labels[C.LABEL_RUN]))
