"""Exceptions kinflow raises, in the user's code and in the runner.

Every exception carries `retryable`: the runner copies it into the task's
error report, and the operator retries only retryable failures. Mistakes a
retry cannot fix (a wrong entrypoint, input that does not validate, an output
over the limit, a replay that diverged) are not retryable.

This module imports nothing heavy: the runner needs it before the first request.
"""

from __future__ import annotations


class KinflowError(Exception):
    """Base class of kinflow's own errors."""

    retryable = True


# --- errors in the task's configuration: reported with retryable=false --------------


class ConfigError(KinflowError):
    """A mistake in the workflow, its entrypoint or its input: retrying cannot fix it."""

    retryable = False


class EntrypointError(ConfigError):
    """The run's `spec.entrypoint` ("module:attribute") does not import or is not a workflow."""


class UnknownTask(ConfigError):
    """The task the Job was started for is not defined by the workflow."""


class InputValidationError(ConfigError):
    """The run's input does not satisfy the workflow's `input_validator`."""


class OutputTooLarge(ConfigError):
    """The task's output would push the run's outputs over MAX_OUTPUT_BYTES."""


class CheckpointTooLarge(ConfigError):
    """A durable task's checkpoints (memo values) would exceed MAX_CHECKPOINT_BYTES."""


class NonDeterminismError(ConfigError):
    """A replayed task spawned something different under a spawn key it used before."""


# --- spawning and joining children -----------------------------------------------------


class SpawnConflictError(KinflowError):
    """A run with the child's name exists but belongs to someone else: it is never adopted."""


class ChildWorkflowError(KinflowError):
    """A child run failed; raised in the parent where it waits for the child.

    Hatchet's pattern `try: child.run(...) except Exception as e:` catches it.
    """

    def __init__(
        self,
        run_name: str,
        workflow: str | None = None,
        task: str | None = None,
        error_type: str | None = None,
        error_message: str | None = None,
        traceback: str | None = None,
    ) -> None:
        self.run_name = run_name
        self.workflow = workflow
        self.task = task
        self.error_type = error_type
        self.error_message = error_message
        self.traceback = traceback
        super().__init__(self._describe())

    def _describe(self) -> str:
        where = f"child run {self.run_name!r}"
        if self.workflow:
            where += f" (workflow {self.workflow!r})"
        if self.task:
            where += f" failed in task {self.task!r}"
        else:
            where += " failed"
        what = ": ".join(part for part in (self.error_type, self.error_message) if part)
        return f"{where}: {what}" if what else where

    def __reduce__(self):  # keep it picklable (multiprocessing, concurrent.futures)
        return (
            type(self),
            (self.run_name, self.workflow, self.task, self.error_type, self.error_message, self.traceback),
        )


class ChildCancelledError(ChildWorkflowError):
    """A child run was cancelled (its own cancel, or its subtree's)."""

    def _describe(self) -> str:
        where = f"child run {self.run_name!r}"
        if self.workflow:
            where += f" (workflow {self.workflow!r})"
        return f"{where} was cancelled" + (f": {self.error_message}" if self.error_message else "")


# --- the Kubernetes API ----------------------------------------------------------------


class ApiError(KinflowError):
    """The API server answered with an error (or could not be reached: status 0)."""

    def __init__(self, status: int, reason: str = "", message: str = "", method: str = "", path: str = ""):
        self.status = status
        self.reason = reason
        self.message = message
        self.method = method
        self.path = path
        text = f"{method} {path}: {status} {reason}".strip()
        super().__init__(f"{text}: {message}" if message else text)

    def __reduce__(self):
        return (type(self), (self.status, self.reason, self.message, self.method, self.path))


class NotFound(ApiError):
    """404."""


class AlreadyExists(ApiError):
    """409 with reason AlreadyExists (a create raced or was repeated)."""


class Conflict(ApiError):
    """409 for a stale resourceVersion."""


class Gone(ApiError):
    """410: the resourceVersion a watch wanted to resume from is compacted away; list again."""


class Unauthorized(ApiError):
    """401."""


class Forbidden(ApiError):
    """403: RBAC does not allow it; the message says which verb and resource."""


_BY_STATUS = {401: Unauthorized, 403: Forbidden, 404: NotFound, 410: Gone}


def api_error(status: int, reason: str, message: str, method: str = "", path: str = "") -> ApiError:
    """The ApiError subclass that fits an HTTP status and the API's `reason`."""
    if status == 409:
        cls = AlreadyExists if reason == "AlreadyExists" else Conflict
    else:
        cls = _BY_STATUS.get(status, ApiError)
    return cls(status, reason, message, method, path)
