"""`Kinflow`, the client object user code starts from (Hatchet's `Hatchet`).

Defining workflows never touches the network: inside a task pod the runner's
own API connection is used for spawning, so the client loads its
configuration only when a run is started from outside a pod.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import TYPE_CHECKING, Any, Callable, Sequence

from .workflow import TASK_NAME, Standalone, Task, Workflow, _warn_unsupported

if TYPE_CHECKING:
    from ._api import ApiClient


class Kinflow:
    """Defines workflows and tasks, and starts root runs from outside a cluster."""

    def __init__(
        self,
        namespace: str | None = None,
        image: str | None = None,
        service_account_name: str | None = None,
        kubeconfig: str | None = None,
        context: str | None = None,
        api: "ApiClient | None" = None,
        debug: bool = False,
        **hatchet_options: Any,
    ) -> None:
        _warn_unsupported("Kinflow()", {k: v for k, v in hatchet_options.items() if k != "config"})
        self._namespace = namespace
        self.image = image or os.environ.get("KINFLOW_IMAGE")
        self.service_account_name = service_account_name
        self.kubeconfig = kubeconfig
        self.context = context
        self.debug = debug
        self._api = api
        self._lock = threading.Lock()

    @property
    def api(self) -> "ApiClient":
        """The API client (kubeconfig or in-cluster), created on first use."""
        if self._api is None:
            with self._lock:
                if self._api is None:
                    from ._api import ApiClient, load_config

                    self._api = ApiClient(load_config(self.kubeconfig, self.context))
        return self._api

    @property
    def namespace(self) -> str:
        """Where root runs are created: the explicit namespace, else the config's."""
        return self._namespace or self.api.namespace

    def workflow(
        self,
        name: str,
        input_validator: type | None = None,
        description: str | None = None,
        image: str | None = None,
        service_account_name: str | None = None,
        pod_template: dict | None = None,
        entrypoint: str | None = None,
        **hatchet_options: Any,
    ) -> Workflow:
        """Declare a workflow; add tasks with `@wf.task()`."""
        _warn_unsupported("workflow()", hatchet_options)
        return Workflow(
            self, name, input_validator, description, image, service_account_name, pod_template,
            entrypoint, module=sys._getframe(1).f_globals.get("__name__"),
        )

    def task(
        self,
        name: str | None = None,
        input_validator: type | None = None,
        parents: Sequence[Task | str] | None = None,
        execution_timeout: Any = None,
        schedule_timeout: Any = None,
        retries: int = 0,
        backoff_factor: float | None = None,
        backoff_max_seconds: int | None = None,
        image: str | None = None,
        service_account_name: str | None = None,
        pod_template: dict | None = None,
        entrypoint: str | None = None,
        **hatchet_options: Any,
    ) -> Callable[[Callable], Standalone]:
        """Decorator: a standalone task, a one-task workflow whose result is the task's output."""
        _warn_unsupported("task()", hatchet_options)
        module = sys._getframe(1).f_globals.get("__name__")

        return self._standalone(
            module, False, name, input_validator, execution_timeout, schedule_timeout, retries,
            backoff_factor, backoff_max_seconds, image, service_account_name, pod_template, entrypoint,
        )

    def durable_task(
        self,
        name: str | None = None,
        input_validator: type | None = None,
        execution_timeout: Any = None,
        schedule_timeout: Any = None,
        retries: int = 0,
        backoff_factor: float | None = None,
        backoff_max_seconds: int | None = None,
        image: str | None = None,
        service_account_name: str | None = None,
        pod_template: dict | None = None,
        entrypoint: str | None = None,
        **hatchet_options: Any,
    ) -> Callable[[Callable], Standalone]:
        """Decorator: a standalone durable task (see Workflow.durable_task): it gives its pod
        back while it waits for children, a sleep or an event."""
        _warn_unsupported("durable_task()", hatchet_options)
        module = sys._getframe(1).f_globals.get("__name__")
        return self._standalone(
            module, True, name, input_validator, execution_timeout, schedule_timeout, retries,
            backoff_factor, backoff_max_seconds, image, service_account_name, pod_template, entrypoint,
        )

    def _standalone(self, module, durable, name, input_validator, execution_timeout, schedule_timeout,
                    retries, backoff_factor, backoff_max_seconds, image, service_account_name,
                    pod_template, entrypoint) -> Callable[[Callable], Standalone]:
        def decorate(fn: Callable) -> Standalone:
            standalone = Standalone(
                self, name or fn.__name__, input_validator, fn.__doc__, image, service_account_name,
                pod_template, entrypoint, module,
            )
            task_name = name if name and TASK_NAME.match(name) else fn.__name__
            standalone._add(
                Task(fn, standalone, task_name, (), execution_timeout, schedule_timeout,
                     retries, backoff_factor, backoff_max_seconds, durable=durable)
            )
            return standalone

        return decorate


Hatchet = Kinflow  # `from kinflow import Hatchet` ports Hatchet code by changing the import only
