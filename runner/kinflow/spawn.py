"""Spawning children: build the child WorkflowRun, create it, or adopt the one already there.

A child's name is a pure function of (parent, parent task, spawn key), so a
retried or resumed parent computes the same names. Creating is therefore
create-or-adopt: on AlreadyExists the existing run is adopted only if the
parent controls it (ownerReference UID) and it was spawned with the same input
(hash annotation) for the same workflow. Anything else is an error, never a
silent reuse of another run's result.

`build_*` functions are pure (tested alone); `create_or_adopt` and
`spawn_many` do the I/O.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

from . import _constants as C
from ._api import ApiClient, run_path
from ._names import child_run_name, dns_label, input_hash
from .errors import AlreadyExists, NonDeterminismError, SpawnConflictError

# Children created at once by one run_many; the client's token bucket bounds the rate.
SPAWN_CONCURRENCY = 16

_LABEL_VALUE_BAD = re.compile(r"[^A-Za-z0-9_.-]+")


def label_value(text: str) -> str:
    """Text squeezed into a valid label value (at most 63 chars, alphanumeric at both ends)."""
    value = _LABEL_VALUE_BAD.sub("-", text)[:63]
    return value.strip("-_.") or "x"


def _owner_reference(parent: dict) -> dict:
    meta = parent["metadata"]
    return {
        "apiVersion": C.API_VERSION,
        "kind": C.KIND,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
    }


def _clean(spec: dict) -> dict:
    return {k: v for k, v in spec.items() if v is not None}


def build_child(
    parent: dict,
    parent_task: str,
    key: str,
    spec: dict,
    input: Any,
    additional_metadata: dict | None = None,
) -> dict:
    """The child WorkflowRun a parent's task spawns under `key`.

    `spec` is the child workflow's own spec (workflow, entrypoint, tasks, and
    image/serviceAccountName/podTemplate when the workflow sets them); what it
    leaves unset is inherited from the parent.
    """
    pmeta, pspec = parent["metadata"], parent.get("spec") or {}
    spec = dict(spec)
    for inherited in ("image", "serviceAccountName", "podTemplate"):
        if spec.get(inherited) is None and pspec.get(inherited) is not None:
            spec[inherited] = pspec[inherited]
    spec["input"] = input
    if additional_metadata:
        spec["metadata"] = additional_metadata
    root = (pmeta.get("labels") or {}).get(C.LABEL_ROOT) or pmeta["name"]
    return {
        "apiVersion": C.API_VERSION,
        "kind": C.KIND,
        "metadata": {
            "name": child_run_name(pmeta["name"], parent_task, key),
            "namespace": pmeta["namespace"],
            "labels": {
                C.LABEL_WORKFLOW: label_value(spec["workflow"]),
                C.LABEL_PARENT: pmeta["name"],
                C.LABEL_PARENT_TASK: label_value(parent_task),
                C.LABEL_ROOT: root,
            },
            "annotations": {
                C.ANNOTATION_SPAWN_KEY: key,
                C.ANNOTATION_INPUT_HASH: input_hash(input),
            },
            "ownerReferences": [_owner_reference(parent)],
        },
        "spec": _clean(spec),
    }


def build_root(
    spec: dict,
    input: Any,
    name: str | None = None,
    namespace: str | None = None,
    additional_metadata: dict | None = None,
) -> dict:
    """A root WorkflowRun (no parent): from a laptop, CI, or `kinflow manifest`.

    Without a name it uses `generateName`, so the manifest can be created many times.
    """
    spec = dict(spec)
    spec["input"] = input
    if additional_metadata:
        spec["metadata"] = additional_metadata
    metadata: dict[str, Any] = {
        "labels": {C.LABEL_WORKFLOW: label_value(spec["workflow"])},
        "annotations": {C.ANNOTATION_INPUT_HASH: input_hash(input)},
    }
    if name:
        metadata["name"] = name
        metadata["labels"][C.LABEL_ROOT] = name
    else:
        metadata["generateName"] = (dns_label(spec["workflow"])[:50] or "run") + "-"
    if namespace:
        metadata["namespace"] = namespace
    return {"apiVersion": C.API_VERSION, "kind": C.KIND, "metadata": metadata, "spec": _clean(spec)}


def _short(value: Any, limit: int = 200) -> str:
    from ._names import canonical_json

    text = canonical_json(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_adoptable(existing: dict, wanted: dict) -> None:
    """Raise unless `existing` is the very child `wanted` describes, made by the same parent."""
    meta, want = existing.get("metadata") or {}, wanted["metadata"]
    name = want["name"]
    key = want["annotations"].get(C.ANNOTATION_SPAWN_KEY)
    parent = want["ownerReferences"][0]
    task = want["labels"].get(C.LABEL_PARENT_TASK)
    controller = next((r for r in meta.get("ownerReferences") or [] if r.get("controller")), None)
    if controller is None or controller.get("uid") != parent["uid"]:
        owner = (
            f"is controlled by {controller.get('kind')} {controller.get('name')!r} (uid {controller.get('uid')})"
            if controller
            else "has no controller owner"
        )
        raise SpawnConflictError(
            f"cannot spawn child {name!r} (spawn key {key!r} of task {task!r}): a run with that name "
            f"already exists and {owner}, not parent run {parent['name']!r} (uid {parent['uid']}). "
            "It is not adopted; delete it or spawn with another key."
        )
    differences = []
    old_wf, new_wf = (existing.get("spec") or {}).get("workflow"), wanted["spec"]["workflow"]
    if old_wf != new_wf:
        differences.append(f"workflow was {old_wf!r}, now {new_wf!r}")
    old_hash = (meta.get("annotations") or {}).get(C.ANNOTATION_INPUT_HASH)
    if old_hash != want["annotations"][C.ANNOTATION_INPUT_HASH]:
        old_input = (existing.get("spec") or {}).get("input")
        differences.append(f"input was {_short(old_input)}, now {_short(wanted['spec'].get('input'))}")
    if differences:
        raise NonDeterminismError(
            f"spawn key {key!r} of task {task!r} in run {parent['name']!r} was used before for child "
            f"{name!r}, and this attempt spawns something else under it: {'; '.join(differences)}. "
            "A retried or resumed task must spawn the same children with the same keys; "
            "pass a distinct key= for each different child."
        )


def create_or_adopt(api: ApiClient, manifest: dict) -> dict:
    """Create the run; if it exists, return it when it is adoptable (else raise)."""
    namespace = manifest["metadata"]["namespace"]
    try:
        return api.create(run_path(namespace), manifest)
    except AlreadyExists:
        if not manifest["metadata"].get("ownerReferences"):
            raise
        existing = api.get(run_path(namespace, manifest["metadata"]["name"]))
        check_adoptable(existing, manifest)
        return existing


def spawn_many(
    api: ApiClient, manifests: Sequence[dict], concurrency: int = SPAWN_CONCURRENCY
) -> list[dict | BaseException]:
    """create_or_adopt each manifest, `concurrency` at a time; results (or errors) in order."""

    def one(manifest: dict) -> dict | BaseException:
        try:
            return create_or_adopt(api, manifest)
        except Exception as exc:  # returned in place: the caller decides whether to raise
            return exc

    if len(manifests) <= 1:
        return [one(m) for m in manifests]
    with ThreadPoolExecutor(max_workers=min(concurrency, len(manifests)), thread_name_prefix="kinflow-spawn") as pool:
        return list(pool.map(one, manifests))
