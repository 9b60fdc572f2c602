"""Reading runs for people: fetch a run and its subtree, and summarise it.

The CLI's views (`get`, `tree`, `run --follow`) share this model so they agree
on what a run's state is. Children are found by label, never from the parent's
status, which keeps only counts.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from kinflow._constants import (
    ANNOTATION_SPAWN_KEY, GROUP, LABEL_PARENT, LABEL_ROOT, PLURAL, TERMINAL_PHASES, VERSION,
)


@dataclass
class RunNode:
    """One run as a row of the tree."""

    name: str
    phase: str
    workflow: str
    key: str | None
    parent: str | None
    created: dt.datetime | None
    finished: dt.datetime | None
    attempts: int
    tasks_done: int
    tasks_total: int
    error: str | None
    body: dict
    children: list["RunNode"] = field(default_factory=list)

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL_PHASES

    def duration(self, now: dt.datetime | None = None) -> float | None:
        if not self.created:
            return None
        end = self.finished or now or dt.datetime.now(dt.timezone.utc)
        return max(0.0, (end - self.created).total_seconds())


def _time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def first_error(status: dict) -> str | None:
    for task, entry in (status.get("tasks") or {}).items():
        err = entry.get("error")
        if err and entry.get("phase") in ("Failed", "Cancelled"):
            return f"{task}: {err.get('type', 'Error')}: {err.get('message', '')}"
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Succeeded" and cond.get("status") == "False":
            return cond.get("message")
    return None


def node_of(body: dict) -> RunNode:
    meta, spec, status = body["metadata"], body.get("spec", {}), body.get("status") or {}
    tasks = status.get("tasks") or {}
    return RunNode(
        name=meta["name"],
        phase=status.get("phase") or "Pending",
        workflow=spec.get("workflow", ""),
        key=(meta.get("annotations") or {}).get(ANNOTATION_SPAWN_KEY),
        parent=(meta.get("labels") or {}).get(LABEL_PARENT),
        created=_time(status.get("startTime")) or _time(meta.get("creationTimestamp")),
        finished=_time(status.get("completionTime")),
        attempts=sum(int(t.get("attempt") or 0) for t in tasks.values()),
        tasks_done=sum(1 for t in tasks.values() if t.get("phase") == "Succeeded"),
        tasks_total=len(spec.get("tasks") or []),
        error=first_error(status),
        body=body,
    )


class RunReader:
    """Reads runs with the kubernetes client (the CLI runs on laptops and in CI)."""

    def __init__(self, namespace: str | None = None, kubeconfig: str | None = None):
        from kubernetes import client, config

        if kubeconfig:
            api = config.new_client_from_config(config_file=kubeconfig)
            _, ctx = config.list_kube_config_contexts(config_file=kubeconfig)
        else:
            try:
                config.load_kube_config()
                _, ctx = config.list_kube_config_contexts()
            except config.ConfigException:
                config.load_incluster_config()
                ctx = {}
            api = client.ApiClient()
        self.namespace = namespace or (ctx.get("context") or {}).get("namespace") or "default"
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.api = api

    def get(self, name: str) -> dict:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)

    def list(self, selector: str) -> list[dict]:
        out, token = [], None
        while True:
            page = self.custom.list_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, label_selector=selector, limit=500,
                _continue=token)
            out += page["items"]
            token = page["metadata"].get("continue")
            if not token:
                return out

    def tree(self, name: str) -> RunNode:
        """The run and every descendant, linked by the parent label (one list call per level)."""
        root = node_of(self.get(name))
        root_label = (root.body["metadata"].get("labels") or {}).get(LABEL_ROOT) or root.name
        nodes = {root.name: root}
        # Every run spawned under one root carries its label: one list for the whole tree.
        for body in self.list(f"{LABEL_ROOT}={root_label}"):
            n = node_of(body)
            nodes.setdefault(n.name, n)
        for n in nodes.values():
            if n is not root and n.parent in nodes:
                nodes[n.parent].children.append(n)
        for n in nodes.values():
            n.children.sort(key=lambda c: (c.created or dt.datetime.min.replace(tzinfo=dt.timezone.utc), c.name))
        return root

    def cancel(self, name: str) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, {"spec": {"cancel": True}})


def counts(node: RunNode) -> dict[str, int]:
    """Phase counts over a node's descendants (not the node itself)."""
    out: dict[str, int] = {}
    stack = list(node.children)
    while stack:
        n = stack.pop()
        out[n.phase] = out.get(n.phase, 0) + 1
        stack.extend(n.children)
    return out
