"""The pure rules: argv, env, and the status a kubelet would write."""

import pytest

from kinflow_dev.podspec import (
    ConfigError,
    ContainerRun,
    build_env,
    expand_vars,
    field_ref_value,
    pod_status,
    resolve_command,
    restart_backoff,
    should_restart,
    terminal_phase,
)

POD = {
    "metadata": {"name": "p1", "namespace": "ns1", "uid": "u-1", "labels": {"app": "x"},
                 "annotations": {"note": "hi"}},
    "spec": {"nodeName": "n1", "serviceAccountName": "runner"},
}


def test_expand_vars_follows_kubernetes_rules():
    env = {"A": "1", "B": "two"}
    assert expand_vars("$(A)-$(B)", env) == "1-two"
    assert expand_vars("$(MISSING)", env) == "$(MISSING)"
    assert expand_vars("$$(A)", env) == "$(A)"
    assert expand_vars("cost $5", env) == "cost $5"


def test_command_then_args_and_python_is_the_configured_interpreter():
    container = {"name": "c", "command": ["python3", "-m", "mod"], "args": ["--x=$(A)"]}
    assert resolve_command(container, {"A": "1"}, "/venv/bin/python") == ["/venv/bin/python", "-m", "mod", "--x=1"]


def test_args_alone_are_the_argv():
    assert resolve_command({"name": "c", "args": ["echo", "hi"]}, {}, "py") == ["echo", "hi"]


def test_no_command_at_all_is_a_config_error():
    with pytest.raises(ConfigError, match="neither command nor args"):
        resolve_command({"name": "c"}, {}, "py")


@pytest.mark.parametrize("path,value", [
    ("metadata.name", "p1"), ("metadata.namespace", "ns1"), ("metadata.uid", "u-1"),
    ("spec.nodeName", "n1"), ("spec.serviceAccountName", "runner"), ("status.podIP", "127.0.0.1"),
    ("metadata.labels['app']", "x"), ("metadata.annotations['note']", "hi"),
])
def test_field_refs(path, value):
    assert field_ref_value(POD, path) == value


def test_unknown_field_ref_is_a_config_error():
    with pytest.raises(ConfigError):
        field_ref_value(POD, "spec.nope")


def test_env_layers_and_sources():
    container = {
        "name": "c",
        "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}],
        "env": [
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "GREETING", "value": "hello $(POD)"},
            {"name": "KUBECONFIG", "value": "/mine"},
            {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "s", "key": "pw"}}},
            {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": True}}},
        ],
    }
    data = {("configMap", "cm"): {"mode": "fast"}, ("secret", "s"): {"pw": "sesame"}}
    env = build_env(POD, container, {"PATH": "/bin"}, {"KUBECONFIG": "/node", "HOSTNAME": "p1"},
                    lambda kind, ns, name: data.get((kind, name)))
    assert env["PATH"] == "/bin"
    assert env["POD"] == "p1"
    assert env["GREETING"] == "hello p1"
    assert env["KUBECONFIG"] == "/mine"  # the pod's own env wins, as in Kubernetes
    assert env["CM_mode"] == "fast"
    assert env["PASS"] == "sesame"
    assert "OPT" not in env


def test_missing_required_config_map_is_a_config_error():
    container = {"name": "c", "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}}]}
    with pytest.raises(ConfigError, match="not found"):
        build_env(POD, container, {}, {}, lambda *a: None)


def test_running_status_is_ready():
    run = ContainerRun(name="main", state="running", started_at="T1", pid=42)
    status = pod_status("Running", [], [run], "T0", "T1")
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["status"] == "True"
    assert conditions["ContainersReady"]["status"] == "True"
    assert conditions["Initialized"]["status"] == "True"
    assert conditions["PodScheduled"]["status"] == "True"
    cs = status["containerStatuses"][0]
    assert cs["state"]["running"] == {"startedAt": "T1"}
    assert cs["state"]["terminated"] is None and cs["ready"] and cs["started"]
    assert status["podIP"] == status["hostIP"] == "127.0.0.1"
    assert status["startTime"] == "T0"


def test_terminated_status_removes_running_and_says_why():
    run = ContainerRun(name="main", state="terminated", exit_code=3, reason="Error",
                       started_at="T1", finished_at="T2")
    status = pod_status("Failed", [], [run], "T0", "T2", "DeadlineExceeded", "too long")
    state = status["containerStatuses"][0]["state"]
    assert state["running"] is None  # a strategic merge patch deletes the old running state
    assert state["terminated"]["exitCode"] == 3
    assert state["terminated"]["reason"] == "Error"
    assert (state["terminated"]["startedAt"], state["terminated"]["finishedAt"]) == ("T1", "T2")
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "PodCompleted")
    assert (status["reason"], status["message"]) == ("DeadlineExceeded", "too long")


def test_phase_and_restart_rules():
    ok = ContainerRun(name="a", state="terminated", exit_code=0)
    bad = ContainerRun(name="b", state="terminated", exit_code=1)
    assert terminal_phase([ok]) == "Succeeded"
    assert terminal_phase([ok, bad]) == "Failed"
    assert not should_restart("Never", 1)
    assert should_restart("OnFailure", 1) and not should_restart("OnFailure", 0)
    assert should_restart("Always", 0)
    assert [restart_backoff(n) for n in (0, 1, 2, 10)] == [1, 2, 4, 30]
