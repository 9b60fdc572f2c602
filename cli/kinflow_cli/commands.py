"""`kinflow run | get | tree | logs | cancel | event send | manifest`: the commands people type.

Each command is a small function taking parsed args and returning an exit code;
a user mistake prints one clear line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


class UserError(Exception):
    """A mistake the user can fix; printed as one line."""


def add_parsers(sub: argparse._SubParsersAction) -> None:
    def common(p):
        p.add_argument("-n", "--namespace", default=None, help="namespace (default: the kubeconfig's)")
        p.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: $KUBECONFIG)")

    run = sub.add_parser("run", help="start a workflow defined in Python (a root run)")
    run.add_argument("entrypoint", help='"module:attribute" of a workflow or task, e.g. examples.fanout:parent_wf')
    run.add_argument("--input", default="{}", help="input as JSON (default {})")
    run.add_argument("--name", default=None, help="run name (default: generated from the workflow name)")
    run.add_argument("--image", default=None, help="container image for the run's pods")
    run.add_argument("--wait", action="store_true", help="wait for the run and print its output")
    run.add_argument("--follow", action="store_true", help="show the live run tree, then the output")
    run.add_argument("--timeout", type=float, default=None, help="give up waiting after this many seconds")
    common(run)
    run.set_defaults(func=_guard(cmd_run))

    get = sub.add_parser("get", help="show a run")
    get.add_argument("run")
    get.add_argument("-o", "--output", choices=["yaml", "json", "summary"], default="summary")
    common(get)
    get.set_defaults(func=_guard(cmd_get))

    tree = sub.add_parser("tree", help="show a run's tree of spawned children")
    tree.add_argument("run")
    tree.add_argument("--table", action="store_true", help="also list the direct children as a table")
    common(tree)
    tree.set_defaults(func=_guard(cmd_tree))

    logs = sub.add_parser("logs", help="print the logs of a run's task pods")
    logs.add_argument("run")
    logs.add_argument("--task", default=None, help="only this task")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing until the pods end")
    common(logs)
    logs.set_defaults(func=_guard(cmd_logs))

    cancel = sub.add_parser("cancel", help="cancel a run and its whole subtree")
    cancel.add_argument("run")
    common(cancel)
    cancel.set_defaults(func=_guard(cmd_cancel))

    event = sub.add_parser("event", help="send an event to the durable tasks waiting for its key")
    event_sub = event.add_subparsers(dest="event_command", required=True)
    send = event_sub.add_parser("send", help="send event KEY with JSON data (see docs/design.md, Events)")
    send.add_argument("key", metavar="NAME", help="the event key tasks wait for (ctx.aio_wait_for_event(NAME))")
    send.add_argument("--data", default="{}", help="the event's data as JSON (default {})")
    send.add_argument("--run", default=None, help="deliver only to this run (default: every waiting run)")
    common(send)
    send.set_defaults(func=_guard(cmd_event_send))

    manifest = sub.add_parser("manifest", help="print the WorkflowRun YAML for a workflow defined in Python")
    manifest.add_argument("entrypoint")
    manifest.add_argument("--input", default="{}", help="input as JSON")
    manifest.add_argument("--name", default=None)
    manifest.add_argument("--image", default=None)
    manifest.add_argument("-n", "--namespace", default=None)
    manifest.set_defaults(func=_guard(cmd_manifest))


def _guard(fn):
    def wrapped(args):
        try:
            return fn(args)
        except UserError as e:
            print(f"kinflow {args.command}: {e}", file=sys.stderr)
            return 2
        except _api_exception() as e:  # the API said no: say what it said
            print(f"kinflow {args.command}: {_api_message(e)}", file=sys.stderr)
            return 1
    return wrapped


def _api_exception():
    from kubernetes.client.rest import ApiException

    return ApiException


def _api_message(e) -> str:
    try:
        return json.loads(e.body).get("message") or str(e)
    except (TypeError, ValueError):
        return f"{e.status} {e.reason}"


def _parse_input(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError as e:
        raise UserError(f"--input is not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise UserError("--input must be a JSON object, e.g. '{\"n\": 3}'")
    return value


def _manifest(args) -> dict:
    from kinflow._entrypoint import EntrypointError, load_entrypoint

    from pydantic import ValidationError

    try:
        runnable = load_entrypoint(args.entrypoint)
    except EntrypointError as e:
        raise UserError(str(e)) from None
    try:
        return runnable.to_manifest(_parse_input(args.input), name=args.name, image=args.image,
                                    entrypoint=args.entrypoint)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'input'}: {err['msg']}"
                             for err in e.errors())
        raise UserError(f"--input does not fit {e.title}: {problems}") from None


def _reader(args):
    from kinflow_cli.runs import RunReader

    return RunReader(args.namespace, args.kubeconfig)


def cmd_manifest(args) -> int:
    import yaml

    body = _manifest(args)
    if args.namespace:
        body["metadata"]["namespace"] = args.namespace
    sys.stdout.write(yaml.safe_dump(body, sort_keys=False))
    return 0


def cmd_run(args) -> int:
    from kinflow._constants import GROUP, PLURAL, VERSION

    body = _manifest(args)
    reader = _reader(args)
    created = reader.custom.create_namespaced_custom_object(GROUP, VERSION, reader.namespace, PLURAL, body)
    name = created["metadata"]["name"]
    print(f"workflowrun {reader.namespace}/{name} created", file=sys.stderr)
    if not (args.wait or args.follow):
        print(name)
        return 0
    final = _follow(reader, name, args.timeout) if args.follow else _wait(reader, name, args.timeout)
    return _finish(final)


def _wait(reader, name: str, timeout: float | None) -> dict:
    from kinflow._constants import TERMINAL_PHASES

    deadline = time.monotonic() + timeout if timeout else None
    while True:
        body = reader.get(name)
        if (body.get("status") or {}).get("phase") in TERMINAL_PHASES:
            return body
        if deadline and time.monotonic() > deadline:
            raise UserError(f"run {name} not finished after {timeout:.0f}s (it goes on; see `kinflow tree {name}`)")
        time.sleep(0.5)


def _follow(reader, name: str, timeout: float | None) -> dict:
    """Redraw the run tree in place until the run ends."""
    from rich.console import Console, Group
    from rich.live import Live

    from kinflow_cli.render import run_tree, totals_line

    console = Console(stderr=True)
    deadline = time.monotonic() + timeout if timeout else None
    root = reader.tree(name)
    if not console.is_terminal:
        return _follow_lines(reader, root, console, deadline, timeout)
    with Live(Group(run_tree(root), totals_line(root)), console=console, refresh_per_second=4,
              transient=False) as live:
        while not root.terminal:
            if deadline and time.monotonic() > deadline:
                raise UserError(f"run {name} not finished after {timeout:.0f}s")
            time.sleep(1.0)
            root = reader.tree(name)
            live.update(Group(run_tree(root), totals_line(root)))
    return root.body


def _follow_lines(reader, root, console, deadline, timeout) -> dict:
    """Not a terminal (CI, a log file): a progress line each time the counts change, then the tree."""
    from kinflow_cli.render import run_tree, totals_line

    last = None
    while True:
        line = totals_line(root)
        if line.plain != last:
            console.print(line)
            last = line.plain
        if root.terminal:
            break
        if deadline and time.monotonic() > deadline:
            raise UserError(f"run {root.name} not finished after {timeout:.0f}s")
        time.sleep(1.0)
        root = reader.tree(root.name)
    console.print(run_tree(root))
    return root.body


def _finish(body: dict) -> int:
    status = body.get("status") or {}
    phase = status.get("phase")
    print(file=sys.stderr)
    if phase == "Succeeded":
        print(json.dumps(status.get("output"), indent=2, sort_keys=True))
        return 0
    from kinflow_cli.runs import first_error

    print(f"run {body['metadata']['name']} {phase}: {first_error(status) or 'no error recorded'}",
          file=sys.stderr)
    return 1


def cmd_get(args) -> int:
    reader = _reader(args)
    body = reader.get(args.run)
    if args.output == "json":
        print(json.dumps(body, indent=2))
    elif args.output == "yaml":
        import yaml

        sys.stdout.write(yaml.safe_dump(body, sort_keys=False))
    else:
        from kinflow_cli.runs import node_of

        n = node_of(body)
        status = body.get("status") or {}
        print(f"name:      {n.name}")
        print(f"workflow:  {n.workflow}")
        print(f"phase:     {n.phase}")
        print(f"tasks:     {n.tasks_done}/{n.tasks_total} succeeded")
        ch = status.get("children") or {}
        if ch:
            print(f"children:  {ch.get('succeeded', 0)}/{ch.get('total', 0)} succeeded, "
                  f"{ch.get('failed', 0)} failed, {ch.get('running', 0)} running")
        for task, entry in (status.get("tasks") or {}).items():
            line = f"  {task}: {entry.get('phase')} (attempt {entry.get('attempt', 0)})"
            if entry.get("error"):
                line += f" {entry['error'].get('type')}: {entry['error'].get('message')}"
            print(line)
        if n.phase == "Succeeded":
            print("output:    " + json.dumps(status.get("output"), sort_keys=True))
        elif n.error:
            print(f"error:     {n.error}")
    return 0


def cmd_tree(args) -> int:
    from rich.console import Console

    from kinflow_cli.render import children_table, run_tree, totals_line

    root = _reader(args).tree(args.run)
    console = Console()
    console.print(run_tree(root))
    console.print(totals_line(root))
    if args.table and root.children:
        console.print(children_table(root))
    return 0


def cmd_cancel(args) -> int:
    reader = _reader(args)
    reader.cancel(args.run)
    print(f"workflowrun {reader.namespace}/{args.run}: cancel requested (its subtree follows)")
    return 0


def cmd_event_send(args) -> int:
    from kinflow_cli.events import send

    try:
        data = json.loads(args.data)
    except ValueError as e:
        raise UserError(f"--data is not valid JSON: {e}") from None
    reader = _reader(args)
    try:
        name, matched = send(reader, args.key, data, args.run)
    except ValueError as e:
        raise UserError(str(e)) from None
    where = f"run {args.run}" if args.run else f"namespace {reader.namespace}"
    print(f"event {args.key!r} sent to {where} as Event {name}; "
          f"{len(matched)} waiting run(s) matched" + (f": {', '.join(matched)}" if matched else ""))
    return 0


def cmd_logs(args) -> int:
    from kinflow_cli.logs import print_logs

    return print_logs(_reader(args), args.run, args.task, args.follow)
