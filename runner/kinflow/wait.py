"""Waiting for runs to finish: one watch stream feeds the futures of many runs.

A parent waits for all its children through ONE watch on
`kinflow.io/parent=<parent>` (list, then watch from the list's
resourceVersion, resume after a disconnect, list again after 410 Gone),
never a poll per child. Each event is one dict lookup, so a fan-out of
thousands costs nothing per child beyond its own events.

Outside a pod (a root run started from a laptop or CI) a single run is watched
by `fieldSelector=metadata.name=<name>`, and a batch of roots by one watch
on the namespace's runs that have no parent.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from typing import Any

from . import _constants as C
from ._api import ApiClient, run_path
from .errors import ApiError, ChildCancelledError, ChildWorkflowError, Gone

log = logging.getLogger("kinflow.wait")


class RunWatcher:
    """Futures for runs matched by one selector, resolved from one list+watch stream.

    A future resolves to the run object once its phase is terminal. Terminal runs
    seen before anyone asked are remembered, so asking late costs nothing.
    """

    def __init__(
        self,
        api: ApiClient,
        namespace: str,
        label_selector: str | None = None,
        field_selector: str | None = None,
        watch_timeout: int = 300,
        stop_when_idle: bool = False,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.watch_timeout = watch_timeout
        self.stop_when_idle = stop_when_idle
        self._lock = threading.Lock()
        self._futures: dict[str, Future] = {}
        self._done: dict[str, dict] = {}  # terminal runs by name
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self.resource_version: str | None = None
        self.lists = 0  # how many times it listed (tests check resumption)
        self.watches = 0

    def future(self, name: str) -> Future:
        """A future for run `name`'s terminal object; starts the watch on first use."""
        with self._lock:
            fut = self._futures.get(name)
            if fut is None:
                fut = self._futures[name] = Future()
                done = self._done.get(name)
                if done is not None:
                    fut.set_result(done)
            if self._thread is None or not self._thread.is_alive():
                if not self._stopped.is_set():
                    self._thread = threading.Thread(
                        target=self._run, name=f"kinflow-watch-{name}", daemon=True
                    )
                    self._thread.start()
        return fut

    def stop(self) -> None:
        """Stop watching (the stream ends at its next event or timeout)."""
        self._stopped.set()

    # -- the stream --

    def _observe(self, obj: dict) -> None:
        phase = (obj.get("status") or {}).get("phase")
        if phase not in C.TERMINAL_PHASES:
            return
        name = obj["metadata"]["name"]
        with self._lock:
            self._done[name] = obj
            fut = self._futures.get(name)
        if fut is not None and not fut.done():
            fut.set_result(obj)

    def _idle(self) -> bool:
        with self._lock:
            return bool(self._futures) and all(f.done() for f in self._futures.values())

    def _run(self) -> None:
        path = run_path(self.namespace)
        failures = 0
        while not self._stopped.is_set():
            if self.stop_when_idle and self._idle():
                return
            try:
                if self.resource_version is None:
                    listing = self.api.list(path, self.label_selector, self.field_selector)
                    self.lists += 1
                    for obj in listing.get("items") or []:
                        self._observe(obj)
                    self.resource_version = listing["metadata"]["resourceVersion"]
                    if self.stop_when_idle and self._idle():
                        return
                self.watches += 1
                for kind, obj in self.api.watch(
                    path,
                    self.resource_version,
                    self.label_selector,
                    self.field_selector,
                    self.watch_timeout,
                ):
                    rv = (obj.get("metadata") or {}).get("resourceVersion")
                    if rv:
                        self.resource_version = rv
                    if kind in ("ADDED", "MODIFIED"):
                        self._observe(obj)
                    if self._stopped.is_set() or (self.stop_when_idle and self._idle()):
                        return
                failures = 0  # the server ended the watch normally: resume from resource_version
            except Gone:
                log.info("watch of %s: resourceVersion %s expired, listing again", path, self.resource_version)
                self.resource_version = None
            except Exception as exc:  # disconnects, timeouts, API errors: resume with backoff
                failures += 1
                delay = min(10.0, 0.1 * 2 ** min(failures, 7))
                log.warning("watch of %s interrupted (%s); resuming in %.1fs", path, exc, delay)
                if failures >= 3 and isinstance(exc, ApiError) and exc.status in (401, 403):
                    self._fail_all(exc)
                    return
                time.sleep(delay)

    def _fail_all(self, exc: BaseException) -> None:
        with self._lock:
            futures = [f for f in self._futures.values() if not f.done()]
        for fut in futures:
            fut.set_exception(exc)


_watchers: dict[tuple, RunWatcher] = {}
_watchers_lock = threading.Lock()


def children_watcher(api: ApiClient, namespace: str, parent: str) -> RunWatcher:
    """The one watcher of `parent`'s children in this process."""
    key = (id(api), namespace, "parent", parent)
    with _watchers_lock:
        watcher = _watchers.get(key)
        if watcher is None:
            watcher = _watchers[key] = RunWatcher(api, namespace, label_selector=f"{C.LABEL_PARENT}={parent}")
        return watcher


def roots_watcher(api: ApiClient, namespace: str) -> RunWatcher:
    """One watcher for root runs (no parent label) in a namespace: batches from outside a pod."""
    key = (id(api), namespace, "roots")
    with _watchers_lock:
        watcher = _watchers.get(key)
        if watcher is None:
            watcher = _watchers[key] = RunWatcher(api, namespace, label_selector=f"!{C.LABEL_PARENT}")
        return watcher


def run_watcher(api: ApiClient, namespace: str, name: str) -> RunWatcher:
    """A watcher of one run by name; it stops once that run is done."""
    return RunWatcher(api, namespace, field_selector=f"metadata.name={name}", stop_when_idle=True)


# --- outcomes --------------------------------------------------------------------------


def run_outputs(run: dict) -> dict[str, Any]:
    """A finished run's result: task name -> output (status.output, else the task entries)."""
    status = run.get("status") or {}
    if status.get("output") is not None:
        return status["output"]
    return {name: entry.get("output") for name, entry in (status.get("tasks") or {}).items()}


def run_error(run: dict) -> ChildWorkflowError | None:
    """The exception a failed or cancelled run stands for (None if it succeeded)."""
    status = run.get("status") or {}
    phase = status.get("phase")
    if phase == "Succeeded":
        return None
    name = run["metadata"]["name"]
    workflow = (run.get("spec") or {}).get("workflow")
    failed_task, error = None, {}
    for task, entry in (status.get("tasks") or {}).items():
        if entry.get("error") and entry.get("phase") in ("Failed", "Cancelled"):
            failed_task, error = task, entry["error"]
            break
    message = error.get("message")
    if not message:
        for cond in status.get("conditions") or []:
            if cond.get("type") == "Succeeded" and cond.get("message"):
                message = cond["message"]
    cls = ChildCancelledError if phase == "Cancelled" else ChildWorkflowError
    return cls(name, workflow, failed_task, error.get("type") or phase, message, error.get("traceback"))


def wait_for_run(api: ApiClient, namespace: str, name: str, timeout: float | None = None) -> dict:
    """Block until run `name` is terminal and return the run object (for the CLI's --wait)."""
    watcher = run_watcher(api, namespace, name)
    try:
        return watcher.future(name).result(timeout)
    finally:
        watcher.stop()
