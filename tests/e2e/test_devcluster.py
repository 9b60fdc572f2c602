"""The dev cluster is a real cluster: Jobs, the scheduler's slot accounting,
deadlines, deletion, RBAC with real service-account tokens, and the garbage
collector all behave as Kubernetes does. Issue 2's acceptance list."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

import pytest

from tests.e2e.waiting import wait_for

PY = "python3"


@pytest.fixture
def namespace(bare_namespace):
    """These tests are about the cluster itself: no operator needed."""
    return bare_namespace


def _job(name: str, code: str, **pod_spec) -> dict:
    return {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "ignored", "command": [PY, "-c", code]}],
            **pod_spec}}},
    }


def _pod(name: str, code: str, **pod_spec) -> dict:
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"restartPolicy": "Never",
                 "containers": [{"name": "main", "image": "ignored", "command": [PY, "-c", code]}],
                 **pod_spec},
    }


def _job_condition(cluster, ns, name):
    job = cluster.batch.read_namespaced_job(name, ns)
    return {c.type for c in job.status.conditions or [] if c.status == "True"}


def _pods_of_job(cluster, ns, name):
    return cluster.core.list_namespaced_pod(ns, label_selector=f"job-name={name}").items


def _processes_with(marker: str) -> list[int]:
    """PIDs whose command line holds marker: the pod's process, seen from the host."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline and str(os.getpid()) != entry.name:
            pids.append(int(entry.name))
    return pids


def _read_log(cluster, ns, pod) -> str:
    from kinflow_dev.node import read_log

    return read_log(cluster.dev.home, ns, pod)


def test_job_completes_and_its_log_reads_42(cluster, namespace):
    cluster.batch.create_namespaced_job(namespace, _job("answer", "print(42)"))
    wait_for(lambda: "Complete" in _job_condition(cluster, namespace, "answer"), 60, "Job answer Complete")
    [pod] = _pods_of_job(cluster, namespace, "answer")
    assert pod.status.phase == "Succeeded"
    if cluster.dev:
        assert _read_log(cluster, namespace, pod.metadata.name).strip() == "42"
    out = cluster.kubectl("-n", namespace, "get", "pod", pod.metadata.name, "-o",
                          "jsonpath={.status.containerStatuses[0].state.terminated.exitCode}")
    assert out.stdout == "0"


def test_failing_container_exit_code_reaches_pod_and_job_fails(cluster, namespace):
    cluster.batch.create_namespaced_job(namespace, _job("fails", "import sys; sys.exit(3)"))
    wait_for(lambda: "Failed" in _job_condition(cluster, namespace, "fails"), 60, "Job fails Failed")
    [pod] = _pods_of_job(cluster, namespace, "fails")
    assert pod.status.phase == "Failed"
    terminated = pod.status.container_statuses[0].state.terminated
    assert terminated.exit_code == 3
    assert terminated.reason == "Error"


def test_active_deadline_kills_the_pod(cluster, namespace):
    marker = f"deadline-{secrets.token_hex(4)}"
    cluster.core.create_namespaced_pod(namespace, _pod(
        "slow", f"import time; time.sleep(120)  # {marker}", activeDeadlineSeconds=2))
    wait_for(lambda: _processes_with(marker), 30, "the pod's process to start")
    pod = wait_for(lambda: (p := cluster.core.read_namespaced_pod("slow", namespace)).status.phase == "Failed" and p,
                   30, "pod slow Failed after its deadline")
    assert pod.status.reason == "DeadlineExceeded"
    wait_for(lambda: not _processes_with(marker), 15, "the pod's process to be gone")


def test_deleting_a_running_pod_kills_its_process(cluster, namespace):
    marker = f"delete-{secrets.token_hex(4)}"
    cluster.core.create_namespaced_pod(namespace, _pod("victim", f"import time; time.sleep(120)  # {marker}"))
    wait_for(lambda: _processes_with(marker), 30, "the pod's process to start")
    cluster.core.delete_namespaced_pod("victim", namespace, grace_period_seconds=2)
    wait_for(lambda: not _processes_with(marker), 20, "the pod's process to be killed")
    from kubernetes.client.rest import ApiException

    def gone():
        try:
            cluster.core.read_namespaced_pod("victim", namespace)
            return False
        except ApiException as e:
            return e.status == 404

    wait_for(gone, 20, "pod victim removed from the API")


