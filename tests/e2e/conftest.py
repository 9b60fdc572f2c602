"""End-to-end fixtures. Everything here is real: a real kube-apiserver, etcd,
controller-manager (Job controller, garbage collector) and scheduler, and the
kinflow node agent running pods as local processes.

- `cluster` (session): the cluster named by KINFLOW_TEST_KUBECONFIG if set
  (kind, or any real cluster with the CRDs installed), else the kinflow dev
  cluster in a state folder of its own (KINFLOW_TEST_HOME, default
  ~/.local/share/kinflow/test), started if needed and stopped at the end if
  this session started it (KINFLOW_TEST_KEEP=1 keeps it for the next run).
- `operator` (session): a kinflow operator subprocess watching only this
  session's namespaces (`kft-<session>-*`), so test sessions can share a
  cluster. KINFLOW_TEST_OPERATOR=external skips it (an operator is already
  installed, e.g. by Helm).
- `namespace` (per test): a fresh namespace with the task ServiceAccount and
  its Role, deleted afterwards.
"""

from __future__ import annotations

import itertools
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SESSION = secrets.token_hex(3)
_counter = itertools.count()


def pytest_collection_modifyitems(items):
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@dataclass
class Cluster:
    kubeconfig: Path
    api: object  # kubernetes.client.ApiClient
    dev: object | None = None  # kinflow_dev.controlplane.DevCluster when we run it
    session_prefix: str = field(default=f"kft-{SESSION}-")

    @property
    def core(self):
        from kubernetes import client

        return client.CoreV1Api(self.api)

    @property
    def batch(self):
        from kubernetes import client

        return client.BatchV1Api(self.api)

    @property
    def custom(self):
        from kubernetes import client

        return client.CustomObjectsApi(self.api)

    def kubectl(self, *args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["kubectl", f"--kubeconfig={self.kubeconfig}", *args],
            capture_output=True, text=True, check=check, input=input, timeout=60,
        )

    def env(self) -> dict[str, str]:
        """Environment for a subprocess that talks to this cluster as admin."""
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PYTHONPATH"] = os.pathsep.join(p for p in [str(ROOT), env.get("PYTHONPATH", "")] if p)
        return env


def _test_home() -> Path:
    from kinflow_dev.paths import data_dir

    explicit = os.environ.get("KINFLOW_TEST_HOME")
    return Path(explicit) if explicit else data_dir() / "test"


@pytest.fixture(scope="session")
def cluster():
    from kubernetes import config

    external = os.environ.get("KINFLOW_TEST_KUBECONFIG")
    if external:
        yield Cluster(Path(external), config.new_client_from_config(config_file=external))
        return

    from kinflow_dev.controlplane import open_cluster

    dev = open_cluster(
        _test_home(), slots=int(os.environ.get("KINFLOW_TEST_SLOTS", "8")), operator=False,
        workdir=str(ROOT), pythonpath=str(ROOT), python=sys.executable,
    )
    was_running = bool(dev.procs.running("kube-apiserver")) and dev.apiserver_ready()
    dev.up()
    try:
        yield Cluster(dev.kubeconfig, config.new_client_from_config(config_file=str(dev.kubeconfig)), dev)
    finally:
        if not was_running and os.environ.get("KINFLOW_TEST_KEEP") != "1":
            dev.down()


@pytest.fixture(scope="session")
def operator(cluster):
    """The operator under test, as a subprocess, watching this session's namespaces."""
    if os.environ.get("KINFLOW_TEST_OPERATOR") == "external":
        yield None
        return
    proc = OperatorProcess(cluster)
    proc.start()
    yield proc
    proc.stop()


class OperatorProcess:
    """Start, kill and restart the operator (the restart tests need all three)."""

    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        logs = (cluster.dev.home if cluster.dev else Path("/tmp")) / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.log_path = logs / f"operator-test-{SESSION}.log"
        self.proc: subprocess.Popen | None = None
        self.metrics_port = _free_port()

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self) -> None:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kinflow_operator", "--namespace", f"{self.cluster.session_prefix}*",
             "--metrics-port", str(self.metrics_port)],
            env=self.cluster.env(), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
            start_new_session=True, preexec_fn=_die_with_parent,
        )
        time.sleep(1.0)
        if self.proc.poll() is not None:
            raise RuntimeError(f"operator exited at start; see {self.log_path}:\n"
                               + self.log_path.read_text()[-3000:])

    def kill(self) -> None:
        """SIGKILL: the harshest restart, no chance to clean up."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def restart(self) -> None:
        self.kill()
        self.start()


@pytest.fixture
def namespace(bare_namespace, operator):
    """A fresh namespace watched by this session's operator."""
    return bare_namespace


@pytest.fixture
def bare_namespace(cluster):
    """A fresh namespace for one test, with the kinflow-task ServiceAccount and Role (no operator)."""
    from kinflow_dev.bootstrap import task_rbac_manifests

    name = f"{cluster.session_prefix}{next(_counter)}"
    cluster.core.create_namespace({"metadata": {"name": name, "labels": {"kinflow.io/test": SESSION}}})
    for manifest in task_rbac_manifests(name):
        cluster.kubectl("apply", "-f", "-", input=_json(manifest))
    # The ServiceAccount admission plugin needs the namespace's token machinery ready.
    from tests.e2e.waiting import wait_for

    wait_for(lambda: _sa_exists(cluster, name, "default"), 30, f"ServiceAccount default in {name}")
    yield name
    if os.environ.get("KINFLOW_TEST_KEEP_NAMESPACES") != "1":
        try:
            cluster.core.delete_namespace(name, propagation_policy="Background")
        except Exception:
            pass


def _die_with_parent() -> None:
    """In the operator's child process: SIGTERM it when pytest dies, however pytest dies.

    Otherwise a killed test session leaves an operator running that would fight
    the next session's over the same cluster.
    """
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass  # not Linux/glibc: the session's own teardown still stops it


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sa_exists(cluster: Cluster, namespace: str, name: str) -> bool:
    from kubernetes.client.rest import ApiException

    try:
        cluster.core.read_namespaced_service_account(name, namespace)
        return True
    except ApiException as e:
        if e.status == 404:
            return False
        raise


def _json(obj) -> str:
    import json

    return json.dumps(obj)


@pytest.fixture
def extra_node(cluster):
    """Start a node agent of its own (slots, taint) for a test that needs an exact slot count.

    Returns a function: `extra_node(slots) -> (node_name, pod_spec_overrides)`; pods
    that carry the overrides (nodeSelector + toleration) land only on that node.
    """
    if cluster.dev is None:
        pytest.skip("needs the kinflow dev cluster (extra nodes are started as processes)")
    started = []

    def start(slots: int):
        name = f"kft-{SESSION}-n{next(_counter)}"
        cluster.dev.start_node(name, slots=slots, taints=[f"kinflow.io/node={name}:NoSchedule"],
                               labels={"kinflow.io/node": name})
        started.append(name)
        from tests.e2e.waiting import wait_for

        wait_for(lambda: _node_ready(cluster, name), 60, f"node {name} Ready")
        overrides = {
            "nodeSelector": {"kinflow.io/node": name},
            "tolerations": [{"key": "kinflow.io/node", "operator": "Equal", "value": name,
                             "effect": "NoSchedule"}],
        }
        return name, overrides

    yield start
    for name in started:
        cluster.dev.stop_node(name)


def _node_ready(cluster: Cluster, name: str) -> bool:
    from kubernetes.client.rest import ApiException

    try:
        node = cluster.core.read_node(name)
    except ApiException:
        return False
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])
