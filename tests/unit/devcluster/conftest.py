"""Node-agent unit tests: no API server. Real: local processes (/bin/sh, sleep,
python), files under tmp_path, /proc. Faked: the Kubernetes API, by a recording
client (FakeClient) that answers TokenRequests and accepts status patches."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from kinflow_dev.kubeclient import ApiError, Credentials
from kinflow_dev.node import NodeAgent, NodeConfig


class FakeClient:
    """Records every request; answers what a pod worker needs."""

    def __init__(self, ca_file: str):
        self.creds = Credentials(server="https://127.0.0.1:6443", ca_file=ca_file, insecure=False,
                                 cert_file=None, key_file=None, token=None, token_file=None)
        self.calls: list[tuple[str, str, Any]] = []
        self.lock = threading.Lock()
        self.missing_pods: set[str] = set()

    def request(self, method: str, path: str, body: Any = None, query=None, content_type: str = "") -> dict:
        with self.lock:
            self.calls.append((method, path, body))
        if path.endswith("/token"):
            return {"status": {"token": "tok-" + body["spec"]["boundObjectRef"]["uid"],
                               "expirationTimestamp": "2999-01-01T00:00:00Z"}}
        if any(f"/pods/{name}" in path for name in self.missing_pods):
            raise ApiError(404, "NotFound", "gone")
        return {}

    def get(self, path: str, **query: Any) -> dict:
        return self.request("GET", path)

    def statuses(self) -> list[dict]:
        return [body["status"] for method, path, body in self.calls if path.endswith("/status")]


def make_pod(name: str = "p", command: list[str] | None = None, uid: str = "uid-1", **spec: Any) -> dict:
    container = {"name": "main", "image": "ignored", "command": command or ["python", "-c", "print(42)"]}
    return {
        "metadata": {"name": name, "namespace": "ns", "uid": uid},
        "spec": {"nodeName": "n1", "restartPolicy": "Never", "serviceAccountName": "sa",
                 "containers": [container], **spec},
        "status": {},
    }


@pytest.fixture
def agent(tmp_path: Path) -> NodeAgent:
    ca = tmp_path / "ca.crt"
    ca.write_text("CA")
    config = NodeConfig(name="n1", slots=2, state_dir=tmp_path / "state", workdir=str(tmp_path),
                        pythonpath="", python=__import__("sys").executable)
    config.pods_dir.mkdir(parents=True)
    return NodeAgent(FakeClient(str(ca)), config)  # type: ignore[arg-type]
