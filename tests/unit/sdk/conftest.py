"""Fixtures for the SDK and runner unit tests: no cluster, a fake API server.

Real: kinflow's own HTTP client (`kinflow._api`), its kubeconfig loading,
spawning, watching, the runner. Faked: the Kubernetes API server, by
`fakeapi.FakeApiServer`, an in-memory HTTP server for WorkflowRuns only (no
schema, RBAC, garbage collector or operator; tests play the operator by
setting a run's status). The "task execution in progress" that the runner
would set is set by the `in_task` fixture for a parent run stored in the fake.
"""

from __future__ import annotations

import json

import pytest

from kinflow import _constants as C
from kinflow import wait as wait_module
from kinflow._api import ApiClient, KubeConfig
from kinflow._execution import TaskExecution, reset_execution, set_execution

from .fakeapi import FakeApiServer

NAMESPACE = "ns1"


@pytest.fixture
def fake():
    """The fake API server."""
    with FakeApiServer() as server:
        yield server


@pytest.fixture
def api(fake):
    """kinflow's client, pointed at the fake."""
    client = ApiClient(KubeConfig(server=fake.url, namespace=NAMESPACE, token=fake.token))
    yield client
    client.close()


@pytest.fixture
def kubeconfig(fake, tmp_path, monkeypatch):
    """A JSON kubeconfig for the fake, exported as KUBECONFIG."""
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(fake.kubeconfig(NAMESPACE)))
    monkeypatch.setenv("KUBECONFIG", str(path))
    return path


@pytest.fixture(autouse=True)
def _fresh_watchers():
    """Each test gets its own watchers (they are cached per process)."""
    yield
    for watcher in list(wait_module._watchers.values()):
        watcher.stop()
    wait_module._watchers.clear()


def parent_run(name: str = "parent", image: str = "img:1", **spec) -> dict:
    """A parent WorkflowRun as a test stores it in the fake."""
    return {
        "apiVersion": C.API_VERSION,
        "kind": C.KIND,
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {C.LABEL_ROOT: name}},
        "spec": {
            "workflow": "Parent",
            "entrypoint": "x:y",
            "image": image,
            "serviceAccountName": "kinflow-task",
            "tasks": [{"name": "spawn"}],
            "input": {},
            **spec,
        },
    }


@pytest.fixture
def in_task(fake, api):
    """Run the test as if inside task `spawn` of run `parent` (returns a factory for new attempts)."""
    stored = fake.put(parent_run())
    tokens = []

    def enter(attempt: int = 1) -> TaskExecution:
        execution = TaskExecution(api=api, run=fake.get(NAMESPACE, "parent"), task="spawn", attempt=attempt)
        tokens.append(set_execution(execution))
        return execution

    enter.run = stored
    enter()
    yield enter
    for token in reversed(tokens):
        reset_execution(token)
