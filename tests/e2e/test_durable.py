"""Durable tasks end to end (issue 5's acceptance list), on the dev cluster with the operator.

Runs that must prove something about slots run on a node of their own with an
exact slot count (`extra_node`), by putting its nodeSelector and toleration in
the root's podTemplate (children inherit it). Workflows only these tests need
are defined at the bottom; pods import them as `tests.e2e.test_durable:<name>`.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import pytest

from kinflow import Context, DurableContext, Kinflow
from kinflow import _constants as C
from kinflow._names import child_run_name
from tests.e2e.waiting import wait_for

GROUP, VERSION, PLURAL = C.GROUP, C.VERSION, C.PLURAL


# --- helpers ---------------------------------------------------------------------------------


def get_run(cluster, namespace: str, name: str) -> dict[str, Any]:
    return cluster.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)


def start(cluster, namespace: str, wf, input: dict, name: str, pod_spec: dict | None = None) -> dict:
    body = wf.to_manifest(input, name=name)
    if pod_spec:
        body["spec"]["podTemplate"] = {"spec": pod_spec}
    return cluster.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)


def wait_phase(cluster, namespace: str, name: str, phases, timeout: float) -> dict:
    phases = {phases} if isinstance(phases, str) else set(phases)

    def check():
        run = get_run(cluster, namespace, name)
        return run if (run.get("status") or {}).get("phase") in phases else None

    return wait_for(check, timeout, f"run {namespace}/{name} to reach {sorted(phases)}")


def waiting_entry(cluster, namespace: str, name: str, task: str, timeout: float = 60) -> dict:
    """The task entry once its current Job reported Waiting."""
    def check():
        entry = ((get_run(cluster, namespace, name).get("status") or {}).get("tasks") or {}).get(task) or {}
        return entry if entry.get("phase") == "Waiting" and entry.get("reportedJob") == entry.get("job") else None

    return wait_for(check, timeout, f"task {task} of {name} to report Waiting")


def run_jobs(cluster, namespace: str, run: str) -> list[str]:
    jobs = cluster.batch.list_namespaced_job(namespace, label_selector=f"{C.LABEL_RUN}={run}").items
    return sorted(j.metadata.name for j in jobs)


def running_pods(cluster, namespace: str, run: str) -> list[str]:
    pods = cluster.core.list_namespaced_pod(namespace, label_selector=f"{C.LABEL_RUN}={run}").items
    return [p.metadata.name for p in pods if p.status.phase in ("Running", "Pending")]


def pod_spans(cluster, namespace: str, run: str) -> list[tuple[datetime, datetime]]:
    """(started, finished) of each finished pod of a run, oldest first."""
    pods = cluster.core.list_namespaced_pod(namespace, label_selector=f"{C.LABEL_RUN}={run}").items
    spans = []
    for pod in pods:
        term = pod.status.container_statuses[0].state.terminated
        spans.append((term.started_at, term.finished_at))
    return sorted(spans)


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def send_event(cluster, namespace: str, key: str, data: str, run: str | None = None) -> str:
    cmd = [sys.executable, "-m", "kinflow_cli.main", "event", "send", key, "--data", data, "-n", namespace]
    if run:
        cmd += ["--run", run]
    out = subprocess.run(cmd, env=cluster.env(), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


class PodWatch:
    """Samples a run's pods in the background: did one run while its task was Waiting?"""

    def __init__(self, cluster, namespace: str, run: str, task: str, grace: float = 1.5):
        self.cluster, self.namespace, self.run, self.task, self.grace = cluster, namespace, run, task, grace
        self.violations: list[str] = []
        self.waiting_samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)

    def _loop(self):
        waiting_since: float | None = None
        while not self._stop.wait(0.25):
            try:
                status = get_run(self.cluster, self.namespace, self.run).get("status") or {}
                entry = (status.get("tasks") or {}).get(self.task) or {}
                is_waiting = entry.get("phase") == "Waiting" and entry.get("reportedJob") == entry.get("job")
                if not is_waiting:
                    waiting_since = None
                    continue
                waiting_since = waiting_since or time.monotonic()
                if time.monotonic() - waiting_since < self.grace:
                    continue  # the pod exits just after its Waiting report
                self.waiting_samples += 1
                pods = running_pods(self.cluster, self.namespace, self.run)
                if pods:
                    self.violations.append(f"{pods} while Waiting")
            except Exception:  # noqa: BLE001 -- a transient API error is a missed sample
                pass


# --- the acceptance tests ------------------------------------------------------------------------


