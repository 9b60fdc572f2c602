"""The SDK end to end (issue 4's acceptance list), on a real API server with the operator.

Root runs are started the way a user starts them from a laptop: through the
SDK (`wf.run(...)`) with the admin kubeconfig. Children are spawned by task
pods with their own ServiceAccount. Workflows only these tests need are
defined at the bottom of this module; pods import them as
`tests.e2e.test_sdk:<name>`. No timing is asserted.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from typing import Any

import pytest
from pydantic import BaseModel

from kinflow import ChildWorkflowError, Context, EmptyModel, Kinflow, TriggerWorkflowOptions
from kinflow import _constants as C
from kinflow._names import child_run_name

GROUP, VERSION, PLURAL = C.GROUP, C.VERSION, C.PLURAL


# --- helpers ---------------------------------------------------------------------------


@pytest.fixture
def sdk(cluster, namespace, monkeypatch):
    """The SDK pointed at the test cluster as admin; returns the options that put roots in `namespace`."""
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    return TriggerWorkflowOptions(namespace=namespace)


def runs_in(cluster, namespace: str) -> list[dict[str, Any]]:
    return cluster.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]


def get_run(cluster, namespace: str, name: str) -> dict[str, Any]:
    return cluster.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)


def children_of(cluster, namespace: str, parent: str) -> list[dict[str, Any]]:
    return cluster.custom.list_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, label_selector=f"{C.LABEL_PARENT}={parent}"
    )["items"]


def jobs_per_run(cluster, namespace: str) -> Counter:
    jobs = cluster.batch.list_namespaced_job(namespace).items
    return Counter(j.metadata.labels.get(C.LABEL_RUN) for j in jobs)


def wait_terminal(cluster, namespace: str, name: str, timeout: float = 120) -> dict[str, Any]:
    from tests.e2e.waiting import wait_for

    def check():
        run = get_run(cluster, namespace, name)
        return run if (run.get("status") or {}).get("phase") in C.TERMINAL_PHASES else None

    return wait_for(check, timeout, f"run {namespace}/{name} to finish")


def start_root(cluster, namespace: str, wf, input: dict, name: str) -> dict[str, Any]:
    body = wf.to_manifest(input, name=name)
    return cluster.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)


def assert_controlled_by(child: dict[str, Any], parent: dict[str, Any]) -> None:
    owners = [r for r in child["metadata"].get("ownerReferences") or [] if r.get("controller")]
    assert [(o["kind"], o["name"], o["uid"]) for o in owners] == [
        ("WorkflowRun", parent["metadata"]["name"], parent["metadata"]["uid"])
    ]


# --- every example's output ------------------------------------------------------------------


def test_simple_example(sdk):
    from examples.simple import SimpleInput, simple

    assert simple.run(SimpleInput(message="hello"), sdk) == {"step1": {"transformed_message": "HELLO"}}


def test_dag_example(sdk):
    from examples.dag import DagInput, dag_wf

    assert dag_wf.run(DagInput(a="7"), sdk) == {"process": {"status": "7"}, "process2": {"status2": "72"}}


def test_fanout_example(sdk, cluster, namespace):
    from examples.fanout import ParentInput, parent_wf

    ref = parent_wf.run_no_wait(ParentInput(n=3), sdk)
    result = ref.result(timeout=180)
    assert result == {"spawn": {"results": [
        {"process": {"status": str(i)}, "process2": {"status2": f"{i}2"}} for i in range(3)
    ]}}
    children = children_of(cluster, namespace, ref.name)
    assert sorted(c["metadata"]["annotations"][C.ANNOTATION_SPAWN_KEY] for c in children) == [
        "child0", "child1", "child2"
    ]
    assert all(c["spec"]["metadata"] == {"hello": "earth"} for c in children)


def test_parallel_example(sdk):
    from examples.parallel import spawn

    assert spawn.run({}, sdk) == {"results": [
        {"step1": {"transformed_message": "HELLO, WORLD!"}},
        {"step1": {"transformed_message": "HELLO, MOON!"}},
    ]}


def test_error_handling_example(sdk):
    from examples.error_handling import error_wf

    result = error_wf.run({}, sdk)
    caught = result["catch_one"]
    assert caught["caught"] == "ChildWorkflowError"
    assert "failed in task 'work': ValueError: child b failed on purpose" in caught["message"]
    ok, failed = result["gather_many"]["results"]
    assert ok == {"work": {"a": "ok"}}
    assert failed["error"] == "ChildWorkflowError" and "child bad failed on purpose" in failed["message"]


def test_recursive_example(sdk, cluster, namespace):
    from examples.recursive import TreeInput, tree_wf

    ref = tree_wf.run_no_wait(TreeInput(depth=3, breadth=3), sdk)
    assert ref.result(timeout=300) == {"grow": {"path": "root", "depth": 3, "leaves": 9, "runs": 13}}
    runs = runs_in(cluster, namespace)
    assert len(runs) == 13
    assert {r["metadata"]["labels"][C.LABEL_ROOT] for r in runs} == {ref.name}


# --- scale and idempotency ------------------------------------------------------------------


def test_fanout_of_200_children_each_owned_by_the_parent(sdk, cluster, namespace):
    # The example's shape (FanoutParent -> FanoutChild process -> process2), with longer
    # execution timeouts: the operator counts them from Job creation, and 400 child pods
    # queue for the dev node's few slots.
    ref = wide_parent.run_no_wait(WideInput(n=200), sdk)
    result = ref.result(timeout=900)
    assert [r["process2"]["status2"] for r in result["spawn"]["results"]] == [f"{i}2" for i in range(200)]
    parent = get_run(cluster, namespace, ref.name)
    children = children_of(cluster, namespace, ref.name)
    assert len(children) == 200
    assert len(runs_in(cluster, namespace)) == 201
    for child in children:
        assert_controlled_by(child, parent)
    jobs = jobs_per_run(cluster, namespace)
    assert all(jobs[c["metadata"]["name"]] == 2 for c in children)  # process, process2: once each


def test_operator_restarted_during_a_200_child_fanout_runs_each_child_once(sdk, cluster, namespace, operator):
    from tests.e2e.waiting import wait_for

    if operator is None:
        pytest.skip("the operator is external (KINFLOW_TEST_OPERATOR=external): cannot restart it")
    ref = wide_parent.run_no_wait(WideInput(n=200), sdk)
    wait_for(lambda: len(children_of(cluster, namespace, ref.name)) >= 100, 300, "100 children to exist")
    operator.restart()  # SIGKILL, then a fresh operator process
    result = ref.result(timeout=900)
    assert len(result["spawn"]["results"]) == 200
    children = children_of(cluster, namespace, ref.name)
    assert len(children) == 200
    jobs = jobs_per_run(cluster, namespace)
    for child in children:
        name = child["metadata"]["name"]
        assert jobs[name] == 2, f"child {name} has {jobs[name]} Jobs, expected one per task"
        assert {t: e["attempt"] for t, e in child["status"]["tasks"].items()} == {"process": 1, "process2": 1}


def test_parent_killed_after_spawning_half_is_retried_and_spawns_each_child_once(sdk, cluster, namespace):
    n = 10
    ref = half_then_die.run_no_wait(HalfInput(n=n), sdk)
    result = ref.result(timeout=300)
    assert result["spawn_all"] == {"values": [f"v{i}" for i in range(n)], "attempt": 2}
    parent = get_run(cluster, namespace, ref.name)
    assert parent["status"]["tasks"]["spawn_all"]["attempt"] == 2
    children = children_of(cluster, namespace, ref.name)
    assert len(children) == n
    for child in children:
        assert_controlled_by(child, parent)
    jobs = jobs_per_run(cluster, namespace)
    assert jobs[ref.name] == 2  # the killed attempt and the retry
    assert all(jobs[c["metadata"]["name"]] == 1 for c in children)  # no child ran twice


def test_run_with_a_childs_name_but_another_owner_is_refused(sdk, cluster, namespace):
    owner = start_root(cluster, namespace, leaf, {"value": "owner"}, "someone-else")
    squatter = leaf.to_manifest({"value": "squat"}, name=child_run_name("refusing", "spawn_one", "child0"))
    squatter["metadata"]["ownerReferences"] = [{
        "apiVersion": C.API_VERSION, "kind": C.KIND, "name": "someone-else",
        "uid": owner["metadata"]["uid"], "controller": True,
    }]
    cluster.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, squatter)

    start_root(cluster, namespace, spawn_one, {}, "refusing")
    run = wait_terminal(cluster, namespace, "refusing")
    assert run["status"]["phase"] == "Failed"
    error = run["status"]["tasks"]["spawn_one"]["error"]
    assert error["type"] == "SpawnConflictError"
    assert "not adopted" in error["message"] and owner["metadata"]["uid"] in error["message"]
    still = get_run(cluster, namespace, squatter["metadata"]["name"])
    assert still["metadata"]["ownerReferences"][0]["uid"] == owner["metadata"]["uid"]
    assert still["spec"]["input"] == {"value": "squat"}


def test_child_failure_surfaces_in_the_parent_with_the_childs_message(sdk, cluster, namespace):
    with pytest.raises(ChildWorkflowError) as exc:
        call_failing.run({}, sdk)
    # the parent failed because its child did; the root's error carries the child's message
    assert "child failed on purpose: deep" in str(exc.value)
    parent = get_run(cluster, namespace, exc.value.run_name)
    error = parent["status"]["tasks"]["call_failing"]["error"]
    assert error["type"] == "ChildWorkflowError"
    assert "failed in task 'fail': RuntimeError: child failed on purpose: deep" in error["message"]


# --- workflows for these tests (imported by the task pods) -------------------------------------

kf = Kinflow()


class LeafInput(BaseModel):
    value: str


class HalfInput(BaseModel):
    n: int


@kf.task()
def leaf(input: LeafInput, ctx: Context) -> dict[str, str]:
    return {"value": input.value}


half_then_die = kf.workflow(name="HalfThenDie", input_validator=HalfInput)


@half_then_die.task(retries=1, backoff_factor=1, backoff_max_seconds=1, execution_timeout="120s")
def spawn_all(input: HalfInput, ctx: Context) -> dict[str, Any]:
    items = [leaf.create_bulk_run_item(input=LeafInput(value=f"v{i}"), key=f"leaf{i}") for i in range(input.n)]
    if ctx.attempt_number == 1:
        leaf.run_many_no_wait(items[: input.n // 2])
        os.kill(os.getpid(), signal.SIGKILL)  # the pod dies right after spawning half
    results = leaf.run_many(items)
    return {"values": [r["value"] for r in results], "attempt": ctx.attempt_number}


@kf.task()
def spawn_one(input: EmptyModel, ctx: Context) -> dict[str, Any]:
    return {"child": leaf.run(LeafInput(value="mine"), TriggerWorkflowOptions(key="child0"))}


@kf.task()
def fail(input: LeafInput, ctx: Context) -> None:
    raise RuntimeError(f"child failed on purpose: {input.value}")


@kf.task()
def call_failing(input: EmptyModel, ctx: Context) -> Any:
    return fail.run(LeafInput(value="deep"))  # not caught: the parent fails too


class WideInput(BaseModel):
    n: int


wide_parent = kf.workflow(name="WideParent", input_validator=WideInput)
wide_child = kf.workflow(name="WideChild", input_validator=LeafInput)


@wide_parent.task(execution_timeout="15m")
async def spawn(input: WideInput, ctx: Context) -> dict[str, Any]:
    results = await wide_child.aio_run_many([
        wide_child.create_bulk_run_item(input=LeafInput(value=str(i)), key=f"child{i}",
                                        additional_metadata={"hello": "earth"})
        for i in range(input.n)
    ])
    return {"results": results}


@wide_child.task(execution_timeout="15m")
def process(input: LeafInput, ctx: Context) -> dict[str, str]:
    return {"status": input.value}


@wide_child.task(parents=[process], execution_timeout="15m")
def process2(input: LeafInput, ctx: Context) -> dict[str, str]:
    return {"status2": ctx.task_output(process)["status"] + "2"}
