"""The operator's own configuration (not kopf's): what `kinflow operator` flags set.

Also read from the environment so that `kopf run -m kinflow_operator.handlers`
works without our CLI: KINFLOW_TASK_IMAGE.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_TASK_IMAGE = "ghcr.io/kinflow/kinflow:latest"


@dataclass(frozen=True)
class OperatorConfig:
    task_image: str = DEFAULT_TASK_IMAGE  # for runs whose spec.image is empty

    @classmethod
    def from_env(cls) -> OperatorConfig:
        return cls(task_image=os.environ.get("KINFLOW_TASK_IMAGE") or DEFAULT_TASK_IMAGE)


_current: OperatorConfig | None = None


def set_config(config: OperatorConfig) -> None:
    global _current
    _current = config


def get_config() -> OperatorConfig:
    return _current or OperatorConfig.from_env()