def test_durable_fanout_completes_on_one_slot_and_holds_no_pod_while_waiting(cluster, namespace, extra_node):
    from examples.durable_fanout import parent_wf

    _, pods = extra_node(1)
    start(cluster, namespace, parent_wf, {"n": 5}, "fan", pods)
    with PodWatch(cluster, namespace, "fan", "spawn") as watch:
        run = wait_phase(cluster, namespace, "fan", C.TERMINAL_PHASES, 240)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    out = run["status"]["output"]["spawn"]
    assert [r["process"]["status"] for r in out["results"]] == [str(i) for i in range(5)]
    entry = run["status"]["tasks"]["spawn"]
    assert entry["attempt"] == 1 and entry["resumes"] == out["resumes"] == 1  # one coalesced suspension
    assert run_jobs(cluster, namespace, "fan") == sorted([entry["job"], _first_job("fan", "spawn")])
    assert not watch.violations, watch.violations
    # The parent's pods ran before and after its children, never alongside (times to the second).
    spans = pod_spans(cluster, namespace, "fan")
    assert len(spans) == 2
    names = [child_run_name("fan", "spawn", f"child{c}") for c in range(5)]
    children = [span for name in names for span in pod_spans(cluster, namespace, name)]
    assert spans[0][1] <= min(a for a, _ in children) and spans[1][0] >= max(b for _, b in children)


def test_the_same_fanout_non_durable_fails_with_the_deadlock_message(cluster, namespace, extra_node):
    _, pods = extra_node(1)
    start(cluster, namespace, plain_fanout, {"n": 5}, "plain", pods)
    run = wait_phase(cluster, namespace, "plain", C.TERMINAL_PHASES, 120)
    assert run["status"]["phase"] == "Failed"
    kids = cluster.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                                        label_selector=f"{C.LABEL_PARENT}=plain")["items"]
    assert len(kids) == 5
    error = run["status"]["tasks"]["plain_fanout"]["error"]
    assert error["type"] == "ExecutionTimeout", error
    assert "could not start while it ran" in error["message"]
    assert "holds the slot its children need" in error["message"]
    assert "durable_task" in error["message"]


def test_a_durable_sleep_holds_no_pod_and_resumes_within_2s_of_its_wake_time(cluster, namespace, extra_node):
    _, pods = extra_node(1)
    start(cluster, namespace, sleeper, {"seconds": 10}, "nap", pods)
    with PodWatch(cluster, namespace, "nap", "sleeper") as watch:
        entry = waiting_entry(cluster, namespace, "nap", "sleeper")
        run = wait_phase(cluster, namespace, "nap", C.TERMINAL_PHASES, 60)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    out = run["status"]["output"]["sleeper"]
    wake = parse(entry["wait"]["until"])
    assert entry["checkpoints"]["sleep0"] == entry["wait"]["until"]
    assert wake - parse(out["started"]) == pytest.approx(timedelta(seconds=10), abs=timedelta(seconds=0.1))
    late = (parse(out["resumed"]) - wake).total_seconds()
    assert 0 <= late < 2.0, f"resumed {late:.2f}s after the wake time"
    assert watch.waiting_samples >= 3 and not watch.violations, watch.violations


def test_an_event_sent_while_waiting_resumes_the_task_with_its_data(cluster, namespace):
    from examples.approval import approval

    start(cluster, namespace, approval, {"request": "order-7", "timeout_seconds": 120}, "ask")
    waiting_entry(cluster, namespace, "ask", "approval")
    out = send_event(cluster, namespace, "approval:order-7", '{"approved": true, "by": "ann"}')
    assert "1 waiting run(s) matched: ask" in out, out
    run = wait_phase(cluster, namespace, "ask", C.TERMINAL_PHASES, 60)
    assert run["status"]["output"]["approval"] == {"request": "order-7", "approved": True, "by": "ann"}
    delivered = run["status"]["tasks"]["approval"]["delivered"]["event0"]
    assert delivered["key"] == "approval:order-7" and delivered["event"].startswith("kinflow-approval-order-7")


def test_an_event_sent_before_the_wait_is_not_delivered_so_the_timeout_wins(cluster, namespace):
    from examples.approval import approval

    out = send_event(cluster, namespace, "approval:early", '{"approved": true, "by": "too-soon"}')
    assert "0 waiting run(s) matched" in out
    time.sleep(1.1)  # creationTimestamp has one-second resolution: make "before" unambiguous
    start(cluster, namespace, approval, {"request": "early", "timeout_seconds": 4}, "early")
    run = wait_phase(cluster, namespace, "early", C.TERMINAL_PHASES, 60)
    assert run["status"]["output"]["approval"]["reason"] == "timed out"
    assert "delivered" not in run["status"]["tasks"]["approval"]


def test_a_targeted_event_reaches_only_its_run(cluster, namespace):
    from examples.approval import approval

    for name in ("t1", "t2"):
        start(cluster, namespace, approval, {"request": "shared", "timeout_seconds": 8}, name)
    for name in ("t1", "t2"):
        waiting_entry(cluster, namespace, name, "approval")
    out = send_event(cluster, namespace, "approval:shared", '{"approved": true, "by": "bob"}', run="t2")
    assert "1 waiting run(s) matched: t2" in out
    t2 = wait_phase(cluster, namespace, "t2", C.TERMINAL_PHASES, 60)
    t1 = wait_phase(cluster, namespace, "t1", C.TERMINAL_PHASES, 60)
    assert t2["status"]["output"]["approval"]["approved"] is True
    assert t1["status"]["output"]["approval"]["reason"] == "timed out"


