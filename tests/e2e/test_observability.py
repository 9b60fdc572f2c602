"""What an operator of kinflow sees: Prometheus metrics, logfmt log lines naming the
run and task, and Kubernetes Events on the run."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request

from tests.e2e.waiting import wait_for


def scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def _run_dag(cluster, namespace, name):
    m = subprocess.run([sys.executable, "-m", "kinflow_cli.main", "manifest", "examples.dag:dag_wf",
                        "--input", '{"a": "1"}', "--name", name], capture_output=True, text=True,
                       env=cluster.env(), check=True)
    cluster.kubectl("-n", namespace, "apply", "-f", "-", input=m.stdout)
    wait_for(lambda: cluster.custom.get_namespaced_custom_object(
        "kinflow.io", "v1alpha1", namespace, "workflowruns", name).get("status", {}).get("phase") == "Succeeded",
        60, f"run {name} Succeeded")


def test_metrics_count_what_happened(cluster, namespace, operator):
    before = scrape(operator.metrics_url)
    _run_dag(cluster, namespace, "observed")
    after = wait_for(lambda: (m := scrape(operator.metrics_url)).get(
        f'kinflow_runs{{namespace="{namespace}",phase="Succeeded"}}') == 1 and m, 30,
        "the run-phase gauge to show the run Succeeded")

    def delta(key):
        return after.get(key, 0) - before.get(key, 0)

    assert delta("kinflow_jobs_created_total") >= 2  # process, process2
    assert delta("kinflow_tasks_started_total") >= 2
    assert delta('kinflow_runs_finished_total{phase="Succeeded"}') >= 1
    assert delta("kinflow_spawn_to_running_seconds_count") >= 1
    assert delta("kinflow_reconcile_duration_seconds_count") >= 2


def test_log_lines_name_the_run_and_task(cluster, namespace, operator):
    _run_dag(cluster, namespace, "logged")
    run = f"{namespace}/logged"
    lines = wait_for(lambda: [l for l in operator.log_path.read_text().splitlines() if f"run={run}" in l
                              and "reason=TaskStarted" in l], 10, "TaskStarted log lines for the run")
    assert any("task=process " in l for l in lines) and any("task=process2 " in l for l in lines)
    for line in lines:
        assert re.match(r"^ts=\S+ level=info logger=\S+ run=\S+ task=\S+ reason=TaskStarted msg=", line), line
    # The line follows the status write the test saw, so it may lag it by a moment.
    wait_for(lambda: any(f"run={run}" in l and "reason=RunSucceeded" in l
                         for l in operator.log_path.read_text().splitlines()), 10, "the RunSucceeded log line")


def test_events_on_the_run(cluster, namespace):
    _run_dag(cluster, namespace, "evented")
    def reasons():
        out = cluster.kubectl("-n", namespace, "get", "events", "-o", "json",
                              "--field-selector", "involvedObject.name=evented").stdout
        return {e["reason"] for e in json.loads(out)["items"]}
    wait_for(lambda: {"TaskStarted", "RunSucceeded"} <= reasons(), 20, "TaskStarted and RunSucceeded Events")
