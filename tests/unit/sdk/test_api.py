"""kinflow._api: kubeconfig loading, requests and errors, rate limiting, watches."""

from __future__ import annotations

import base64
import json
import threading
import time

import pytest

from kinflow import _api
from kinflow._api import ApiClient, KubeConfig, RateLimiter, load_config, parse_kubeconfig, run_path
from kinflow.errors import AlreadyExists, Gone, NotFound, Unauthorized

from .conftest import NAMESPACE, parent_run


def _kubeconfig(user: dict, cluster: dict | None = None, namespace: str | None = "team") -> dict:
    ctx = {"cluster": "c", "user": "u"}
    if namespace:
        ctx["namespace"] = namespace
    return {
        "clusters": [{"name": "other", "cluster": {"server": "https://wrong"}},
                     {"name": "c", "cluster": {"server": "https://10.0.0.1:6443/", **(cluster or {})}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "ctx", "context": ctx}],
        "current-context": "ctx",
    }


def test_json_kubeconfig_with_token_and_ca_data():
    ca = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nX\n").decode()
    cfg = parse_kubeconfig(json.dumps(_kubeconfig({"token": "t0k"}, {"certificate-authority-data": ca})))
    assert cfg.server == "https://10.0.0.1:6443"
    assert cfg.namespace == "team"
    assert cfg.bearer_token() == "t0k"
    assert cfg.ca_data.startswith("-----BEGIN CERTIFICATE-----")
    assert not cfg.insecure


def test_relative_files_resolve_next_to_the_kubeconfig(tmp_path):
    (tmp_path / "token").write_text("from-file\n")
    doc = _kubeconfig(
        {"tokenFile": "token", "client-certificate": "c.pem", "client-key": "/abs/k.pem"},
        {"certificate-authority": "ca.crt", "insecure-skip-tls-verify": True},
        namespace=None,
    )
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(doc))
    cfg = _api.load_kubeconfig(str(path))
    assert cfg.token_file == str(tmp_path / "token")
    assert cfg.bearer_token() == "from-file"
    assert cfg.ca_file == str(tmp_path / "ca.crt")
    assert cfg.cert_file == str(tmp_path / "c.pem") and cfg.key_file == "/abs/k.pem"
    assert cfg.insecure and cfg.namespace == "default"


def test_yaml_kubeconfig_falls_back_to_pyyaml():
    yaml = pytest.importorskip("yaml")
    cert = base64.b64encode(b"CERT").decode()
    text = yaml.safe_dump(_kubeconfig({"client-certificate-data": cert, "client-key-data": cert}))
    cfg = parse_kubeconfig(text)
    assert cfg.cert_data == b"CERT" and cfg.key_data == b"CERT"
    assert cfg.server == "https://10.0.0.1:6443"


def test_explicit_context_and_missing_names():
    doc = _kubeconfig({"token": "a"})
    doc["contexts"].append({"name": "second", "context": {"cluster": "other", "user": "u"}})
    assert parse_kubeconfig(json.dumps(doc), context="second").server == "https://wrong"
    with pytest.raises(Exception, match="no context named 'nope'"):
        parse_kubeconfig(json.dumps(doc), context="nope")


def test_in_cluster_config(tmp_path, monkeypatch):
    (tmp_path / "token").write_text("sa-token")
    (tmp_path / "namespace").write_text("pods-ns")
    (tmp_path / "ca.crt").write_text("CA")
    monkeypatch.setattr(_api, "SERVICE_ACCOUNT_DIR", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    cfg = load_config()
    assert cfg.server == "https://10.96.0.1:443"
    assert cfg.namespace == "pods-ns"
    assert cfg.bearer_token() == "sa-token"
    assert cfg.ca_file == str(tmp_path / "ca.crt")


def test_kubeconfig_env_wins_and_may_be_a_list(tmp_path, monkeypatch):
    path = tmp_path / "kc"
    path.write_text(json.dumps(_kubeconfig({"token": "x"})))
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'missing'}:{path}")
    assert load_config().server == "https://10.0.0.1:6443"


