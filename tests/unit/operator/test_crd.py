"""The CRD file: structure, defaults and the names other parts rely on.

The CEL rules themselves are evaluated by the API server (tests/e2e/test_operator.py
applies invalid specs); here we check they exist and name their fields.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from kinflow import _constants as C

CRD = Path(__file__).resolve().parents[3] / "crds" / "workflowruns.kinflow.io.yaml"


def _crd():
    return yaml.safe_load(CRD.read_text())


def _version():
    return _crd()["spec"]["versions"][0]


def test_names_and_subresources():
    crd = _crd()
    assert crd["metadata"]["name"] == f"{C.PLURAL}.{C.GROUP}"
    names = crd["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"], names["categories"]) == (
        C.KIND, C.PLURAL, ["wfr"], ["kinflow"])
    assert crd["spec"]["scope"] == "Namespaced"
    v = _version()
    assert v["name"] == C.VERSION and v["served"] and v["storage"]
    assert v["subresources"] == {"status": {}}


def test_printer_columns():
    columns = {c["name"]: c for c in _version()["additionalPrinterColumns"]}
    for name in ("Phase", "Tasks", "Children", "Parent", "Age"):
        assert name in columns and not columns[name].get("priority")
    assert columns["Parent"]["jsonPath"] == ".metadata.labels.kinflow\\.io/parent"
    assert any(c.get("priority") == 1 for c in columns.values())


def _walk(schema, path="$"):
    yield path, schema
    for key, sub in (schema.get("properties") or {}).items():
        yield from _walk(sub, f"{path}.{key}")
    if isinstance(schema.get("items"), dict):
        yield from _walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _walk(schema["additionalProperties"], f"{path}.*")


def test_every_field_is_typed_and_spec_fields_are_described():
    schema = _version()["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        assert "type" in node, f"{path} has no type (structural schemas need one)"
        if path.startswith("$.spec.") and not path.endswith("[]") and path.count(".") <= 4:
            assert node.get("description"), f"{path} has no description (kubectl explain shows it)"


def test_defaults_are_hatchets():
    task = _version()["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["tasks"]["items"]
    props = task["properties"]
    assert props["executionTimeout"]["default"] == C.DEFAULT_EXECUTION_TIMEOUT == "60s"
    assert props["scheduleTimeout"]["default"] == C.DEFAULT_SCHEDULE_TIMEOUT == "5m"
    assert props["retries"]["default"] == 0 and props["retries"]["minimum"] == 0
    backoff = {k: v["default"] for k, v in props["backoff"]["properties"].items()}
    assert backoff == {"seconds": 1, "factor": 2, "maxSeconds": 60}
    spec = _version()["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert spec["serviceAccountName"]["default"] == C.DEFAULT_SERVICE_ACCOUNT


def test_free_json_fields_preserve_unknown_fields():
    root = _version()["schema"]["openAPIV3Schema"]["properties"]
    spec, status = root["spec"]["properties"], root["status"]["properties"]
    for node in (spec["input"], spec["metadata"], spec["podTemplate"], status["output"],
                 status["tasks"]["additionalProperties"]["properties"]["output"]):
        assert node["x-kubernetes-preserve-unknown-fields"] is True


def test_cel_rules_name_their_fields():
    tasks = _version()["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["tasks"]
    messages = [r["message"] for r in tasks["x-kubernetes-validations"]]
    assert any("spec.tasks[].name" in m and "unique" in m for m in messages)
    assert any("spec.tasks[].parents" in m and "only name tasks" in m for m in messages)
    assert any("onFailure" in m and "at most one" in m for m in messages)
    assert all(m.startswith("spec.") for m in messages)


def test_status_carries_the_contract_fields():
    status = _version()["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    for key in ("phase", "observedGeneration", "conditions", "startTime", "completionTime", "tasks",
                "output", "children"):
        assert key in status
    entry = status["tasks"]["additionalProperties"]["properties"]
    for key in ("phase", "attempt", "resumes", "job", "startTime", "completionTime", "retryAt", "output",
                "error", "wait", "reportedJob"):
        assert key in entry
    assert set(entry["error"]["properties"]) == {"type", "message", "traceback", "retryable"}
    assert set(status["children"]["properties"]) == {"total", "succeeded", "failed", "running"}