def test_operator_restarts_while_parents_wait_and_each_resumes_exactly_once(cluster, namespace, operator):
    from examples.approval import approval
    from examples.durable_fanout import parent_wf

    start(cluster, namespace, sleeper, {"seconds": 6}, "s1")
    start(cluster, namespace, sleeper, {"seconds": 6}, "s2")
    start(cluster, namespace, approval, {"request": "r", "timeout_seconds": 300}, "ev")
    start(cluster, namespace, parent_wf, {"n": 2}, "fan2")
    for name, task in (("s1", "sleeper"), ("s2", "sleeper"), ("ev", "approval")):
        waiting_entry(cluster, namespace, name, task)
    operator.kill()
    try:
        # While it is down: the event is sent and the sleeps' wake times pass.
        send_event(cluster, namespace, "approval:r", '{"approved": true, "by": "night-shift"}')
        time.sleep(7)
    finally:
        operator.start()
    for name in ("s1", "s2", "ev", "fan2"):
        run = wait_phase(cluster, namespace, name, C.TERMINAL_PHASES, 120)
        assert run["status"]["phase"] == "Succeeded", (name, run["status"])
        task = next(iter(run["status"]["tasks"]))
        assert run["status"]["tasks"][task]["resumes"] == 1, (name, run["status"]["tasks"][task])
        assert len(run_jobs(cluster, namespace, name)) == 2, (name, run_jobs(cluster, namespace, name))
    assert get_run(cluster, namespace, "ev")["status"]["output"]["approval"]["by"] == "night-shift"
    # Restart once more after everything finished: nothing is resumed again.
    operator.restart()
    time.sleep(3)
    for name in ("s1", "s2", "ev", "fan2"):
        assert len(run_jobs(cluster, namespace, name)) == 2


def test_a_recursive_durable_tree_completes_on_two_slots(cluster, namespace, extra_node):
    _, pods = extra_node(2)
    start(cluster, namespace, durable_tree, {"depth": 3, "breadth": 3}, "tree", pods)
    run = wait_phase(cluster, namespace, "tree", C.TERMINAL_PHASES, 300)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert run["status"]["output"]["grow"] == {"path": "root", "depth": 3, "leaves": 9, "runs": 13}


def test_agent_loop_example_iterates_on_one_slot(cluster, namespace, extra_node):
    from examples.agent_loop import agent

    _, pods = extra_node(1)
    start(cluster, namespace, agent, {"target": 11}, "agent", pods)
    run = wait_phase(cluster, namespace, "agent", C.TERMINAL_PHASES, 240)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert run["status"]["output"]["agent"] == {"answer": 11, "guesses": [8, 12, 10, 11], "iterations": 4}
    runs = cluster.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
    assert Counter(r["spec"]["workflow"] for r in runs) == {"agent": 4}  # one run per iteration


def _first_job(run: str, task: str) -> str:
    from kinflow._names import job_name

    return job_name(run, task, 1, 0)


# --- workflows the tests above run (imported by the pods) -------------------------------------------

kf = Kinflow()


@kf.task(name="plain_fanout", execution_timeout="15s")  # room to spawn on a busy machine
async def plain_fanout(input: dict, ctx: Context) -> dict:
    """examples.durable_fanout's parent as a plain task: it holds its pod while it waits."""
    from examples.durable_fanout import ChildInput, child_wf

    results = await child_wf.aio_run_many(
        [child_wf.create_bulk_run_item(input=ChildInput(a=str(i)), key=f"child{i}")
         for i in range(ctx.workflow_input["n"])]
    )
    return {"results": results}


@kf.durable_task(name="sleeper")
async def sleeper(input: dict, ctx: DurableContext) -> dict:
    started = await ctx.aio_now()
    await ctx.aio_sleep_for(ctx.workflow_input["seconds"])
    from kinflow.durable import format_time, utcnow

    return {"started": started.isoformat(), "resumed": format_time(utcnow())}


tree_wf = kf.workflow(name="DurableTree")


@tree_wf.durable_task(execution_timeout="60s")
async def grow(input: dict, ctx: DurableContext) -> dict:
    input = ctx.workflow_input  # the raw JSON (this workflow declares no input model)
    depth, breadth, path = input["depth"], input["breadth"], input.get("path", "root")
    if depth <= 1:
        return {"path": path, "depth": 1, "leaves": 1, "runs": 1}
    results = await tree_wf.aio_run_many([
        tree_wf.create_bulk_run_item({"depth": depth - 1, "breadth": breadth, "path": f"{path}.{i}"}, key=f"b{i}")
        for i in range(breadth)
    ])
    return {"path": path, "depth": depth, "leaves": sum(r["grow"]["leaves"] for r in results),
            "runs": 1 + sum(r["grow"]["runs"] for r in results)}


durable_tree = tree_wf
