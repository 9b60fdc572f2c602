"""The task execution in progress: which run and task this process is executing.

Spawning needs it (a child's name, owner and labels come from its parent), and
durable tasks will need it (replay counters, recorded waits). The runner sets it
once per process; a context variable lets tests and future in-process runners
hold several at once, and the process-wide fallback covers threads the user
starts themselves (context variables do not cross into plain threads).
"""

from __future__ import annotations

import contextvars
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._api import ApiClient


@dataclass
class TaskExecution:
    """One attempt of one task of one run, as the runner started it."""

    api: "ApiClient"
    run: dict  # the WorkflowRun as read at start
    task: str
    attempt: int = 1
    resume: int = 0
    job: str | None = None
    _next_index: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # What the task waits for (children, a sleep, an event): durable tasks record it
    # in their task entry and exit; plain tasks just keep their pod while waiting.
    waits: list[dict[str, Any]] = field(default_factory=list)
    # A durable task's replay state (kinflow.durable.DurableState); None for plain tasks.
    durable: Any = None

    @property
    def name(self) -> str:
        """The run's name."""
        return self.run["metadata"]["name"]

    @property
    def namespace(self) -> str:
        """The run's namespace (children are created there: owners must be in-namespace)."""
        return self.run["metadata"]["namespace"]

    @property
    def uid(self) -> str:
        """The run's UID, the controller owner of every child it spawns."""
        return self.run["metadata"]["uid"]

    @property
    def root(self) -> str:
        """The name of the root run of this tree."""
        from ._constants import LABEL_ROOT

        return (self.run["metadata"].get("labels") or {}).get(LABEL_ROOT) or self.name

    @property
    def spec(self) -> dict:
        """The run's spec."""
        return self.run.get("spec") or {}

    def next_call_index(self) -> int:
        """The spawn key of the next un-keyed spawn: the call's index in this execution."""
        with self._lock:
            index = self._next_index
            self._next_index += 1
        return index

    def record_wait(self, **what: Any) -> None:
        """Remember something the task waits for (durable tasks report it on exit)."""
        with self._lock:
            self.waits.append(what)


_current: contextvars.ContextVar[TaskExecution | None] = contextvars.ContextVar(
    "kinflow_task_execution", default=None
)
_process_execution: TaskExecution | None = None


def current_execution() -> TaskExecution | None:
    """The task execution this code runs in, or None outside a task (a laptop, CI)."""
    return _current.get() or _process_execution


def set_execution(execution: TaskExecution | None, process_wide: bool = False) -> contextvars.Token:
    """Make `execution` current (for this context; also process-wide for the runner)."""
    global _process_execution
    if process_wide:
        _process_execution = execution
    return _current.set(execution)


def reset_execution(token: contextvars.Token) -> None:
    """Undo set_execution (tests)."""
    global _process_execution
    _current.reset(token)
    _process_execution = None
