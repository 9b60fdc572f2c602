"""decide(): the operator's rules, one scenario each, with time passed in."""

from __future__ import annotations

from datetime import timedelta

import pytest

from kinflow._names import job_name
from kinflow_operator.decide import REPORT_GRACE_SECONDS, child_counts, decide, topological_order
from kinflow_operator.resource import ChildRun, TaskSpec, parse_duration

from .fakes import NOW, RUN, at, job_body, observe, patched, report, run_body, task

DAG = [task("process"), task("process2", "process")]


def step(body, jobs=(), now=NOW, **kw):
    """decide() once and apply its status patch to the body, as the API server would."""
    plan = decide(observe(body, jobs, **kw), now)
    return plan, (patched(body, plan.status_patch) if plan.status_patch else body)


def test_a_new_run_starts_only_its_root_tasks():
    plan, body = step(run_body(DAG))
    assert [j.task for j in plan.create_jobs] == ["process"]
    assert plan.create_jobs[0].name == job_name(RUN, "process", 1, 0)
    assert body["status"]["phase"] == "Running"
    assert body["status"]["tasks"]["process"]["phase"] == "Running"
    assert body["status"]["tasks"]["process"]["job"] == plan.create_jobs[0].name
    assert [e.reason for e in plan.events] == ["TaskStarted"]
    assert body["status"]["conditions"][0]["status"] == "Unknown"
    assert body["status"]["taskProgress"] == "0/2"


def test_deciding_twice_changes_nothing():
    _, body = step(run_body(DAG))
    plan, _ = step(body, [job_body("process")])
    assert plan.empty


def test_a_crash_before_the_status_write_reuses_the_job():
    """The Job exists (created) but the status does not name it: no second Job."""
    plan = decide(observe(run_body(DAG), [job_body("process")]), NOW)
    assert plan.create_jobs == ()
    assert plan.status_patch["tasks"]["process"]["job"] == job_name(RUN, "process", 1, 0)


def test_a_running_task_whose_job_is_missing_gets_it_created():
    _, body = step(run_body(DAG))
    plan, _ = step(body, [])
    assert [j.name for j in plan.create_jobs] == [job_name(RUN, "process", 1, 0)]
    assert not plan.status_patch


def test_the_dag_runs_in_order_and_collects_outputs():
    _, body = step(run_body(DAG))
    body = report(body, "process", "Succeeded", output={"status": "a"})
    plan, body = step(body, [job_body("process", condition=("Complete", "Completed"))])
    assert [j.task for j in plan.create_jobs] == ["process2"]
    assert body["status"]["output"] == {"process": {"status": "a"}}
    assert body["status"]["tasks"]["process"]["completionTime"]
    body = report(body, "process2", "Succeeded", output={"status2": "a2"})
    plan, body = step(body, [job_body("process", condition=("Complete", "Completed")), job_body("process2")])
    assert body["status"]["phase"] == "Succeeded"
    assert body["status"]["output"] == {"process": {"status": "a"}, "process2": {"status2": "a2"}}
    cond = body["status"]["conditions"][0]
    assert (cond["type"], cond["status"], cond["reason"]) == ("Succeeded", "True", "Succeeded")
    assert body["status"]["completionTime"] and body["status"]["taskProgress"] == "2/2"
    assert [e.reason for e in plan.events] == ["RunSucceeded"]
    assert plan.create_jobs == ()


def test_diamond_waits_for_all_parents():
    tasks = [task("a"), task("b", "a"), task("c", "a"), task("d", "b", "c")]
    _, body = step(run_body(tasks))
    body = report(body, "a", "Succeeded", output={})
    plan, body = step(body)
    assert sorted(j.task for j in plan.create_jobs) == ["b", "c"]
    body = report(body, "b", "Succeeded", output={})
    plan, body = step(body, [job_body("b"), job_body("c")])
    assert plan.create_jobs == ()
    body = report(body, "c", "Succeeded", output={})
    plan, body = step(body, [job_body("b"), job_body("c")])
    assert [j.task for j in plan.create_jobs] == ["d"]


def test_topological_order_and_cycles():
    specs = [TaskSpec(name="b", parents=("a",)), TaskSpec(name="a")]
    assert topological_order(specs) == ["a", "b"]
    assert topological_order([TaskSpec(name="a", parents=("b",)), TaskSpec(name="b", parents=("a",))]) is None


