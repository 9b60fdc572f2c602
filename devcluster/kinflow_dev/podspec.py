"""Pure decisions of the node agent: a container's argv and env, and pod status.

Nothing here does I/O, so every rule a kubelet follows that we imitate (fieldRef
values, `$(VAR)` expansion, which conditions a Running or Failed pod carries)
has a fast unit test.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

JSON = dict[str, Any]

POD_IP = "127.0.0.1"
PYTHON_NAMES = frozenset({"python", "python3"})

# The env a pod starts from: enough to find programs and behave sanely, but not
# the agent's own environment (which may hold an admin KUBECONFIG).
BASE_ENV_KEYS = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "VIRTUAL_ENV", "USER")


class ConfigError(Exception):
    """The pod cannot be started as specified (kubelet: CreateContainerConfigError)."""


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(value: str) -> float:
    """Seconds since the epoch of an API timestamp ("2024-01-02T03:04:05Z")."""
    return datetime.strptime(value[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()


# -- command and env ------------------------------------------------------------

_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand_vars(text: str, env: dict[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: defined names are replaced, `$$` escapes, others stay."""

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env[name] if name in env else match.group(0)

    return _VAR_REF.sub(sub, text)


def resolve_command(container: JSON, env: dict[str, str], python: str) -> list[str]:
    """The argv to run: command + args (args alone when there is no command).

    The image is ignored, so its entrypoint is unknown: a container with
    neither command nor args cannot run. `python`/`python3` mean the node's
    configured interpreter, so pods share the local Python environment.
    """
    argv = [expand_vars(a, env) for a in (container.get("command") or []) + (container.get("args") or [])]
    if not argv:
        raise ConfigError(f"container {container.get('name')!r} has neither command nor args "
                          "(the dev node ignores images, so it has no entrypoint to fall back on)")
    if argv[0] in PYTHON_NAMES:
        argv[0] = python
    return argv


def field_ref_value(pod: JSON, field_path: str) -> str:
    """The value of a downward-API fieldRef, as the kubelet computes it."""
    meta, spec = pod.get("metadata", {}), pod.get("spec", {})
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
        "status.podIP": POD_IP,
        "status.podIPs": POD_IP,
        "status.hostIP": POD_IP,
        "status.hostIPs": POD_IP,
    }
    if field_path in simple:
        return simple[field_path]
    match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", field_path)
    if match:
        return (meta.get(match.group(1)) or {}).get(match.group(2), "")
    raise ConfigError(f"unsupported fieldRef {field_path!r}")


def resource_field_value(container: JSON, ref: JSON) -> str:
    """resourceFieldRef: the container's request/limit as written (no divisor arithmetic)."""
    kind, _, resource = ref.get("resource", "").partition(".")
    value = ((container.get("resources") or {}).get(kind) or {}).get(resource)
    if value is None:  # the kubelet falls back to node allocatable; ours is generous
        value = {"cpu": "8", "memory": str(32 * 1024**3)}.get(resource, "0")
    return str(value)


# (kind "configMap"|"secret", namespace, name) -> its data as str->str, or None if missing
RefLookup = Callable[[str, str, str], "dict[str, str] | None"]


