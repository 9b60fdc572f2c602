"""Start the operator: `kinflow operator`, `python -m kinflow_operator`, or `run(...)` from code.

`kopf run -m kinflow_operator.handlers` works too; this entry adds kinflow's
flags (task image, metrics) and refuses to start without a namespace choice.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from .config import DEFAULT_TASK_IMAGE, OperatorConfig, set_config


def run(
    namespaces: Sequence[str] | None = None,
    clusterwide: bool = False,
    task_image: str = DEFAULT_TASK_IMAGE,
    metrics_port: int | None = None,
    verbose: bool = False,
    liveness_endpoint: str | None = None,
) -> None:
    """Run the operator until interrupted; `namespaces` are kopf globs like 'kft-abc-*'."""
    if not namespaces and not clusterwide:
        raise ValueError("give namespaces (globs allowed) or clusterwide=True")
    import kopf

    set_config(OperatorConfig(task_image=task_image))
    from . import handlers  # noqa: F401  (registers the handlers with kopf)
    from . import metrics

    from . import logs

    logs.configure(verbose)
    if metrics_port:
        metrics.serve(metrics_port)
    kopf.run(
        clusterwide=clusterwide,
        namespaces=list(namespaces or ()),
        standalone=True,
        liveness_endpoint=liveness_endpoint,
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kinflow operator", description="Run the kinflow operator.")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("-n", "--namespace", action="append", dest="namespaces", metavar="NS",
                       help="a namespace or glob (e.g. 'kft-abc-*') to watch; repeatable")
    where.add_argument("-A", "--all-namespaces", action="store_true", help="watch all namespaces")
    p.add_argument("--task-image", default=DEFAULT_TASK_IMAGE,
                   help="image for task pods when a run's spec.image is empty (default: %(default)s)")
    p.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus metrics on this port")
    p.add_argument("--liveness", default=None, metavar="URL",
                   help="kopf liveness endpoint, e.g. http://0.0.0.0:8080/healthz")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging, kopf's included")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    run(
        namespaces=args.namespaces,
        clusterwide=args.all_namespaces,
        task_image=args.task_image,
        metrics_port=args.metrics_port,
        verbose=args.verbose,
        liveness_endpoint=args.liveness,
    )
    return 0
