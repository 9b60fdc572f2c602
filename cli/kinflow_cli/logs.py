"""`kinflow logs`: the output of a run's task pods, attempt by attempt.

On a real cluster logs come from the API (the kubelet). Pods of the kinflow dev
cluster are local processes whose logs sit in the node's state folder; those
are read from disk, so the command works the same on both.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from kinflow._constants import LABEL_ATTEMPT, LABEL_RUN, LABEL_TASK


def _dev_homes() -> list[Path]:
    homes = []
    for env in ("KINFLOW_DEV_HOME", "KINFLOW_TEST_HOME"):
        if os.environ.get(env):
            homes.append(Path(os.environ[env]))
    from kinflow_dev.paths import data_dir

    homes += [data_dir() / "dev", data_dir() / "test"]
    return homes


def local_log_file(pod) -> Path | None:
    """The dev node's log file for this pod's first container, if it ran on this machine."""
    node = pod.spec.node_name
    if not node:
        return None
    container = pod.spec.containers[0].name
    folder = f"{pod.metadata.namespace}_{pod.metadata.name}_{pod.metadata.uid}"
    for home in _dev_homes():
        path = home / "nodes" / node / "pods" / folder / f"{container}.log"
        if path.exists():
            return path
    return None


def _pods(reader, run: str, task: str | None):
    selector = f"{LABEL_RUN}={run}" + (f",{LABEL_TASK}={task}" if task else "")
    pods = reader.core.list_namespaced_pod(reader.namespace, label_selector=selector).items
    return sorted(pods, key=lambda p: (p.metadata.creation_timestamp, p.metadata.name))


def print_logs(reader, run: str, task: str | None, follow: bool, out=sys.stdout) -> int:
    seen_offsets: dict[str, int] = {}
    while True:
        pods = _pods(reader, run, task)
        if not pods and not follow:
            print(f"kinflow logs: no task pods found for run {run}"
                  + (f" task {task}" if task else "") + " (they may have been cleaned up)", file=sys.stderr)
            return 1
        active = False
        for pod in pods:
            labels = pod.metadata.labels or {}
            header = f"==> {labels.get(LABEL_TASK, '?')} attempt {labels.get(LABEL_ATTEMPT, '?')} ({pod.metadata.name}) <=="
            text = _read(reader, pod)
            uid = pod.metadata.uid
            if uid not in seen_offsets:
                print(header, file=out)
                seen_offsets[uid] = 0
            if text is not None:
                out.write(text[seen_offsets[uid]:])
                seen_offsets[uid] = len(text)
            if pod.status.phase in ("Pending", "Running"):
                active = True
        out.flush()
        if not follow:
            return 0
        if not active and pods:
            run_body = reader.get(run)
            if (run_body.get("status") or {}).get("phase") in ("Succeeded", "Failed", "Cancelled"):
                return 0
        time.sleep(1.0)


def _read(reader, pod) -> str | None:
    path = local_log_file(pod)
    if path:
        return path.read_text(errors="replace")
    if pod.status.phase == "Pending":
        return None
    try:
        return reader.core.read_namespaced_pod_log(pod.metadata.name, pod.metadata.namespace)
    except Exception as e:  # a node without a log endpoint: say so, keep going
        return f"(logs unavailable: {getattr(e, 'reason', e)})\n"
