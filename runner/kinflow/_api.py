"""A small Kubernetes API client on the standard library only.

Why not the `kubernetes` package: importing it takes longer than the whole
runner may (cold start budget 150 ms), and a task pod needs five verbs on one
resource. This client keeps one keep-alive connection per thread, limits its
request rate with a token bucket, and streams watches line by line.

Configuration, in order: an explicit kubeconfig path, `$KUBECONFIG`, the pod's
service account (in-cluster), `~/.kube/config`. Kubeconfig files are parsed as
JSON first (what the dev node writes: fast, no dependency), YAML otherwise.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import threading
import time
from typing import Any, Iterator
from urllib.parse import quote, urlencode, urlsplit

from . import _constants as C
from .errors import ApiError, Gone, Unauthorized, api_error

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"

DEFAULT_QPS = 100.0
DEFAULT_BURST = 200

# Connection-level failures after which a request is sent again on a fresh connection
# (an idle keep-alive connection closed by the server looks like this).
_STALE_CONNECTION = (
    http.client.RemoteDisconnected,
    http.client.CannotSendRequest,
    http.client.BadStatusLine,
    ConnectionResetError,
    BrokenPipeError,
    ConnectionAbortedError,
)
_RETRY_STATUS = {429, 500, 502, 503, 504}


# --- configuration ---------------------------------------------------------------------


class KubeConfig:
    """Where the API server is and how to authenticate to it.

    A plain class, not a dataclass: importing dataclasses costs ~6 ms of the
    runner's cold start.
    """

    def __init__(
        self,
        server: str,
        namespace: str = "default",
        token: str | None = None,
        token_file: str | None = None,
        ca_file: str | None = None,
        ca_data: str | None = None,  # PEM text
        cert_file: str | None = None,
        key_file: str | None = None,
        cert_data: bytes | None = None,  # PEM bytes
        key_data: bytes | None = None,
        insecure: bool = False,
    ) -> None:
        self.server = server
        self.namespace = namespace
        self.token = token
        self.token_file = token_file
        self.ca_file = ca_file
        self.ca_data = ca_data
        self.cert_file = cert_file
        self.key_file = key_file
        self.cert_data = cert_data
        self.key_data = key_data
        self.insecure = insecure

    def __repr__(self) -> str:  # never print the token
        return f"KubeConfig(server={self.server!r}, namespace={self.namespace!r})"

    def bearer_token(self, reread: bool = False) -> str | None:
        """The token to send; a tokenFile is read again when asked (tokens rotate)."""
        if self.token_file and (reread or self.token is None):
            with open(self.token_file) as f:
                self.token = f.read().strip()
        return self.token


def load_config(kubeconfig: str | None = None, context: str | None = None) -> KubeConfig:
    """Find the API server: a kubeconfig path, $KUBECONFIG, in-cluster, then ~/.kube/config."""
    path = kubeconfig or os.environ.get("KUBECONFIG")
    if path:
        for candidate in path.split(os.pathsep):
            if candidate and os.path.exists(candidate):
                return load_kubeconfig(candidate, context)
        raise ApiError(0, "NoConfig", f"no kubeconfig file found at {path!r}")
    if os.environ.get("KUBERNETES_SERVICE_HOST") and os.path.exists(f"{SERVICE_ACCOUNT_DIR}/token"):
        return in_cluster_config()
    home = os.path.expanduser("~/.kube/config")
    if os.path.exists(home):
        return load_kubeconfig(home, context)
    raise ApiError(
        0,
        "NoConfig",
        "no Kubernetes configuration: set KUBECONFIG, or run in a pod with a service account",
    )


def in_cluster_config() -> KubeConfig:
    """The pod's service account: token, CA and namespace files, KUBERNETES_SERVICE_HOST/PORT."""
    host = os.environ["KUBERNETES_SERVICE_HOST"]
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if ":" in host:  # IPv6
        host = f"[{host}]"
    namespace = "default"
    ns_file = f"{SERVICE_ACCOUNT_DIR}/namespace"
    if os.path.exists(ns_file):
        with open(ns_file) as f:
            namespace = f.read().strip() or namespace
    ca = f"{SERVICE_ACCOUNT_DIR}/ca.crt"
    return KubeConfig(
        server=f"https://{host}:{port}",
        namespace=namespace,
        token_file=f"{SERVICE_ACCOUNT_DIR}/token",
        ca_file=ca if os.path.exists(ca) else None,
    )


