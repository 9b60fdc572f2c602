"""The Helm chart for real (issue 6, item 3): `helm install` into the cluster,
the operator Deployment's pod runs and becomes Ready, the fan-out example runs
end to end through it, and `helm uninstall` removes everything but the CRDs.

What is real: helm (the pinned build), the API server, RBAC (the operator runs
as the chart's ServiceAccount with the chart's Role, task pods as
`kinflow-task`), the controller-manager and scheduler. On the kinflow dev
cluster the node agent runs the operator container's command
(`kinflow operator ...`) as a local process and ignores the image.

KINFLOW_TEST_CHART=path installs that chart (e.g. a `helm package` .tgz)
instead of charts/kinflow.

The release watches only a namespace of its own (`operator.watchNamespaces`),
so it never competes with the session operator or other test sessions that
share the cluster; this also exercises the namespaced-RBAC mode.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.waiting import WaitTimeout, wait_for

ROOT = Path(__file__).resolve().parents[2]
# KINFLOW_TEST_CHART: install another chart (a packaged .tgz, say) instead of the folder.
CHART = Path(os.environ.get("KINFLOW_TEST_CHART") or ROOT / "charts" / "kinflow")
GROUP, VERSION, PLURAL = "kinflow.io", "v1alpha1", "workflowruns"
CRD = "workflowruns.kinflow.io"
FANOUT_N = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Release:
    """One helm release of the chart, with the namespaces it uses."""

    def __init__(self, cluster, helm: Path):
        suffix = secrets.token_hex(3)
        self.cluster = cluster
        self.helm = helm
        self.name = f"kinflow-{suffix}"  # contains "kinflow": objects are named kinflow-<suffix>-*
        self.system_ns = f"kfchart-{suffix}-system"  # the release (operator) namespace
        self.runs_ns = f"kfchart-{suffix}-runs"  # where workflows run
        self.health_port = _free_port()  # dev-node pods share the host's loopback
        self.metrics_port = _free_port()
        self.operator = f"{self.name}-operator"

    def values(self) -> dict:
        return {
            "operator": {
                "watchNamespaces": [self.runs_ns],
                "healthPort": self.health_port,
                "metrics": {"port": self.metrics_port},
                "image": {"pullPolicy": "Never"},
                # The dev node reports every pod as qosClass BestEffort, and the API
                # server refuses that status for a Burstable pod (the field is
                # immutable), so the pod would never show Running there. Until the
                # node agent stops writing qosClass, the dev-cluster install runs
                # the operator without requests/limits.
                **({"resources": {"requests": None, "limits": None}} if self.cluster.dev is not None else {}),
            },
            "tasks": {"namespaces": [self.runs_ns]},
        }

    def run_helm(self, *args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [str(self.helm), "--kubeconfig", str(self.cluster.kubeconfig), *args],
            capture_output=True, text=True, timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def install(self, tmp_path: Path) -> subprocess.CompletedProcess:
        values = tmp_path / "values.json"
        values.write_text(json.dumps(self.values()))
        return self.run_helm("install", self.name, str(CHART), "--namespace", self.system_ns,
                             "--create-namespace", "-f", str(values))

    def operator_pods(self) -> list:
        return self.cluster.core.list_namespaced_pod(
            self.system_ns, label_selector=f"app.kubernetes.io/instance={self.name},"
                                           "app.kubernetes.io/component=operator").items

    def diagnose(self) -> str:
        """The operator pods' status and log, for failure messages."""
        lines = []
        for pod in self.operator_pods():
            statuses = [(c.name, c.ready, c.restart_count, c.state.to_dict()) for c in pod.status.container_statuses or []]
            lines.append(f"pod {pod.metadata.name}: phase={pod.status.phase} node={pod.spec.node_name} {statuses}")
        return "\n".join(lines or ["no operator pod"]) + f"\noperator log:\n{self.operator_log()}"

    def operator_log(self) -> str:
        """The operator container's log, for failure messages (dev cluster: from the node's files)."""
        pods = self.operator_pods()
        if not pods or self.cluster.dev is None:
            return "(no log available)"
        try:
            from kinflow_dev.podstore import find_log

            return find_log(self.cluster.dev.home, self.system_ns, pods[0].metadata.name,
                            "operator").read_text()[-4000:]
        except Exception as e:  # the log is a diagnostic, never the failure itself
            return f"(log not readable: {e!r})"


