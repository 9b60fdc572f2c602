"""A pod's life on the node, against a fake API: real processes, recorded calls."""

import json
import subprocess
import time

from kinflow_dev.node import PodWorker, parse_label, parse_taint
from kinflow_dev.podstore import pid_start_time, read_log, shim_argv, write_json

from .conftest import make_pod


def run_pod(agent, pod, timeout=20):
    worker = PodWorker(agent, pod)
    worker.start()
    worker.join(timeout)
    assert not worker.is_alive(), f"pod worker for {pod['metadata']['name']} still running after {timeout}s"
    return worker


def final(agent):
    return agent.client.statuses()[-1]


def test_pod_runs_to_success_with_token_kubeconfig_and_env(agent):
    script = ("import os, json; print(42); "
              "print(json.dumps({k: os.environ.get(k) for k in ['POD', 'KUBECONFIG', 'KINFLOW_SERVICEACCOUNT_DIR', "
              "'KUBERNETES_SERVICE_HOST', 'KUBERNETES_SERVICE_PORT']}))")
    pod = make_pod(command=["python", "-c", script])
    pod["spec"]["containers"][0]["env"] = [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
    worker = run_pod(agent, pod)
    status = final(agent)
    assert status["phase"] == "Succeeded"
    assert status["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    first, second = read_log(agent.config.state_dir, "ns", "p").splitlines()
    assert first == "42"
    env = json.loads(second)
    assert env["POD"] == "p"
    assert env["KUBERNETES_SERVICE_HOST"] == "127.0.0.1" and env["KUBERNETES_SERVICE_PORT"] == "6443"
    sa_dir = worker.files.sa_dir
    assert env["KINFLOW_SERVICEACCOUNT_DIR"] == str(sa_dir)
    assert (sa_dir / "token").read_text() == "tok-uid-1"
    assert (sa_dir / "namespace").read_text() == "ns"
    assert (sa_dir / "ca.crt").read_text() == "CA"
    kubeconfig = json.loads(open(env["KUBECONFIG"]).read())
    assert kubeconfig["users"][0]["user"]["tokenFile"] == str(sa_dir / "token")
    assert kubeconfig["contexts"][0]["context"]["namespace"] == "ns"
    token_calls = [c for c in agent.client.calls if c[1].endswith("/token")]
    assert token_calls[0][1] == "/api/v1/namespaces/ns/serviceaccounts/sa/token"
    bound = token_calls[0][2]["spec"]["boundObjectRef"]
    assert (bound["kind"], bound["name"], bound["uid"]) == ("Pod", "p", "uid-1")
    phases = [s["phase"] for s in agent.client.statuses()]
    assert phases[0] == "Running" and phases[-1] == "Succeeded"


def test_exit_code_reaches_status(agent):
    run_pod(agent, make_pod(command=["python", "-c", "raise SystemExit(3)"]))
    status = final(agent)
    assert status["phase"] == "Failed"
    term = status["containerStatuses"][0]["state"]["terminated"]
    assert (term["exitCode"], term["reason"]) == (3, "Error")


def test_missing_executable_is_a_start_error(agent):
    run_pod(agent, make_pod(command=["no-such-program-kinflow"]))
    term = final(agent)["containerStatuses"][0]["state"]["terminated"]
    assert (term["exitCode"], term["reason"]) == (128, "StartError")


def test_active_deadline_kills_and_fails(agent):
    started = time.monotonic()
    pod = make_pod(command=["sleep", "30"], activeDeadlineSeconds=1, terminationGracePeriodSeconds=2)
    run_pod(agent, pod)
    assert time.monotonic() - started < 10
    status = final(agent)
    assert (status["phase"], status["reason"]) == ("Failed", "DeadlineExceeded")
    assert not any(c[0] == "DELETE" for c in agent.client.calls)  # a deadline does not delete the pod


def test_deletion_terms_then_kills_then_deletes(agent):
    pod = make_pod(command=["sh", "-c", "trap '' TERM; sleep 30"])
    worker = PodWorker(agent, pod)
    worker.start()
    time.sleep(0.5)
    started = time.monotonic()
    worker.request_kill(1.0)
    worker.join(10)
    assert 0.9 < time.monotonic() - started < 5  # ignored SIGTERM, so SIGKILL after the grace period
    assert final(agent)["phase"] == "Failed"
    method, path, body = agent.client.calls[-1]
    assert (method, path) == ("DELETE", "/api/v1/namespaces/ns/pods/p")
    assert body["gracePeriodSeconds"] == 0 and body["preconditions"] == {"uid": "uid-1"}


def test_restart_on_failure_counts_restarts(agent, tmp_path):
    marker = tmp_path / "ran-once"
    script = f"import os,sys; p={str(marker)!r}; first=not os.path.exists(p); open(p,'w').close(); sys.exit(1 if first else 0)"
    run_pod(agent, make_pod(command=["python", "-c", script], restartPolicy="OnFailure"))
    status = final(agent)
    assert status["phase"] == "Succeeded"
    cs = status["containerStatuses"][0]
    assert cs["restartCount"] == 1
    assert cs["lastState"]["terminated"]["exitCode"] == 1


def test_init_containers_run_first_in_order(agent, tmp_path):
    out = tmp_path / "order"
    pod = make_pod(command=["sh", "-c", f"echo main >> {out}"])
    pod["spec"]["initContainers"] = [
        {"name": "i1", "image": "x", "command": ["sh", "-c", f"echo i1 >> {out}"]},
        {"name": "i2", "image": "x", "command": ["sh", "-c", f"echo i2 >> {out}"]},
    ]
    run_pod(agent, pod)
    assert out.read_text().split() == ["i1", "i2", "main"]
    assert final(agent)["phase"] == "Succeeded"


def test_failed_init_container_fails_the_pod_without_running_main(agent, tmp_path):
    out = tmp_path / "ran"
    pod = make_pod(command=["sh", "-c", f"touch {out}"])
    pod["spec"]["initContainers"] = [{"name": "i1", "image": "x", "command": ["sh", "-c", "exit 2"]}]
    run_pod(agent, pod)
    assert final(agent)["phase"] == "Failed"
    assert not out.exists()


# -- after an agent restart ------------------------------------------------------


def _files(agent, pod):
    return PodWorker(agent, pod).files


def test_process_that_ended_while_agent_was_down_is_reported_not_rerun(agent):
    pod = make_pod(command=["sh", "-c", "echo rerun >> should-not-exist"])
    files = _files(agent, pod)
    files.root.mkdir(parents=True)
    write_json(files.state("main"), {"pid": 999999, "pid_start": 1, "started_at": "2024-01-01T00:00:00Z"})
    files.exit_file("main").write_text("4\n")
    run_pod(agent, pod)
    term = final(agent)["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 4
    assert not (agent.config.state_dir.parent / "should-not-exist").exists()


def test_process_lost_without_exit_code_fails_clearly(agent):
    pod = make_pod()
    files = _files(agent, pod)
    files.root.mkdir(parents=True)
    write_json(files.state("main"), {"pid": 999999, "pid_start": 1, "started_at": "2024-01-01T00:00:00Z"})
    run_pod(agent, pod)
    status = final(agent)
    assert status["phase"] == "Failed"
    term = status["containerStatuses"][0]["state"]["terminated"]
    assert term["reason"] == "ContainerStatusUnknown" and "node agent was down" in term["message"]


def test_live_process_is_adopted_and_its_exit_collected(agent):
    pod = make_pod()
    files = _files(agent, pod)
    files.root.mkdir(parents=True)
    proc = subprocess.Popen(shim_argv(files.exit_file("main"), ["sh", "-c", "sleep 0.5; exit 5"]),
                            start_new_session=True)
    write_json(files.state("main"), {"pid": proc.pid, "pid_start": pid_start_time(proc.pid),
                                     "started_at": "2024-01-01T00:00:00Z"})
    run_pod(agent, pod)
    proc.wait()
    assert final(agent)["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 5
    assert json.loads(files.state("main").read_text())["pid"] == proc.pid  # adopted, not started anew


def test_pod_the_api_says_started_but_without_record_is_not_started_again(agent, tmp_path):
    marker = tmp_path / "ran"
    pod = make_pod(command=["sh", "-c", f"touch {marker}"])
    pod["status"] = {"containerStatuses": [{"name": "main", "state": {"running": {"startedAt": "x"}}}]}
    run_pod(agent, pod)
    assert final(agent)["containerStatuses"][0]["state"]["terminated"]["reason"] == "ContainerStatusUnknown"
    assert not marker.exists()


def test_same_pod_twice_starts_once_and_terminal_pods_never(agent, tmp_path):
    marker = tmp_path / "count"
    pod = make_pod(command=["sh", "-c", f"echo x >> {marker}; sleep 0.3"])
    agent.handle("ADDED", pod)
    agent.handle("MODIFIED", pod)
    deadline = time.monotonic() + 10
    while agent.workers and time.monotonic() < deadline:
        time.sleep(0.05)
    agent.handle("MODIFIED", pod)  # a late event after the end
    done = make_pod(uid="uid-2", command=["sh", "-c", f"echo y >> {marker}"])
    done["status"] = {"phase": "Succeeded"}
    agent.handle("ADDED", done)
    time.sleep(0.3)
    assert marker.read_text() == "x\n"


def test_flag_parsers():
    assert parse_taint("gpu=yes:NoSchedule") == {"key": "gpu", "value": "yes", "effect": "NoSchedule"}
    assert parse_taint("dedicated:NoExecute") == {"key": "dedicated", "effect": "NoExecute"}
    assert parse_label("tier=fast") == ("tier", "fast")


def test_pod_deleted_before_it_started_is_removed_without_running(agent, tmp_path):
    marker = tmp_path / "ran"
    pod = make_pod(command=["sh", "-c", f"touch {marker}"])
    pod["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    pod["metadata"]["deletionGracePeriodSeconds"] = 30
    worker = PodWorker(agent, pod)
    worker.update(pod)
    worker.start()
    worker.join(10)
    assert not marker.exists()
    assert [c[0] for c in agent.client.calls] == ["DELETE"]


def test_a_second_agent_for_the_same_node_refuses_to_run(agent):
    from kinflow_dev.node import NodeAgent

    assert agent.claim()
    twin = NodeAgent(agent.client, agent.config)
    assert not twin.claim()
