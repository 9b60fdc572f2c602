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
    first = path.split(os.pathsep)[0]
    if os.path.exists(first):
        config.load_kube_config(config_file=first, client_configuration=configuration)
        token_file = _token_file(first)
        if token_file:
            configuration.refresh_api_key_hook = _rereader(token_file)
    else:
        # The in-cluster loader already re-reads the projected token as it rotates.
        config.load_incluster_config(client_configuration=configuration)
    configuration.connection_pool_maxsize = POOL_SIZE
    return client.ApiClient(configuration)


def _token_file(kubeconfig: str) -> str | None:
    """The current user's `tokenFile`, if its kubeconfig names one."""
    import yaml

    with open(kubeconfig) as f:
        kc = yaml.safe_load(f) or {}
    ctx_name = kc.get("current-context")
    ctx = next((c["context"] for c in kc.get("contexts") or [] if c.get("name") == ctx_name), {})
    user = next((u.get("user") or {} for u in kc.get("users") or [] if u.get("name") == ctx.get("user")), {})
    path = user.get("tokenFile")
    if path and not os.path.isabs(path):
        path = os.path.join(os.path.dirname(kubeconfig), path)
    return path


def _rereader(token_file: str):
    """A hook that reloads a rotating token (projected service-account tokens last about an hour)."""
    state = {"mtime": None}

    def refresh(configuration: client.Configuration) -> None:
        try:
            mtime = os.stat(token_file).st_mtime
        except OSError:
            return
        if mtime != state["mtime"]:
            state["mtime"] = mtime
            with open(token_file) as f:
                configuration.api_key["authorization"] = "Bearer " + f.read().strip()

    return refresh
