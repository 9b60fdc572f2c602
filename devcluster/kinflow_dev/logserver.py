"""The node's kubelet log endpoint, so `kubectl logs [-f]` works on the dev cluster.

The API server serves `pods/log` by calling the node at
`https://<InternalIP>:<daemonEndpoints.kubeletEndpoint.Port>/containerLogs/<ns>/<pod>/<container>`
with its kubelet-client certificate. We answer from the log files on disk.
Only clients with a certificate signed by the cluster CA are let in; the
serving certificate is the node's own (the API server does not verify kubelet
serving certificates unless told a CA for them).
"""

from __future__ import annotations

import logging
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from .podstore import LogNotFound, PodFiles, _follow, find_log

log = logging.getLogger("kinflow.node")


def tail_lines(text: str, n: int) -> str:
    """The last n lines of text (all of it when n is negative)."""
    if n < 0:
        return text
    lines = text.splitlines(keepends=True)
    return "".join(lines[-n:]) if n else ""


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.strip("/").split("/")]
        if len(parts) != 4 or parts[0] != "containerLogs":
            self.send_error(404, "only /containerLogs/<namespace>/<pod>/<container> is served")
            return
        _, namespace, pod, container = parts
        query = parse_qs(url.query)
        follow = query.get("follow", ["false"])[0] == "true"
        tail = int(query.get("tailLines", ["-1"])[0])
        try:
            path = find_log(self.server.state_dir, namespace, pod, container)
        except LogNotFound as exc:
            self.send_error(404, str(exc))
            return
        with path.open("r", errors="replace") as f:
            text = f.read()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.end_headers()
        try:
            self.wfile.write(tail_lines(text, tail).encode())
            if follow:
                for chunk in _follow(path, PodFiles(path.parent), container, start=len(text.encode())):
                    self.wfile.write(chunk.encode())
                    self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the reader went away (kubectl logs -f interrupted)

    def log_message(self, format: str, *args) -> None:  # quiet: one line per request is noise here
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state_dir: Path


def start_log_server(state_dir: Path, cert_file: str, key_file: str, ca_file: str) -> int:
    """Serve container logs on a free loopback port in a background thread; returns the port."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_file, key_file)
    ctx.load_verify_locations(ca_file)
    ctx.verify_mode = ssl.CERT_REQUIRED
    server = _Server(("127.0.0.1", 0), _Handler)
    server.state_dir = state_dir
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    # A long poll interval: requests still wake it at once, and an idle node stays idle.
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 3600},
                     name="log-server", daemon=True).start()
    return server.server_address[1]
