"""Benchmark of the dev cluster itself (not a test): how long `up` takes warm, what the
idle cluster costs, and how fast the node agent turns a bound pod into a process.

    python bench/devcluster.py [--pods 50] [--idle-seconds 30]

Starts a throwaway cluster in a temporary folder on free ports (the binaries
must be built: `kinflow dev up` once does that), prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from procstat import cpu_seconds  # bench/ is on sys.path when a script here runs

ROOT = Path(__file__).resolve().parents[1]


def _cpu_seconds(pids: list[int]) -> float:
    """CPU seconds of the processes still alive."""
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(pid)
        except OSError:
            continue
    return total


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pods", type=int, default=50)
    ap.add_argument("--slots", type=int, default=8)
    ap.add_argument("--idle-seconds", type=float, default=30)
    args = ap.parse_args()

    from kinflow_dev.controlplane import open_cluster
    from kubernetes import client, config, watch

    home = Path(tempfile.mkdtemp(prefix="kinflow-bench-"))
    dev = open_cluster(home, slots=args.slots, operator=False, workdir=str(ROOT), pythonpath=str(ROOT),
                       python=sys.executable, api_port=17443, etcd_port=17379, etcd_peer_port=17380)
    dev.log = lambda *_: None
    t0 = time.monotonic()
    dev.up()
    first_up = time.monotonic() - t0
    dev.down()
    t0 = time.monotonic()
    dev.up()  # warm: binaries and PKI exist, processes start from scratch
    warm_up = time.monotonic() - t0
    try:
        pids = [r["pid"] for r in dev.status().values() if r["pid"]]
        time.sleep(5)  # let start-up settle
        c0, w0 = _cpu_seconds(pids), time.monotonic()
        time.sleep(args.idle_seconds)
        idle_cpu = (_cpu_seconds(pids) - c0) / (time.monotonic() - w0)

        api = config.new_client_from_config(config_file=str(dev.kubeconfig))
        core = client.CoreV1Api(api)
        ns = "bench"
        core.create_namespace({"metadata": {"name": ns}})
        time.sleep(1)
        seen: dict[str, dict[str, float]] = {}
        done = threading.Event()

        def watcher():
            w = watch.Watch()
            for ev in w.stream(core.list_namespaced_pod, ns, timeout_seconds=600):
                pod, now = ev["object"], time.monotonic()
                marks = seen.setdefault(pod.metadata.name, {})
                if pod.spec.node_name and "bound" not in marks:
                    marks["bound"] = now
                if pod.status.phase == "Running" and "running" not in marks:
                    marks["running"] = now
                if pod.status.phase in ("Succeeded", "Failed") and "completed" not in marks:
                    marks["completed"] = now
                    marks.setdefault("running", now)
                if sum(1 for m in seen.values() if "completed" in m) >= args.pods:
                    done.set()
                    w.stop()

        threading.Thread(target=watcher, daemon=True).start()
        time.sleep(0.5)
        t0 = time.monotonic()
        for i in range(args.pods):
            core.create_namespaced_pod(ns, {"metadata": {"name": f"p{i}"}, "spec": {
                "restartPolicy": "Never", "serviceAccountName": "default",
                "containers": [{"name": "c", "image": "none", "command": ["python3", "-c", "pass"]}]}})
        done.wait(600)
        total = time.monotonic() - t0
        to_running = [m["running"] - m["bound"] for m in seen.values() if "bound" in m and "running" in m]
        to_done = [m["completed"] - m["bound"] for m in seen.values() if "bound" in m and "completed" in m]
    finally:
        dev.down(purge=True)

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print()
    print("| measure | value |")
    print("|---|---|")
    print(f"| first `up` (PKI, etcd init; binaries cached) | {first_up:.1f} s |")
    print(f"| warm `up` (state exists, processes start) | {warm_up:.1f} s |")
    print(f"| idle CPU of the whole cluster | {idle_cpu * 100:.1f}% of one core |")
    print(f"| {args.pods} trivial pods, {args.slots} slots: all completed | {total:.1f} s |")
    print(f"| bound → running, p50 / p95 | {statistics.median(to_running) * 1000:.0f} ms / {_pct(to_running, .95) * 1000:.0f} ms |")
    print(f"| bound → completed, p50 / p95 | {statistics.median(to_done) * 1000:.0f} ms / {_pct(to_done, .95) * 1000:.0f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
