"""Spawning and joining children from inside a task, against the fake API server."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from pydantic import BaseModel

from kinflow import (
    ChildCancelledError,
    ChildWorkflowError,
    Kinflow,
    NonDeterminismError,
    SpawnConflictError,
    TriggerWorkflowOptions,
)
from kinflow import _constants as C
from kinflow._names import child_run_name, input_hash
from kinflow.spawn import build_child
from kinflow.wait import children_watcher

from .conftest import NAMESPACE, parent_run

kf = Kinflow(namespace=NAMESPACE)


class ChildInput(BaseModel):
    a: str


class ChildOutput(BaseModel):
    doubled: str


child_wf = kf.workflow(name="FanoutChild", input_validator=ChildInput)


@child_wf.task()
def process(input: ChildInput, ctx) -> dict:
    return {"status": input.a}


@kf.task(name="double", input_validator=ChildInput)
def double(input: ChildInput, ctx) -> ChildOutput:
    return ChildOutput(doubled=input.a * 2)


styled_wf = kf.workflow(name="Styled", image="own:2", pod_template={"spec": {"nodeSelector": {"a": "b"}}})


@styled_wf.task()
def styled(input, ctx) -> None:
    return None


def children(fake) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in fake.list(NAMESPACE, f"{C.LABEL_PARENT}=parent")}


def wait_for(predicate, what: str, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def finish_all(fake, n: int, fail: set[str] = frozenset(), cancel: set[str] = frozenset()):
    """Play the operator: finish children as they appear (in batches, last key first), until n are done."""

    def operator():
        done: set[str] = set()
        deadline = time.monotonic() + 10
        while len(done) < n and time.monotonic() < deadline:
            fresh = {k: o for k, o in children(fake).items() if k not in done}
            if not fresh:
                time.sleep(0.02)
                continue
            time.sleep(0.05)  # let the rest of a batch arrive
            fresh = {k: o for k, o in children(fake).items() if k not in done}
            by_key = {o["metadata"]["annotations"][C.ANNOTATION_SPAWN_KEY]: (nm, o) for nm, o in fresh.items()}
            for key in sorted(by_key, reverse=True):
                name, obj = by_key[key]
                a = obj["spec"]["input"]["a"]
                if key in fail:
                    fake.fail(NAMESPACE, name, "process", "ValueError", f"boom {a}")
                elif key in cancel:
                    fake.fail(NAMESPACE, name, "process", "Cancelled", "parent cancelled", phase="Cancelled")
                else:
                    fake.succeed(NAMESPACE, name, {"process": {"status": a}})
                done.add(name)

    t = threading.Thread(target=operator, daemon=True)
    t.start()
    return t


# --- names, labels, owners ---------------------------------------------------------------


def test_child_manifest_names_labels_owner_and_inheritance(fake, in_task):
    ref = child_wf.run_no_wait(ChildInput(a="1"), TriggerWorkflowOptions(key="k1", additional_metadata={"hello": "earth"}))
    assert ref.name == child_run_name("parent", "spawn", "k1")
    child = fake.get(NAMESPACE, ref.name)
    meta, spec = child["metadata"], child["spec"]
    assert meta["labels"] == {
        C.LABEL_WORKFLOW: "FanoutChild",
        C.LABEL_PARENT: "parent",
        C.LABEL_PARENT_TASK: "spawn",
        C.LABEL_ROOT: "parent",
    }
    assert meta["annotations"] == {C.ANNOTATION_SPAWN_KEY: "k1", C.ANNOTATION_INPUT_HASH: input_hash({"a": "1"})}
    assert meta["ownerReferences"] == [
        {"apiVersion": C.API_VERSION, "kind": C.KIND, "name": "parent", "uid": in_task.run["metadata"]["uid"], "controller": True}
    ]
    assert spec["entrypoint"] == f"{__name__}:child_wf"
    assert spec["image"] == "img:1" and spec["serviceAccountName"] == "kinflow-task"  # inherited
    assert spec["metadata"] == {"hello": "earth"}
    assert spec["input"] == {"a": "1"}
    assert [t["name"] for t in spec["tasks"]] == ["process"]


def test_child_workflow_settings_win_over_the_parents():
    parent = parent_run(podTemplate={"spec": {"tolerations": []}})
    parent["metadata"]["uid"] = "u1"
    child = build_child(parent, "spawn", "0", styled_wf.spec(), {})
    assert child["spec"]["image"] == "own:2"
    assert child["spec"]["podTemplate"] == {"spec": {"nodeSelector": {"a": "b"}}}
    assert child["spec"]["serviceAccountName"] == "kinflow-task"


def test_names_stay_valid_at_any_depth():
    name = "root"
    for depth in range(12):
        name = child_run_name(name, "grow", f"branch{depth}")
        assert len(name) <= 63 and name[0].isalnum() and name[-1].isalnum()


# --- keys -------------------------------------------------------------------------------


def test_unkeyed_spawns_are_keyed_by_call_index(fake, in_task):
    a = child_wf.run_no_wait({"a": "x"})
    keyed = child_wf.run_no_wait({"a": "y"}, TriggerWorkflowOptions(key="mine"))
    b = child_wf.run_no_wait({"a": "z"})
    keys = {n: o["metadata"]["annotations"][C.ANNOTATION_SPAWN_KEY] for n, o in children(fake).items()}
    assert keys == {a.name: "0", keyed.name: "mine", b.name: "1"}


def test_gathered_aio_runs_are_numbered_in_call_order(fake, in_task):
    async def spawn():
        refs = [child_wf.aio_run_no_wait({"a": str(i)}) for i in range(5)]
        return await asyncio.gather(*reversed(refs))  # awaited in another order

    refs = asyncio.run(spawn())
    for ref in refs:
        child = fake.get(NAMESPACE, ref.name)
        assert child["metadata"]["annotations"][C.ANNOTATION_SPAWN_KEY] == child["spec"]["input"]["a"]


# --- adoption ---------------------------------------------------------------------------


def test_retried_parent_adopts_its_children(fake, in_task):
    first = [child_wf.run_no_wait({"a": str(i)}) for i in range(3)]
    in_task(attempt=2)  # the pod died; the next attempt replays the same calls
    again = [child_wf.run_no_wait({"a": str(i)}) for i in range(4)]
    assert [r.name for r in again[:3]] == [r.name for r in first]
    assert [r.run["metadata"]["uid"] for r in again[:3]] == [r.run["metadata"]["uid"] for r in first]
    assert len(children(fake)) == 4


def test_other_owner_is_refused(fake, in_task):
    name = child_run_name("parent", "spawn", "child0")
    squatter = parent_run(name)
    squatter["metadata"]["ownerReferences"] = [
        {"apiVersion": C.API_VERSION, "kind": C.KIND, "name": "someone", "uid": "other-uid", "controller": True}
    ]
    fake.put(squatter)
    with pytest.raises(SpawnConflictError, match="other-uid") as exc:
        child_wf.run({"a": "1"}, TriggerWorkflowOptions(key="child0"))
    assert name in str(exc.value) and "not adopted" in str(exc.value)


def test_unowned_run_is_refused(fake, in_task):
    fake.put(parent_run(child_run_name("parent", "spawn", "0")))
    with pytest.raises(SpawnConflictError, match="has no controller owner"):
        child_wf.run_no_wait({"a": "1"})


def test_other_input_under_the_same_key_is_nondeterminism(fake, in_task):
    child_wf.run_no_wait({"a": "1"}, TriggerWorkflowOptions(key="child0"))
    in_task(attempt=2)
    with pytest.raises(NonDeterminismError) as exc:
        child_wf.run_no_wait({"a": "2"}, TriggerWorkflowOptions(key="child0"))
    message = str(exc.value)
    assert "'child0'" in message and '{"a":"1"}' in message and '{"a":"2"}' in message
    assert exc.value.retryable is False


def test_other_workflow_under_the_same_key_is_nondeterminism(fake, in_task):
    child_wf.run_no_wait({"a": "1"})
    in_task(attempt=2)
    with pytest.raises(NonDeterminismError, match="workflow was 'FanoutChild', now 'double'"):
        double.run_no_wait({"a": "1"})


# --- joining ----------------------------------------------------------------------------


def test_run_many_returns_results_in_order(fake, in_task):
    finish_all(fake, 20)
    items = [child_wf.create_bulk_run_item(input=ChildInput(a=str(i)), key=f"child{i}") for i in range(20)]
    results = child_wf.run_many(items)
    assert results == [{"process": {"status": str(i)}} for i in range(20)]
    # one list and at most one watch for all the children, however many there are
    assert sum(1 for _, m, p in fake.requests if m == "GET" and p.endswith("/workflowruns")) == 1
    assert fake.count("WATCH") <= 1


def test_run_many_return_exceptions_puts_errors_in_place(fake, in_task):
    finish_all(fake, 4, fail={"child1"}, cancel={"child3"})
    items = [child_wf.create_bulk_run_item(input={"a": str(i)}, key=f"child{i}") for i in range(4)]
    results = child_wf.run_many(items, return_exceptions=True)
    assert results[0] == {"process": {"status": "0"}}
    assert type(results[1]) is ChildWorkflowError
    assert results[1].task == "process" and results[1].error_type == "ValueError"
    assert results[1].run_name == child_run_name("parent", "spawn", "child1")
    assert str(results[1]) == (
        f"child run {results[1].run_name!r} (workflow 'FanoutChild') failed in task 'process': ValueError: boom 1"
    )
    assert results[2] == {"process": {"status": "2"}}
    assert isinstance(results[3], ChildCancelledError) and "was cancelled" in str(results[3])


def test_a_failed_child_raises_and_hatchets_try_except_catches_it(fake, in_task):
    finish_all(fake, 3, fail={"b"})
    with pytest.raises(ChildWorkflowError, match="boom 1"):
        child_wf.run_many([child_wf.create_bulk_run_item(input={"a": str(i)}, key=k) for i, k in enumerate("abc")])
    try:
        child_wf.run({"a": "1"}, TriggerWorkflowOptions(key="b"))  # adopted, already failed
    except Exception as e:
        assert "boom 1" in str(e)
    else:
        raise AssertionError("the failed child did not raise")


def test_aio_run_many_and_gather(fake, in_task):
    finish_all(fake, 6)

    async def parent():
        many = await child_wf.aio_run_many([child_wf.create_bulk_run_item(input={"a": str(i)}) for i in range(3)])
        gathered = await asyncio.gather(*(child_wf.aio_run({"a": str(i)}) for i in range(3, 6)))
        return many + list(gathered)

    assert asyncio.run(parent()) == [{"process": {"status": str(i)}} for i in range(6)]


def test_standalone_result_is_the_typed_output(fake, in_task):
    ref = double.run_no_wait(ChildInput(a="ab"))
    fake.succeed(NAMESPACE, ref.name, {"double": {"doubled": "abab"}})
    assert ref.result(timeout=5) == ChildOutput(doubled="abab")
    assert asyncio.run(ref.aio_result()) == ChildOutput(doubled="abab")


def test_wait_for_result_false_returns_a_reference(fake, in_task):
    ref = child_wf.run({"a": "1"}, wait_for_result=False)
    assert ref.workflow_run_id == ref.name
    fake.succeed(NAMESPACE, ref.name, {"process": {"status": "1"}})
    assert ref.result(timeout=5) == {"process": {"status": "1"}}


def test_watch_resumes_after_disconnect_and_relists_after_410(fake, in_task):
    refs = [child_wf.run_no_wait({"a": str(i)}) for i in range(3)]
    futures = [r.future() for r in refs]
    watcher = children_watcher(refs[0].api, NAMESPACE, "parent")
    wait_for(lambda: fake.open_watches == 1, "the watch to open")

    fake.drop_watches()  # connection cut: resume from the last resourceVersion
    fake.succeed(NAMESPACE, refs[0].name, {"process": {"status": "0"}})
    assert futures[0].result(5)["status"]["phase"] == "Succeeded"
    assert watcher.lists == 1 and watcher.watches >= 2

    wait_for(lambda: fake.open_watches == 1, "the watch to reopen")
    fake.compact()  # history gone: resuming gets 410, so list again
    fake.drop_watches()
    fake.succeed(NAMESPACE, refs[1].name, {"process": {"status": "1"}})
    fake.succeed(NAMESPACE, refs[2].name, {"process": {"status": "2"}})
    assert [f.result(5)["status"]["output"]["process"]["status"] for f in futures] == ["0", "1", "2"]
    assert watcher.lists == 2


def test_children_finished_before_waiting_are_found_by_the_list(fake, in_task):
    refs = [child_wf.run_no_wait({"a": str(i)}) for i in range(3)]
    for i, ref in enumerate(refs):
        fake.succeed(NAMESPACE, ref.name, {"process": {"status": str(i)}})
    assert [r.result(timeout=5)["process"]["status"] for r in refs] == ["0", "1", "2"]


# --- from outside a pod ---------------------------------------------------------------------


def test_root_run_from_a_laptop(fake, api):
    client = Kinflow(namespace=NAMESPACE, api=api, image="app:1")
    wf = client.workflow(name="Laptop", entrypoint="pkg.mod:wf")

    @wf.task()
    def only(input, ctx):
        return None

    ref = wf.run_no_wait({"x": 1})
    run = fake.get(NAMESPACE, ref.name)
    assert "ownerReferences" not in run["metadata"]
    assert run["metadata"]["labels"][C.LABEL_ROOT] == ref.name
    assert run["spec"]["image"] == "app:1" and run["spec"]["entrypoint"] == "pkg.mod:wf"
    fake.succeed(NAMESPACE, ref.name, {"only": {"ok": True}})
    assert ref.result(timeout=5) == {"only": {"ok": True}}
    assert fake.count("WATCH") <= 1


def test_many_roots_share_one_watch(fake, api):
    client = Kinflow(namespace=NAMESPACE, api=api)
    wf = client.workflow(name="Roots", entrypoint="pkg.mod:wf")

    @wf.task()
    def only(input, ctx):
        return input

    def operator():
        runs = wait_for(lambda: len(fake.list(NAMESPACE)) == 5 and fake.list(NAMESPACE), "5 roots")
        for run in runs:
            fake.succeed(NAMESPACE, run["metadata"]["name"], {"only": run["spec"]["input"]})

    threading.Thread(target=operator, daemon=True).start()
    results = wf.run_many([wf.create_bulk_run_item(input={"i": i}) for i in range(5)])
    assert results == [{"only": {"i": i}} for i in range(5)]
    assert fake.count("WATCH") <= 1
