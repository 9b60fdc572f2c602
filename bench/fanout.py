"""Fan-out benchmark (not a test): N no-op children spawned from one task and joined.

    python bench/fanout.py [--sizes 10,100,1000] [--home DIR]

Uses the dev cluster at --home (default: `kinflow dev`'s), starting it if needed
with its operator. For each size it reports the wall time from creating the
root run to its success, children per second, the operator's CPU seconds per
child (from /proc), and API requests per child (the API server's
`apiserver_request_total`, summed over every client: operator, pods, node
agent, controllers, scheduler).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import ssl
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

from procstat import cpu_seconds  # bench/ is on sys.path when a script here runs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def request_counts(dev) -> Counter:
    """apiserver_request_total summed per (verb, resource[/subresource]), and in all under "total".

    The metric has no client label; verb and resource say who asks all the same
    (pods/status PATCH: the node; workflowruns GET: runners; jobs POST: the operator ...).
    """
    ctx = ssl.create_default_context(cafile=str(dev.pki.ca_cert))
    ctx.load_cert_chain(dev.pki.path("admin.crt"), dev.pki.path("admin.key"))
    with urllib.request.urlopen(f"{dev.server}/metrics", context=ctx, timeout=10) as r:
        text = r.read().decode()
    counts: Counter = Counter()
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels_text, value = line[len("apiserver_request_total{"):].rsplit("} ", 1)
        labels = dict(re.findall(r'(\w+)="([^"]*)"', labels_text))
        resource = labels.get("resource", "") + (f"/{labels['subresource']}" if labels.get("subresource") else "")
        counts[(labels.get("verb", "?"), resource or "(none)")] += float(value)
        counts["total"] += float(value)
    return counts


def requests_total(dev) -> float:
    """Sum of apiserver_request_total over all labels."""
    return request_counts(dev)["total"]


def wait_done(custom, namespace: str, name: str, n: int, t0: float) -> dict:
    """Watch the root run until it ends; its status. One watch, not a poll: polling
    four times a second cost ~1 GET per child, counted in the per-child requests."""
    from kubernetes import watch

    last, rv = 0.0, None
    while True:
        stream = watch.Watch().stream(custom.list_namespaced_custom_object, "kinflow.io", "v1alpha1", namespace,
                                      "workflowruns", field_selector=f"metadata.name={name}",
                                      resource_version=rv, timeout_seconds=60)
        for event in stream:
            body = event["object"]
            rv = body["metadata"]["resourceVersion"]
            status = body.get("status") or {}
            if status.get("phase") in ("Succeeded", "Failed", "Cancelled"):
                return status
            if time.monotonic() - last > 10:
                last = time.monotonic()
                ch = status.get("children") or {}
                print(f"  n={n}: {ch.get('succeeded', 0)}/{ch.get('total', 0)} children done, "
                      f"{time.monotonic() - t0:.0f}s", file=sys.stderr)


def component_cpu(dev) -> dict[str, float]:
    """CPU seconds so far of each cluster process, and of the pods: the node's reaped
    children, plus its fork server with the pods it reaped (forked pods are its children)."""
    out = {}
    for name, row in dev.status().items():
        if row["pid"]:
            out[name] = cpu_seconds(row["pid"])
            if name.startswith("node-"):
                out["pods"] = cpu_seconds(row["pid"], children=True) + fork_server_cpu(dev, name[len("node-"):])
    return out


def fork_server_cpu(dev, node: str) -> float:
    """CPU seconds of the node's fork server and its reaped children (0 when it has none)."""
    try:
        info = json.loads((dev.home / "nodes" / node / "forkserver.json").read_text())
        fields = Path(f"/proc/{info['pid']}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, ValueError, KeyError):
        return 0.0
    if fields[19] != info.get("pid_start"):
        return 0.0
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10,100,1000")
    ap.add_argument("--home", type=Path, default=None)
    ap.add_argument("--namespace", default="default")
    args = ap.parse_args()

    from kinflow_dev.controlplane import open_cluster
    from kubernetes import client, config

    dev = open_cluster(args.home, operator=True, workdir=str(ROOT), pythonpath=str(ROOT),
                       python=sys.executable)
    dev.up()
    op = dev.procs.running("operator")
    if not op:
        print("the dev cluster's operator is not running", file=sys.stderr)
        return 1
    api = config.new_client_from_config(config_file=str(dev.kubeconfig))
    custom = client.CustomObjectsApi(api)
    os.environ["KUBECONFIG"] = str(dev.kubeconfig)
    from bench.workloads import fanout

    rows, breakdown, by_kind = [], [], []
    for n in [int(x) for x in args.sizes.split(",")]:
        manifest = fanout.to_manifest({"n": n}, entrypoint="bench.workloads:fanout")
        counts0, c0, t0 = request_counts(dev), cpu_seconds(op.pid), time.monotonic()
        parts0 = component_cpu(dev)
        run = custom.create_namespaced_custom_object("kinflow.io", "v1alpha1", args.namespace,
                                                     "workflowruns", manifest)
        name = run["metadata"]["name"]
        status = wait_done(custom, args.namespace, name, n, t0)
        wall = time.monotonic() - t0
        time.sleep(2)  # let the last status writes land before reading the counters
        counts = request_counts(dev)
        counts.subtract(counts0)
        reqs, cpu = counts.pop("total"), cpu_seconds(op.pid) - c0
        by_kind.append((n, counts))
        parts = {k: v - parts0.get(k, 0.0) for k, v in component_cpu(dev).items()}
        breakdown.append((n, parts))
        if status["phase"] != "Succeeded":
            print(f"run {name} ended {status['phase']}: {json.dumps(status.get('tasks'))[:500]}",
                  file=sys.stderr)
            return 1
        rows.append((n, wall, n / wall, cpu / n * 1000, reqs / n))
        print(f"  n={n}: joined in {wall:.1f}s", file=sys.stderr)
        custom.delete_namespaced_custom_object("kinflow.io", "v1alpha1", args.namespace,
                                               "workflowruns", name, propagation_policy="Background")
        time.sleep(5)

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"node slots {dev.config.slots}")
    print()
    print("| children | wall time to join | children/s | operator CPU per child | API requests per child |")
    print("|---:|---:|---:|---:|---:|")
    for n, wall, rate, cpu_ms, reqs in rows:
        print(f"| {n} | {wall:.1f} s | {rate:.1f} | {cpu_ms:.1f} ms | {reqs:.1f} |")
    print()
    names = sorted({k for _, parts in breakdown for k in parts})
    print("CPU per child, by component (ms):")
    print()
    print("| children | " + " | ".join(names) + " |")
    print("|---:|" + "---:|" * len(names))
    for n, parts in breakdown:
        print(f"| {n} | " + " | ".join(f"{parts.get(k, 0) / n * 1000:.0f}" for k in names) + " |")
    print()
    print_request_breakdown(by_kind)
    return 0


def print_request_breakdown(by_kind: list[tuple[int, Counter]]) -> None:
    """API requests per child by verb and resource: one column per size, biggest first."""
    kinds = sorted({k for _, counts in by_kind for k, v in counts.items() if v > 0},
                   key=lambda k: -max(counts.get(k, 0) / n for n, counts in by_kind))
    print("API requests per child, by verb and resource:")
    print()
    print("| verb | resource | " + " | ".join(f"n={n}" for n, _ in by_kind) + " |")
    print("|---|---|" + "---:|" * len(by_kind))
    for verb, resource in kinds:
        cells = " | ".join(f"{counts.get((verb, resource), 0) / n:.2f}" for n, counts in by_kind)
        print(f"| {verb} | {resource} | {cells} |")


if __name__ == "__main__":
    sys.exit(main())