def test_third_pod_waits_for_a_slot_on_a_two_slot_node(cluster, namespace, extra_node):
    node, overrides = extra_node(2)
    for i in range(3):
        cluster.core.create_namespaced_pod(namespace, _pod(f"p{i}", "import time; time.sleep(4)", **overrides))

    def phases():
        return {p.metadata.name: p.status.phase for p in cluster.core.list_namespaced_pod(namespace).items}

    wait_for(lambda: sorted(phases().values()) == ["Pending", "Running", "Running"], 30,
             "two pods Running and one Pending")
    pending = [n for n, ph in phases().items() if ph == "Pending"][0]
    pod = cluster.core.read_namespaced_pod(pending, namespace)
    assert not pod.spec.node_name, "the third pod must not be bound while both slots are taken"
    wait_for(lambda: cluster.core.read_namespaced_pod(pending, namespace).status.phase in ("Running", "Succeeded"),
             60, f"{pending} to run once a slot frees")


PROBE = r"""
import json, os, ssl, urllib.request, urllib.error
kc = json.load(open(os.environ["KUBECONFIG"]))
server = kc["clusters"][0]["cluster"]["server"]
ca = kc["clusters"][0]["cluster"]["certificate-authority"]
token = open(kc["users"][0]["user"]["tokenFile"]).read().strip()
ns = os.environ["NS"]
ctx = ssl.create_default_context(cafile=ca)
for path in ["/api/v1/namespaces/%s/secrets" % ns, "/apis/kinflow.io/v1alpha1/namespaces/%s/workflowruns" % ns]:
    req = urllib.request.Request(server + path, headers={"Authorization": "Bearer " + token})
    try:
        code = urllib.request.urlopen(req, context=ctx).status
    except urllib.error.HTTPError as e:
        code = e.code
    print(path.rsplit("/", 1)[1], code)
"""


@pytest.mark.parametrize("account,expect_runs", [("default", "403"), ("kinflow-task", "200")])
def test_pod_tokens_are_real_and_rbac_applies(cluster, namespace, account, expect_runs):
    env = [{"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}]
    pod = _pod("probe", PROBE, serviceAccountName=account)
    pod["spec"]["containers"][0]["env"] = env
    cluster.core.create_namespaced_pod(namespace, pod)
    wait_for(lambda: cluster.core.read_namespaced_pod("probe", namespace).status.phase == "Succeeded",
             60, "probe pod Succeeded")
    lines = dict(line.split() for line in _read_log(cluster, namespace, "probe").splitlines())
    assert lines == {"secrets": "403", "workflowruns": expect_runs}


def test_deleting_an_owner_deletes_what_it_owns(cluster, namespace):
    owner = cluster.core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    cluster.core.create_namespaced_config_map(namespace, {"metadata": {
        "name": "owned", "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
                                              "uid": owner.metadata.uid}]}})
    cluster.core.delete_namespaced_config_map("owner", namespace)
    names = lambda: {c.metadata.name for c in cluster.core.list_namespaced_config_map(namespace).items}
    wait_for(lambda: "owned" not in names(), 60, "the garbage collector to delete the owned ConfigMap")


def test_dev_up_is_idempotent_and_down_leaves_no_process(cluster, tmp_path):
    if cluster.dev is None:
        pytest.skip("needs the kinflow dev cluster")
    from kinflow_dev.controlplane import open_cluster

    dev = open_cluster(tmp_path / "dev", slots=1, operator=False, api_port=16443,
                       etcd_port=12379, etcd_peer_port=12380, python=sys.executable)
    try:
        dev.up()
        first = {n: r["pid"] for n, r in dev.status().items() if r["running"]}
        assert {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"} <= set(first)
        dev.up()  # a second `up` reuses what runs
        assert {n: r["pid"] for n, r in dev.status().items() if r["running"]} == first
    finally:
        dev.down()
    for pid in first.values():
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[1][:3], \
            f"process {pid} still running after dev down"