def _ready_operator_pod(release: Release):
    pods = release.operator_pods()
    for pod in pods:
        conditions = {c.type: c.status for c in pod.status.conditions or []}
        if pod.status.phase == "Running" and conditions.get("Ready") == "True":
            return pod
    return None


def _gone(read) -> bool:
    from kubernetes.client.rest import ApiException

    try:
        read()
    except ApiException as e:
        if e.status == 404:
            return True
        raise
    return False


@pytest.fixture
def helm() -> Path:
    from kinflow_dev.helm import ensure_helm

    return ensure_helm()


@pytest.fixture
def release(cluster, helm):
    rel = Release(cluster, helm)
    # The task namespace must exist before install (the chart creates no namespaces
    # besides the release's own, via --create-namespace).
    cluster.core.create_namespace({"metadata": {"name": rel.runs_ns, "labels": {"kinflow.io/test": "chart"}}})
    yield rel
    rel.run_helm("uninstall", rel.name, "--namespace", rel.system_ns, "--ignore-not-found", check=False)
    for ns in (rel.runs_ns, rel.system_ns):
        try:
            cluster.core.delete_namespace(ns, propagation_policy="Background")
        except Exception:
            pass


def test_helm_install_runs_fanout_and_uninstall_keeps_crds(cluster, release, tmp_path):
    from kubernetes import client

    rbac = client.RbacAuthorizationV1Api(cluster.api)
    apps = client.AppsV1Api(cluster.api)
    ext = client.ApiextensionsV1Api(cluster.api)

    # The dev node runs the chart's command `kinflow operator ...` from PATH, as is:
    # fail fast and clearly if that command cannot take the chart's arguments.
    kinflow = shutil.which("kinflow", path=cluster.env().get("PATH"))
    assert kinflow, "the `kinflow` console script is not on PATH (pip install -e . in this environment)"
    probe = subprocess.run([kinflow, "operator", "--help"], capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, (
        f"`kinflow operator --help` exited {probe.returncode}: the CLI does not forward flags to the "
        f"operator, so the chart's Deployment cannot start it:\n{probe.stderr[-1500:]}")

    # -- install ---------------------------------------------------------------------
    installed = release.install(tmp_path)
    assert "STATUS: deployed" in installed.stdout, installed.stdout
    assert "kinflow run examples.fanout:parent_wf" in installed.stdout  # NOTES.txt
    ext.read_custom_resource_definition(CRD)

    # -- the operator pod runs on the node and becomes Ready -----------------------------
    try:
        pod = wait_for(lambda: _ready_operator_pod(release), 120,
                       f"the operator pod of {release.name} to be Running and Ready")
    except WaitTimeout as e:
        raise WaitTimeout(f"{e}\n{release.diagnose()}") from None
    if cluster.dev is not None:
        assert pod.spec.node_name == cluster.dev.config.node_name
    assert pod.spec.service_account_name == release.operator
    wait_for(lambda: apps.read_namespaced_deployment(release.operator, release.system_ns).status.available_replicas,
             60, f"deployment {release.operator} to report an available replica")

    # The dev node marks a running container Ready without probing; check the
    # endpoint the chart's probes use answers, as a kubelet would.
    if cluster.dev is not None:
        def healthz():
            with urllib.request.urlopen(f"http://127.0.0.1:{release.health_port}/healthz", timeout=2) as r:
                return r.status == 200

        wait_for(healthz, 60, f"kopf's /healthz on port {release.health_port} to answer 200")

    # -- the fan-out example, end to end, through the installed operator -----------------
    proc = subprocess.run(
        [sys.executable, "-m", "kinflow_cli.main", "run", "examples.fanout:parent_wf",
         "-n", release.runs_ns, "--input", json.dumps({"n": FANOUT_N}), "--wait", "--timeout", "240"],
        capture_output=True, text=True, env=cluster.env(), cwd=ROOT, timeout=300,
    )
    assert proc.returncode == 0, (
        f"kinflow run failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}\n"
        f"{release.diagnose()}")
    runs = cluster.custom.list_namespaced_custom_object(GROUP, VERSION, release.runs_ns, PLURAL)["items"]
    roots = [r for r in runs if "kinflow.io/parent" not in (r["metadata"].get("labels") or {})]
    assert len(roots) == 1, [r["metadata"]["name"] for r in runs]
    root = roots[0]
    assert root["status"]["phase"] == "Succeeded", root["status"]
    results = root["status"]["output"]["spawn"]["results"]
    assert sorted(r["process2"]["status2"] for r in results) == sorted(f"{i}2" for i in range(FANOUT_N))
    assert root["status"]["children"]["total"] == FANOUT_N
    assert len(runs) == 1 + FANOUT_N
    # Task pods ran as the chart's task ServiceAccount.
    task_pods = cluster.core.list_namespaced_pod(release.runs_ns, label_selector="kinflow.io/run").items
    assert task_pods and {p.spec.service_account_name for p in task_pods} == {"kinflow-task"}

    # -- NOTES.txt's kubectl way: the DAG example as plain YAML ------------------------------
    cluster.kubectl("-n", release.runs_ns, "apply", "-f", str(ROOT / "examples" / "dag.yaml"))

    def dag_done():
        run = cluster.custom.get_namespaced_custom_object(GROUP, VERSION, release.runs_ns, PLURAL, "dag-example")
        return run if (run.get("status") or {}).get("phase") in ("Succeeded", "Failed", "Cancelled") else None

    dag = wait_for(dag_done, 120, f"dag-example in {release.runs_ns} to finish")
    assert dag["status"]["phase"] == "Succeeded", dag["status"]
    assert dag["status"]["output"] == {"process": {"status": "7"}, "process2": {"status2": "72"}}

    # -- uninstall: everything of the release goes, the CRD (and the runs) stay ---------
    uninstalled = release.run_helm("uninstall", release.name, "--namespace", release.system_ns, "--wait")
    assert "uninstalled" in uninstalled.stdout
    checks = {
        f"deployment {release.operator}":
            lambda: apps.read_namespaced_deployment(release.operator, release.system_ns),
        f"serviceaccount {release.operator}":
            lambda: cluster.core.read_namespaced_service_account(release.operator, release.system_ns),
        f"clusterrole {release.operator}": lambda: rbac.read_cluster_role(release.operator),
        f"clusterrolebinding {release.operator}": lambda: rbac.read_cluster_role_binding(release.operator),
        f"role {release.operator} in {release.runs_ns}":
            lambda: rbac.read_namespaced_role(release.operator, release.runs_ns),
        f"rolebinding {release.operator} in {release.runs_ns}":
            lambda: rbac.read_namespaced_role_binding(release.operator, release.runs_ns),
        f"task role {release.name}-task":
            lambda: rbac.read_namespaced_role(f"{release.name}-task", release.runs_ns),
        f"task rolebinding {release.name}-task":
            lambda: rbac.read_namespaced_role_binding(f"{release.name}-task", release.runs_ns),
        "task serviceaccount kinflow-task":
            lambda: cluster.core.read_namespaced_service_account("kinflow-task", release.runs_ns),
    }
    for what, read in checks.items():
        wait_for(lambda: _gone(read), 60, f"{what} to be deleted by helm uninstall")
    wait_for(lambda: not release.operator_pods(), 60, "the operator pod to be deleted")
    assert not release.run_helm("list", "--namespace", release.system_ns, "-q").stdout.strip()
    # Kept: the CRD, and with it the runs.
    ext.read_custom_resource_definition(CRD)
    assert cluster.custom.get_namespaced_custom_object(GROUP, VERSION, release.runs_ns, PLURAL,
                                                       root["metadata"]["name"])
