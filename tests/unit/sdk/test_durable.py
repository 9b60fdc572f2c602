"""Durable tasks in the runner (run in-process against the fake API): suspension, replay,
checkpoints, events, non-determinism. The tests play the operator: they set the children's
status and start the runner again with KINFLOW_RESUME + 1."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from kinflow import _constants as C
from kinflow import _execution, runner
from kinflow._names import child_run_name

from .conftest import NAMESPACE

WF = "tests.unit.sdk.durable_workflows"


@pytest.fixture
def durable(fake, kubeconfig, monkeypatch):
    """run(entrypoint, task, input, resume) -> the task's status entry after one execution."""

    def run(entrypoint: str, task: str, input=None, resume: int = 0, name: str = "d1"):
        if fake.get(NAMESPACE, name) is None:
            fake.put({
                "apiVersion": C.API_VERSION, "kind": C.KIND,
                "metadata": {"name": name, "namespace": NAMESPACE, "labels": {C.LABEL_ROOT: name}},
                "spec": {"workflow": "W", "entrypoint": entrypoint, "input": input or {},
                         "tasks": [{"name": task, "durable": True}]},
            })
        env = {C.ENV_RUN: name, C.ENV_NAMESPACE: NAMESPACE, C.ENV_TASK: task, C.ENV_ATTEMPT: "1",
               C.ENV_RESUME: str(resume), C.ENV_JOB: f"{name}-job-{resume}"}
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        fake.requests.clear()
        try:
            assert runner.main() == 0
        finally:
            _execution._process_execution = None
            _execution._current.set(None)
        return fake.get(NAMESPACE, name)["status"]["tasks"][task]

    return run


def children(fake, parent="d1"):
    return sorted(o["metadata"]["name"] for o in fake.list(NAMESPACE, f"{C.LABEL_PARENT}={parent}"))


def finish_children(fake, parent="d1"):
    for obj in fake.list(NAMESPACE, f"{C.LABEL_PARENT}={parent}"):
        x = obj["spec"]["input"]["i"]
        fake.succeed(NAMESPACE, obj["metadata"]["name"], {"work": {"x": x}})


def test_fanout_suspends_once_listing_every_child_and_never_watches(durable, fake):
    entry = durable(f"{WF}:fanout", "fanout", {"n": 3})
    assert entry["phase"] == "Waiting"
    assert entry["reportedJob"] == "d1-job-0"
    assert entry["wait"] == {"children": children(fake)}
    assert len(children(fake)) == 3
    assert fake.count("WATCH") == 0
    finish_children(fake)
    entry = durable(f"{WF}:fanout", "fanout", {"n": 3}, resume=1)
    assert entry["phase"] == "Succeeded", entry
    assert entry["output"] == {"sum": 3}
    # the replay: one GET of the run, one LIST of its children, one report; no create, no watch
    assert [m for _, m, _ in fake.requests] == ["GET", "GET", "PATCH"]


def test_gathered_aio_runs_coalesce_into_one_suspension(durable, fake):
    entry = durable(f"{WF}:gathered", "gathered", {"n": 4})
    assert entry["phase"] == "Waiting"
    assert entry["wait"]["children"] == children(fake) and len(children(fake)) == 4


def test_a_partly_finished_fanout_waits_only_for_the_rest(durable, fake):
    durable(f"{WF}:fanout", "fanout", {"n": 3})
    first = child_run_name("d1", "fanout", "c0")
    fake.succeed(NAMESPACE, first, {"work": {"x": 0}})
    entry = durable(f"{WF}:fanout", "fanout", {"n": 3}, resume=1)
    assert entry["phase"] == "Waiting"
    assert first not in entry["wait"]["children"] and len(entry["wait"]["children"]) == 2


