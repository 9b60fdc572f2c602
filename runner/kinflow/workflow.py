"""Workflows, tasks and standalone tasks, and how to run them (from a pod or a laptop).

The same call works in both places. Inside a task (the runner set a
TaskExecution) `child_wf.run(input)` spawns a child of the running task: a
deterministic name, owned by the parent, watched through the parent's single
children watch. Outside (no execution) it creates a root run in the client's
namespace and watches that.

Every blocking method has an `aio_` twin. The spawn key of an un-keyed call is
taken when the method is *called* (not when a coroutine first runs), so
`asyncio.gather(wf.aio_run(a), wf.aio_run(b))` and list comprehensions number
their children in call order, the same on every attempt.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import secrets
import warnings
from concurrent.futures import Future, as_completed
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Sequence

from . import _constants as C
from ._execution import TaskExecution, current_execution
from ._names import dns_label
from ._entrypoint import find_entrypoint
from .spawn import build_child, build_root, spawn_many
from .wait import children_watcher, roots_watcher, run_error, run_outputs, run_watcher

if TYPE_CHECKING:
    from ._api import ApiClient
    from .client import Kinflow

TASK_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,62}$")
DURATION = re.compile(r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$")


def duration(value: str | int | float | timedelta | None, default: str) -> str:
    """A timeout as the spec spells it ("90s", "5m"); accepts timedelta, seconds or a string."""
    if value is None:
        return default
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, (int, float)):
        return f"{int(value)}s" if float(value).is_integer() else f"{int(value * 1000)}ms"
    if not DURATION.match(value):
        raise ValueError(f"invalid duration {value!r}: use e.g. '90s', '5m', '1h30m' or a timedelta")
    return value


def _warn_unsupported(where: str, options: dict[str, Any]) -> None:
    used = sorted(k for k, v in options.items() if v not in (None, [], {}, ()))
    if used:
        warnings.warn(f"kinflow ignores these Hatchet options of {where}: {', '.join(used)}", stacklevel=3)


# --- options and batch items (Hatchet's names) -------------------------------------------


@dataclass
class TriggerWorkflowOptions:
    """How to start a run: spawn key, additional metadata (Hatchet's TriggerWorkflowOptions)."""

    additional_metadata: dict[str, Any] | None = None
    key: str | None = None
    child_key: str | None = None  # Hatchet's older name for key
    namespace: str | None = None  # root runs only; children live in their parent's namespace
    input: Any = None  # Hatchet v0 style create_bulk_run_item(options=TriggerWorkflowOptions(input=...))
    # Accepted for Hatchet compatibility, without effect on Kubernetes:
    parent_id: str | None = None
    parent_step_run_id: str | None = None
    child_index: int | None = None
    sticky: bool = False
    priority: int | None = None
    desired_worker_id: str | None = None

    @property
    def spawn_key(self) -> str | None:
        """The caller's key, if any."""
        key = self.key if self.key is not None else self.child_key
        return None if key is None else str(key)


@dataclass
class BulkRunItem:
    """One entry of run_many: an input and its options."""

    input: Any = None
    options: TriggerWorkflowOptions = field(default_factory=TriggerWorkflowOptions)


# --- tasks -------------------------------------------------------------------------------


class Task:
    """A function of a workflow: `fn(input, ctx)`, sync or async, and its scheduling options."""

    def __init__(
        self,
        fn: Callable,
        workflow: "Workflow",
        name: str | None = None,
        parents: Sequence["Task | str"] = (),
        execution_timeout: Any = None,
        schedule_timeout: Any = None,
        retries: int = 0,
        backoff_factor: float | None = None,
        backoff_max_seconds: int | None = None,
        on_failure: bool = False,
        durable: bool = False,
    ) -> None:
        self.fn = fn
        self.workflow = workflow
        self.name = name or fn.__name__
        if not TASK_NAME.match(self.name):
            raise ValueError(f"invalid task name {self.name!r}: it must match {TASK_NAME.pattern}")
        self.parents = [p if isinstance(p, str) else p.name for p in parents]
        self.execution_timeout = duration(execution_timeout, C.DEFAULT_EXECUTION_TIMEOUT)
        self.schedule_timeout = duration(schedule_timeout, C.DEFAULT_SCHEDULE_TIMEOUT)
        self.retries = int(retries)
        self.backoff_factor = backoff_factor
        self.backoff_max_seconds = backoff_max_seconds
        self.on_failure = on_failure
        self.durable = durable
        self.is_async = inspect.iscoroutinefunction(fn)
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    def __call__(self, input: Any, ctx: Any) -> Any:
        """Call the function directly (tests, or reuse from other code)."""
        return self.fn(input, ctx)

    def __repr__(self) -> str:
        return f"<Task {self.workflow.name}.{self.name}>"

    @property
    def output_type(self) -> type | None:
        """The pydantic model the function is annotated to return, if any."""
        import typing

        try:
            hint = typing.get_type_hints(self.fn).get("return")
        except Exception:  # unresolvable annotations: treat the output as plain JSON
            return None
        return hint if isinstance(hint, type) and hasattr(hint, "model_validate") else None

    def spec(self) -> dict[str, Any]:
        """This task's entry in `spec.tasks`."""
        entry: dict[str, Any] = {
            "name": self.name,
            "parents": list(self.parents),
            "durable": self.durable,
            "retries": self.retries,
            "executionTimeout": self.execution_timeout,
            "scheduleTimeout": self.schedule_timeout,
        }
        if self.backoff_factor is not None or self.backoff_max_seconds is not None:
            entry["backoff"] = {
                "seconds": 1,
                "factor": self.backoff_factor if self.backoff_factor is not None else 2,
                "maxSeconds": self.backoff_max_seconds if self.backoff_max_seconds is not None else 60,
            }
        if self.on_failure:
            entry["onFailure"] = True
        return entry


# --- references to started runs ------------------------------------------------------------


class WorkflowRunRef:
    """A started run: its name now, its result later."""

    def __init__(self, workflow: "Workflow", api: "ApiClient", run: dict, parent: str | None, batch: bool = False,
                 execution: TaskExecution | None = None):
        self.workflow = workflow
        self._execution = execution
        self.api = api
        self.run = run
        self.name: str = run["metadata"]["name"]
        self.namespace: str = run["metadata"]["namespace"]
        self._parent = parent
        self._batch = batch
        self._future: Future | None = None

    @property
    def workflow_run_id(self) -> str:
        """The run's name (Hatchet calls it the workflow run id)."""
        return self.name

    def __repr__(self) -> str:
        return f"<WorkflowRunRef {self.namespace}/{self.name}>"

    def future(self) -> Future:
        """A future for the finished run object (starts or joins the right watch)."""
        if self._future is None:
            if self._parent:
                watcher = children_watcher(self.api, self.namespace, self._parent)
            elif self._batch:
                watcher = roots_watcher(self.api, self.namespace)
            else:
                watcher = run_watcher(self.api, self.namespace, self.name)
            self._future = watcher.future(self.name)
        return self._future

    @property
    def _durable(self):
        """The durable state when spawned by a durable task (it suspends instead of watching)."""
        return self._execution.durable if self._execution is not None else None

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the run and return its result (raises ChildWorkflowError if it failed)."""
        if self._durable is not None:
            from .durable import child_run_sync

            return self.workflow._outcome(child_run_sync(self._durable, self.run))
        return self.workflow._outcome(self.future().result(timeout))

    async def aio_result(self) -> Any:
        """Wait for the run without blocking the event loop and return its result."""
        if self._durable is not None:
            from .durable import child_run

            return self.workflow._outcome(await child_run(self._durable, self.run))
        return self.workflow._outcome(await asyncio.wrap_future(self.future()))


# --- workflows ---------------------------------------------------------------------------


class Workflow:
    """A named DAG of tasks with an input model; run it, or spawn it from a task."""

    def __init__(
        self,
        client: "Kinflow",
        name: str,
        input_validator: type | None = None,
        description: str | None = None,
        image: str | None = None,
        service_account_name: str | None = None,
        pod_template: dict | None = None,
        entrypoint: str | None = None,
        module: str | None = None,
    ) -> None:
        self.client = client
        self.name = name
        self.input_validator = input_validator
        self.description = description
        self.image = image
        self.service_account_name = service_account_name
        self.pod_template = pod_template
        self._entrypoint = entrypoint
        self._module = module
        self.tasks: dict[str, Task] = {}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    # -- defining --

    def task(
        self,
        name: str | None = None,
        parents: Sequence[Task | str] | None = None,
        execution_timeout: Any = None,
        schedule_timeout: Any = None,
        retries: int = 0,
        backoff_factor: float | None = None,
        backoff_max_seconds: int | None = None,
        **hatchet_options: Any,
    ) -> Callable[[Callable], Task]:
        """Decorator: add a task to this workflow (`parents` make the DAG)."""
        _warn_unsupported("task()", hatchet_options)
        return self._task_decorator(name, parents, execution_timeout, schedule_timeout, retries,
                                    backoff_factor, backoff_max_seconds, durable=False)

    def durable_task(
        self,
        name: str | None = None,
        parents: Sequence[Task | str] | None = None,
        execution_timeout: Any = None,
        schedule_timeout: Any = None,
        retries: int = 0,
        backoff_factor: float | None = None,
        backoff_max_seconds: int | None = None,
        **hatchet_options: Any,
    ) -> Callable[[Callable], Task]:
        """Decorator: a durable task. It gets a DurableContext and gives its pod back while
        it waits for children, a sleep or an event; it replays from the top when resumed.
        `execution_timeout` applies to each resumption's pod, not to the time spent waiting."""
        _warn_unsupported("durable_task()", hatchet_options)
        return self._task_decorator(name, parents, execution_timeout, schedule_timeout, retries,
                                    backoff_factor, backoff_max_seconds, durable=True)

    def _task_decorator(self, name, parents, execution_timeout, schedule_timeout, retries,
                        backoff_factor, backoff_max_seconds, durable: bool) -> Callable[[Callable], Task]:
        def decorate(fn: Callable) -> Task:
            task = Task(
                fn, self, name, parents or (), execution_timeout, schedule_timeout,
                retries, backoff_factor, backoff_max_seconds, durable=durable,
            )
            self._add(task)
            return task

        return decorate

    def on_failure_task(
        self, name: str | None = None, execution_timeout: Any = None, retries: int = 0, **hatchet_options: Any
    ) -> Callable[[Callable], Task]:
        """Decorator: a task that runs when another task of the run has failed for good."""
        _warn_unsupported("on_failure_task()", hatchet_options)

        def decorate(fn: Callable) -> Task:
            task = Task(fn, self, name, (), execution_timeout, None, retries, on_failure=True)
            if any(t.on_failure for t in self.tasks.values()):
                raise ValueError(f"workflow {self.name!r} already has an on-failure task")
            self._add(task)
            return task

        return decorate

    def _add(self, task: Task) -> None:
        if task.name in self.tasks:
            raise ValueError(f"workflow {self.name!r} already has a task named {task.name!r}")
        for parent in task.parents:
            if parent not in self.tasks:
                raise ValueError(f"task {task.name!r}: parent {parent!r} is not a task of {self.name!r} (yet)")
        self.tasks[task.name] = task

    # -- describing --

    @property
    def entrypoint(self) -> str:
        """The "module:attribute" the runner imports to find this workflow."""
        if self._entrypoint is None:
            self._entrypoint = find_entrypoint(self, self._module)
        return self._entrypoint

    def spec(self, for_root: bool = False) -> dict[str, Any]:
        """The run spec without input: workflow, entrypoint, tasks, and pod settings if set."""
        if not self.tasks:
            raise ValueError(f"workflow {self.name!r} has no tasks")
        spec: dict[str, Any] = {
            "workflow": self.name,
            "entrypoint": self.entrypoint,
            "tasks": [t.spec() for t in self.tasks.values()],
            "image": self.image,
            "serviceAccountName": self.service_account_name,
            "podTemplate": self.pod_template,
        }
        if for_root:  # children inherit these from their parent instead
            spec["image"] = spec["image"] or self.client.image
            spec["serviceAccountName"] = spec["serviceAccountName"] or self.client.service_account_name
        return spec

    def input_json(self, input: Any) -> Any:
        """The input as JSON, validated by input_validator when one is set."""
        if input is None:
            input = {}
        if hasattr(input, "model_dump"):
            return input.model_dump(mode="json")
        if self.input_validator is not None and isinstance(input, dict):
            return self.input_validator.model_validate(input).model_dump(mode="json")
        return input

    def to_manifest(
        self,
        input: Any = None,
        name: str | None = None,
        namespace: str | None = None,
        additional_metadata: dict | None = None,
        image: str | None = None,
        entrypoint: str | None = None,
    ) -> dict:
        """The WorkflowRun (a dict) that runs this workflow as a root run (`kinflow manifest`).

        Without a name it carries `generateName`; image and entrypoint override the workflow's.
        """
        spec = self.spec(for_root=True)
        if image:
            spec["image"] = image
        if entrypoint:
            spec["entrypoint"] = entrypoint
        return build_root(spec, self.input_json(input), name, namespace, additional_metadata)

    # -- starting runs --

    def create_bulk_run_item(
        self,
        input: Any = None,
        key: str | None = None,
        additional_metadata: dict | None = None,
        options: TriggerWorkflowOptions | None = None,
    ) -> BulkRunItem:
        """One item for run_many (Hatchet's signature)."""
        options = options or TriggerWorkflowOptions()
        if key is not None or additional_metadata is not None:
            options = TriggerWorkflowOptions(**{**options.__dict__})
            if key is not None:
                options.key = key
            if additional_metadata is not None:
                options.additional_metadata = additional_metadata
        if input is None and options.input is not None:
            input = options.input
        return BulkRunItem(input, options)

    def _prepare(self, item: BulkRunItem) -> tuple["ApiClient", dict, TaskExecution | None]:
        """Decide the run's manifest now (this takes the call index of an un-keyed spawn)."""
        execution = current_execution()
        options = item.options
        input_json = self.input_json(item.input)
        if execution is not None:
            key = options.spawn_key
            if key is None:
                key = str(execution.next_call_index())
            manifest = build_child(
                execution.run, execution.task, key, self.spec(), input_json, options.additional_metadata
            )
            return execution.api, manifest, execution
        name = f"{dns_label(self.name)[:40] or 'run'}-{secrets.token_hex(3)}"
        namespace = options.namespace or self.client.namespace
        manifest = build_root(self.spec(for_root=True), input_json, name, namespace, options.additional_metadata)
        return self.client.api, manifest, None

    def _start(self, prepared: list[tuple]) -> list[WorkflowRunRef | BaseException]:
        """Create (or adopt) the prepared runs and return references (or errors) in order."""
        if not prepared:
            return []
        api, _, execution = prepared[0]
        durable = execution.durable if execution is not None else None
        if durable is not None:
            created = self._replay_or_spawn(api, durable, [manifest for _, manifest, _ in prepared])
        else:
            created = spawn_many(api, [manifest for _, manifest, _ in prepared])
        batch = len(prepared) > 1
        refs: list[WorkflowRunRef | BaseException] = []
        for (api, _, execution), obj in zip(prepared, created):
            if isinstance(obj, BaseException):
                refs.append(obj)
            else:
                refs.append(WorkflowRunRef(self, api, obj, execution.name if execution else None, batch, execution))
        return refs

    @staticmethod
    def _replay_or_spawn(api: "ApiClient", durable: Any, manifests: list[dict]) -> list[dict | BaseException]:
        """A durable task's spawns: children it made before come from one listing (adopted
        after the same checks as on AlreadyExists); only new ones are created."""
        from .spawn import check_adoptable

        existing = durable.existing_children()
        out: list[dict | BaseException | None] = [None] * len(manifests)
        new: list[tuple[int, dict]] = []
        for i, manifest in enumerate(manifests):
            old = existing.get(manifest["metadata"]["name"])
            if old is None:
                new.append((i, manifest))
                continue
            try:
                check_adoptable(old, manifest)
                out[i] = old
            except Exception as exc:
                out[i] = exc
        for (i, _), obj in zip(new, spawn_many(api, [m for _, m in new])):
            out[i] = obj
        return out  # type: ignore[return-value]

    @staticmethod
    async def _in_executor(prepared: list[tuple], fn: Callable[[], Any]) -> Any:
        """Run a spawn in a thread; a durable task counts it as in flight (it must not
        suspend while a sibling is still spawning)."""
        execution = prepared[0][2] if prepared else None
        durable = execution.durable if execution is not None else None
        if durable is not None:
            durable.in_flight += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(None, fn)
        finally:
            if durable is not None:
                durable.in_flight -= 1

    def _outcome(self, run: dict) -> Any:
        """The result of a finished run, or raise its error."""
        error = run_error(run)
        if error is not None:
            raise error
        return run_outputs(run)

    @staticmethod
    def _item(input: Any, options: TriggerWorkflowOptions | None) -> BulkRunItem:
        return BulkRunItem(input, options or TriggerWorkflowOptions())

    def run_no_wait(self, input: Any = None, options: TriggerWorkflowOptions | None = None) -> WorkflowRunRef:
        """Start a run (a child when called in a task) and return its reference."""
        ref = self._start([self._prepare(self._item(input, options))])[0]
        if isinstance(ref, BaseException):
            raise ref
        return ref

    def aio_run_no_wait(
        self, input: Any = None, options: TriggerWorkflowOptions | None = None
    ) -> Awaitable[WorkflowRunRef]:
        """Start a run without blocking the event loop; await it for the reference."""
        prepared = self._prepare(self._item(input, options))

        async def start() -> WorkflowRunRef:
            ref = (await self._in_executor([prepared], lambda: self._start([prepared])))[0]
            if isinstance(ref, BaseException):
                raise ref
            return ref

        return start()

    def run(
        self, input: Any = None, options: TriggerWorkflowOptions | None = None, wait_for_result: bool = True
    ) -> Any:
        """Start a run and wait for its result (a reference if wait_for_result=False)."""
        ref = self.run_no_wait(input, options)
        return ref.result() if wait_for_result else ref

    def aio_run(
        self, input: Any = None, options: TriggerWorkflowOptions | None = None, wait_for_result: bool = True
    ) -> Awaitable[Any]:
        """Start a run and await its result (a reference if wait_for_result=False)."""
        starting = self.aio_run_no_wait(input, options)

        async def run() -> Any:
            ref = await starting
            return await ref.aio_result() if wait_for_result else ref

        return run()

    def run_many_no_wait(self, workflows: Sequence[BulkRunItem]) -> list[WorkflowRunRef]:
        """Start many runs (bounded concurrency and rate) and return their references in order."""
        refs = self._start([self._prepare(item) for item in workflows])
        for ref in refs:
            if isinstance(ref, BaseException):
                raise ref
        return refs  # type: ignore[return-value]

    def aio_run_many_no_wait(self, workflows: Sequence[BulkRunItem]) -> Awaitable[list[WorkflowRunRef]]:
        """Start many runs without blocking the event loop; await it for their references."""
        prepared = [self._prepare(item) for item in workflows]

        async def start() -> list[WorkflowRunRef]:
            refs = await self._in_executor(prepared, lambda: self._start(prepared))
            for ref in refs:
                if isinstance(ref, BaseException):
                    raise ref
            return refs

        return start()

    def run_many(self, workflows: Sequence[BulkRunItem], return_exceptions: bool = False) -> list[Any]:
        """Start many runs and return their results in order (errors in place if return_exceptions)."""
        refs = self._start([self._prepare(item) for item in workflows])
        return self._collect(refs, return_exceptions)

    def aio_run_many(
        self, workflows: Sequence[BulkRunItem], return_exceptions: bool = False
    ) -> Awaitable[list[Any]]:
        """Start many runs and await their results in order (errors in place if return_exceptions)."""
        prepared = [self._prepare(item) for item in workflows]

        async def run() -> list[Any]:
            refs = await self._in_executor(prepared, lambda: self._start(prepared))
            if not return_exceptions:
                for ref in refs:
                    if isinstance(ref, BaseException):
                        raise ref
            return await asyncio.gather(
                *(_aio_outcome(ref) for ref in refs), return_exceptions=return_exceptions
            )

        return run()

    def _collect(self, refs: list, return_exceptions: bool) -> list[Any]:
        durable = next((r._durable for r in refs if isinstance(r, WorkflowRunRef) and r._durable), None)
        if durable is not None:  # one suspension for all unfinished children, no watch
            from .durable import children_sync

            if not return_exceptions:
                for ref in refs:
                    if isinstance(ref, BaseException):
                        raise ref
            children_sync(durable, [r.run for r in refs if isinstance(r, WorkflowRunRef)])
            if not return_exceptions:
                return [ref.result() for ref in refs]
        elif not return_exceptions:
            for ref in refs:
                if isinstance(ref, BaseException):
                    raise ref
            # Fail fast, like asyncio.gather: the first child to fail raises.
            for fut in as_completed([ref.future() for ref in refs]):
                error = run_error(fut.result())
                if error is not None:
                    raise error
        results: list[Any] = []
        for ref in refs:
            if isinstance(ref, BaseException):
                results.append(ref)
                continue
            try:
                results.append(ref.result())
            except Exception as exc:
                results.append(exc)
        return results


async def _aio_outcome(ref: WorkflowRunRef | BaseException) -> Any:
    if isinstance(ref, BaseException):
        raise ref
    return await ref.aio_result()


class Standalone(Workflow):
    """A workflow of one task, made by `@kf.task`: its result is the task's (typed) output."""

    @property
    def task_def(self) -> Task:
        """The one task."""
        return next(iter(self.tasks.values()))

    @property
    def fn(self) -> Callable:
        """The decorated function."""
        return self.task_def.fn

    def __call__(self, input: Any, ctx: Any) -> Any:
        """Call the function directly."""
        return self.task_def.fn(input, ctx)

    def _outcome(self, run: dict) -> Any:
        outputs = super()._outcome(run)
        output = outputs.get(self.task_def.name)
        model = self.task_def.output_type
        return model.model_validate(output) if model is not None and output is not None else output
