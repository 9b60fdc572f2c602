"""`python -m kinflow.runner` (run in-process): success, typed parents, and every error report."""

from __future__ import annotations

import pytest

from kinflow import _constants as C
from kinflow import _execution, runner

from .conftest import NAMESPACE

WF = "tests.unit.sdk.runner_workflows"


@pytest.fixture
def run_task(fake, kubeconfig, monkeypatch):
    """Store a run, point the runner's env at it, run main(); returns (exit code, task entry)."""

    def run(entrypoint: str, task: str, input=None, tasks_status=None, metadata=None):
        name = f"run-{len(fake.objects)}"
        fake.put({
            "apiVersion": C.API_VERSION, "kind": C.KIND,
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"workflow": "W", "entrypoint": entrypoint, "input": input, "tasks": [{"name": task}],
                     "metadata": metadata or {}},
        })
        if tasks_status:
            fake.set_status(NAMESPACE, name, {"tasks": tasks_status})
        for key, value in {C.ENV_RUN: name, C.ENV_NAMESPACE: NAMESPACE, C.ENV_TASK: task,
                           C.ENV_ATTEMPT: "2", C.ENV_JOB: f"{name}-job"}.items():
            monkeypatch.setenv(key, value)
        try:
            code = runner.main()
        finally:
            _execution._process_execution = None
            _execution._current.set(None)
        return code, fake.get(NAMESPACE, name)["status"]["tasks"][task]

    return run


def test_success_writes_output_and_reported_job(run_task, fake):
    code, entry = run_task(f"{WF}:dag", "first", {"a": "7"})
    assert code == 0
    assert entry["phase"] == "Succeeded" and entry["output"] == {"status": "7"}
    assert entry["reportedJob"].endswith("-job")
    assert "error" not in entry
    # one GET and one status PATCH: nothing else
    assert [m for _, m, _ in fake.requests] == ["GET", "PATCH"]
    assert fake.requests[1][2].endswith("/status")


def test_async_task_reads_typed_parent_output_and_context(run_task):
    code, entry = run_task(f"{WF}:dag", "second", {"a": "7"},
                           tasks_status={"first": {"phase": "Succeeded", "output": {"status": "7"}}},
                           metadata={"hello": "earth"})
    assert code == 0, entry
    assert entry["output"]["status2"] == "72"
    assert entry["output"]["attempt"] == 2 and entry["output"]["meta"] == {"hello": "earth"}


def test_the_runner_writes_only_its_own_task_entry(run_task, fake):
    code, entry = run_task(f"{WF}:dag", "second", {"a": "1"},
                           tasks_status={"first": {"phase": "Succeeded", "output": {"status": "1"}, "attempt": 1}})
    status = fake.get(NAMESPACE, "run-0")["status"]
    assert status["tasks"]["first"] == {"phase": "Succeeded", "output": {"status": "1"}, "attempt": 1}
    assert set(status) == {"tasks"}
    assert set(entry) <= {"phase", "output", "error", "wait", "reportedJob"}


def test_user_exception_is_retryable_with_type_message_traceback(run_task):
    code, entry = run_task(f"{WF}:boom", "boom", {"a": "q"})
    assert code == 0
    error = entry["error"]
    assert entry["phase"] == "Failed" and "output" not in entry
    assert error["type"] == "ValueError" and error["message"] == "bad q"
    assert error["retryable"] is True
    assert "runner_workflows.py" in error["traceback"] and "raise ValueError" in error["traceback"]


@pytest.mark.parametrize(
    "entrypoint, task, input, error_type, message",
    [
        ("no_such_module:wf", "t", {}, "EntrypointError", "module 'no_such_module' not found"),
        (f"{WF}:nope", "t", {}, "EntrypointError", "has no attribute 'nope'; its workflows are: boom, dag, huge"),
        (f"{WF}:not_a_workflow", "t", {}, "EntrypointError", "is a int, not a kinflow workflow"),
        ("no-colon", "t", {}, "EntrypointError", "not of the form 'package.module:attribute'"),
        (f"{WF}:dag", "third", {"a": "1"}, "UnknownTask", "has no task 'third'; its tasks are: first, second"),
        (f"{WF}:dag", "first", {"b": 1}, "InputValidationError", "does not match In"),
        (f"{WF}:huge", "huge", {}, "OutputTooLarge", f"over the limit of {C.MAX_OUTPUT_BYTES} bytes"),
    ],
)
def test_config_errors_are_not_retryable(run_task, entrypoint, task, input, error_type, message):
    code, entry = run_task(entrypoint, task, input)
    assert code == 0
    assert entry["phase"] == "Failed"
    assert entry["error"]["type"] == error_type
    assert entry["error"]["retryable"] is False
    assert message in entry["error"]["message"]


def test_output_limit_counts_the_runs_other_outputs(run_task):
    big = {"blob": "y" * (C.MAX_OUTPUT_BYTES - 100)}
    code, entry = run_task(f"{WF}:dag", "second", {"a": "1"},
                           tasks_status={"first": {"phase": "Succeeded", "output": {"status": "1"}},
                                         "other": {"phase": "Succeeded", "output": big}})
    assert entry["error"]["type"] == "OutputTooLarge"


def test_missing_env_and_missing_run(fake, kubeconfig, monkeypatch):
    monkeypatch.delenv(C.ENV_RUN, raising=False)
    assert runner.main() == 2
    for key, value in {C.ENV_RUN: "ghost", C.ENV_NAMESPACE: NAMESPACE, C.ENV_TASK: "t"}.items():
        monkeypatch.setenv(key, value)
    assert runner.main() == 1  # nothing to report to


def test_report_retries_transient_errors(run_task, fake):
    fake.fail_next.append(("PATCH", 500))
    code, entry = run_task(f"{WF}:dag", "first", {"a": "1"})
    assert code == 0 and entry["phase"] == "Succeeded"
