"""The `kinflow` command. Each subcommand's module is imported only when used,
so `kinflow dev env` does not pay for the operator or the terminal UI."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kinflow",
        description="Kubernetes-native workflows with procedural child spawning.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    from kinflow_dev.cli import add_parser as add_dev

    add_dev(sub)

    # `kinflow operator ...` is forwarded whole to the operator's own parser (see main()).
    sub.add_parser("operator", help="run the kinflow operator (kopf); see `kinflow operator --help`",
                   add_help=False)

    try:
        from kinflow_cli.commands import add_parsers
    except ImportError:  # the user-facing commands are optional in a minimal install
        add_parsers = None
    if add_parsers:
        add_parsers(sub)
    return parser


def _operator(argv: list[str]) -> int:
    from kinflow_operator.main import main as operator_main

    return operator_main(argv) or 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["operator"]:  # its flags are the operator's, not ours
        return _operator(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
