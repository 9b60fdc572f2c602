"""What makes a fresh dev cluster usable: wait for the node and the default
ServiceAccount, then install kinflow's CRDs."""

from __future__ import annotations

import time
from pathlib import Path

import yaml


def _api(kubeconfig: Path):
    from kubernetes import client, config

    return config.new_client_from_config(config_file=str(kubeconfig))


def wait_ready(kubeconfig: Path, node: str, timeout: float = 120, log=print) -> None:
    """Block until the node is Ready and the `default` ServiceAccount exists."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    core = client.CoreV1Api(_api(kubeconfig))
    deadline = time.monotonic() + timeout
    waiting_for = "node"
    while time.monotonic() < deadline:
        try:
            if waiting_for == "node":
                n = core.read_node(node)
                ready = [c for c in (n.status.conditions or []) if c.type == "Ready"]
                if ready and ready[0].status == "True":
                    log(f"  node {node}: Ready")
                    waiting_for = "serviceaccount"
                    continue
            else:
                core.read_namespaced_service_account("default", "default")
                log("  serviceaccount default/default: present")
                return
        except ApiException as e:
            if e.status != 404:
                raise
        time.sleep(0.3)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for the {waiting_for} "
                       f"(node {node}); see the logs with `kinflow dev status`")


def install_crds(kubeconfig: Path, folder: Path, log=print) -> list[str]:
    """Server-side apply every CRD in folder, then wait until each is Established."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    api = client.ApiextensionsV1Api(_api(kubeconfig))
    names = []
    for path in sorted(folder.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            name = doc["metadata"]["name"]
            try:
                api.patch_custom_resource_definition(
                    name, doc, field_manager="kinflow-dev", force=True,
                    _content_type="application/apply-patch+yaml",
                )
            except ApiException as e:
                raise RuntimeError(f"the API server rejected the CRD in {path}: "
                                   f"{_message(e)}") from None
            names.append(name)
    deadline = time.monotonic() + 30
    for name in names:
        while True:
            crd = api.read_custom_resource_definition(name)
            conds = {c.type: c.status for c in (crd.status.conditions or [])}
            if conds.get("Established") == "True":
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"CRD {name} not Established after 30s")
            time.sleep(0.2)
        log(f"  crd {name}: established")
    return names


def _message(e) -> str:
    import json

    try:
        return json.loads(e.body)["message"]
    except (TypeError, ValueError, KeyError):
        return f"{e.status} {e.reason}"


TASK_SERVICE_ACCOUNT = "kinflow-task"


def task_rbac_manifests(namespace: str) -> list[dict]:
    """The task ServiceAccount and the least it needs: its own runs and their status.

    Task pods create child runs, read and watch runs to join them, and patch the
    status of their own run. Nothing else: no Secrets, no ConfigMaps, no pods.
    The Helm chart renders the same rules (a test keeps them equal).
    """
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": TASK_SERVICE_ACCOUNT, "namespace": namespace}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": TASK_SERVICE_ACCOUNT, "namespace": namespace},
         "rules": TASK_RULES},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": TASK_SERVICE_ACCOUNT, "namespace": namespace},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                     "name": TASK_SERVICE_ACCOUNT},
         "subjects": [{"kind": "ServiceAccount", "name": TASK_SERVICE_ACCOUNT,
                       "namespace": namespace}]},
    ]


TASK_RULES = [
    {"apiGroups": ["kinflow.io"], "resources": ["workflowruns"],
     "verbs": ["create", "get", "list", "watch"]},
    {"apiGroups": ["kinflow.io"], "resources": ["workflowruns/status"], "verbs": ["patch"]},
]


def apply_task_rbac(kubeconfig: Path, namespace: str) -> None:
    """Create (or leave as is) the task ServiceAccount and Role in a namespace."""
    from kubernetes import client, utils
    from kubernetes.client.rest import ApiException

    api = _api(kubeconfig)
    for manifest in task_rbac_manifests(namespace):
        try:
            utils.create_from_dict(api, manifest, namespace=namespace)
        except utils.FailToCreateError as e:
            if not all(isinstance(x, ApiException) and x.status == 409 for x in e.api_exceptions):
                raise