def test_get_create_patch_and_errors(fake, api):
    created = api.create(run_path(NAMESPACE), parent_run("r1"))
    assert created["metadata"]["uid"]
    with pytest.raises(AlreadyExists) as exc:
        api.create(run_path(NAMESPACE), parent_run("r1"))
    assert exc.value.status == 409 and "already exists" in exc.value.message
    with pytest.raises(NotFound, match='"nope" not found'):
        api.get(run_path(NAMESPACE, "nope"))
    api.merge_patch(run_path(NAMESPACE, "r1", "status"), {"status": {"tasks": {"a": {"phase": "Succeeded"}}}})
    api.merge_patch(run_path(NAMESPACE, "r1", "status"), {"status": {"tasks": {"b": {"phase": "Failed"}}}})
    assert api.get(run_path(NAMESPACE, "r1"))["status"]["tasks"] == {
        "a": {"phase": "Succeeded"},
        "b": {"phase": "Failed"},
    }
    # keep-alive: all of it on one connection per thread, so the fake saw every request
    assert len(fake.requests) == 6


def test_token_file_is_read_again_after_401(fake, tmp_path):
    token = tmp_path / "token"
    token.write_text("expired")
    client = ApiClient(KubeConfig(server=fake.url, token_file=str(token)))
    with pytest.raises(Unauthorized):
        client.get(run_path(NAMESPACE, "x"))
    token.write_text(fake.token)  # the node rotated it
    with pytest.raises(NotFound):
        client.get(run_path(NAMESPACE, "x"))


def test_server_errors_are_retried(fake, api):
    fake.put(parent_run("r1"))
    fake.fail_next.append(("GET", 503))
    assert api.get(run_path(NAMESPACE, "r1"))["metadata"]["name"] == "r1"


def test_rate_limiter_allows_a_burst_then_the_rate():
    limiter = RateLimiter(qps=100, burst=5)
    start = time.monotonic()
    for _ in range(5):
        limiter.acquire()
    assert time.monotonic() - start < 0.05
    for _ in range(10):
        limiter.acquire()
    elapsed = time.monotonic() - start
    assert 0.07 <= elapsed < 0.5  # 10 more at 100/s


def test_rate_limiter_is_fair_across_threads():
    limiter = RateLimiter(qps=200, burst=1)
    threads = [threading.Thread(target=lambda: [limiter.acquire() for _ in range(10)]) for _ in range(4)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.monotonic() - start >= 39 / 200 * 0.9


def test_watch_streams_events_and_raises_gone_when_too_old(fake, api):
    fake.put(parent_run("r1"))
    rv = api.list(run_path(NAMESPACE))["metadata"]["resourceVersion"]
    events = []

    def consume():
        for kind, obj in api.watch(run_path(NAMESPACE), rv, timeout_seconds=2):
            events.append((kind, obj["metadata"]["name"]))
            if len(events) == 2:
                return

    t = threading.Thread(target=consume)
    t.start()
    time.sleep(0.1)
    fake.put(parent_run("r2"))
    fake.set_status(NAMESPACE, "r2", {"phase": "Running"})
    t.join(5)
    assert events == [("ADDED", "r2"), ("MODIFIED", "r2")]

    fake.compact()
    with pytest.raises(Gone):
        list(api.watch(run_path(NAMESPACE), rv, timeout_seconds=2))


def test_client_rate_is_read_from_the_environment_when_the_client_is_made(monkeypatch):
    # Not at import: a pod forked from a preloaded server must see its own environment.
    from kinflow._api import ApiClient, KubeConfig

    monkeypatch.setenv("KINFLOW_CLIENT_QPS", "7")
    monkeypatch.setenv("KINFLOW_CLIENT_BURST", "3")
    client = ApiClient(KubeConfig(server="http://127.0.0.1:1"))
    assert client.limiter.qps == 7 and client.limiter.burst == 3
