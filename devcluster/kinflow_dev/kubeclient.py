"""A small Kubernetes API client: kubeconfig loading, JSON requests, watches.

The node agent needs a dozen calls and one robust watch. Plain `http.client`
keeps that in view (timeouts, reconnects, 410 handling are all here) and keeps
the agent light; the `kubernetes` package would add a large import and hide the
stream handling we most need to control.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import tempfile
import threading
import http.client
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlencode, urlsplit, quote

import yaml

JSON = dict[str, Any]

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"


class ApiError(Exception):
    """The API server answered with an error status (or could not be reached: status 0)."""

    def __init__(self, status: int, reason: str, message: str):
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class WatchExpired(Exception):
    """The watch's resourceVersion is too old (410 Gone): list again."""


@dataclass(frozen=True)
class Credentials:
    """What is needed to reach the API server, resolved from a kubeconfig."""

    server: str
    ca_file: str | None
    insecure: bool
    cert_file: str | None
    key_file: str | None
    token: str | None
    token_file: str | None

    @property
    def host(self) -> str:
        return urlsplit(self.server).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return urlsplit(self.server).port or (443 if self.server.startswith("https") else 80)


def _materialise(data_b64: str, suffix: str) -> str:
    """Write inline base64 kubeconfig data to a private file (ssl wants paths)."""
    fd, path = tempfile.mkstemp(prefix="kinflow-node-", suffix=suffix)
    with os.fdopen(fd, "wb") as f:
        f.write(base64.b64decode(data_b64))
    return path


def load_kubeconfig(path: str | os.PathLike[str], context: str | None = None) -> Credentials:
    """Resolve the current (or named) context of a kubeconfig file into credentials."""
    path = Path(path)
    config = yaml.safe_load(path.read_text()) or {}
    base = path.parent

    def named(section: str, name: str) -> JSON:
        for item in config.get(section) or []:
            if item.get("name") == name:
                return item.get(section[:-1]) or {}
        raise ValueError(f"{path}: no {section[:-1]} named {name!r}")

    ctx = named("contexts", context or config.get("current-context", ""))
    cluster = named("clusters", ctx["cluster"])
    user = named("users", ctx["user"]) if ctx.get("user") else {}

    def file_or_data(section: JSON, key: str, suffix: str) -> str | None:
        if section.get(f"{key}-data"):
            return _materialise(section[f"{key}-data"], suffix)
        if section.get(key):
            return str(base / section[key])
        return None

    token_file = user.get("tokenFile")
    return Credentials(
        server=cluster["server"],
        ca_file=file_or_data(cluster, "certificate-authority", ".crt"),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        cert_file=file_or_data(user, "client-certificate", ".crt"),
        key_file=file_or_data(user, "client-key", ".key"),
        token=user.get("token"),
        token_file=str(base / token_file) if token_file else None,
    )


class KubeClient:
    """JSON over HTTPS to one API server; one keep-alive connection per thread."""

    def __init__(self, creds: Credentials, timeout: float = 30.0):
        self.creds = creds
        self.timeout = timeout
        self._local = threading.local()
        if creds.server.startswith("https"):
            ctx = ssl.create_default_context(cafile=creds.ca_file)
            if creds.insecure:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            if creds.cert_file:
                ctx.load_cert_chain(creds.cert_file, creds.key_file)
            self._ssl: ssl.SSLContext | None = ctx
        else:
            self._ssl = None

    @classmethod
    def from_kubeconfig(cls, path: str | os.PathLike[str]) -> "KubeClient":
        return cls(load_kubeconfig(path))

    # -- plumbing -----------------------------------------------------------

    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        if self._ssl is not None:
            return http.client.HTTPSConnection(
                self.creds.host, self.creds.port, timeout=timeout, context=self._ssl
            )
        return http.client.HTTPConnection(self.creds.host, self.creds.port, timeout=timeout)

    def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "kinflow-node/0.1"}
        token = self.creds.token
        if self.creds.token_file:
            token = Path(self.creds.token_file).read_text().strip()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    @staticmethod
    def _error(status: int, raw: bytes) -> ApiError:
        try:
            body = json.loads(raw)
            return ApiError(status, body.get("reason", ""), body.get("message", ""))
        except ValueError:
            return ApiError(status, "", raw.decode(errors="replace")[:500])

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, Any] | None = None,
        content_type: str = "application/json",
    ) -> JSON:
        """One API call; returns the decoded JSON body or raises ApiError.

        A dropped keep-alive connection is retried once on a fresh one; any other
        network failure becomes ApiError(0, ...), so callers handle one type.
        """
        url = path + ("?" + urlencode(query) if query else "")
        payload = json.dumps(body).encode() if body is not None else None
        headers = self._headers(content_type if payload is not None else None)
        for attempt in (1, 2):
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = self._connect(self.timeout)
            try:
                conn.request(method, url, body=payload, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                self._local.conn = None
                if attempt == 2:
                    raise ApiError(0, "Unreachable", f"{method} {path}: {exc}") from None
                continue
            if resp.status >= 400:
                raise self._error(resp.status, raw)
            return json.loads(raw) if raw else {}
        raise AssertionError("unreachable")

    def get(self, path: str, **query: Any) -> JSON:
        return self.request("GET", path, query=query or None)

    def watch(self, path: str, resource_version: str, timeout_seconds: int = 300, **query: Any) -> Iterator[JSON]:
        """Yield watch events until the server closes the stream.

        The socket has a read timeout a little past the server-side timeout, so a
        stream that silently stalls ends here instead of hanging the agent.
        Raises WatchExpired on 410 so the caller lists again.
        """
        params = dict(query, watch="1", resourceVersion=resource_version,
                      timeoutSeconds=str(timeout_seconds), allowWatchBookmarks="true")
        conn = self._connect(timeout_seconds + 30)
        try:
            try:
                conn.request("GET", path + "?" + urlencode(params), headers=self._headers(None))
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                raise ApiError(0, "Unreachable", f"watch {path}: {exc}") from None
            if resp.status == 410:
                raise WatchExpired()
            if resp.status >= 400:
                raise self._error(resp.status, resp.read())
            while True:
                try:
                    line = resp.readline()
                except (OSError, http.client.HTTPException, socket.timeout):
                    return
                if not line:
                    return
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object", {})
                    if status.get("code") == 410:
                        raise WatchExpired()
                    raise ApiError(status.get("code", 0), status.get("reason", ""), status.get("message", ""))
                yield event
        finally:
            conn.close()

    def server_version(self) -> str:
        return self.get("/version").get("gitVersion", "v0.0.0")


def pod_path(namespace: str, name: str, sub: str = "") -> str:
    """The REST path of a pod (or one of its subresources)."""
    path = f"/api/v1/namespaces/{quote(namespace)}/pods/{quote(name)}"
    return f"{path}/{sub}" if sub else path
