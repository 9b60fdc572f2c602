"""`python -m kinflow.runner`: run one attempt of one task, in its pod, and report it.

1. Read KINFLOW_* from the environment and GET the run (the first request:
   nothing heavy is imported before it, so a pod starts working fast).
2. Import the entrypoint, find the task, validate the input.
3. Run the task function (sync, or async in a fresh event loop).
4. Write ONE merge patch on the run's status subresource, on this task's entry
   only: phase, output or error, and reportedJob (the operator ignores reports
   from Jobs that are no longer current).

Exit 0 once reported, also when the task failed: the report is the truth.
Exit 1 only when nothing could be reported.
"""

from __future__ import annotations

import json
import os
import sys
import time

from . import _constants as C
from ._api import ApiClient, run_path
from .errors import (
    ApiError,
    EntrypointError,
    InputValidationError,
    NotFound,
    OutputTooLarge,
    UnknownTask,
)

MAX_MESSAGE_CHARS = 4000
MAX_TRACEBACK_CHARS = 8000


def _say(text: str) -> None:
    print(f"kinflow-runner: {text}", file=sys.stderr, flush=True)


# --- steps (each testable alone) -------------------------------------------------------


def resolve_task(run: dict, task_name: str):
    """Import the run's entrypoint and return (workflow, task), or raise a config error."""
    from ._entrypoint import load_entrypoint

    spec = run.get("spec") or {}
    entrypoint = spec.get("entrypoint")
    if not entrypoint:
        raise EntrypointError(f"run {run['metadata']['name']!r} has no spec.entrypoint ('module:attribute')")
    workflow = load_entrypoint(entrypoint)
    task = workflow.tasks.get(task_name)
    if task is None:
        raise UnknownTask(
            f"workflow {workflow.name!r} (entrypoint {entrypoint!r}) has no task {task_name!r}; "
            f"its tasks are: {', '.join(workflow.tasks) or 'none'}. "
            "Does spec.tasks match the code in the image?"
        )
    return workflow, task


def validate_input(workflow, raw: object):
    """The run's input as the workflow's input model (EmptyModel when it declares none)."""
    model = workflow.input_validator
    if model is None:
        from ._models import EmptyModel

        model = EmptyModel
    try:
        return model.model_validate(raw if raw is not None else {})
    except Exception as exc:  # pydantic.ValidationError, without importing pydantic here
        raise InputValidationError(
            f"input of run for workflow {workflow.name!r} does not match {model.__name__}: {exc}"
        ) from exc


def _json_default(value: object) -> object:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    import dataclasses
    import datetime
    import enum

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"task output contains a {type(value).__name__}, which is not JSON serialisable")


def serialise_output(output: object) -> object:
    """The task's return value as plain JSON (pydantic models via model_dump(mode="json"))."""
    if output is None:
        return None
    return json.loads(json.dumps(output, default=_json_default, ensure_ascii=False))


def check_output_size(run: dict, task_name: str, output: object, limit: int = C.MAX_OUTPUT_BYTES) -> None:
    """Raise OutputTooLarge if all of the run's outputs with this one exceed the limit."""
    outputs = {
        name: entry["output"]
        for name, entry in ((run.get("status") or {}).get("tasks") or {}).items()
        if name != task_name and entry.get("output") is not None
    }
    outputs[task_name] = output
    total = len(json.dumps(outputs, separators=(",", ":"), ensure_ascii=False).encode())
    if total > limit:
        own = len(json.dumps(output, separators=(",", ":"), ensure_ascii=False).encode())
        raise OutputTooLarge(
            f"output of task {task_name!r} is {own} bytes; with the run's other outputs it is {total} "
            f"bytes, over the limit of {limit} bytes (MAX_OUTPUT_BYTES, {limit // 1024} KiB). "
            "Return less: e.g. a summary, or a reference to data kept elsewhere."
        )


def execute(execution) -> object:
    """Run the task of `execution` and return its serialised output (raises on failure)."""
    import asyncio

    from ._execution import set_execution
    from .context import Context

    workflow, task = resolve_task(execution.run, execution.task)
    input = validate_input(workflow, (execution.run.get("spec") or {}).get("input"))
    set_execution(execution, process_wide=True)
    if task.durable:  # raises durable.Suspend when it must wait (main() reports Waiting)
        from .durable import DurableContext, DurableState

        execution.durable = state = DurableState(execution)
        ctx = DurableContext(execution, workflow)
        result = asyncio.run(state.drive(task.fn(input, ctx))) if task.is_async else task.fn(input, ctx)
    else:
        ctx = Context(execution, workflow)
        result = asyncio.run(task.fn(input, ctx)) if task.is_async else task.fn(input, ctx)
    output = serialise_output(result)
    check_output_size(execution.run, execution.task, output)
    return output


