"""The operator's I/O: carry out a Plan against the API server.

Writes go through the `kubernetes` client's ApiClient (sync, in a thread via
asyncio.to_thread) as raw JSON requests: no model (de)serialisation, which is
most of that client's cost. The status patch carries the resourceVersion the
plan was decided on; a 409 means the decision was made on stale data, and the
caller reads the run again and decides again (`Conflict`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from kinflow import _constants as C

from . import metrics
from .decide import Plan
from .jobs import build_job
from .resource import ObservedRun, format_time, parse_time

log = logging.getLogger(__name__)

MERGE_PATCH = "application/merge-patch+json"
REPORTING_COMPONENT = "kinflow-operator"


class ApiError(Exception):
    """A non-2xx answer from the API server."""

    def __init__(self, status: int, reason: str, body: Any = None) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.body = body


class Conflict(Exception):
    """The status patch's resourceVersion precondition failed: re-read and re-decide."""


class JobRejected(Exception):
    """The API server refused a task's Job as invalid: retrying cannot help."""

    def __init__(self, job: str, message: str) -> None:
        super().__init__(f"Job {job} was rejected: {message}")
        self.job = job
        self.message = message


def _api_message(exc: ApiError) -> str:
    if isinstance(exc.body, dict) and exc.body.get("message"):
        return str(exc.body["message"])
    return str(exc)