def load_kubeconfig(path: str, context: str | None = None) -> KubeConfig:
    """Parse one kubeconfig file (JSON, or YAML when pyyaml is installed)."""
    with open(path) as f:
        text = f.read()
    return parse_kubeconfig(text, os.path.dirname(os.path.abspath(path)), context)


def parse_kubeconfig(text: str, base_dir: str = ".", context: str | None = None) -> KubeConfig:
    """Turn kubeconfig text into a KubeConfig; relative file paths are relative to base_dir."""
    try:
        doc = json.loads(text)
    except ValueError:
        import yaml  # only for YAML kubeconfigs; JSON ones (the dev node's) skip this import

        doc = yaml.safe_load(text)
    if not isinstance(doc, dict):
        raise ApiError(0, "BadConfig", "kubeconfig is not a mapping")

    def named(section: str, name: str) -> dict:
        for entry in doc.get(section) or []:
            if entry.get("name") == name:
                return entry.get(section[:-1]) or {}
        raise ApiError(0, "BadConfig", f"kubeconfig has no {section[:-1]} named {name!r}")

    ctx_name = context or doc.get("current-context")
    if not ctx_name:
        contexts = doc.get("contexts") or []
        if len(contexts) != 1:
            raise ApiError(0, "BadConfig", "kubeconfig has no current-context")
        ctx_name = contexts[0]["name"]
    ctx = named("contexts", ctx_name)
    cluster = named("clusters", ctx["cluster"])
    user = named("users", ctx["user"]) if ctx.get("user") else {}

    def file_path(value: str | None) -> str | None:
        if not value:
            return None
        value = os.path.expanduser(value)
        return value if os.path.isabs(value) else os.path.join(base_dir, value)

    def data(value: str | None) -> bytes | None:
        return base64.b64decode(value) if value else None

    ca_data = data(cluster.get("certificate-authority-data"))
    return KubeConfig(
        server=cluster["server"].rstrip("/"),
        namespace=ctx.get("namespace") or "default",
        token=user.get("token"),
        token_file=file_path(user.get("tokenFile")),
        ca_file=file_path(cluster.get("certificate-authority")),
        ca_data=ca_data.decode() if ca_data else None,
        cert_file=file_path(user.get("client-certificate")),
        key_file=file_path(user.get("client-key")),
        cert_data=data(user.get("client-certificate-data")),
        key_data=data(user.get("client-key-data")),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
    )


def _ssl_context(config: KubeConfig):
    """TLS settings from the config; imported lazily so plain-HTTP servers skip ssl."""
    import ssl

    if config.insecure:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif config.ca_file or config.ca_data:
        # Only the cluster's CA: skips loading the system store, which costs milliseconds.
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(cafile=config.ca_file, cadata=config.ca_data)
    else:
        ctx = ssl.create_default_context()
    if config.cert_file or config.cert_data:
        if config.cert_data:  # ssl loads chains from files only
            import tempfile

            with tempfile.TemporaryDirectory() as tmp:
                cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
                with open(cert, "wb") as f:
                    f.write(config.cert_data)
                with open(key, "wb") as f:
                    f.write(config.key_data or b"")
                ctx.load_cert_chain(cert, key if config.key_data else None)
        else:
            ctx.load_cert_chain(config.cert_file, config.key_file)
    return ctx


# --- rate limiting ---------------------------------------------------------------------


