"""The chart's CRDs are a byte-for-byte copy of the top-level crds/ (the single source)."""

from __future__ import annotations

import importlib.util

import yaml

from tests.unit.chart.conftest import CHART, ROOT


def _sync_module():
    spec = importlib.util.spec_from_file_location("sync_crds", ROOT / "charts" / "sync_crds.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_chart_crds_equal_the_source():
    diff = _sync_module().differences()
    assert not diff, (
        "charts/kinflow/crds/ drifted from crds/:\n  " + "\n  ".join(diff)
        + "\nrefresh the chart's copy with: python3 charts/sync_crds.py"
    )


def test_chart_carries_the_workflowrun_crd():
    names = []
    for path in (CHART / "crds").glob("*.yaml"):
        names += [d["metadata"]["name"] for d in yaml.safe_load_all(path.read_text())
                  if d and d.get("kind") == "CustomResourceDefinition"]
    assert "workflowruns.kinflow.io" in names


def test_sync_repairs_drift(tmp_path):
    sync = _sync_module()
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    (src / "a.yaml").write_text("a: 1\n")
    (dst / "a.yaml").write_text("a: 2\n")
    (dst / "old.yaml").write_text("old\n")
    assert sync.differences(src, dst) == ["differs: a.yaml", "stale in chart (no source in crds/): old.yaml"]
    sync.sync(src, dst)
    assert sync.differences(src, dst) == []
    assert not (dst / "old.yaml").exists()
