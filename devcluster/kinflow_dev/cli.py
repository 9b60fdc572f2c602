"""`kinflow dev ...`: bring the local cluster up and down, show it, print its env."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    dev = sub.add_parser("dev", help="a local Kubernetes cluster of real components, run as processes")
    dev.add_argument("--home", type=Path, default=None,
                     help="state folder (default $KINFLOW_DEV_HOME or ~/.local/share/kinflow/dev)")
    cmds = dev.add_subparsers(dest="dev_command", required=True)

    up = cmds.add_parser("up", help="build the binaries if needed and start the cluster")
    up.add_argument("--slots", type=int, default=None,
                    help="pods the node runs at once (its `pods` capacity; default 8)")
    up.add_argument("--port", type=int, default=None, help="API server port (default 6443)")
    up.add_argument("--no-operator", action="store_true",
                    help="do not start the kinflow operator (tests run their own)")
    up.add_argument("--workdir", default=None,
                    help="working directory of pod processes (default: the current one)")
    up.add_argument("--pythonpath", default=None,
                    help="PYTHONPATH of pod processes (default: the current PYTHONPATH)")
    up.add_argument("-v", "--verbose", action="store_true", help="show every build line")
    up.set_defaults(func=cmd_up)

    down = cmds.add_parser("down", help="stop every process `up` started")
    down.add_argument("--purge", action="store_true", help="also delete the cluster's state")
    down.set_defaults(func=cmd_down)

    status = cmds.add_parser("status", help="show each component and the node")
    status.set_defaults(func=cmd_status)

    env = cmds.add_parser("env", help="print `export KUBECONFIG=...` for this cluster")
    env.set_defaults(func=cmd_env)


def _open(args, **overrides):
    from kinflow_dev.controlplane import open_cluster

    return open_cluster(args.home, **overrides)


def cmd_up(args) -> int:
    from kinflow_dev.binaries import BuildError

    dev = _open(
        args, slots=args.slots, api_port=args.port,
        operator=False if args.no_operator else None,
        workdir=args.workdir or os.getcwd(),
        pythonpath=args.pythonpath if args.pythonpath is not None else os.environ.get("PYTHONPATH", ""),
        python=sys.executable,
    )
    if not args.no_operator:
        dev.config.operator = True
    try:
        dev.up(verbose=args.verbose)
    except (BuildError, RuntimeError) as e:
        print(f"kinflow dev up: {e}", file=sys.stderr)
        return 1
    print()
    print("The kinflow dev cluster is up. Use it with:")
    print(f"  export KUBECONFIG={dev.kubeconfig}")
    print("  kubectl get nodes")
    print("  kinflow run examples.fanout:parent_wf --input '{\"n\": 5}' --follow")
    print("Stop it with `kinflow dev down` (add --purge to delete its state).")
    return 0


def cmd_down(args) -> int:
    dev = _open(args)
    stopped = dev.down(purge=args.purge)
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    if args.purge:
        print(f"removed {dev.home}")
    return 0


def cmd_status(args) -> int:
    dev = _open(args)
    rows = dev.status()
    width = max(len(n) for n in rows)
    for name, row in rows.items():
        state = f"running (pid {row['pid']})" if row["running"] else "stopped"
        print(f"{name:<{width}}  {state:<22}  {row['log']}")
    if rows["kube-apiserver"]["running"]:
        _print_nodes(dev.kubeconfig)
    return 0 if all(r["running"] for n, r in rows.items() if n != "operator" or dev.config.operator) else 3


def _print_nodes(kubeconfig: Path) -> None:
    from kubernetes import client, config

    core = client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))
    for n in core.list_node().items:
        ready = next((c.status for c in n.status.conditions or [] if c.type == "Ready"), "?")
        pods = core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={n.metadata.name}")
        running = sum(1 for p in pods.items if p.status.phase == "Running")
        print(f"node {n.metadata.name}: Ready={ready} slots={n.status.capacity.get('pods')} "
              f"running pods={running}")


def cmd_env(args) -> int:
    dev = _open(args)
    print(f"export KUBECONFIG={dev.kubeconfig}")
    return 0
