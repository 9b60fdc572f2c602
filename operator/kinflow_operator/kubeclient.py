"""The kubernetes ApiClient for the operator's writes: kubeconfig if there is one, else in-cluster."""

from __future__ import annotations

import os
from pathlib import Path

from kubernetes import client, config

POOL_SIZE = 32  # concurrent requests from reconciles running in threads


def make_api_client(kubeconfig: str | None = None) -> client.ApiClient:
    """An ApiClient from $KUBECONFIG / ~/.kube/config, or the pod's service account."""
    configuration = client.Configuration()
    path = kubeconfig or os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    if os.path.exists(path.split(os.pathsep)[0]):
        config.load_kube_config(config_file=path.split(os.pathsep)[0], client_configuration=configuration)
    else:
        config.load_incluster_config(client_configuration=configuration)
    configuration.connection_pool_maxsize = POOL_SIZE
    return client.ApiClient(configuration)
