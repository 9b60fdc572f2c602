"""`kinflow event send`: deliver an event to the durable tasks waiting for its key.

An event is a core/v1 Event in the namespace (reason KinflowEvent, label
kinflow.io/event, the key and data in annotations; see docs/design.md,
"Events"). That needs no store of its own and no pod RBAC, `kubectl get
events` shows it, and the API server deletes it after its event TTL. The
operator watches these Events and resumes the tasks waiting for the key.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from typing import Any

from kinflow import _constants as C
from kinflow._names import dns_label


def build_event(namespace: str, key: str, data: Any, run: dict | None = None,
                now: dt.datetime | None = None) -> dict:
    """The Event that carries `data` under `key` (to `run` only, when given)."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    if len(text.encode()) > C.MAX_EVENT_DATA_BYTES:
        raise ValueError(f"--data is {len(text.encode())} bytes, over the limit of {C.MAX_EVENT_DATA_BYTES} "
                         "bytes (MAX_EVENT_DATA_BYTES): send a reference to the data instead")
    stamp = (now or dt.datetime.now(dt.timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")
    annotations = {C.ANNOTATION_EVENT_KEY: key, C.ANNOTATION_EVENT_DATA: text}
    if run is not None:
        meta = run["metadata"]
        annotations[C.ANNOTATION_EVENT_RUN] = meta["name"]
        involved = {"apiVersion": C.API_VERSION, "kind": C.KIND, "name": meta["name"],
                    "namespace": namespace, "uid": meta.get("uid")}
    else:
        # The API requires involvedObject.namespace == the Event's, even for the Namespace itself.
        involved = {"apiVersion": "v1", "kind": "Namespace", "name": namespace, "namespace": namespace}
    prefix = (dns_label(key)[:40].rstrip("-") or "event")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"kinflow-{prefix}-{secrets.token_hex(5)}",
            "namespace": namespace,
            "labels": {C.LABEL_EVENT: "true"},
            "annotations": annotations,
        },
        "involvedObject": involved,
        "reason": C.EVENT_REASON,
        "message": f"kinflow event {key!r}" + (f" for run {run['metadata']['name']}" if run else ""),
        "type": "Normal",
        "source": {"component": "kinflow-cli"},
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


def waiting_for(runs: list[dict], key: str) -> list[str]:
    """Names of the runs with a task whose current report says it waits for `key`."""
    out = []
    for run in runs:
        for entry in ((run.get("status") or {}).get("tasks") or {}).values():
            if (entry.get("phase") == "Waiting" and (entry.get("wait") or {}).get("event") == key
                    and entry.get("reportedJob") == entry.get("job")):
                out.append(run["metadata"]["name"])
                break
    return out


def send(reader, key: str, data: Any, run_name: str | None = None) -> tuple[str, list[str]]:
    """Create the Event; return its name and the runs waiting for the key right now."""
    run = reader.get(run_name) if run_name else None
    body = build_event(reader.namespace, key, data, run)
    # Count before sending: the operator resumes the waiting tasks within milliseconds.
    matched = waiting_for([run] if run is not None else reader.list(""), key)
    reader.core.create_namespaced_event(reader.namespace, body)
    return body["metadata"]["name"], matched
