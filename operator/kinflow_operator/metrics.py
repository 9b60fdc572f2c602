"""Prometheus metrics of the operator, served when --metrics-port is given.

Counters follow what the operator decided (the Plan's events and Job creates),
so they count transitions once, whatever the number of reconciles. Run phases
are read from the runs index at scrape time: a gauge that is always right after
a restart, with no bookkeeping of its own.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

REGISTRY = CollectorRegistry(auto_describe=True)

reconciles = Counter("kinflow_reconciles_total", "Reconciles of WorkflowRuns", registry=REGISTRY)
reconcile_seconds = Histogram(
    "kinflow_reconcile_duration_seconds", "Time of one reconcile (decide and apply)", registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
conflicts = Counter("kinflow_status_conflicts_total", "Status patches refused as stale (409)", registry=REGISTRY)
writes = Counter("kinflow_api_writes_total", "API writes by the operator", ["kind"], registry=REGISTRY)
jobs_created = Counter("kinflow_jobs_created_total", "Jobs created, one per task attempt or resumption",
                       registry=REGISTRY)
tasks_started = Counter("kinflow_tasks_started_total", "Task attempts started (first runs and retries)",
                        registry=REGISTRY)
tasks_resumed = Counter("kinflow_tasks_resumed_total", "Durable task resumptions (a wait was over; not retries)",
                        registry=REGISTRY)
tasks_retried = Counter("kinflow_tasks_retried_total", "Failed task attempts that will be retried",
                        registry=REGISTRY)
tasks_failed = Counter("kinflow_tasks_failed_total", "Tasks that failed for good", registry=REGISTRY)
runs_finished = Counter("kinflow_runs_finished_total", "Runs that reached a final phase", ["phase"],
                        registry=REGISTRY)
spawn_to_running = Histogram(
    "kinflow_spawn_to_running_seconds", "From a run's creation to its first task pod running",
    registry=REGISTRY, buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600))

_EVENT_COUNTERS = {"TaskStarted": tasks_started, "TaskResumed": tasks_resumed, "TaskRetrying": tasks_retried,
                   "TaskFailed": tasks_failed}


def count_events(reasons: Iterable[str]) -> None:
    """Count the transitions a plan announced (its Kubernetes Events)."""
    for reason in reasons:
        counter = _EVENT_COUNTERS.get(reason)
        if counter is not None:
            counter.inc()
        elif reason.startswith("Run"):
            runs_finished.labels(phase=reason[3:]).inc()


# Set by the operator at start-up: the runs it knows (its index), for the phase gauge.
runs_source: Callable[[], Iterable[dict[str, Any]]] = lambda: ()


class RunPhases:
    """Collector: runs by namespace and phase, counted from the operator's index."""

    def collect(self):
        family = GaugeMetricFamily("kinflow_runs", "WorkflowRuns by phase", labels=["namespace", "phase"])
        counts: dict[tuple[str, str], int] = {}
        for body in runs_source():
            key = (body["metadata"].get("namespace", ""),
                   (body.get("status") or {}).get("phase") or "Pending")
            counts[key] = counts.get(key, 0) + 1
        for (ns, phase), n in sorted(counts.items()):
            family.add_metric([ns, phase], n)
        yield family


REGISTRY.register(RunPhases())


def serve(port: int) -> None:
    """Start the metrics endpoint."""
    from prometheus_client import start_http_server

    start_http_server(port, registry=REGISTRY)
