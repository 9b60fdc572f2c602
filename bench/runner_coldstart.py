"""Runner cold start: from process start to the runner's first API request.

Starts a tiny local API server (one WorkflowRun for examples.simple, accepts
the status patch), runs `python -m kinflow.runner` against it N times, and
prints the time from just before the process is spawned until its GET
arrives, and until the process exits. With --tls the server speaks HTTPS with
a self-signed certificate (made with the openssl CLI), as a real API server
does, so the TLS handshake is included.

With --fork-server the runner is forked from the dev node's fork server
(kinflow_dev.forkserver) instead of exec'd: the time runs from the node's
spawn request, and CPU per run counts the server's share (the fork) too.
--preload overrides the server's preloaded modules, to measure which help.

    python bench/runner_coldstart.py [-n 20] [--tls] [--fork-server [--preload a,b,c]]

Target (issue 4): under 150 ms to the first request on the dev machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

RUN = {
    "apiVersion": "kinflow.io/v1alpha1",
    "kind": "WorkflowRun",
    "metadata": {"name": "bench", "namespace": "bench", "uid": "u"},
    "spec": {
        "workflow": "SimpleWorkflow",
        "entrypoint": "examples.simple:simple",
        "input": {"message": "hello"},
        "tasks": [{"name": "step1"}],
    },
}


class Server:
    def __init__(self, tls_dir: Path | None) -> None:
        self.first_request: float | None = None
        self.patched = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if server.first_request is None:
                    server.first_request = time.perf_counter()
                self._send(200, RUN)

            def do_PATCH(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                server.patched.set()
                self._send(200, RUN)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        scheme = "http"
        if tls_dir:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls_dir / "cert.pem", tls_dir / "key.pem")
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()


def make_cert(folder: Path) -> None:
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(folder / "key.pem"), "-out", str(folder / "cert.pem"), "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20, help="runs (default 20)")
    parser.add_argument("--tls", action="store_true", help="HTTPS with a self-signed certificate")
    parser.add_argument("--fork-server", action="store_true", help="fork runners from the dev node's fork server")
    parser.add_argument("--preload", default=None, help="the fork server's preloaded modules (comma-separated)")
    args = parser.parse_args()
    forks = None

    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        if args.tls:
            make_cert(tmpdir)
        token = tmpdir / "token"
        token.write_text("bench-token")
        cluster = {"server": ""}
        if args.tls:
            cluster["certificate-authority"] = str(tmpdir / "cert.pem")
        first, total, cpu = [], [], []
        base_env = dict(os.environ, PYTHONPATH=str(ROOT))
        if args.fork_server:
            sys.path.insert(0, str(ROOT / "devcluster"))
            from kinflow_dev import forkserver

            preload = tuple(m for m in args.preload.split(",") if m) if args.preload is not None \
                else forkserver.PRELOAD
            forks = forkserver.ForkServer(sys.executable, str(ROOT), base_env, tmpdir / "forkserver.json",
                                          preload=preload)
            if not forks.ensure_started():
                sys.exit("the fork server did not start")
            print(f"fork server: preloaded {len(forks.hello['preloaded'])} modules in "
                  f"{forks.hello['preload_cpu_ms']} ms CPU (once per node)")
        for i in range(args.n + 1):  # the first run warms the page cache and is not counted
            server = Server(tmpdir if args.tls else None)
            cluster["server"] = server.url
            kubeconfig = tmpdir / "kubeconfig"
            kubeconfig.write_text(json.dumps({
                "clusters": [{"name": "b", "cluster": cluster}],
                "users": [{"name": "b", "user": {"tokenFile": str(token)}}],
                "contexts": [{"name": "b", "context": {"cluster": "b", "user": "b", "namespace": "bench"}}],
                "current-context": "b",
            }))
            env = dict(base_env, KUBECONFIG=str(kubeconfig), KINFLOW_RUN="bench", KINFLOW_NAMESPACE="bench",
                       KINFLOW_TASK="step1", KINFLOW_ATTEMPT="1", KINFLOW_JOB="bench-job")
            argv = [sys.executable, "-m", "kinflow.runner"]
            if forks is not None:
                cpu0 = _tree_cpu_ms(forks.pid)
                start = time.perf_counter()
                returncode, stderr = _run_forked(forks, argv, env, tmpdir)
                end = time.perf_counter()
                time.sleep(0.05)  # the server reaps the shim on SIGCHLD
                used = _tree_cpu_ms(forks.pid) - cpu0
            else:
                cpu0 = _children_cpu_ms()
                start = time.perf_counter()
                proc = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True)
                end = time.perf_counter()
                used = _children_cpu_ms() - cpu0
                returncode, stderr = proc.returncode, proc.stderr
            server.httpd.shutdown()
            server.httpd.server_close()
            if returncode != 0 or not server.patched.is_set():
                sys.exit(f"runner failed (exit {returncode}):\n{stderr}")
            if i:
                first.append((server.first_request - start) * 1000)
                total.append((end - start) * 1000)
                cpu.append(used)
        if forks is not None:
            forks.close()

    def row(name: str, values: list[float]) -> str:
        values = sorted(values)
        p90 = values[min(len(values) - 1, int(len(values) * 0.9))]
        return (f"{name:<28} min {values[0]:6.1f}  median {statistics.median(values):6.1f}  "
                f"p90 {p90:6.1f}  max {values[-1]:6.1f} ms")

    how = "forked by the fork server" if forks is not None else "exec"
    print(f"runner cold start ({how}), {args.n} runs, {'HTTPS' if args.tls else 'HTTP'}, "
          f"Python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}")
    print(row("process start -> first GET", first))
    print(row("process start -> exit", total))
    print(row("CPU per run", cpu))


def _children_cpu_ms() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (r.ru_utime + r.ru_stime) * 1000


def _tree_cpu_ms(pid: int) -> float:
    """CPU of a process and of its reaped children (utime, stime, cutime, cstime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) * 1000 / os.sysconf("SC_CLK_TCK")


def _run_forked(forks, argv: list[str], env: dict, tmpdir: Path) -> tuple[int, str]:
    """Fork one runner as the node does (spawn, go, wait on the pidfd, read the exit file)."""
    import select

    log, exit_file = tmpdir / "runner.log", tmpdir / "runner.exit"
    log.unlink(missing_ok=True)
    exit_file.unlink(missing_ok=True)
    forked = forks.spawn(argv, env, str(ROOT), log, exit_file)
    forked.go()
    poller = select.poll()
    poller.register(forked.pidfd, select.POLLIN)
    poller.poll()
    os.close(forked.pidfd)
    return int(exit_file.read_text()), log.read_text()


if __name__ == "__main__":
    main()
