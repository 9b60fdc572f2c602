"""Durable tasks: a task that gives its pod back while it waits, and replays when resumed.

A durable task's pod does not sit idle while children run, a sleep passes or
an event is awaited. When everything the task awaits is not ready, the runner
records the wait in the task's status entry (`phase: Waiting`, `wait`,
`checkpoints`) and exits 0. The operator starts a new Job for the task once
the wait is over, and the function runs again from the top (a *replay*):

- spawns find the children made before (one list of this task's children,
  then create-or-adopt by name), and finished children return at once;
- a sleep whose wake time (a checkpoint) has passed returns at once;
- an event the operator delivered into the entry (`delivered`) is returned;
- `aio_now()` and `aio_memo()` return the values checkpointed the first time.

So a durable function must be deterministic between its awaits: the same
spawns with the same keys, in any order. A spawn that differs at a key used
before raises NonDeterminismError.

Suspension is coalesced: when the first await blocks, the runner lets every
sibling coroutine run (spawns in flight finish, other awaits register) until
nothing moves, and only then suspends, listing everything awaited. So
`asyncio.gather(*(wf.aio_run(x) for x in xs))` and `aio_run_many` cost one
suspension and one resumption, not one per child.

This module is imported only by durable tasks; it imports nothing heavy.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from . import _constants as C
from .context import Context

if TYPE_CHECKING:
    from ._execution import TaskExecution
    from .workflow import Workflow

# How long the loop must stay quiet (no new waits, no spawn in flight) before suspending.
SETTLE_SECONDS = 0.02


class Suspend(BaseException):
    """Raised through user code when a durable task must wait: the runner reports `Waiting`.

    A BaseException, so a user's `except Exception:` around a child call does not swallow it.
    """


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def format_time(moment: datetime) -> str:
    """RFC 3339 UTC with milliseconds (the operator's spelling)."""
    moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def seconds_of(value: Any) -> float:
    """A duration given as timedelta, seconds, or a string like "10s", "5m"."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (int, float)):
        return float(value)
    import re

    total, pos = 0.0, 0
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    for m in re.finditer(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)", str(value)):
        if m.start() != pos:
            break
        total += float(m.group(1)) * units[m.group(2)]
        pos = m.end()
    if not value or pos != len(str(value)):
        raise ValueError(f"invalid duration {value!r}: use a timedelta, seconds, or e.g. '30s', '5m'")
    return total


class DurableState:
    """What one execution of a durable task knows from before, and what it now waits for.

    Checkpoints are keyed by kind and position (`sleep0`, `event1`, `now0`,
    `memo:<key>`): the n-th sleep of every replay is the same sleep.
    """

    def __init__(self, execution: "TaskExecution") -> None:
        self.execution = execution
        entry = ((execution.run.get("status") or {}).get("tasks") or {}).get(execution.task) or {}
        self.checkpoints: dict[str, Any] = dict(entry.get("checkpoints") or {})
        self.delivered: dict[str, Any] = dict(entry.get("delivered") or {})
        self.new_checkpoints: dict[str, Any] = {}
        self._counters: dict[str, int] = {}
        self._lock = threading.Lock()
        self._children: dict[str, dict] | None = None
        # The wait being assembled: children names, wake times, events.
        self.wait_children: set[str] = set()
        self.wait_until: list[datetime] = []
        self.wait_events: list[dict[str, str]] = []
        self.version = 0  # bumped on every registration (the settle loop watches it)
        self.in_flight = 0  # spawns running in executor threads
        self._loop: asyncio.AbstractEventLoop | None = None
        self._signal: asyncio.Future | None = None

    # -- positions and checkpoints --

    def next_id(self, kind: str) -> str:
        with self._lock:
            n = self._counters.get(kind, 0)
            self._counters[kind] = n + 1
        return f"{kind}{n}"

    def checkpoint(self, cid: str, make: Callable[[], Any]) -> Any:
        """The value stored under `cid`, or `make()` stored now (written with a Waiting report)."""
        with self._lock:
            if cid in self.checkpoints:
                return self.checkpoints[cid]
            if cid in self.new_checkpoints:
                return self.new_checkpoints[cid]
        value = make()
        with self._lock:
            self.new_checkpoints.setdefault(cid, value)
            return self.new_checkpoints[cid]

    def all_checkpoints(self) -> dict[str, Any]:
        return {**self.checkpoints, **self.new_checkpoints}

    # -- children --

    def existing_children(self) -> dict[str, dict]:
        """This task's children as they are now, by name: listed once per execution.

        The first execution of the first attempt has none, so it skips the request.
        """
        with self._lock:
            if self._children is None:
                ex = self.execution
                if ex.attempt <= 1 and ex.resume <= 0:
                    self._children = {}
                else:
                    from ._api import run_path
                    from .spawn import label_value

                    selector = f"{C.LABEL_PARENT}={ex.name},{C.LABEL_PARENT_TASK}={label_value(ex.task)}"
                    listing = ex.api.list(run_path(ex.namespace), label_selector=selector)
                    self._children = {o["metadata"]["name"]: o for o in listing.get("items") or []}
            return self._children

    # -- registering waits --

    def _registered(self) -> None:
        self.version += 1
        loop, signal = self._loop, self._signal
        if loop is not None and signal is not None:
            def wake() -> None:
                if not signal.done():
                    signal.set_result(None)
            try:
                if asyncio.get_running_loop() is loop:
                    wake()
                    return
            except RuntimeError:
                pass
            loop.call_soon_threadsafe(wake)

    def register(self, children: list[str] = (), until: datetime | None = None,
                 event: dict[str, str] | None = None) -> None:
        with self._lock:
            self.wait_children.update(children)
            if until is not None:
                self.wait_until.append(until)
            if event is not None:
                self.wait_events.append(event)
        self._registered()

    @property
    def waiting(self) -> bool:
        return bool(self.wait_children or self.wait_until or self.wait_events)

    def wait_entry(self) -> dict[str, Any]:
        """The `wait` the runner reports: over when all children finished, OR the time
        came, OR the event arrived (whichever first). Several events awaited at once are
        taken one at a time (the first registered)."""
        wait: dict[str, Any] = {}
        if self.wait_children:
            wait["children"] = sorted(self.wait_children)
        if self.wait_until:
            wait["until"] = format_time(min(self.wait_until))
        if self.wait_events:
            first = self.wait_events[0]
            wait["event"] = first["key"]
            wait["eventSince"] = first["since"]
            wait["eventId"] = first["id"]
        return wait

    async def block(self) -> Any:
        """Await something that will never be ready in this execution (the runner suspends)."""
        await asyncio.get_running_loop().create_future()

    # -- driving an async durable task --

    async def drive(self, coro: Awaitable[Any]) -> Any:
        """Run the task's coroutine; raise Suspend once it is blocked on kinflow waits only."""
        self._loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(coro)
        while True:
            self._signal = self._loop.create_future()
            if self.waiting:
                self._signal.set_result(None)
            await asyncio.wait({task, self._signal}, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                return task.result()  # also raises Suspend from a sync wait inside
            await self._settle(task)
            if task.done():
                return task.result()
            if self.waiting:
                task.cancel()
                raise Suspend()

    async def _settle(self, task: asyncio.Future) -> None:
        """Let sibling coroutines spawn and register until nothing moves."""
        while True:
            version = self.version
            for _ in range(20):
                await asyncio.sleep(0)
            await asyncio.sleep(SETTLE_SECONDS)
            if task.done() or (self.in_flight == 0 and version == self.version):
                return


def is_finished(run: dict) -> bool:
    return (run.get("status") or {}).get("phase") in C.TERMINAL_PHASES


class DurableContext(Context):
    """The context of a durable task: durable sleeps, events, and replay-stable values."""

    def __init__(self, execution: "TaskExecution", workflow: "Workflow | None" = None) -> None:
        super().__init__(execution, workflow)
        self._durable: DurableState = execution.durable  # type: ignore[assignment]

    @property
    def resume_count(self) -> int:
        """How many times this attempt was resumed after a wait (0 on its first execution)."""
        return self._execution.resume

    async def aio_now(self) -> datetime:
        """The current time, the same on every replay (checkpointed the first time)."""
        cid = self._durable.next_id("now")
        return parse_time(self._durable.checkpoint(cid, lambda: format_time(utcnow())))

    def now(self) -> datetime:
        """Blocking twin of aio_now()."""
        cid = self._durable.next_id("now")
        return parse_time(self._durable.checkpoint(cid, lambda: format_time(utcnow())))

    async def aio_memo(self, fn: Callable[..., Any], *args: Any, key: str | None = None, **kwargs: Any) -> Any:
        """`fn(*args, **kwargs)` computed once and checkpointed: replays return the stored value.

        Use it for anything non-deterministic a replay must not redo (a random
        choice, an LLM call, an id). The value must be JSON. `key` names the
        checkpoint; without one it is the call's position among memo calls.
        """
        cid = f"memo:{key}" if key is not None else self._durable.next_id("memo")
        with self._durable._lock:
            stored = cid in self._durable.checkpoints or cid in self._durable.new_checkpoints
        if stored:
            return self._durable.checkpoint(cid, lambda: None)
        value = fn(*args, **kwargs)
        if asyncio.iscoroutine(value):
            value = await value
        from .runner import serialise_output

        value = serialise_output(value)
        return self._durable.checkpoint(cid, lambda: value)

    def memo(self, fn: Callable[..., Any], *args: Any, key: str | None = None, **kwargs: Any) -> Any:
        """Blocking twin of aio_memo() (for a sync fn)."""
        cid = f"memo:{key}" if key is not None else self._durable.next_id("memo")
        from .runner import serialise_output

        return self._durable.checkpoint(cid, lambda: serialise_output(fn(*args, **kwargs)))

    def _sleep_wake(self, duration: Any) -> tuple[str, datetime]:
        seconds = seconds_of(duration)
        cid = self._durable.next_id("sleep")
        wake = self._durable.checkpoint(cid, lambda: format_time(utcnow() + timedelta(seconds=seconds)))
        return cid, parse_time(wake)

    async def aio_sleep_for(self, duration: Any) -> dict[str, Any]:
        """Sleep without holding a pod: the task suspends and is resumed at the wake time.

        The wake time is fixed the first time (a checkpoint), so a replay after
        it returns at once.
        """
        _, wake = self._sleep_wake(duration)
        if utcnow() < wake:
            self._durable.register(until=wake)
            await self._durable.block()
        return {"wake_time": format_time(wake)}

    def sleep_for(self, duration: Any) -> dict[str, Any]:
        """Blocking twin of aio_sleep_for()."""
        _, wake = self._sleep_wake(duration)
        if utcnow() < wake:
            self._durable.register(until=wake)
            raise Suspend()
        return {"wake_time": format_time(wake)}

    def _event_wait(self, key: str, timeout: Any) -> tuple[dict[str, Any] | None, dict[str, str], datetime | None]:
        if not key or not isinstance(key, str):
            raise ValueError("aio_wait_for_event needs a non-empty string key")
        cid = self._durable.next_id("event")
        since = self._durable.checkpoint(cid, lambda: format_time(utcnow()))
        deadline = parse_time(since) + timedelta(seconds=seconds_of(timeout)) if timeout is not None else None
        got = self._durable.delivered.get(cid)
        return got, {"key": key, "since": since, "id": cid}, deadline

    async def aio_wait_for_event(self, key: str, expression: str | None = None,
                                 timeout: Any = None) -> Any:
        """Wait, without a pod, for `kinflow event send KEY`; returns the event's data.

        Only events sent after this call first ran are delivered (an earlier one
        is not: as in Hatchet). With `timeout` it raises TimeoutError when no
        event came in time.
        """
        data = self._event_or_register(key, expression, timeout)
        if data is not _WAITING:
            return data
        await self._durable.block()

    def wait_for_event(self, key: str, expression: str | None = None, timeout: Any = None) -> Any:
        """Blocking twin of aio_wait_for_event()."""
        data = self._event_or_register(key, expression, timeout)
        if data is not _WAITING:
            return data
        raise Suspend()

    def _event_or_register(self, key: str, expression: str | None, timeout: Any) -> Any:
        """The event's data if it already came (a replay); else register the wait: _WAITING."""
        if expression is not None:
            raise NotImplementedError("kinflow does not filter events by expression (CEL) yet")
        got, event, deadline = self._event_wait(key, timeout)
        if got is not None:
            return got.get("data")
        if deadline is not None and utcnow() >= deadline:
            raise TimeoutError(f"no event {key!r} within {timeout}")
        self._durable.register(until=deadline, event=event)
        return _WAITING


_WAITING = object()  # "not here yet": the wait is registered and the task must suspend


# --- waiting for children (called from workflow.py when the execution is durable) -----------


def child_run_sync(state: DurableState, run: dict) -> dict:
    """The finished child run, or suspend the task until it is."""
    if is_finished(run):
        return run
    state.register(children=[run["metadata"]["name"]])
    raise Suspend()


async def child_run(state: DurableState, run: dict) -> dict:
    """The finished child run; if it is not finished, wait (the runner suspends the task)."""
    if is_finished(run):
        return run
    state.register(children=[run["metadata"]["name"]])
    await state.block()
    raise AssertionError("unreachable: a durable wait is never resolved in-process")


def children_sync(state: DurableState, runs: list[dict]) -> list[dict]:
    """All of `runs` finished, or suspend once for every one that is not."""
    waiting = [r["metadata"]["name"] for r in runs if not is_finished(r)]
    if waiting:
        state.register(children=waiting)
        raise Suspend()
    return runs
