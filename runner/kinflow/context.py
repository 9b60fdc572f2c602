"""`Context`, the second argument of every task function (Hatchet's names).

It reads from the run as the runner fetched it at start: the parents' outputs
are final by then (a task starts only after its parents succeeded), so no
extra API request is needed.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ._execution import TaskExecution

if TYPE_CHECKING:
    from .workflow import Task, Workflow


class _TaskLogAdapter(logging.LoggerAdapter):
    """Prefixes every line with the run and task, so interleaved pod logs stay readable."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"[{self.extra['run']}/{self.extra['task']}] {msg}", kwargs


class Context:
    """What a running task can know about its run, and its parents' outputs."""

    def __init__(self, execution: TaskExecution, workflow: "Workflow | None" = None) -> None:
        self._execution = execution
        self._workflow = workflow
        self.logger: logging.LoggerAdapter = _TaskLogAdapter(
            logging.getLogger("kinflow.task"), {"run": execution.name, "task": execution.task}
        )

    # -- identity --

    @property
    def workflow_run_id(self) -> str:
        """The run's name (Hatchet's workflow run id)."""
        return self._execution.name

    @property
    def run_name(self) -> str:
        """The run's name."""
        return self._execution.name

    @property
    def namespace(self) -> str:
        """The run's namespace."""
        return self._execution.namespace

    @property
    def workflow_name(self) -> str | None:
        """The logical workflow name (spec.workflow)."""
        return self._execution.spec.get("workflow")

    @property
    def task_name(self) -> str:
        """The name of the running task."""
        return self._execution.task

    @property
    def attempt_number(self) -> int:
        """The attempt of this task, starting at 1."""
        return self._execution.attempt

    @property
    def retry_count(self) -> int:
        """How many times this task was retried before this attempt."""
        return max(0, self._execution.attempt - 1)

    @property
    def additional_metadata(self) -> dict[str, Any]:
        """The metadata the run was started with (spec.metadata)."""
        return dict(self._execution.spec.get("metadata") or {})

    @property
    def workflow_input(self) -> Any:
        """The run's raw input JSON (the task function gets it validated)."""
        return self._execution.spec.get("input")

    # -- parents --

    def _tasks_status(self) -> dict[str, Any]:
        return (self._execution.run.get("status") or {}).get("tasks") or {}

    def task_output(self, task: "Task | Workflow | str") -> Any:
        """A parent task's output, as its return annotation's pydantic model when it has one."""
        from .workflow import Standalone

        if isinstance(task, Standalone):
            task = task.task_def
        name = task if isinstance(task, str) else task.name
        entry = self._tasks_status().get(name)
        if entry is None or "output" not in entry:
            raise ValueError(
                f"task {name!r} has no output in run {self.run_name!r}: "
                f"is it a parent of {self.task_name!r}, declared with parents=[...]?"
            )
        output = entry["output"]
        model = None if isinstance(task, str) else task.output_type
        if model is None and isinstance(task, str) and self._workflow is not None:
            known = self._workflow.tasks.get(name)
            model = known.output_type if known is not None else None
        return model.model_validate(output) if model is not None and output is not None else output

    @property
    def task_run_errors(self) -> dict[str, str]:
        """Failed tasks of this run and their error messages (for on-failure tasks)."""
        errors = {}
        for name, entry in self._tasks_status().items():
            error = entry.get("error")
            if error and entry.get("phase") == "Failed":
                errors[name] = f"{error.get('type')}: {error.get('message')}"
        return errors

    def fetch_task_run_error(self, task: "Task | str") -> str | None:
        """One failed task's error message, or None."""
        return self.task_run_errors.get(task if isinstance(task, str) else task.name)

    # -- logging --

    def log(self, line: Any) -> None:
        """Write a line to the task's log, tagged with run and task."""
        self.logger.info("%s", line)
