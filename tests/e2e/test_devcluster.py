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


def _pod_gone(cluster, ns, name) -> bool:
    from kubernetes.client.rest import ApiException

    try:
        cluster.core.read_namespaced_pod(name, ns)
        return False
    except ApiException as e:
        return e.status == 404


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
    wait_for(lambda: _pod_gone(cluster, namespace, "victim"), 20, "pod victim removed from the API")


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


# -- runner pods forked by the node's fork server -----------------------------------------

from kinflow import Context, EmptyModel, Kinflow  # noqa: E402  (the workflow below runs in pods)

_kf = Kinflow()


@_kf.task(name="e2e-sleeper", execution_timeout="10m")
def e2e_sleeper(input: EmptyModel, ctx: Context) -> dict:
    """A task that outlives its test: deletion or a deadline must end it."""
    import time

    print("sleeper started", flush=True)
    time.sleep(600)
    return {}


def _runner_pod(name: str, run: str, task: str, **pod_spec) -> dict:
    """A pod as the operator's Job makes it: `python3 -m kinflow.runner` and KINFLOW_* env."""
    env = [{"name": "KINFLOW_RUN", "value": run}, {"name": "KINFLOW_TASK", "value": task},
           {"name": "KINFLOW_ATTEMPT", "value": "1"}, {"name": "KINFLOW_JOB", "value": name},
           {"name": "KINFLOW_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"restartPolicy": "Never", "serviceAccountName": "kinflow-task",
                     "containers": [{"name": "task", "image": "ignored", "command": [PY, "-m", "kinflow.runner"],
                                     "env": env}], **pod_spec}}


def _sleeper_run(cluster, namespace: str) -> tuple[str, str]:
    manifest = e2e_sleeper.to_manifest({}, entrypoint="tests.e2e.test_devcluster:e2e_sleeper")
    manifest["metadata"].pop("generateName", None)
    manifest["metadata"]["name"] = f"sleeper-{secrets.token_hex(3)}"
    run = cluster.custom.create_namespaced_custom_object("kinflow.io", "v1alpha1", namespace, "workflowruns",
                                                         manifest)
    return run["metadata"]["name"], manifest["spec"]["tasks"][0]["name"]


def _forked(cluster, namespace: str, pod: str) -> bool:
    """The node says it started the pod through its fork server (not exec)."""
    log = cluster.dev.procs.log_path(f"node-{cluster.dev.config.node_name}").read_text()
    return any(f"pod={namespace}/{pod} " in line and "via=fork" in line
               for line in log.splitlines() if "started" in line)


def _sleeper_started(cluster, namespace: str, pod: str) -> bool:
    try:
        return "sleeper started" in _read_log(cluster, namespace, pod)
    except LookupError:
        return False


@pytest.fixture
def dev_only(cluster):
    if not cluster.dev:
        pytest.skip("the fork server is the dev node's")


def test_forked_runner_pod_reports_its_exit_code(cluster, namespace, dev_only):
    cluster.core.create_namespaced_pod(namespace, _runner_pod("no-run", "no-such-run", "t"))
    pod = wait_for(lambda: (p := cluster.core.read_namespaced_pod("no-run", namespace)).status.phase == "Failed"
                   and p, 60, "runner pod no-run Failed")
    assert _forked(cluster, namespace, "no-run")
    assert pod.status.container_statuses[0].state.terminated.exit_code == 1
    assert "cannot read run" in _read_log(cluster, namespace, "no-run")


def test_forked_runner_pod_is_killed_by_deletion(cluster, namespace, dev_only):
    run, task = _sleeper_run(cluster, namespace)
    cluster.core.create_namespaced_pod(namespace, _runner_pod("sleeper", run, task))
    wait_for(lambda: _sleeper_started(cluster, namespace, "sleeper"), 60, "the forked runner to run the task")
    assert _forked(cluster, namespace, "sleeper")
    record = next(cluster.dev.home.glob(f"nodes/*/pods/{namespace}_sleeper_*/task.state.json"))
    import json

    pid = json.loads(record.read_text())["pid"]
    assert Path(f"/proc/{pid}").exists()
    cluster.core.delete_namespaced_pod("sleeper", namespace, grace_period_seconds=2)
    wait_for(lambda: not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2],
             20, "the forked pod's processes to be killed")
    assert json.loads(record.read_text()).get("exit_code") in (143, 137)
    wait_for(lambda: _pod_gone(cluster, namespace, "sleeper"), 20, "pod sleeper removed from the API")


def test_forked_runner_pod_is_killed_by_its_deadline(cluster, namespace, dev_only):
    run, task = _sleeper_run(cluster, namespace)
    cluster.core.create_namespaced_pod(namespace, _runner_pod("late", run, task, activeDeadlineSeconds=5,
                                                              terminationGracePeriodSeconds=2))
    wait_for(lambda: _sleeper_started(cluster, namespace, "late"), 60, "the forked runner to run the task")
    assert _forked(cluster, namespace, "late")
    pod = wait_for(lambda: (p := cluster.core.read_namespaced_pod("late", namespace)).status.phase == "Failed"
                   and p, 60, "pod late Failed after its deadline")
    assert pod.status.reason == "DeadlineExceeded"
    assert pod.status.container_statuses[0].state.terminated.exit_code == 143  # SIGTERM, as exec'd python