class RateLimiter:
    """Token bucket: `burst` requests at once, then `qps` per second on average.

    Each caller reserves its token under the lock and sleeps outside it, so
    many threads queue fairly without busy waiting.
    """

    def __init__(self, qps: float, burst: int) -> None:
        self.qps = qps
        self.burst = max(1, burst)
        self._tokens = float(self.burst)
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, sleeping if the bucket is empty; returns the seconds slept."""
        if self.qps <= 0:
            return 0.0
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.qps)
            self._last = now
            self._tokens -= 1
            wait = -self._tokens / self.qps if self._tokens < 0 else 0.0
        if wait:
            time.sleep(wait)
        return wait


# --- the client ------------------------------------------------------------------------


def run_path(namespace: str, name: str | None = None, subresource: str | None = None) -> str:
    """URL path of the WorkflowRun collection, one run, or one run's subresource."""
    path = f"/apis/{C.GROUP}/{C.VERSION}/namespaces/{quote(namespace)}/{C.PLURAL}"
    if name:
        path += f"/{quote(name)}"
        if subresource:
            path += f"/{subresource}"
    return path


class ApiClient:
    """get/list/create/merge-patch/watch against one API server; thread-safe."""

    def __init__(
        self,
        config: KubeConfig | None = None,
        qps: float | None = None,
        burst: int | None = None,
        timeout: float = 30.0,
    ) -> None:
        # Read when a client is made, not at import: a forked pod must see its own env.
        if qps is None:
            qps = float(os.environ.get("KINFLOW_CLIENT_QPS", DEFAULT_QPS))
        if burst is None:
            burst = int(os.environ.get("KINFLOW_CLIENT_BURST", DEFAULT_BURST))
        self.config = config or load_config()
        url = urlsplit(self.config.server)
        self._https = url.scheme == "https"
        self._host = url.hostname or "localhost"
        self._port = url.port or (443 if self._https else 80)
        self._prefix = url.path.rstrip("/")
        self._ssl = None
        self._ssl_lock = threading.Lock()
        self._local = threading.local()
        self.timeout = timeout
        self.limiter = RateLimiter(qps, burst)
        self.requests = 0  # how many requests were sent (benchmarks read it)

    @property
    def namespace(self) -> str:
        """The namespace of the config's context (or of the pod's service account)."""
        return self.config.namespace

    # -- connections --

    def _connect(self, timeout: float | None) -> http.client.HTTPConnection:
        if not self._https:
            return http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        if self._ssl is None:
            with self._ssl_lock:
                if self._ssl is None:
                    self._ssl = _ssl_context(self.config)
        return http.client.HTTPSConnection(self._host, self._port, timeout=timeout, context=self._ssl)

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect(self.timeout)
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def close(self) -> None:
        """Close this thread's keep-alive connection."""
        self._drop_connection()

    def _headers(self, content_type: str | None, reread_token: bool = False) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "kinflow-runner"}
        token = self.config.bearer_token(reread_token)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    def _url(self, path: str, params: dict[str, Any] | None) -> str:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        return self._prefix + path + (f"?{urlencode(query)}" if query else "")

    # -- requests --

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, Any] | None = None,
        content_type: str | None = None,
    ) -> Any:
        """Send one request and return the decoded JSON; raise ApiError for error answers.

        Retries, a few times: a stale keep-alive connection, 429 and 5xx answers,
        and a 401 after reading a tokenFile again.
        """
        url = self._url(path, params)
        payload = json.dumps(body).encode() if body is not None else None
        if payload is not None and content_type is None:
            content_type = "application/json"
        reread_token = False
        for attempt in range(5):
            self.limiter.acquire()
            self.requests += 1
            conn = self._connection()
            try:
                conn.request(method, url, body=payload, headers=self._headers(content_type, reread_token))
                resp = conn.getresponse()
                data = resp.read()
            except _STALE_CONNECTION:
                self._drop_connection()
                if attempt >= 1:
                    raise
                continue
            except OSError as exc:  # refused, timed out, TLS failure
                self._drop_connection()
                if attempt >= 3:
                    raise ApiError(0, "ConnectionError", str(exc), method, path) from exc
                time.sleep(0.2 * 2**attempt)
                continue
            if resp.will_close:
                self._drop_connection()
            if 200 <= resp.status < 300:
                return json.loads(data) if data else None
            error = _error_from(resp.status, data, method, path)
            if resp.status == 401 and self.config.token_file and not reread_token:
                reread_token = True
                continue
            if resp.status in _RETRY_STATUS and attempt < 4:
                time.sleep(_retry_after(resp, attempt))
                continue
            raise error
        raise ApiError(0, "RetriesExhausted", "gave up after retries", method, path)

    def get(self, path: str) -> dict:
        """GET one object."""
        return self.request("GET", path)

    def list(self, path: str, label_selector: str | None = None, field_selector: str | None = None) -> dict:
        """GET a collection (a List object with items and metadata.resourceVersion)."""
        return self.request(
            "GET", path, params={"labelSelector": label_selector, "fieldSelector": field_selector}
        )

    def create(self, path: str, body: dict) -> dict:
        """POST a new object to a collection."""
        return self.request("POST", path, body)

    def merge_patch(self, path: str, patch: dict) -> dict:
        """PATCH with a JSON merge patch (a path ending in /status patches the status subresource)."""
        return self.request("PATCH", path, patch, content_type="application/merge-patch+json")

    def delete(self, path: str) -> Any:
        """DELETE one object (background propagation)."""
        return self.request("DELETE", path, {"propagationPolicy": "Background"})

    def watch(
        self,
        path: str,
        resource_version: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int = 300,
    ) -> Iterator[tuple[str, dict]]:
        """Stream (type, object) events from resource_version until the server ends the watch.

        Yields BOOKMARK events too (their object carries only the resourceVersion),
        so the caller always knows where to resume. Raises Gone when that
        resourceVersion is too old: the caller must list again.
        """
        params = {
            "watch": "1",
            "allowWatchBookmarks": "true",
            "resourceVersion": resource_version,
            "labelSelector": label_selector,
            "fieldSelector": field_selector,
            "timeoutSeconds": timeout_seconds,
        }
        url = self._url(path, params)
        self.limiter.acquire()
        self.requests += 1
        conn = self._connect(timeout_seconds + 30)  # its own connection: the stream is long
        try:
            conn.request("GET", url, headers=self._headers(None))
            resp = conn.getresponse()
            if resp.status == 401 and self.config.token_file:
                resp.read()
                conn.close()
                conn = self._connect(timeout_seconds + 30)
                conn.request("GET", url, headers=self._headers(None, reread_token=True))
                resp = conn.getresponse()
            if resp.status != 200:
                raise _error_from(resp.status, resp.read(), "WATCH", path)
            while True:
                line = resp.readline()
                if not line:
                    return
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    raise _error_from(obj.get("code") or 500, json.dumps(obj).encode(), "WATCH", path)
                yield kind, obj
        finally:
            conn.close()


def _error_from(status: int, data: bytes, method: str, path: str) -> ApiError:
    reason, message = "", ""
    try:
        doc = json.loads(data) if data else {}
        reason, message = doc.get("reason", ""), doc.get("message", "")
    except ValueError:
        message = data[:500].decode(errors="replace")
    if status == 410 or reason in ("Expired", "Gone"):
        return Gone(410, reason or "Gone", message, method, path)
    return api_error(status, reason, message, method, path)


def _retry_after(resp: http.client.HTTPResponse, attempt: int) -> float:
    try:
        return min(10.0, float(resp.getheader("Retry-After") or ""))
    except ValueError:
        return min(5.0, 0.2 * 2**attempt)


__all__ = [
    "ApiClient",
    "KubeConfig",
    "RateLimiter",
    "Unauthorized",
    "load_config",
    "parse_kubeconfig",
    "run_path",
]