def test_sync_durable_task_suspends_on_run_many_then_on_run(durable, fake):
    entry = durable(f"{WF}:sync_fanout", "sync_fanout")
    assert len(entry["wait"]["children"]) == 3
    finish_children(fake)
    entry = durable(f"{WF}:sync_fanout", "sync_fanout", resume=1)
    assert len(entry["wait"]["children"]) == 1
    finish_children(fake)
    entry = durable(f"{WF}:sync_fanout", "sync_fanout", resume=2)
    assert entry["output"] == {"sum": 0 + 1 + 2 + 10}


def test_replay_that_spawns_differently_names_the_key_and_the_difference(durable, fake):
    durable(f"{WF}:fanout", "fanout", {"n": 2, "salt": "a"})
    run = fake.get(NAMESPACE, "d1")
    run["spec"]["input"]["salt"] = "b"  # as if the code now computed another input
    fake.objects[(NAMESPACE, "d1")]["spec"]["input"]["salt"] = "b"
    entry = durable(f"{WF}:fanout", "fanout", {"n": 2}, resume=1)
    assert entry["phase"] == "Failed"
    error = entry["error"]
    assert error["type"] == "NonDeterminismError" and error["retryable"] is False
    assert "spawn key 'c0'" in error["message"]
    assert '"salt":"a"' in error["message"] and '"salt":"b"' in error["message"]


def test_sleep_checkpoints_its_wake_time_and_replays_now_and_memo(durable, fake):
    before = datetime.now(timezone.utc)
    entry = durable(f"{WF}:sleeper", "sleeper")
    assert entry["phase"] == "Waiting"
    until = datetime.fromisoformat(entry["wait"]["until"].replace("Z", "+00:00"))
    assert timedelta(seconds=9.9) <= until - before <= timedelta(seconds=11)
    cps = entry["checkpoints"]
    assert set(cps) == {"now0", "memo0", "sleep0"} and cps["sleep0"] == entry["wait"]["until"]
    # Not yet time: a replay suspends again with the SAME wake time.
    entry2 = durable(f"{WF}:sleeper", "sleeper", resume=1)
    assert entry2["wait"]["until"] == entry["wait"]["until"] and entry2["checkpoints"] == cps
    # The operator resumes after the wake time: simulate by moving the checkpoint into the past.
    past = (datetime.now(timezone.utc) - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    fake.set_status(NAMESPACE, "d1", {"tasks": {"sleeper": {"checkpoints": {"sleep0": past}}}})
    entry3 = durable(f"{WF}:sleeper", "sleeper", resume=2)
    assert entry3["phase"] == "Succeeded"
    assert entry3["output"]["pick"] == cps["memo0"]
    assert entry3["output"]["started"].startswith(cps["now0"][:19])


def test_event_wait_records_key_and_since_then_returns_the_delivered_data(durable, fake):
    entry = durable(f"{WF}:approval", "approval")
    wait = entry["wait"]
    assert wait["event"] == "approve" and wait["eventId"] == "event0"
    assert wait["eventSince"] == entry["checkpoints"]["event0"]
    assert wait["until"]  # the timeout: whichever comes first
    fake.set_status(NAMESPACE, "d1", {"tasks": {"approval": {
        "delivered": {"event0": {"key": "approve", "data": {"ok": True}}}}}})
    entry = durable(f"{WF}:approval", "approval", resume=1)
    assert entry["output"] == {"approved": True, "data": {"ok": True}}


def test_event_wait_times_out_after_its_checkpointed_deadline(durable, fake):
    durable(f"{WF}:approval", "approval")
    old = (datetime.now(timezone.utc) - timedelta(seconds=31)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    fake.set_status(NAMESPACE, "d1", {"tasks": {"approval": {"checkpoints": {"event0": old}}}})
    entry = durable(f"{WF}:approval", "approval", resume=1)
    assert entry["output"] == {"approved": False, "why": "timeout"}


def test_durable_flag_reaches_the_spec():
    from tests.unit.sdk.durable_workflows import fanout

    assert fanout.spec()["tasks"][0]["durable"] is True