def build_env(
    pod: JSON,
    container: JSON,
    base: dict[str, str],
    extra: dict[str, str],
    lookup: RefLookup | None = None,
) -> dict[str, str]:
    """The process environment: base, then the node's extras, then envFrom, then env.

    Later entries override earlier ones and may refer to earlier ones with
    `$(NAME)`, as in Kubernetes.
    """
    namespace = pod.get("metadata", {}).get("namespace", "default")
    env = dict(base)
    env.update(extra)

    def fetch(kind: str, ref: JSON, optional: bool) -> dict[str, str] | None:
        data = lookup(kind, namespace, ref.get("name", "")) if lookup else None
        if data is None and not optional:
            raise ConfigError(f"{kind} {ref.get('name')!r} not found")
        return data

    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        for kind in ("configMap", "secret"):
            ref = source.get(f"{kind}Ref")
            if ref:
                data = fetch(kind, ref, bool(ref.get("optional")))
                for key, value in (data or {}).items():
                    env[prefix + key] = value

    for item in container.get("env") or []:
        name = item["name"]
        if "valueFrom" not in item:
            env[name] = expand_vars(item.get("value", ""), env)
            continue
        source = item["valueFrom"]
        if "fieldRef" in source:
            env[name] = field_ref_value(pod, source["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in source:
            env[name] = resource_field_value(container, source["resourceFieldRef"])
        else:
            for kind in ("configMap", "secret"):
                ref = source.get(f"{kind}KeyRef")
                if ref:
                    optional = bool(ref.get("optional"))
                    data = fetch(kind, ref, optional) or {}
                    if ref["key"] in data:
                        env[name] = data[ref["key"]]
                    elif not optional:
                        raise ConfigError(f"key {ref['key']!r} not found in {kind} {ref.get('name')!r}")
                    break
            else:
                raise ConfigError(f"env {name!r}: unsupported valueFrom {sorted(source)}")
    return env


# -- status ---------------------------------------------------------------------


@dataclass
class ContainerRun:
    """What the node knows about one container of a pod right now."""

    name: str
    image: str = ""
    state: str = "waiting"  # waiting | running | terminated
    reason: str = "ContainerCreating"
    message: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    exit_code: int | None = None
    restart_count: int = 0
    pid: int | None = None
    last_terminated: JSON | None = field(default=None)

    def state_dict(self) -> JSON:
        """The `state` of a containerStatus; the other two keys are null so a
        strategic merge patch removes them (running -> terminated)."""
        state: JSON = {"waiting": None, "running": None, "terminated": None}
        if self.state == "running":
            state["running"] = {"startedAt": self.started_at}
        elif self.state == "terminated":
            state["terminated"] = self.terminated_dict()
        else:
            state["waiting"] = {"reason": self.reason, **({"message": self.message} if self.message else {})}
        return state

    def terminated_dict(self) -> JSON:
        term: JSON = {
            "exitCode": self.exit_code if self.exit_code is not None else 137,
            "reason": self.reason,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
        }
        if self.message:
            term["message"] = self.message
        if self.pid:
            term["containerID"] = f"kinflow://{self.pid}"
        return term

    def status_dict(self, init: bool = False) -> JSON:
        running = self.state == "running"
        status: JSON = {
            "name": self.name,
            "image": self.image,
            "imageID": "",
            "ready": running and not init or (init and self.state == "terminated" and self.exit_code == 0),
            "started": running,
            "restartCount": self.restart_count,
            "state": self.state_dict(),
            "lastState": {"terminated": self.last_terminated} if self.last_terminated else {},
        }
        if self.pid:
            status["containerID"] = f"kinflow://{self.pid}"
        return status


def exit_reason(exit_code: int) -> str:
    return "Completed" if exit_code == 0 else "Error"


def _condition(kind: str, ok: bool, now: str, reason: str | None = None) -> JSON:
    cond: JSON = {"type": kind, "status": "True" if ok else "False", "lastProbeTime": None,
                  "lastTransitionTime": now}
    if reason:
        cond["reason"] = reason
    return cond


def pod_status(
    phase: str,
    init: list[ContainerRun],
    main: list[ContainerRun],
    start_time: str,
    now: str,
    reason: str | None = None,
    message: str | None = None,
) -> JSON:
    """The pod status a kubelet would report, as a strategic-merge patch body."""
    initialized = all(c.state == "terminated" and c.exit_code == 0 for c in init)
    terminal = phase in ("Succeeded", "Failed")
    ready = not terminal and bool(main) and all(c.state == "running" for c in main)
    not_ready_reason = "PodCompleted" if terminal else ("ContainersNotReady" if not ready else None)
    status: JSON = {
        "phase": phase,
        "hostIP": POD_IP,
        "hostIPs": [{"ip": POD_IP}],
        "podIP": POD_IP,
        "podIPs": [{"ip": POD_IP}],
        "startTime": start_time,
        # No qosClass: the API server sets it at creation and refuses any change.
        "conditions": [
            _condition("PodReadyToStartContainers", not terminal, now),
            _condition("Initialized", initialized or terminal, now,
                       None if initialized or terminal else "ContainersNotInitialized"),
            _condition("ContainersReady", ready, now, None if ready else not_ready_reason),
            _condition("Ready", ready, now, None if ready else not_ready_reason),
            _condition("PodScheduled", True, now),
        ],
        "containerStatuses": [c.status_dict() for c in main],
        "reason": reason,
        "message": message,
    }
    if init:
        status["initContainerStatuses"] = [c.status_dict(init=True) for c in init]
    return status


def terminal_phase(main: list[ContainerRun]) -> str:
    """Succeeded only when every container exited 0 (restartPolicy Never)."""
    return "Succeeded" if all(c.exit_code == 0 for c in main) else "Failed"


def should_restart(restart_policy: str, exit_code: int) -> bool:
    return restart_policy == "Always" or (restart_policy == "OnFailure" and exit_code != 0)


def restart_backoff(restart_count: int) -> float:
    """Seconds before restart number `restart_count + 1`: 1, 2, 4 ... capped at 30."""
    return float(min(30, 2 ** max(0, restart_count)))


def active_deadline(pod: JSON, start_time: float) -> float | None:
    """Epoch seconds when the pod's activeDeadlineSeconds runs out, if it has one."""
    seconds = pod.get("spec", {}).get("activeDeadlineSeconds")
    return start_time + float(seconds) if seconds is not None else None
