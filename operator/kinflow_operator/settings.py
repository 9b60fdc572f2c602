"""kopf settings, each chosen on purpose for thousands of runs.

- State on objects: none. kinflow registers only event handlers and indexes,
  which kopf runs without progress or diff-base storage and without
  finalizers: no `kopf.zalando.org/*` annotations that grow with the spec, no
  extra PATCH per change, and deletion stays the garbage collector's job. The
  storages are still set explicitly (annotations under our own prefix) for the
  day someone adds a change-detecting handler, and a unit test fails if one is
  added by accident.
- Watches: the API server ends each watch after `server_timeout` and kopf
  reconnects; `inactivity_timeout` (no event, not even a bookmark) and
  `client_timeout` catch a stalled stream so it recovers in about a minute.
- Server-side label selectors: only Jobs and pods labelled kinflow.io/run
  reach the operator, not every Job in the namespace.
- Events: the operator posts its own Events (task started/retried/failed, run
  finished); kopf's log-to-Event posting stays off and its own Events are
  limited to warnings, so a busy run does not flood `kubectl describe`.
- Peering: standalone (one operator replica; no KopfPeering CRD needed).
- Queueing: a worker per object with events, capped so that a burst of
  thousands of objects bounds memory; idle workers exit after 5s.
"""

from __future__ import annotations

import logging

import kopf

from kinflow import _constants as C

WATCH_SERVER_TIMEOUT = 300  # seconds the API server keeps one watch request open
WATCH_CLIENT_TIMEOUT = 330.0  # a little longer: the server should end it first
WATCH_INACTIVITY_TIMEOUT = 70.0  # bookmarks arrive every ~60s on a healthy stream
CONNECT_TIMEOUT = 10.0
REQUEST_TIMEOUT = 60.0
WORKER_LIMIT = 1000
LIST_CHUNK = 500


def configure(settings: kopf.OperatorSettings) -> None:
    """Apply kinflow's choices to kopf's settings (called from the startup handler)."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=C.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=C.GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{C.GROUP}/operator"  # never added: no on.delete handlers

    settings.watching.server_timeout = WATCH_SERVER_TIMEOUT
    settings.watching.client_timeout = WATCH_CLIENT_TIMEOUT
    settings.watching.connect_timeout = CONNECT_TIMEOUT
    settings.watching.inactivity_timeout = WATCH_INACTIVITY_TIMEOUT
    settings.watching.reconnect_backoff = 1.0
    settings.watching.chunk_size = LIST_CHUNK
    settings.watching.label_selectors["batch", "jobs"] = C.LABEL_RUN
    settings.watching.label_selectors["v1", "pods"] = C.LABEL_RUN

    settings.networking.request_timeout = REQUEST_TIMEOUT
    settings.networking.connect_timeout = CONNECT_TIMEOUT

    settings.posting.loggers = False
    settings.posting.level = logging.WARNING
    settings.posting.reporting_component = "kinflow-operator"

    settings.peering.standalone = True
    settings.peering.clusterwide = False

    settings.queueing.worker_limit = WORKER_LIMIT
    settings.queueing.idle_timeout = 5.0
