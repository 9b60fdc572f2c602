"""The operator's writer client follows a rotating token file (no server needed)."""

import json
import os
import time

from kinflow_operator.kubeclient import make_api_client


def test_a_rotated_token_file_is_picked_up(tmp_path, monkeypatch):
    token = tmp_path / "token"
    token.write_text("first")
    kc = tmp_path / "kubeconfig"
    kc.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": "https://127.0.0.1:1", "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"tokenFile": str(token)}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
    }))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    api = make_api_client(str(kc))
    conf = api.configuration
    assert conf.get_api_key_with_prefix("authorization") == "Bearer first"
    token.write_text("second")
    os.utime(token, (time.time() + 5, time.time() + 5))
    assert conf.get_api_key_with_prefix("authorization") == "Bearer second"
