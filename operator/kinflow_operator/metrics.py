"""Prometheus metrics, served only when --metrics-port is given (prometheus_client is optional)."""

from __future__ import annotations

from typing import Any


class _Noop:
    def labels(self, *_: Any, **__: Any) -> _Noop:
        return self

    def inc(self, *_: Any) -> None:
        pass


reconciles: Any = _Noop()
conflicts: Any = _Noop()
writes: Any = _Noop()


def serve(port: int) -> None:
    """Start the metrics endpoint and switch the counters on."""
    global reconciles, conflicts, writes
    import prometheus_client as prom

    reconciles = prom.Counter("kinflow_reconciles_total", "Reconciles of WorkflowRuns")
    conflicts = prom.Counter("kinflow_status_conflicts_total", "Status patches refused as stale (409)")
    writes = prom.Counter("kinflow_api_writes_total", "API writes by the operator", ["kind"])
    prom.start_http_server(port)
