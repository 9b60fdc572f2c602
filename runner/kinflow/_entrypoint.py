"""Entrypoints: the "module:attribute" string that names a workflow in code.

The runner imports it to find the task to run; a spawned child carries its
workflow's entrypoint so its own pods can do the same. It is found from the
defining module's globals, so users rarely write it by hand.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from .errors import EntrypointError

__all__ = ["EntrypointError", "find_entrypoint", "load_entrypoint"]


def _main_module_name() -> str | None:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name:
        return spec.name.removesuffix(".__main__")
    path = getattr(main, "__file__", None)
    if not path:
        return None
    rel = os.path.relpath(os.path.abspath(path), os.getcwd())
    if rel.startswith("..") or not rel.endswith(".py"):
        return None
    return rel[:-3].replace(os.sep, ".")


def find_entrypoint(obj: Any, module: str | None) -> str:
    """The "module:attribute" naming `obj` in the module that defined it."""
    mod = sys.modules.get(module or "")
    if mod is not None:
        for attr, value in list(vars(mod).items()):
            if value is obj:
                name = _main_module_name() if module == "__main__" else module
                if name:
                    return f"{name}:{attr}"
    what = getattr(obj, "name", obj)
    raise EntrypointError(
        f"cannot tell the entrypoint of {what!r}: define it at module level, "
        f"or pass entrypoint='package.module:attribute'"
    )


def load_entrypoint(entrypoint: str) -> Any:
    """Import "module:attribute" and return the workflow (or standalone task) it names."""
    from .workflow import Workflow

    module_name, _, attr = entrypoint.partition(":")
    if not module_name or not attr:
        raise EntrypointError(f"entrypoint {entrypoint!r} is not of the form 'package.module:attribute'")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())  # `kinflow run examples.simple:wf` from a project directory
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise EntrypointError(
            f"entrypoint {entrypoint!r}: module {exc.name!r} not found "
            f"(is the code in the image, and the module path right?)"
        ) from exc
    except Exception as exc:
        raise EntrypointError(
            f"entrypoint {entrypoint!r}: importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            found = sorted(k for k, v in vars(module).items() if isinstance(v, Workflow))
            raise EntrypointError(
                f"entrypoint {entrypoint!r}: module {module_name!r} has no attribute {attr!r}"
                + (f"; its workflows are: {', '.join(found)}" if found else "")
            ) from None
    if not isinstance(obj, Workflow):
        raise EntrypointError(
            f"entrypoint {entrypoint!r} is a {type(obj).__name__}, not a kinflow workflow or task "
            "(made with kf.workflow(...) or @kf.task)"
        )
    if obj._entrypoint is None:
        obj._entrypoint = entrypoint
    return obj