def test_a_cycle_fails_the_run_naming_the_field():
    plan, body = step(run_body([task("a", "b"), task("b", "a")]))
    assert body["status"]["phase"] == "Failed"
    assert "spec.tasks[].parents" in body["status"]["conditions"][0]["message"]


# --- retries -------------------------------------------------------------------------


def test_retries_back_off_exponentially_with_a_cap():
    tasks = [task("flaky", retries=3, backoff={"seconds": 2, "factor": 3, "maxSeconds": 10})]
    _, body = step(run_body(tasks))
    delays = []
    now = NOW
    for attempt in (1, 2, 3):
        body = report(body, "flaky", "Failed", error={"type": "ValueError", "message": "boom", "retryable": True})
        plan, body = step(body, now=now)
        entry = body["status"]["tasks"]["flaky"]
        assert entry["phase"] == "Pending" and entry["attempt"] == attempt + 1 and "job" not in entry
        assert [e.reason for e in plan.events] == ["TaskRetrying"]
        delays.append(plan.requeue_after)
        # Not before retryAt ...
        early, _ = step(body, now=now + (plan.requeue_after - 0.01) * timedelta(seconds=1))
        assert early.create_jobs == ()
        # ... and exactly at it.
        now = now + plan.requeue_after * timedelta(seconds=1)
        plan, body = step(body, now=now)
        assert [j.name for j in plan.create_jobs] == [job_name(RUN, "flaky", attempt + 1, 0)]
    assert delays == [2, 6, 10]
    body = report(body, "flaky", "Failed", error={"type": "ValueError", "message": "boom", "retryable": True})
    plan, body = step(body, now=now)
    assert body["status"]["phase"] == "Failed"
    assert body["status"]["tasks"]["flaky"]["attempt"] == 4
    assert "ValueError" in body["status"]["conditions"][0]["message"]
    assert body["status"]["conditions"][0]["reason"] == "ValueError"


def test_retry_timing_is_recomputed_from_status_after_a_restart():
    tasks = [task("flaky", retries=1, backoff={"seconds": 30})]
    _, body = step(run_body(tasks))
    body = report(body, "flaky", "Failed", error={"type": "E", "message": "x", "retryable": True})
    _, body = step(body)
    # A fresh operator 12s later only knows the status: it waits the remaining 18s.
    plan = decide(observe(body), at(12))
    assert plan.requeue_after == pytest.approx(18, abs=0.01)
    assert plan.empty


def test_a_non_retryable_error_fails_the_run_without_spending_retries():
    _, body = step(run_body([task("process", retries=5)]))
    body = report(body, "process", "Failed",
                  error={"type": "EntrypointError", "message": "no module named examples.nope", "retryable": False})
    plan, body = step(body)
    assert body["status"]["phase"] == "Failed"
    assert body["status"]["tasks"]["process"]["attempt"] == 1
    assert plan.create_jobs == ()
    cond = body["status"]["conditions"][0]
    assert cond["reason"] == "EntrypointError" and "examples.nope" in cond["message"]


def test_a_report_from_a_stale_job_is_ignored():
    _, body = step(run_body([task("t", retries=2)]))
    old_job = body["status"]["tasks"]["t"]["job"]
    body = report(body, "t", "Failed", error={"type": "E", "message": "x", "retryable": True})
    _, body = step(body)
    plan, body = step(body, now=at(5))  # attempt 2 starts
    assert body["status"]["tasks"]["t"]["job"] == job_name(RUN, "t", 2, 0)
    # The first attempt's pod reports late, claiming success.
    body = report(body, "t", "Succeeded", output={"late": True}, reportedJob=old_job)
    plan, body = step(body, [job_body("t", 2)], now=at(6))
    assert body["status"].get("output") is None
    assert body["status"]["phase"] == "Running"


