"""The `kinflow` command as people use it, against the real cluster: each test runs
the installed console script in a subprocess and checks what it prints."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.e2e.waiting import wait_for


def kinflow(cluster, *args: str, timeout: float = 120, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kinflow_cli.main", *args], env=cluster.env(),
                          capture_output=True, text=True, timeout=timeout, input=input)


def test_run_wait_prints_the_output(cluster, namespace):
    r = kinflow(cluster, "run", "examples.simple:simple", "--input", '{"message": "hello"}',
                "--wait", "-n", namespace)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"step1": {"transformed_message": "HELLO"}}
    assert f"workflowrun {namespace}/simpleworkflow-" in r.stderr


def test_run_follow_shows_the_tree_then_the_output(cluster, namespace):
    r = kinflow(cluster, "run", "examples.fanout:parent_wf", "--input", '{"n": 3}', "--follow",
                "--name", "fan", "-n", namespace)
    assert r.returncode == 0, r.stderr
    for key in ("child0", "child1", "child2"):
        assert f"[{key}]" in r.stderr
    assert "descendants 3: 3 Succeeded" in r.stderr
    out = json.loads(r.stdout)
    assert [c["process2"]["status2"] for c in out["spawn"]["results"]] == ["02", "12", "22"]

    tree = kinflow(cluster, "tree", "fan", "--table", "-n", namespace)
    assert tree.returncode == 0, tree.stderr
    assert "children of fan" in tree.stdout and "child2" in tree.stdout

    got = kinflow(cluster, "get", "fan", "-o", "json", "-n", namespace)
    body = json.loads(got.stdout)
    assert body["status"]["children"]["succeeded"] == 3

    logs = kinflow(cluster, "logs", "fan", "-n", namespace)
    assert logs.returncode == 0, logs.stderr
    assert "==> spawn attempt 1" in logs.stdout


def test_a_failed_run_exits_non_zero_with_its_error(cluster, namespace):
    # An input the workflow rejects, sent past the CLI's own check by editing the manifest:
    m = kinflow(cluster, "manifest", "examples.simple:simple", "--input", '{"message": "x"}', "--name", "bad2")
    body = m.stdout.replace("message: x", "message: [1, 2]")
    cluster.kubectl("-n", namespace, "apply", "-f", "-", input=body)
    wait_for(lambda: json.loads(kinflow(cluster, "get", "bad2", "-o", "json", "-n", namespace).stdout)
             .get("status", {}).get("phase") == "Failed", 60, "run bad2 Failed")
    again = kinflow(cluster, "get", "bad2", "-n", namespace)
    assert "InputValidationError" in again.stdout
    # `run --wait` of a failing run exits 1 and says why on stderr.
    r = kinflow(cluster, "run", "examples.error_handling:child_wf", "--input", '{"a": "z", "fail": true}', "--wait",
                "-n", namespace)
    assert r.returncode == 1, r.stdout
    assert "Failed" in r.stderr and "child z failed on purpose" in r.stderr


def test_user_mistakes_get_one_clear_line(cluster, namespace):
    r = kinflow(cluster, "run", "examples.simple:simple", "--input", '{"message": 3}', "-n", namespace)
    assert r.returncode == 2
    assert r.stderr.strip() == "kinflow run: --input does not fit SimpleInput: message: Input should be a valid string"
    r = kinflow(cluster, "run", "examples.nope:wf", "-n", namespace)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "examples.nope" in r.stderr
    r = kinflow(cluster, "run", "examples.simple:simple", "--input", "{not json", "-n", namespace)
    assert r.returncode == 2 and "--input is not valid JSON" in r.stderr
    r = kinflow(cluster, "get", "no-such-run", "-n", namespace)
    assert r.returncode == 1 and "not found" in r.stderr and "Traceback" not in r.stderr


def test_cancel_marks_the_run_and_its_subtree_cancelled(cluster, namespace):
    # A chain three deep whose deepest run sleeps: still running when the cancel arrives.
    r = kinflow(cluster, "run", "tests.e2e.test_operator:chain_wf", "--input", '{"depth": 3}',
                "--name", "deep", "-n", namespace)
    assert r.returncode == 0, r.stderr

    def phases():
        runs = cluster.custom.list_namespaced_custom_object("kinflow.io", "v1alpha1", namespace, "workflowruns")
        return {b["metadata"]["name"]: (b.get("status") or {}).get("phase") for b in runs["items"]}

    wait_for(lambda: len(phases()) == 3 and all(p == "Running" for p in phases().values()), 90,
             "the chain of three runs all Running")
    c = kinflow(cluster, "cancel", "deep", "-n", namespace)
    assert c.returncode == 0 and "cancel requested" in c.stdout
    wait_for(lambda: set(phases().values()) == {"Cancelled"}, 60, "every run of the chain Cancelled")


def test_manifest_applies_with_kubectl(cluster, namespace):
    m = kinflow(cluster, "manifest", "examples.dag:dag_wf", "--input", '{"a": "5"}', "--name", "dagm")
    assert m.returncode == 0, m.stderr
    cluster.kubectl("-n", namespace, "apply", "-f", "-", input=m.stdout)
    r = kinflow(cluster, "run", "examples.dag:dag_wf", "--input", '{"a": "5"}', "--wait", "-n", namespace)
    assert json.loads(r.stdout) == {"process": {"status": "5"}, "process2": {"status2": "52"}}
    wait_for(lambda: json.loads(kinflow(cluster, "get", "dagm", "-o", "json", "-n", namespace).stdout)
             .get("status", {}).get("phase") == "Succeeded", 60, "run dagm Succeeded")


def test_the_readme_quickstart_runs(cluster, namespace):
    r = kinflow(cluster, "run", "examples.quickstart:parent", "--wait", "-n", namespace, timeout=300)
    assert r.returncode == 0, r.stderr
    results = json.loads(r.stdout)["parent"]["results"]
    assert [res["process"]["status"] for res in results] == [str(i) for i in range(10)]
