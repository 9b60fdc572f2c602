"""An in-memory stand-in for the Kubernetes API server, for WorkflowRuns only.

It speaks real HTTP/1.1 (keep-alive, chunked watch streams), so the SDK's own
client is tested, not a mock of it. What it does: create (uid, resourceVersion,
AlreadyExists), get, list and watch with label/field selectors and
resourceVersion resume, merge patches on the object and on its status
subresource, bearer-token checks. What it does not: schemas, RBAC, admission,
garbage collection, any controller. Tests play the operator by calling
`set_status`.

Fault injection: `drop_watches()` cuts every open watch connection mid-stream;
`compact()` forgets history, so resuming a watch gets 410 Gone.
"""

from __future__ import annotations

import copy
import json
import re
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

PATH = re.compile(
    r"^/apis/kinflow\.io/v1alpha1/namespaces/(?P<ns>[^/]+)/workflowruns(?:/(?P<name>[^/]+)(?:/(?P<sub>status))?)?$"
)


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def label_match(labels: dict, selector: str | None) -> bool:
    for term in filter(None, (selector or "").split(",")):
        if term.startswith("!"):
            if term[1:] in labels:
                return False
        elif "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k) == v:
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k) != v:
                return False
        elif term not in labels:
            return False
    return True


def field_match(obj: dict, selector: str | None) -> bool:
    for term in filter(None, (selector or "").split(",")):
        k, v = term.split("=", 1)
        if k == "metadata.name" and obj["metadata"]["name"] != v:
            return False
        if k == "metadata.namespace" and obj["metadata"]["namespace"] != v:
            return False
    return True


def status_error(code: int, reason: str, message: str) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason, "message": message}


