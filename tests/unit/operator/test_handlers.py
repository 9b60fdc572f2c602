"""The kopf registry: only event handlers and indexes (so kopf stores nothing on objects)."""

from __future__ import annotations

import kopf

import kinflow_operator.handlers  # noqa: F401  (registers)
from kinflow_operator import settings as kinflow_settings
from kinflow_operator.main import parser


def test_no_change_detecting_handlers_timers_or_daemons():
    registry = kopf.get_default_registry()
    assert not registry._changing.get_all_handlers(), "a change-detecting handler stores state on objects"
    assert not registry._spawning.get_all_handlers(), "no per-object timers or daemons: use decide()'s requeue"
    assert len(registry._watching.get_all_handlers()) == 2  # runs, Jobs (sent events: events.py's own watch)
    assert len(registry._indexing.get_all_handlers()) == 5  # runs, children, waiting, Jobs, pods


def test_settings_are_applied():
    settings = kopf.OperatorSettings()
    kinflow_settings.configure(settings)
    assert settings.watching.server_timeout == 300 and isinstance(settings.watching.server_timeout, int)
    assert settings.watching.client_timeout > settings.watching.server_timeout
    assert settings.peering.standalone and not settings.posting.loggers


def test_cli_flags():
    args = parser().parse_args(["-n", "kft-abc-*", "--namespace", "other", "--task-image", "i:1",
                                "--metrics-port", "9090", "--verbose"])
    assert args.namespaces == ["kft-abc-*", "other"] and args.task_image == "i:1"
    assert args.metrics_port == 9090 and args.verbose
    assert parser().parse_args(["--all-namespaces"]).all_namespaces