def waiting_report(execution) -> dict:
    """The entry of a durable task that suspends: what it waits for and its checkpoints."""
    from .errors import CheckpointTooLarge

    state = execution.durable
    if not state.waiting:
        raise RuntimeError("the durable task suspended without waiting for anything (a kinflow bug)")
    checkpoints = state.all_checkpoints()
    size = len(json.dumps(checkpoints, separators=(",", ":"), ensure_ascii=False).encode())
    if size > C.MAX_CHECKPOINT_BYTES:
        raise CheckpointTooLarge(
            f"the checkpoints of task {execution.task!r} (memo values, times) are {size} bytes, over the "
            f"limit of {C.MAX_CHECKPOINT_BYTES} bytes (MAX_CHECKPOINT_BYTES). Memoise less: e.g. a summary."
        )
    return {"phase": "Waiting", "output": None, "wait": state.wait_entry(), "checkpoints": checkpoints}


def error_report(exc: BaseException) -> dict:
    """The `error` entry for an exception: type, message, traceback, retryable."""
    import traceback

    trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    message = str(exc) or repr(exc)
    return {
        "type": type(exc).__name__,
        "message": message[:MAX_MESSAGE_CHARS],
        "traceback": trace[-MAX_TRACEBACK_CHARS:],
        "retryable": bool(getattr(exc, "retryable", True)),
    }


def report(api: ApiClient, namespace: str, run: str, task: str, entry: dict, tries: int = 5) -> bool:
    """Merge-patch this task's entry of the run's status; False if it could not."""
    patch = {"status": {"tasks": {task: entry}}}
    for attempt in range(tries):
        try:
            api.merge_patch(run_path(namespace, run, "status"), patch)
            return True
        except NotFound:
            _say(f"run {namespace}/{run} is gone; nothing to report to")
            return False
        except (ApiError, OSError) as exc:
            _say(f"reporting failed ({exc}); attempt {attempt + 1} of {tries}")
            time.sleep(min(5.0, 0.5 * 2**attempt))
    return False


# --- main ------------------------------------------------------------------------------


def main() -> int:
    """Run the task named by the environment; the exit code says whether it was reported."""
    env = os.environ
    missing = [k for k in (C.ENV_RUN, C.ENV_NAMESPACE, C.ENV_TASK) if not env.get(k)]
    if missing:
        _say(f"missing environment: {', '.join(missing)} (the operator sets them on the Job)")
        return 2
    name, namespace, task_name = env[C.ENV_RUN], env[C.ENV_NAMESPACE], env[C.ENV_TASK]
    job = env.get(C.ENV_JOB)
    try:
        api = ApiClient()
        run = api.get(run_path(namespace, name))
    except Exception as exc:
        _say(f"cannot read run {namespace}/{name}: {exc}")
        return 1

    import logging

    logging.basicConfig(
        level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from ._execution import TaskExecution

    execution = TaskExecution(
        api=api,
        run=run,
        task=task_name,
        attempt=int(env.get(C.ENV_ATTEMPT) or 1),
        resume=int(env.get(C.ENV_RESUME) or 0),
        job=job,
    )
    from .durable import Suspend

    try:
        try:
            output = execute(execution)
            entry = {"phase": "Succeeded", "output": output, "error": None, "wait": None}
            _say(f"task {task_name!r} of run {name!r} succeeded")
        except Suspend:
            entry = waiting_report(execution)
            _say(f"task {task_name!r} of run {name!r} waits for {json.dumps(entry['wait'])}; "
                 "giving the pod back")
    except BaseException as exc:  # everything, also SystemExit from user code, is reported
        entry = {"phase": "Failed", "output": None, "error": error_report(exc), "wait": None}
        _say(f"task {task_name!r} of run {name!r} failed: {entry['error']['type']}: {entry['error']['message']}")
        if isinstance(exc, KeyboardInterrupt):
            entry["error"]["retryable"] = True
    entry["reportedJob"] = job
    return 0 if report(api, namespace, name, task_name, entry) else 1


if __name__ == "__main__":
    sys.exit(main())