def test_a_job_failed_without_report_is_pod_failed_and_retried():
    _, body = step(run_body([task("t", retries=1)]))
    pod = {"metadata": {"labels": {"job-name": job_name(RUN, "t", 1, 0)}},
           "status": {"phase": "Failed", "containerStatuses": [
               {"state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}}
    plan, body = step(body, [job_body("t", condition=("Failed", "BackoffLimitExceeded"))], pods=[pod])
    error = body["status"]["tasks"]["t"]["error"]
    assert error["type"] == "PodFailed"
    assert "exit code 137" in error["message"] and "OOMKilled" in error["message"]
    assert body["status"]["tasks"]["t"]["attempt"] == 2


def test_execution_timeout_is_reported_as_such():
    tasks = [task("slow", executionTimeout="2s")]
    _, body = step(run_body(tasks))
    plan, body = step(body, [job_body("slow", condition=("Failed", "DeadlineExceeded"))])
    assert body["status"]["tasks"]["slow"]["error"]["type"] == "ExecutionTimeout"
    assert body["status"]["phase"] == "Failed"
    assert body["status"]["conditions"][0]["reason"] == "ExecutionTimeout"


def test_a_pod_killed_at_its_deadline_is_an_execution_timeout():
    # The deadline is the pod's (counted from its start, not from the Job's):
    # the pod fails with reason DeadlineExceeded and the Job with BackoffLimitExceeded.
    tasks = [task("slow", executionTimeout="2s")]
    _, body = step(run_body(tasks))
    pod = {"metadata": {"labels": {"job-name": job_name(RUN, "slow", 1, 0)}},
           "status": {"phase": "Failed", "reason": "DeadlineExceeded", "containerStatuses": [
               {"state": {"terminated": {"exitCode": 137, "reason": "Error"}}}]}}
    _, body = step(body, [job_body("slow", condition=("Failed", "BackoffLimitExceeded"))], pods=[pod])
    error = body["status"]["tasks"]["slow"]["error"]
    assert error["type"] == "ExecutionTimeout"
    assert "executionTimeout 2s" in error["message"]


def test_schedule_timeout_fails_an_unstarted_pod_and_deletes_its_job():
    tasks = [task("t", scheduleTimeout="30s")]
    _, body = step(run_body(tasks))
    plan, _ = step(body, [job_body("t", created=NOW)], now=at(10))
    assert plan.requeue_after == pytest.approx(20, abs=0.01) and not plan.delete_jobs
    plan, body = step(body, [job_body("t", created=NOW)], now=at(30))
    assert body["status"]["tasks"]["t"]["error"]["type"] == "ScheduleTimeout"
    assert plan.delete_jobs == (job_name(RUN, "t", 1, 0),)


def test_a_started_pod_is_not_schedule_timed_out():
    tasks = [task("t", scheduleTimeout="30s")]
    _, body = step(run_body(tasks))
    pod = {"metadata": {"labels": {"job-name": job_name(RUN, "t", 1, 0)}}, "status": {"phase": "Running"}}
    plan, _ = step(body, [job_body("t", created=NOW)], now=at(60), pods=[pod])
    assert plan.empty
    plan, _ = step(body, [job_body("t", created=NOW, ready=1)], now=at(60))
    assert plan.empty


def test_a_job_complete_without_report_waits_a_grace_period_then_fails():
    _, body = step(run_body([task("t")]))
    done = job_body("t", condition=("Complete", "Completed"), finished_at=NOW)
    plan, _ = step(body, [done], now=at(1))
    assert plan.empty and plan.requeue_after == pytest.approx(REPORT_GRACE_SECONDS - 1)
    plan, body = step(body, [done], now=at(REPORT_GRACE_SECONDS))
    assert body["status"]["tasks"]["t"]["error"]["type"] == "PodFailed"


# --- failure, onFailure, cancellation --------------------------------------------------


def test_on_failure_task_runs_when_a_task_fails_for_good():
    tasks = [task("a"), task("b"), task("c", "a"), task("cleanup", onFailure=True)]
    plan, body = step(run_body(tasks))
    assert sorted(j.task for j in plan.create_jobs) == ["a", "b"]  # not the onFailure task
    body = report(body, "a", "Failed", error={"type": "E", "message": "x", "retryable": True})
    plan, body = step(body, [job_body("a"), job_body("b")])
    assert [j.task for j in plan.create_jobs] == ["cleanup"]
    assert body["status"]["tasks"]["b"]["phase"] == "Cancelled"  # the other branch stops
    assert body["status"]["tasks"]["c"]["phase"] == "Cancelled"  # never starts
    assert job_name(RUN, "b", 1, 0) in plan.delete_jobs
    assert body["status"]["phase"] == "Running"
    body = report(body, "cleanup", "Succeeded", output={"cleaned": True})
    plan, body = step(body, [job_body("cleanup")])
    assert body["status"]["phase"] == "Failed"
    assert body["status"]["output"]["cleanup"] == {"cleaned": True}
    assert "task a failed" in body["status"]["conditions"][0]["message"]


def test_on_failure_task_is_not_counted_when_it_never_runs():
    _, body = step(run_body([task("a"), task("cleanup", onFailure=True)]))
    body = report(body, "a", "Succeeded", output={})
    _, body = step(body)
    assert body["status"]["phase"] == "Succeeded"
    assert body["status"]["taskProgress"] == "1/1"
    assert "cleanup" not in body["status"]["tasks"]


def test_cancel_stops_jobs_marks_tasks_and_cancels_children():
    _, body = step(run_body(DAG))
    body["spec"]["cancel"] = True
    children = [ChildRun("c1", "Running"), ChildRun("c2", "Succeeded"), ChildRun("c3", "Running", cancel=True)]
    plan, body = step(body, [job_body("process")], children=children)
    assert body["status"]["phase"] == "Cancelled"
    assert body["status"]["tasks"]["process"]["phase"] == "Cancelled"
    assert body["status"]["tasks"]["process2"]["phase"] == "Cancelled"
    assert plan.delete_jobs == (job_name(RUN, "process", 1, 0),)
    assert plan.cancel_children == ("c1",)
    assert body["status"]["conditions"][0]["reason"] == "Cancelled"
    # Later: nothing more to do, except children that are not cancelled yet.
    plan, body = step(body, [job_body("process", condition=("Failed", "DeadlineExceeded"))],
                      children=[ChildRun("c1", "Cancelled", cancel=True)])
    assert plan.delete_jobs == () and plan.cancel_children == () and not plan.status_patch.get("phase")


def test_a_finished_run_deletes_a_job_left_running_by_a_crash():
    _, body = step(run_body([task("a")]))
    body = report(body, "a", "Succeeded", output={})
    _, body = step(body)
    leftover = job_body("a", 9)
    plan, _ = step(body, [job_body("a"), leftover])
    assert plan.delete_jobs == (leftover["metadata"]["name"],)


def test_a_job_of_an_earlier_run_with_the_same_name_is_not_ours():
    plan = decide(observe(run_body(DAG), [job_body("process", owner="old-uid")]), NOW)
    assert [j.task for j in plan.create_jobs] == ["process"]


def test_a_rejected_job_fails_the_task_without_retries():
    rejected = {job_name(RUN, "t", 1, 0): "spec.template.spec.containers[0].resources: Invalid value"}
    plan, body = step(run_body([task("t", retries=3)]), rejected=rejected)
    assert plan.create_jobs == ()
    assert body["status"]["tasks"]["t"]["error"]["type"] == "JobRejected"
    plan, body = step(body)
    assert body["status"]["phase"] == "Failed"


# --- children ------------------------------------------------------------------------------


def test_children_counts_are_written_only_when_they_change():
    children = [ChildRun("a", "Succeeded"), ChildRun("b", "Failed"), ChildRun("c", "Cancelled"),
                ChildRun("d", "Running"), ChildRun("e", "Pending")]
    assert child_counts(children) == {"total": 5, "succeeded": 1, "failed": 2, "running": 2}
    _, body = step(run_body(DAG))
    plan, body = step(body, [job_body("process")], children=children)
    assert plan.status_patch["children"] == {"total": 5, "succeeded": 1, "failed": 2, "running": 2}
    assert body["status"]["childProgress"] == "1/5"
    plan, body = step(body, [job_body("process")], children=children)
    assert plan.empty


def test_children_counts_are_kept_after_the_run_finished():
    _, body = step(run_body([task("a")]))
    body = report(body, "a", "Succeeded", output={})
    _, body = step(body)
    plan, body = step(body, children=[ChildRun("x", "Succeeded")])
    assert body["status"]["children"]["succeeded"] == 1


# --- stale data ----------------------------------------------------------------------------


def test_the_status_patch_is_decided_on_a_resource_version():
    """apply() sends the observed resourceVersion; a re-decide on the fresh run after a
    409 must not repeat a start that the other writer's change made moot."""
    _, body = step(run_body([task("a")]))
    body = report(body, "a", "Succeeded", output={"x": 1})  # the runner wrote in between
    plan, body = step(body, [job_body("a")])
    assert plan.create_jobs == ()
    assert body["status"]["phase"] == "Succeeded"


def test_durations():
    assert parse_duration("60s") == 60
    assert parse_duration("1h30m") == 5400
    assert parse_duration("250ms") == 0.25
    assert parse_duration("1.5m") == 90
    with pytest.raises(ValueError):
        parse_duration("5 minutes")


# --- durable tasks: resuming waits ------------------------------------------------------------------

from kinflow_operator.resource import ObservedEvent  # noqa: E402

DURABLE = [task("spawn", durable=True)]


def waiting(wait, **entry):
    """A run whose durable task `spawn` reported Waiting from its first Job."""
    _, body = step(run_body(DURABLE))
    return report(body, "spawn", "Waiting", wait=wait, **entry)


def test_a_waiting_task_is_resumed_when_all_its_children_finished_not_before():
    body = waiting({"children": ["c0", "c1"]})
    plan, body = step(body, children=[ChildRun("c0", "Succeeded"), ChildRun("c1", "Running")])
    assert plan.create_jobs == () and body["status"]["phase"] == "Waiting"
    plan, body = step(body, children=[ChildRun("c0", "Succeeded"), ChildRun("c1", "Failed")])
    assert [j.name for j in plan.create_jobs] == [job_name(RUN, "spawn", 1, 1)]
    entry = body["status"]["tasks"]["spawn"]
    assert entry["attempt"] == 1 and entry["resumes"] == 1  # no retry budget spent
    assert entry["phase"] == "Running" and "wait" not in entry
    assert [e.reason for e in plan.events] == ["TaskResumed"] and "2 children finished" in plan.events[0].message
    # deciding again (a restart, a duplicate event) creates nothing more
    again = decide(observe(body, [job_body("spawn", resume=1)],
                           children=[ChildRun("c0", "Succeeded"), ChildRun("c1", "Failed")]), NOW)
    assert again.create_jobs == () and "tasks" not in again.status_patch


def test_a_sleep_resumes_at_its_wake_time_exactly():
    body = waiting({"until": "2026-01-02T03:04:15.678Z"})  # NOW + 10 s
    plan, body = step(body)
    assert plan.create_jobs == () and plan.requeue_after == pytest.approx(10.0)
    plan, body = step(body, now=at(10))
    assert [j.name for j in plan.create_jobs] == [job_name(RUN, "spawn", 1, 1)]
    assert "its time came" in plan.events[0].message


def test_the_start_time_is_the_attempts_across_resumptions():
    body = waiting({"until": "2026-01-02T03:04:06.000Z"})
    started = body["status"]["tasks"]["spawn"]["startTime"]
    _, body = step(body, now=at(5))
    assert body["status"]["tasks"]["spawn"]["startTime"] == started


def sent(name, key, seconds, data=None, run=""):
    return ObservedEvent(name=name, key=key, data=data, created=at(seconds).replace(microsecond=0), run=run)


def test_an_event_sent_after_the_wait_began_is_delivered_and_resumes():
    body = waiting({"event": "approve", "eventSince": "2026-01-02T03:04:05.678Z", "eventId": "event0"})
    plan, body = step(body, events=(sent("e-old", "approve", -2, {"ok": False}),
                                    sent("e-other", "deny", 3, {"ok": False})))
    assert plan.create_jobs == ()  # one before the wait, one with another key
    plan, body = step(body, events=(sent("e-old", "approve", -2), sent("e1", "approve", 3, {"ok": True}),
                                    sent("e2", "approve", 4, {"ok": "later"})))
    entry = body["status"]["tasks"]["spawn"]
    assert entry["delivered"]["event0"]["data"] == {"ok": True} and entry["delivered"]["event0"]["event"] == "e1"
    assert [j.name for j in plan.create_jobs] == [job_name(RUN, "spawn", 1, 1)]


def test_an_event_in_the_same_second_as_the_wait_counts_as_after_it():
    body = waiting({"event": "k", "eventSince": "2026-01-02T03:04:05.900Z", "eventId": "event0"})
    plan, _ = step(body, events=(sent("e1", "k", 0.0),))  # creationTimestamp 03:04:05 (whole seconds)
    assert plan.create_jobs


def test_an_event_for_another_run_is_not_delivered():
    body = waiting({"event": "k", "eventSince": "2026-01-02T03:04:05.000Z", "eventId": "event0"})
    plan, _ = step(body, events=(sent("e1", "k", 1, run="someone-else"),))
    assert plan.create_jobs == ()
    plan, _ = step(body, events=(sent("e1", "k", 1, run=RUN),))
    assert plan.create_jobs


def test_an_event_wait_with_a_timeout_resumes_on_whichever_comes_first():
    body = waiting({"event": "k", "eventSince": "2026-01-02T03:04:05.000Z", "eventId": "event0",
                    "until": "2026-01-02T03:04:35.000Z"})
    plan, _ = step(body, now=at(29))
    assert plan.create_jobs == () and plan.requeue_after == pytest.approx(0.322)
    plan, body = step(body, now=at(30))
    assert plan.create_jobs and "delivered" not in body["status"]["tasks"]["spawn"]


def test_a_plain_parent_timed_out_with_unstarted_children_names_the_deadlock():
    tasks = [task("spawn", executionTimeout="10s")]
    _, body = step(run_body(tasks))
    stuck = [ChildRun("c0", "Running", parent_task="spawn", started=False),
             ChildRun("c1", "Pending", parent_task="spawn", started=False)]
    plan, body = step(body, [job_body("spawn", condition=("Failed", "DeadlineExceeded"))], children=stuck)
    error = body["status"]["tasks"]["spawn"]["error"]
    assert error["type"] == "ExecutionTimeout"
    assert "2 child run(s) whose pods could not start while it ran" in error["message"]
    assert "durable_task" in error["message"] and "holds the slot" in error["message"]
    assert body["status"]["phase"] == "Failed"


def test_a_timeout_with_children_that_ran_is_a_plain_timeout():
    tasks = [task("spawn", executionTimeout="10s")]
    _, body = step(run_body(tasks))
    ran = [ChildRun("c0", "Running", parent_task="spawn", started=True)]
    _, body = step(body, [job_body("spawn", condition=("Failed", "DeadlineExceeded"))], children=ran)
    assert "deadlock" not in body["status"]["tasks"]["spawn"]["error"]["message"]


def test_a_child_that_cannot_start_says_its_parent_may_hold_the_slot():
    tasks = [task("work", scheduleTimeout="5s")]
    _, body = step(run_body(tasks, labels={"kinflow.io/parent": "p1"}))
    _, body = step(body, [job_body("work")], now=at(6))
    message = body["status"]["tasks"]["work"]["error"]["message"]
    assert "parent run p1" in message and "durable task" in message


def test_a_child_that_got_the_slot_only_when_the_parent_was_killed_counts_as_starved():
    tasks = [task("spawn", executionTimeout="10s")]
    _, body = step(run_body(tasks))
    late = [ChildRun("c0", "Running", parent_task="spawn", started=True, started_at=at(10))]
    _, body = step(body, [job_body("spawn", condition=("Failed", "DeadlineExceeded"), finished_at=at(10))],
                   children=late, now=at(11))
    message = body["status"]["tasks"]["spawn"]["error"]["message"]
    assert "1 child run(s) whose pods could not start while it ran" in message


def test_the_job_of_an_earlier_execution_is_not_deleted_before_it_completes():
    body = waiting({"children": ["c0"]})
    _, body = step(body, children=[ChildRun("c0", "Succeeded")])
    # The first Job's pod exited but the Job controller has not marked it Complete yet.
    plan, _ = step(body, [job_body("spawn"), job_body("spawn", resume=1)], children=[ChildRun("c0", "Succeeded")])
    assert plan.delete_jobs == ()


def test_children_that_ran_only_after_the_parent_was_killed_count_even_when_finished():
    tasks = [task("spawn", executionTimeout="10s")]
    _, body = step(run_body(tasks))
    kids = [ChildRun("c0", "Succeeded", parent_task="spawn", started=True, started_at=at(10)),
            ChildRun("c1", "Succeeded", parent_task="spawn", started=True, started_at=at(2))]
    _, body = step(body, [job_body("spawn", condition=("Failed", "DeadlineExceeded"), finished_at=at(10))],
                   children=kids, now=at(11))
    assert "1 child run(s) whose pods could not start" in body["status"]["tasks"]["spawn"]["error"]["message"]
