"""Sent events (`kinflow event send`): an index kept by our own watch, not kopf's.

kopf watches a resource whole and applies `labels=` filters in the client, so a
kopf index on core/v1 Events would pull in every Event of the namespace (a
200-child fan-out writes thousands) and give each its own worker. This watch
asks the API server for the kinflow events only (`labelSelector`), one stream
per namespace that has runs, started when the operator first sees a run there
(so it needs only namespaced list/watch, in every RBAC mode).

It keeps `index[(namespace, key)] -> [ObservedEvent]` (what decide() matches
waits against) and calls `on_event(namespace, event)` for each new one.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kinflow import _constants as C

from .resource import ObservedEvent

log = logging.getLogger(__name__)
WATCH_SECONDS = 300


class EventWatcher:
    def __init__(self, api_client: Any, on_event: Callable[[str, ObservedEvent], Any]) -> None:
        self.api_client = api_client
        self.on_event = on_event
        self.index: dict[tuple[str, str], list[ObservedEvent]] = {}
        self._names: dict[tuple[str, str], ObservedEvent] = {}  # (namespace, Event name)
        self._namespaces: set[str] = set()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped = threading.Event()

    def ensure(self, namespace: str) -> None:
        """Watch `namespace`'s kinflow events (once)."""
        if namespace in self._namespaces:
            return
        self._namespaces.add(namespace)
        self._loop = asyncio.get_running_loop()
        threading.Thread(target=self._run, args=(namespace,), name=f"kinflow-events-{namespace}",
                         daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()

    def _upsert(self, namespace: str, body: Any, deleted: bool = False) -> ObservedEvent | None:
        event = ObservedEvent.from_body(body)
        if event is None:
            return None
        with self._lock:
            old = self._names.pop((namespace, event.name), None)
            if old is not None:
                self.index[(namespace, old.key)] = [e for e in self.index.get((namespace, old.key), ())
                                                    if e.name != old.name]
            if deleted:
                return None
            self._names[(namespace, event.name)] = event
            self.index.setdefault((namespace, event.key), []).append(event)
        return None if old is not None else event

    def _notify(self, namespace: str, event: ObservedEvent) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.on_event, namespace, event)

    def _run(self, namespace: str) -> None:
        from kubernetes import client, watch

        core = client.CoreV1Api(self.api_client)
        selector = C.LABEL_EVENT
        version = None
        failures = 0
        while not self._stopped.is_set():
            try:
                if version is None:
                    listing = core.list_namespaced_event(namespace, label_selector=selector,
                                                         _preload_content=False)
                    import json

                    data = json.loads(listing.data)
                    for item in data.get("items") or ():
                        event = self._upsert(namespace, item)
                        if event is not None:  # sent while we were not watching: deliver now
                            self._notify(namespace, event)
                    version = data["metadata"]["resourceVersion"]
                stream = watch.Watch().stream(core.list_namespaced_event, namespace, label_selector=selector,
                                              resource_version=version, timeout_seconds=WATCH_SECONDS)
                for change in stream:
                    obj = change["raw_object"]
                    version = obj["metadata"].get("resourceVersion") or version
                    if change["type"] == "ERROR":
                        version = None
                        break
                    event = self._upsert(namespace, obj, deleted=change["type"] == "DELETED")
                    if event is not None:
                        self._notify(namespace, event)
                failures = 0
            except Exception as exc:  # noqa: BLE001 -- keep watching; say why it broke
                failures += 1
                if getattr(exc, "status", None) == 410:
                    version = None
                delay = min(30.0, 0.5 * 2 ** min(failures, 6))
                log.warning("watch of kinflow events in %s failed (%s); again in %.0fs", namespace, exc, delay)
                time.sleep(delay)
