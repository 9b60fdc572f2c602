"""The runner's path to its first API request imports nothing heavy.

Checked with `python -X importtime`: the runner is pointed at a run that does
not exist, so it exits right after its first request, and every module it
imported was imported before (or for) that request. Timing itself is measured
by bench/runner_coldstart.py, not here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
HEAVY = ("kopf", "kubernetes", "pydantic", "pydantic_core", "yaml", "asyncio", "urllib3", "requests", "dataclasses")


def test_no_heavy_imports_before_the_first_request(fake, tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps(fake.kubeconfig("ns1")))
    env = dict(os.environ, KUBECONFIG=str(kubeconfig), KINFLOW_RUN="missing", KINFLOW_NAMESPACE="ns1",
               KINFLOW_TASK="t", PYTHONPATH=str(ROOT / "runner"))
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "kinflow.runner"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr  # the run does not exist: nothing to report
    assert "cannot read run ns1/missing" in proc.stderr
    assert fake.count("GET", "/workflowruns/missing") == 1
    imported = {
        line.split("|")[-1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and not line.rstrip().endswith("package")
    }
    assert "kinflow._api" in imported
    heavy = sorted(m for m in imported if m.split(".")[0] in HEAVY)
    assert heavy == [], f"imported before the first request: {heavy}"