class FakeApiServer:
    """Start with `with FakeApiServer() as api:`; `api.url` is its address."""

    def __init__(self, token: str | None = "test-token") -> None:
        self.token = token
        self.objects: dict[tuple[str, str], dict] = {}
        self.events: list[tuple[int, str, dict]] = []  # (rv, type, object)
        self.rv = 100
        self.floor = 0  # watches resuming from below this get 410
        self.requests: list[tuple[float, str, str]] = []
        self.lock = threading.Condition()
        self.watch_generation = 0
        self.open_watches = 0
        self.fail_next: list[tuple[str, int]] = []  # (method, status) to answer once
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                server._handle(self, "GET")

            def do_POST(self):
                server._handle(self, "POST")

            def do_PATCH(self):
                server._handle(self, "PATCH")

            def do_DELETE(self):
                server._handle(self, "DELETE")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> "FakeApiServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.drop_watches()
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- test helpers --

    def kubeconfig(self, namespace: str = "default", token_file: str | None = None) -> dict:
        """A kubeconfig (as a dict) pointing at this server."""
        user = {"tokenFile": token_file} if token_file else {"token": self.token}
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": user}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": namespace}}],
            "current-context": "fake",
        }

    def put(self, obj: dict) -> dict:
        """Store an object directly (as if someone else created it)."""
        with self.lock:
            return self._create(copy.deepcopy(obj))

    def get(self, namespace: str, name: str) -> dict | None:
        with self.lock:
            obj = self.objects.get((namespace, name))
            return copy.deepcopy(obj) if obj else None

    def list(self, namespace: str, label_selector: str | None = None) -> list[dict]:
        with self.lock:
            return [
                copy.deepcopy(o)
                for (ns, _), o in self.objects.items()
                if ns == namespace and label_match(o["metadata"].get("labels") or {}, label_selector)
            ]

    def set_status(self, namespace: str, name: str, status: dict) -> dict:
        """Merge `status` into the run's status, as the operator would."""
        with self.lock:
            return self._patch(namespace, name, {"status": status}, "status")

    def succeed(self, namespace: str, name: str, output: dict) -> dict:
        """Finish a run successfully with this output (task name -> output)."""
        tasks = {t: {"phase": "Succeeded", "output": o} for t, o in output.items()}
        return self.set_status(namespace, name, {"phase": "Succeeded", "output": output, "tasks": tasks})

    def fail(self, namespace: str, name: str, task: str, type_: str, message: str, phase: str = "Failed") -> dict:
        """Finish a run as failed (or Cancelled) with one task's error."""
        error = {"type": type_, "message": message, "traceback": "", "retryable": True}
        return self.set_status(namespace, name, {"phase": phase, "tasks": {task: {"phase": phase, "error": error}}})

    def drop_watches(self) -> None:
        """Cut every open watch connection (a network blip, an API server restart)."""
        with self.lock:
            self.watch_generation += 1
            self.lock.notify_all()

    def compact(self) -> None:
        """Forget event history: resuming a watch from an older resourceVersion gets 410."""
        with self.lock:
            self.floor = self.rv + 1
            self.events.clear()

    def count(self, method: str, contains: str = "") -> int:
        return sum(1 for _, m, p in self.requests if m == method and contains in p)

    # -- storage (call with the lock held) --

    def _bump(self, obj: dict, kind: str) -> dict:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.events.append((self.rv, kind, copy.deepcopy(obj)))
        self.lock.notify_all()
        return obj

    def _create(self, obj: dict) -> dict:
        meta = obj.setdefault("metadata", {})
        if not meta.get("name"):
            meta["name"] = meta.pop("generateName", "run-") + uuid.uuid4().hex[:5]
        key = (meta["namespace"], meta["name"])
        if key in self.objects:
            raise _Answer(409, status_error(409, "AlreadyExists", f'workflowruns.kinflow.io "{meta["name"]}" already exists'))
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        obj.pop("status", None)
        self.objects[key] = obj
        return copy.deepcopy(self._bump(obj, "ADDED"))

    def _patch(self, ns: str, name: str, patch: dict, sub: str | None) -> dict:
        obj = self.objects.get((ns, name))
        if obj is None:
            raise _Answer(404, status_error(404, "NotFound", f'workflowruns.kinflow.io "{name}" not found'))
        if sub == "status":
            obj["status"] = merge_patch(obj.get("status") or {}, patch.get("status") or {})
        else:
            patch = {k: v for k, v in patch.items() if k != "status"}
            new = merge_patch(obj, patch)
            obj.clear()
            obj.update(new)
        return copy.deepcopy(self._bump(obj, "MODIFIED"))

    # -- HTTP --

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(h.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(h.headers.get("Content-Length") or 0)
        body = json.loads(h.rfile.read(length)) if length else None
        with self.lock:
            self.requests.append((time.monotonic(), method if query.get("watch") != "1" else "WATCH", url.path))
            injected = next((f for f in self.fail_next if f[0] == method), None)
            if injected:
                self.fail_next.remove(injected)
        if self.token and h.headers.get("Authorization") != f"Bearer {self.token}":
            return self._send(h, 401, status_error(401, "Unauthorized", "Unauthorized"))
        if injected:
            return self._send(h, injected[1], status_error(injected[1], "Injected", "injected failure"))
        m = PATH.match(url.path)
        if not m:
            return self._send(h, 404, status_error(404, "NotFound", f"no route {url.path}"))
        ns, name, sub = m["ns"], m["name"], m["sub"]
        try:
            if method == "GET" and name is None and query.get("watch") == "1":
                return self._watch(h, ns, query)
            with self.lock:
                if method == "GET" and name is None:
                    items = [
                        copy.deepcopy(o)
                        for (ons, _), o in self.objects.items()
                        if ons == ns
                        and label_match(o["metadata"].get("labels") or {}, query.get("labelSelector"))
                        and field_match(o, query.get("fieldSelector"))
                    ]
                    answer = {"kind": "WorkflowRunList", "items": items, "metadata": {"resourceVersion": str(self.rv)}}
                elif method == "GET":
                    obj = self.objects.get((ns, name))
                    if obj is None:
                        raise _Answer(404, status_error(404, "NotFound", f'workflowruns.kinflow.io "{name}" not found'))
                    answer = copy.deepcopy(obj)
                elif method == "POST":
                    body.setdefault("metadata", {})["namespace"] = ns
                    answer = self._create(body)
                    return self._send(h, 201, answer)
                elif method == "PATCH":
                    if h.headers.get("Content-Type") != "application/merge-patch+json":
                        raise _Answer(415, status_error(415, "UnsupportedMediaType", "want merge patch"))
                    answer = self._patch(ns, name, body, sub)
                elif method == "DELETE":
                    obj = self.objects.pop((ns, name), None)
                    if obj is None:
                        raise _Answer(404, status_error(404, "NotFound", f'"{name}" not found'))
                    answer = copy.deepcopy(self._bump(obj, "DELETED"))
                else:
                    raise _Answer(405, status_error(405, "MethodNotAllowed", method))
        except _Answer as a:
            return self._send(h, a.code, a.body)
        self._send(h, 200, answer)

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        h.send_response(code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _watch(self, h: BaseHTTPRequestHandler, ns: str, query: dict) -> None:
        since = int(query.get("resourceVersion") or self.rv)
        deadline = time.monotonic() + float(query.get("timeoutSeconds") or 300)
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()

        def chunk(event: dict) -> None:
            data = json.dumps(event).encode() + b"\n"
            h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            h.wfile.flush()

        with self.lock:
            generation = self.watch_generation
            self.open_watches += 1
        try:
            if since < self.floor:
                chunk({"type": "ERROR", "object": status_error(410, "Expired", f"too old resource version: {since}")})
                h.wfile.write(b"0\r\n\r\n")
                return
            while True:
                with self.lock:
                    if self.watch_generation != generation:
                        h.connection.shutdown(socket.SHUT_RDWR)  # abrupt: like a dropped connection
                        h.close_connection = True
                        return
                    pending = [e for e in self.events if e[0] > since]
                    if not pending:
                        self.lock.wait(0.2)
                        if time.monotonic() > deadline:
                            h.wfile.write(b"0\r\n\r\n")
                            return
                        continue
                for rv, kind, obj in pending:
                    since = rv
                    if obj["metadata"]["namespace"] != ns:
                        continue
                    if not label_match(obj["metadata"].get("labels") or {}, query.get("labelSelector")):
                        continue
                    if not field_match(obj, query.get("fieldSelector")):
                        continue
                    chunk({"type": kind, "object": obj})
        except (BrokenPipeError, ConnectionResetError, OSError):
            h.close_connection = True
        finally:
            with self.lock:
                self.open_watches -= 1


class _Answer(Exception):
    def __init__(self, code: int, body: dict) -> None:
        self.code, self.body = code, body
