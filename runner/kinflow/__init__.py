"""kinflow: Kubernetes-native workflows with Hatchet's Python API.

Public names are imported lazily on first use, so `python -m kinflow.runner`
can talk to the API server before anything heavy (pydantic, asyncio) loads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Kinflow": "client",
    "Hatchet": "client",
    "Context": "context",
    "DurableContext": "durable",
    "EmptyModel": "_models",
    "Workflow": "workflow",
    "Standalone": "workflow",
    "Task": "workflow",
    "TriggerWorkflowOptions": "workflow",
    "BulkRunItem": "workflow",
    "WorkflowRunRef": "workflow",
    "load_entrypoint": "_entrypoint",
    "wait_for_run": "wait",
    "run_outputs": "wait",
    "run_error": "wait",
    "MAX_OUTPUT_BYTES": "_constants",
    "KinflowError": "errors",
    "ConfigError": "errors",
    "EntrypointError": "errors",
    "UnknownTask": "errors",
    "InputValidationError": "errors",
    "OutputTooLarge": "errors",
    "NonDeterminismError": "errors",
    "SpawnConflictError": "errors",
    "ChildWorkflowError": "errors",
    "ChildCancelledError": "errors",
    "ApiError": "errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'kinflow' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:
    from ._constants import MAX_OUTPUT_BYTES
    from ._models import EmptyModel
    from .client import Hatchet, Kinflow
    from .context import Context
    from .durable import DurableContext
    from .errors import (
        ApiError,
        ChildCancelledError,
        ChildWorkflowError,
        ConfigError,
        EntrypointError,
        InputValidationError,
        KinflowError,
        NonDeterminismError,
        OutputTooLarge,
        SpawnConflictError,
        UnknownTask,
    )
    from .wait import run_error, run_outputs, wait_for_run
    from .workflow import (
        BulkRunItem,
        Standalone,
        Task,
        TriggerWorkflowOptions,
        Workflow,
        WorkflowRunRef,
    )
    from ._entrypoint import load_entrypoint
