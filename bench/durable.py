"""Durable-task benchmark (not a test): what a waiting durable parent costs, and how fast
it comes back.

    python bench/durable.py [--runs 10] [--children 3] [--kubeconfig PATH]

Against the cluster of --kubeconfig (default: the e2e test cluster's, else
$KUBECONFIG) it makes a namespace, starts an operator for it, and runs a
durable parent that fans out to `--children` no-op children, `--runs` times,
one after another (a quiet machine gives clean latencies). It reports:

- pod-seconds the parent's pods used, against the parent's wall time (a plain
  parent would hold one pod for the whole wall time); the time the parent
  waited holding no pod;
- resume latency: the last child done (its status.completionTime, written by
  the operator) -> the parent's code running again (a timestamp the resumed
  execution takes as it enters the function), p50 and p95. It includes the
  operator's reaction, the Job and pod start, and the runner's start-up.

Pod times come from container startedAt/finishedAt, which have one-second
resolution on the dev node: pod-seconds are good to about a second per pod.
The workflows are defined here and imported by the pods as `bench.durable`.
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from kinflow import Context, DurableContext, Kinflow  # noqa: E402

kf = Kinflow()
# Explicit entrypoints: run as a script this module is __main__, but the pods import bench.durable.
noop = kf.workflow(name="bench-durable-noop", entrypoint="bench.durable:noop")


@noop.task()
def nothing(input: Any, ctx: Context) -> dict:
    return {}


@kf.durable_task(name="bench-durable-parent", execution_timeout="5m", entrypoint="bench.durable:parent")
async def parent(input: Any, ctx: DurableContext) -> dict:
    from kinflow.durable import format_time, utcnow

    entered = format_time(utcnow())  # not checkpointed: each execution's own entry time
    n = ctx.workflow_input["n"]
    await noop.aio_run_many([noop.create_bulk_run_item({}, key=f"c{i}") for i in range(n)])
    return {"entered": entered, "resumes": ctx.resume_count}


# --- the measurement ------------------------------------------------------------------------------


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def _kubeconfig(explicit: str | None) -> str:
    if explicit:
        return explicit
    test = Path.home() / ".local" / "share" / "kinflow" / "test" / "kubeconfig"
    if test.exists():
        return str(test)
    return os.environ["KUBECONFIG"]


def measure_one(core, custom, namespace: str, name: str, children: int) -> dict[str, float]:
    from kinflow import _constants as C

    body = parent.to_manifest({"n": children}, name=name)
    custom.create_namespaced_custom_object(C.GROUP, C.VERSION, namespace, C.PLURAL, body)
    deadline = time.monotonic() + 300
    while True:
        run = custom.get_namespaced_custom_object(C.GROUP, C.VERSION, namespace, C.PLURAL, name)
        phase = (run.get("status") or {}).get("phase")
        if phase in C.TERMINAL_PHASES:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} not finished: {run.get('status')}")
        time.sleep(0.5)
    if phase != "Succeeded":
        raise RuntimeError(f"{name} {phase}: {run['status']}")
    kids = custom.list_namespaced_custom_object(C.GROUP, C.VERSION, namespace, C.PLURAL,
                                                label_selector=f"{C.LABEL_PARENT}={name}")["items"]
    last_child = max(_t(k["status"]["completionTime"]) for k in kids)
    out = run["status"]["output"]["bench-durable-parent"]
    pods = core.list_namespaced_pod(namespace, label_selector=f"{C.LABEL_RUN}={name}").items
    spans = []
    for pod in pods:
        term = pod.status.container_statuses[0].state.terminated
        spans.append((term.started_at, term.finished_at))
    spans.sort()
    pod_seconds = sum((b - a).total_seconds() for a, b in spans)
    podless = (spans[-1][0] - spans[0][1]).total_seconds() if len(spans) > 1 else 0.0
    wall = (_t(run["status"]["completionTime"]) - _t(run["metadata"]["creationTimestamp"])).total_seconds()
    return {
        "resumes": out["resumes"],
        "pod_seconds": pod_seconds,
        "podless_wait": podless,
        "wall": wall,
        "resume_latency": (_t(out["entered"]) - last_child).total_seconds(),
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--children", type=int, default=3)
    ap.add_argument("--kubeconfig", default=None)
    args = ap.parse_args()

    from kubernetes import client, config

    from kinflow_dev.bootstrap import task_rbac_manifests

    kubeconfig = _kubeconfig(args.kubeconfig)
    api = config.new_client_from_config(config_file=kubeconfig)
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    namespace = f"kinflow-bench-durable-{secrets.token_hex(3)}"
    core.create_namespace({"metadata": {"name": namespace}})
    env = dict(os.environ, KUBECONFIG=kubeconfig, PYTHONPATH=str(ROOT))
    for manifest in task_rbac_manifests(namespace):
        import json

        subprocess.run(["kubectl", f"--kubeconfig={kubeconfig}", "apply", "-f", "-"], input=json.dumps(manifest),
                       text=True, check=True, capture_output=True)
    while not core.list_namespaced_service_account(namespace).items:
        time.sleep(0.2)
    log = open(Path("/tmp") / f"{namespace}-operator.log", "wb")
    operator = subprocess.Popen([sys.executable, "-m", "kinflow_operator", "--namespace", namespace],
                                env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    results = []
    try:
        time.sleep(2)
        for i in range(args.runs):
            results.append(measure_one(core, custom, namespace, f"p{i}", args.children))
            print(f"run {i}: " + ", ".join(f"{k} {v:.2f}" for k, v in results[-1].items()), file=sys.stderr)
    finally:
        operator.terminate()
        operator.wait(10)
        core.delete_namespace(namespace)

    lat = [r["resume_latency"] for r in results]
    print(f"\nDurable parent, {args.children} no-op children, {len(results)} runs one at a time "
          f"({platform.machine()}, {os.cpu_count()} CPUs)\n")
    print("| measure | p50 | p95 | mean |")
    print("|---|---|---|---|")
    rows = (("wall", "parent wall time (s)"), ("pod_seconds", "parent pod-seconds"),
            ("podless_wait", "time waiting with no pod (s)"),
            ("resume_latency", "resume latency: child done -> parent code running (s)"))
    for key, label in rows:
        vals = [r[key] for r in results]
        print(f"| {label} | {_pct(vals, 0.5):.2f} | {_pct(vals, 0.95):.2f} | {statistics.mean(vals):.2f} |")
    print(f"\nresumes per run: {sorted(set(r['resumes'] for r in results))}; resume latency min {min(lat):.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
