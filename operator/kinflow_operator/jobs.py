"""The Job manifest for one task attempt: a pure function, tested alone.

One Job per attempt (and per durable resumption), owned by the run with a
controller ownerReference so deleting the run deletes its Jobs. Retries are the
operator's, so the Job itself never retries: backoffLimit 0, restartPolicy Never.
"""

from __future__ import annotations

import copy
import math
import re
from typing import Any

from kinflow import _constants as C
from kinflow._names import job_name

from .resource import RunSpec, TaskSpec

CONTAINER_NAME = "task"
RUNNER_COMMAND = ["python", "-m", "kinflow.runner"]
ANNOTATION_TASK = "kinflow.io/task"  # the exact task name (the label is sanitised)

_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def label_value(text: str) -> str:
    """`text` made a valid label value (task names may start or end with _ or -)."""
    if _LABEL_VALUE.match(text) and len(text) <= 63:
        return text
    trimmed = re.sub(r"[^-A-Za-z0-9_.]", "-", text)[:63]
    trimmed = re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", trimmed)
    return trimmed or "x"


def build_job(
    *,
    run_name: str,
    namespace: str,
    run_uid: str,
    spec: RunSpec,
    task: TaskSpec,
    attempt: int,
    resume: int = 0,
    default_image: str,
) -> dict[str, Any]:
    """The Job that runs attempt `attempt` (resumption `resume`) of `task`."""
    name = job_name(run_name, task.name, attempt, resume)
    labels = {
        C.LABEL_RUN: run_name,
        C.LABEL_TASK: label_value(task.name),
        C.LABEL_ATTEMPT: str(attempt),
    }
    env = [
        {"name": C.ENV_RUN, "value": run_name},
        {"name": C.ENV_NAMESPACE, "value": namespace},
        {"name": C.ENV_TASK, "value": task.name},
        {"name": C.ENV_ATTEMPT, "value": str(attempt)},
        {"name": C.ENV_RESUME, "value": str(resume)},
        {"name": C.ENV_JOB, "value": name},
    ]
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": spec.image or default_image,
        "command": list(RUNNER_COMMAND),
        "env": env,
    }
    pod_template: dict[str, Any] = {
        "metadata": {"labels": dict(labels), "annotations": {ANNOTATION_TASK: task.name}},
        "spec": {
            "restartPolicy": "Never",
            "serviceAccountName": spec.serviceAccountName,
            # On the pod, not the Job: the kubelet counts it from the pod's start, so
            # time spent Pending for a free slot is scheduleTimeout's, as in Hatchet.
            "activeDeadlineSeconds": max(1, math.ceil(task.execution_timeout)),
            "containers": [container],
        },
    }
    pod_template = merge_pod_template(pod_template, spec.podTemplate)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": {ANNOTATION_TASK: task.name},
            "ownerReferences": [
                {
                    "apiVersion": C.API_VERSION,
                    "kind": C.KIND,
                    "name": run_name,
                    "uid": run_uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "backoffLimit": 0,
            "completions": 1,
            "parallelism": 1,
            "template": pod_template,
        },
    }


# --- podTemplate merge ---------------------------------------------------------

# Lists whose items are merged by this key, as kubectl's strategic merge does.
_MERGE_KEYS = {"containers": "name", "initContainers": "name", "env": "name", "volumes": "name",
               "volumeMounts": "mountPath", "ports": "containerPort"}
# What the operator owns: a user override of these would break the pod contract.
_FORCED_POD = {"restartPolicy": "Never"}


def merge_pod_template(base: dict[str, Any], override: dict[str, Any] | None) -> dict[str, Any]:
    """`override` (spec.podTemplate) merged into `base`, the operator's pod template.

    Maps merge key by key; lists of named items merge by name (so
    `containers: [{name: task, resources: ...}]` adds resources to the task
    container); other lists (tolerations, args) from the override are appended
    where appending is meaningful (tolerations) or replace the base. The
    operator's own keys win: the command, the KINFLOW_* env, restartPolicy.
    """
    if not override:
        return copy.deepcopy(base)
    override = copy.deepcopy(override)
    for c in (override.get("spec") or {}).get("containers") or ():
        if isinstance(c, dict):
            c.setdefault("name", CONTAINER_NAME)  # an unnamed container means the task's
    merged = _merge(copy.deepcopy(base), override, key=None)
    spec = merged.setdefault("spec", {})
    spec.update(_FORCED_POD)
    # Re-assert the operator's container command and env over any override.
    own = next(c for c in base["spec"]["containers"] if c["name"] == CONTAINER_NAME)
    for c in spec.get("containers", []):
        if c.get("name") == CONTAINER_NAME:
            c["command"] = list(own["command"])
            c.pop("args", None)
            ours = {e["name"] for e in own["env"]}
            c["env"] = list(own["env"]) + [e for e in c.get("env", []) if e.get("name") not in ours]
    return merged


def _merge(base: Any, override: Any, key: str | None) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        for k, v in override.items():
            base[k] = _merge(base[k], v, k) if k in base else v
        return base
    if isinstance(base, list) and isinstance(override, list):
        merge_key = _MERGE_KEYS.get(key or "")
        if merge_key:
            out = list(base)
            index = {item.get(merge_key): i for i, item in enumerate(out) if isinstance(item, dict)}
            for item in override:
                k = item.get(merge_key) if isinstance(item, dict) else None
                if k is not None and k in index:
                    out[index[k]] = _merge(out[index[k]], item, None)
                else:
                    out.append(item)
            return out
        if key == "tolerations":
            return base + [t for t in override if t not in base]
        return override
    return override
