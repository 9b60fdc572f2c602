"""`kinflow event send`: the Event it builds (read back by the operator) and the runs it counts."""

from __future__ import annotations

import datetime as dt

import pytest

from kinflow import _constants as C
from kinflow_cli.events import build_event, waiting_for
from kinflow_operator.resource import ObservedEvent


def test_the_event_round_trips_to_what_the_operator_reads():
    now = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    body = build_event("ns", "approval:order 7", {"ok": True}, now=now)
    assert body["reason"] == "KinflowEvent" and body["metadata"]["labels"] == {C.LABEL_EVENT: "true"}
    assert body["involvedObject"] == {"apiVersion": "v1", "kind": "Namespace", "name": "ns", "namespace": "ns"}
    body["metadata"]["creationTimestamp"] = "2026-01-02T03:04:05Z"
    event = ObservedEvent.from_body(body)
    assert (event.key, event.data, event.run, event.created) == ("approval:order 7", {"ok": True}, "", now)


def test_a_targeted_event_names_its_run():
    run = {"metadata": {"name": "r1", "uid": "u1"}}
    body = build_event("ns", "k", 1, run)
    assert body["involvedObject"]["name"] == "r1" and body["involvedObject"]["kind"] == "WorkflowRun"
    assert body["metadata"]["annotations"][C.ANNOTATION_EVENT_RUN] == "r1"


def test_data_over_the_limit_is_refused_naming_it():
    with pytest.raises(ValueError, match="MAX_EVENT_DATA_BYTES"):
        build_event("ns", "k", "x" * C.MAX_EVENT_DATA_BYTES)


def test_only_current_waiting_reports_count():
    def run(name, **entry):
        return {"metadata": {"name": name}, "status": {"tasks": {"t": entry}}}

    runs = [run("a", phase="Waiting", wait={"event": "k"}, job="j", reportedJob="j"),
            run("b", phase="Waiting", wait={"event": "other"}, job="j", reportedJob="j"),
            run("c", phase="Running", job="j2", reportedJob="j"),
            run("d", phase="Waiting", wait={"event": "k"}, job="j2", reportedJob="j")]
    assert waiting_for(runs, "k") == ["a"]