class Kube:
    """The handful of requests the operator makes, as plain JSON."""

    def __init__(self, api_client: Any, request_timeout: float = 30.0) -> None:
        self.client = api_client
        self.timeout = request_timeout
        self.writes: dict[str, int] = {}  # kind -> count, for metrics and tests

    def _request(self, method: str, path: str, body: Any = None,
                 content_type: str = "application/json", query: list[tuple[str, str]] | None = None) -> Any:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        _, url, headers, body, _ = self.client.param_serialize(
            method=method, resource_path=path, query_params=query or [],
            header_params=headers, body=body, auth_settings=["BearerToken"],
        )
        response = self.client.call_api(method, url, header_params=headers, body=body,
                                        _request_timeout=self.timeout)
        data = response.read()
        payload = json.loads(data) if data else None
        if response.status >= 400:
            reason = (payload or {}).get("reason", "") if isinstance(payload, dict) else ""
            raise ApiError(response.status, reason or str(payload)[:200], payload)
        return payload

    async def call(self, kind: str, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        if method != "GET":
            self.writes[kind] = self.writes.get(kind, 0) + 1
            metrics.writes.labels(kind=kind).inc()
        return await asyncio.to_thread(self._request, method, path, body, **kw)

    # --- the requests -------------------------------------------------------------

    async def get_run(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self.call("get", "GET", _run_path(namespace, name))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def create_job(self, manifest: Mapping[str, Any]) -> dict[str, Any] | None:
        """Create a Job; None if it exists already (names are deterministic: idempotent)."""
        ns = manifest["metadata"]["namespace"]
        try:
            return await self.call("job-create", "POST", f"/apis/batch/v1/namespaces/{ns}/jobs", manifest)
        except ApiError as exc:
            if exc.status == 409:
                return None
            raise

    async def delete_job(self, namespace: str, name: str) -> None:
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        try:
            await self.call("job-delete", "DELETE", f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}", body)
        except ApiError as exc:
            if exc.status != 404:
                raise

    async def patch_status(self, namespace: str, name: str, patch: Mapping[str, Any],
                           resource_version: str) -> dict[str, Any]:
        body = {"metadata": {"resourceVersion": resource_version}, "status": patch}
        try:
            return await self.call("status-patch", "PATCH", _run_path(namespace, name) + "/status",
                                   body, content_type=MERGE_PATCH)
        except ApiError as exc:
            if exc.status == 409:
                raise Conflict(f"{namespace}/{name} changed since resourceVersion {resource_version}") from exc
            raise

    async def cancel_run(self, namespace: str, name: str) -> None:
        try:
            await self.call("cancel-child", "PATCH", _run_path(namespace, name),
                            {"spec": {"cancel": True}}, content_type=MERGE_PATCH)
        except ApiError as exc:
            if exc.status != 404:
                raise

    async def post_event(self, run: ObservedRun, type_: str, reason: str, message: str) -> None:
        now = datetime.now(timezone.utc)
        stamp = format_time(now)
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{run.name}.{uuid.uuid4().hex[:12]}", "namespace": run.namespace},
            "involvedObject": {"apiVersion": C.API_VERSION, "kind": C.KIND, "name": run.name,
                               "namespace": run.namespace, "uid": run.uid},
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": REPORTING_COMPONENT},
            "reportingComponent": REPORTING_COMPONENT,
            "reportingInstance": REPORTING_COMPONENT,
            "action": reason,
            "firstTimestamp": stamp.split(".")[0] + "Z",
            "lastTimestamp": stamp.split(".")[0] + "Z",
            "count": 1,
        }
        await self.call("event", "POST", f"/api/v1/namespaces/{run.namespace}/events", body)


def _run_path(namespace: str, name: str) -> str:
    return f"/apis/{C.GROUP}/{C.VERSION}/namespaces/{namespace}/{C.PLURAL}/{name}"


def _observe(run: ObservedRun, plan: Plan) -> None:
    """Metrics of what the written status says happened (counted once: the write succeeded)."""
    metrics.count_events(event.reason for event in plan.events)
    for event in plan.events:  # the transitions, also as the operator's own log lines
        level = logging.INFO if event.type == "Normal" else logging.WARNING
        log.log(level, event.message, extra={"run": f"{run.namespace}/{run.name}", "task": event.task,
                                             "reason": event.reason})
    started = parse_time(plan.status_patch.get("startTime"))
    if started is not None and run.created is not None:
        metrics.spawn_to_running.observe(max(0.0, (started - run.created).total_seconds()))


async def apply_plan(kube: Kube, run: ObservedRun, plan: Plan, *, default_image: str,
                     created: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any] | None:
    """Carry out `plan` for `run`; return the run as patched (None if no patch was needed).

    Order matters. The status that names a new Job is written before the Job
    exists: until then no runner can report, so a report can never be
    overwritten by a status written on stale data (the 409 re-decide would not
    see the Job in the entry). A crash in between leaves a task entry naming a
    missing Job, which the next decide() creates (names are deterministic).
    Jobs are deleted after the status that retires them (a crash in between
    leaves an orphan Job that the next decide() deletes).
    Raises Conflict when the status changed since `run` was read, JobRejected
    when the API server refuses a Job as invalid. `created` sees each new Job.
    """
    spec = run.spec
    patched = None
    if plan.status_patch:
        patched = await kube.patch_status(run.namespace, run.name, plan.status_patch, run.resource_version)
        _observe(run, plan)
    for job in plan.create_jobs:
        assert spec is not None
        manifest = build_job(run_name=run.name, namespace=run.namespace, run_uid=run.uid, spec=spec,
                             task=spec.task(job.task), attempt=job.attempt, resume=job.resume,
                             default_image=default_image)
        try:
            body = await kube.create_job(manifest)
        except ApiError as exc:
            if exc.status in (400, 422):  # the manifest itself is bad (a podTemplate mistake)
                raise JobRejected(job.name, _api_message(exc)) from exc
            raise
        metrics.jobs_created.inc()
        if body is not None and created is not None:
            created(body)
    for name in plan.delete_jobs:
        await kube.delete_job(run.namespace, name)
    for event in plan.events:  # best effort: an Event is never worth failing a reconcile
        try:
            await kube.post_event(run, event.type, event.reason, event.message)
        except Exception as exc:  # noqa: BLE001
            log.warning("could not post event %s: %s", event.reason, exc,
                        extra={"run": f"{run.namespace}/{run.name}", "task": event.task})
    for child in plan.cancel_children:
        await kube.cancel_run(run.namespace, child)
    return patched

