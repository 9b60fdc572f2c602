"""The dev cluster: real etcd, kube-apiserver, controller-manager and scheduler as processes.

Flags follow kubernetes' hack/local-up-cluster.sh and envtest, trimmed to what a
single-machine cluster needs, with TLS, RBAC and Node authorization on. `up` is
idempotent: components already running (checked by PID record) are reused.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kinflow_dev import binaries
from kinflow_dev.paths import data_dir
from kinflow_dev.pki import Pki
from kinflow_dev.processes import Supervisor

SERVICE_CIDR = "10.0.0.0/24"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def crds_dir() -> Path:
    """The CRDs `up` installs: the project's crds/ (KINFLOW_CRDS_DIR overrides)."""
    return Path(os.environ.get("KINFLOW_CRDS_DIR") or PROJECT_ROOT / "crds")


def default_home() -> Path:
    explicit = os.environ.get("KINFLOW_DEV_HOME")
    return Path(explicit) if explicit else data_dir() / "dev"


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _free_port(preferred: int) -> int:
    if _port_free(preferred):
        return preferred
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ClusterConfig:
    """What `up` was asked for; saved so a second `up` and `down` agree with the first."""

    home: Path
    api_port: int = 6443
    etcd_port: int = 2379
    etcd_peer_port: int = 2380
    node_name: str = "kinflow-dev"
    slots: int = 8
    workdir: str = field(default_factory=os.getcwd)
    pythonpath: str = field(default_factory=lambda: os.environ.get("PYTHONPATH", ""))
    python: str = sys.executable
    operator: bool = True

    @property
    def file(self) -> Path:
        return self.home / "cluster.json"

    def save(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        data = asdict(self)
        data["home"] = str(self.home)
        self.file.write_text(json.dumps(data, indent=2))

    @classmethod
    def load(cls, home: Path) -> "ClusterConfig | None":
        try:
            data = json.loads((home / "cluster.json").read_text())
        except (OSError, ValueError):
            return None
        data["home"] = Path(data["home"])
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


class DevCluster:
    """One local cluster rooted at a state folder."""

    def __init__(self, config: ClusterConfig, log=print):
        self.config = config
        self.home = config.home
        self.pki = Pki(self.home / "pki")
        self.procs = Supervisor(self.home)
        self.log = log

    # ---- paths -------------------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        return self.home / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.config.api_port}"

    def component_kubeconfig(self, name: str) -> Path:
        return self.home / "kubeconfigs" / f"{name}.kubeconfig"

    # ---- lifecycle ---------------------------------------------------------

    def up(self, verbose: bool = False) -> None:
        started = time.monotonic()
        paths = binaries.ensure_binaries(verbose=verbose)
        if not self.procs.running("etcd"):
            choose_ports(self.config, self)
        self.config.save()
        self.pki.ensure(node_names=[self.config.node_name])
        self._write_kubeconfigs()
        self._ensure("etcd", lambda: self._etcd_argv(paths["etcd"]), self._etcd_healthy)
        self._ensure("kube-apiserver", lambda: self._apiserver_argv(paths["kube-apiserver"]),
                     self.apiserver_ready, timeout=90)
        self._ensure("kube-controller-manager",
                     lambda: self._controller_manager_argv(paths["kube-controller-manager"]))
        self._ensure("kube-scheduler", lambda: self._scheduler_argv(paths["kube-scheduler"]))
        self._ensure(f"node-{self.config.node_name}", self._node_argv, env=self._pod_env())
        from kinflow_dev import bootstrap

        bootstrap.wait_ready(self.kubeconfig, self.config.node_name, log=self.log)
        bootstrap.install_crds(self.kubeconfig, crds_dir(), log=self.log)
        bootstrap.apply_task_rbac(self.kubeconfig, "default")
        if self.config.operator:
            self._ensure("operator", self._operator_argv, env=self._operator_env())
        self.log(f"cluster up in {time.monotonic() - started:.1f}s")

    def down(self, purge: bool = False) -> list[str]:
        """Stop every process `up` started (pods first, control plane last)."""
        from kinflow_dev import node as node_agent

        stopped = []
        order = ["operator"] + [n for n in self.procs.names() if n.startswith("node-")] + [
            "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"]
        for name in dict.fromkeys(order + self.procs.names()):
            if self.procs.stop(name):
                stopped.append(name)
        kill_pods = getattr(node_agent, "kill_all_pods", None)
        if kill_pods:
            kill_pods(self.home)
        if purge:
            import shutil

            shutil.rmtree(self.home, ignore_errors=True)
        return stopped

    def status(self) -> dict[str, dict]:
        rows = {}
        for name in ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
                     f"node-{self.config.node_name}", "operator"]:
            rec = self.procs.running(name)
            rows[name] = {"running": bool(rec), "pid": rec.pid if rec else None,
                          "log": str(self.procs.log_path(name))}
        return rows

    # ---- components --------------------------------------------------------

    def _ensure(self, name, argv_fn, ready=None, timeout: float = 60, env=None) -> None:
        if self.procs.running(name):
            if ready is None or ready():
                self.log(f"  {name}: running (reused)")
                return
        if self.procs.record(name):
            self.procs.stop(name)
        rec = self.procs.start(name, argv_fn(), env=env, cwd=Path(self.config.workdir))
        self.log(f"  {name}: started (pid {rec.pid})")
        if ready is None:
            time.sleep(0.2)
            if not rec.alive():
                raise RuntimeError(self._died(name))
            return
        deadline = time.monotonic() + timeout
        while not ready():
            if not rec.alive():
                raise RuntimeError(self._died(name))
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not become ready in {timeout:.0f}s; "
                                   f"see {self.procs.log_path(name)}")
            time.sleep(0.2)

    def _died(self, name: str) -> str:
        log = self.procs.log_path(name)
        tail = log.read_text(errors="replace").splitlines()[-15:] if log.exists() else []
        return f"{name} exited during start; last lines of {log}:\n" + "\n".join(tail)

    def _etcd_argv(self, etcd: Path) -> list[str]:
        c = self.config
        return [
            str(etcd), "--name", "kinflow-dev", "--data-dir", str(self.home / "etcd"),
            "--listen-client-urls", f"http://127.0.0.1:{c.etcd_port}",
            "--advertise-client-urls", f"http://127.0.0.1:{c.etcd_port}",
            "--listen-peer-urls", f"http://127.0.0.1:{c.etcd_peer_port}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{c.etcd_peer_port}",
            "--initial-cluster", f"kinflow-dev=http://127.0.0.1:{c.etcd_peer_port}",
            "--listen-metrics-urls", "",
            # A throwaway dev store: skipping fsync makes every API write much cheaper.
            "--unsafe-no-fsync", "--quota-backend-bytes", str(4 * 1024**3),
            "--log-level", "warn",
        ]

    def _etcd_healthy(self) -> bool:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.config.etcd_port}/health", timeout=1
            ) as r:
                return b'"true"' in r.read()
        except OSError:
            return False

    def _apiserver_argv(self, apiserver: Path) -> list[str]:
        p, c = self.pki.path, self.config
        return [
            str(apiserver),
            f"--etcd-servers=http://127.0.0.1:{c.etcd_port}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={c.api_port}",
            f"--tls-cert-file={p('apiserver.crt')}", f"--tls-private-key-file={p('apiserver.key')}",
            f"--client-ca-file={p('ca.crt')}",
            f"--kubelet-client-certificate={p('apiserver-kubelet-client.crt')}",
            f"--kubelet-client-key={p('apiserver-kubelet-client.key')}",
            f"--service-account-key-file={p('sa.pub')}",
            f"--service-account-signing-key-file={p('sa.key')}",
            f"--service-account-issuer={SA_ISSUER}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            "--profiling=false",
            # One machine, thousands of small objects: do not throttle our own tests.
            "--max-requests-inflight=800", "--max-mutating-requests-inflight=400",
            "--enable-priority-and-fairness=false",
            "--event-ttl=1h",
            "-v=1",
        ]

    def apiserver_ready(self) -> bool:
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        ctx.load_cert_chain(self.pki.path("admin.crt"), self.pki.path("admin.key"))
        try:
            with urllib.request.urlopen(f"{self.server}/readyz", context=ctx, timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def _controller_manager_argv(self, cm: Path) -> list[str]:
        p, kc = self.pki.path, str(self.component_kubeconfig("kube-controller-manager"))
        return [
            str(cm), f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}",
            "--secure-port=0", "--leader-elect=false",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={p('sa.key')}",
            f"--root-ca-file={p('ca.crt')}",
            f"--cluster-signing-cert-file={p('ca.crt')}",
            f"--cluster-signing-key-file={p('ca.key')}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--controllers=*",
            # Big fan-outs: let the Job controller and the garbage collector keep up.
            "--kube-api-qps=200", "--kube-api-burst=400",
            "--concurrent-job-syncs=10", "--concurrent-gc-syncs=30",
            "-v=1",
        ]

    def _scheduler_argv(self, scheduler: Path) -> list[str]:
        config = self.home / "kube-scheduler.yaml"
        config.write_text(json.dumps({
            "apiVersion": "kubescheduler.config.k8s.io/v1",
            "kind": "KubeSchedulerConfiguration",
            "clientConnection": {
                "kubeconfig": str(self.component_kubeconfig("kube-scheduler")),
                "qps": 200, "burst": 400,
            },
            "leaderElection": {"leaderElect": False},
        }))
        return [str(scheduler), f"--config={config}", "--secure-port=0", "-v=1"]

    def _node_argv(self, name: str | None = None, slots: int | None = None,
                   taints: list[str] = (), labels: dict[str, str] | None = None) -> list[str]:
        c = self.config
        name = name or c.node_name
        argv = [
            c.python, "-m", "kinflow_dev.node",
            "--kubeconfig", str(self.component_kubeconfig(f"node-{name}")),
            "--name", name, "--slots", str(slots or c.slots), "--state-dir", str(self.home),
            "--workdir", c.workdir, "--pythonpath", c.pythonpath, "--python", c.python,
        ]
        for taint in taints:
            argv += ["--taint", taint]
        for k, v in (labels or {}).items():
            argv += ["--label", f"{k}={v}"]
        return argv

    def start_node(self, name: str, slots: int, taints: list[str] = (),
                   labels: dict[str, str] | None = None) -> None:
        """Join one more node agent (its own name, slots, taints) to the running cluster."""
        crt, key = self.pki.node_cert(name)
        write_kubeconfig(self.component_kubeconfig(f"node-{name}"), self.server,
                         self.pki.ca_cert, crt, key, user=f"system:node:{name}")
        # An extra node is temporary: its pods end with it (the main node keeps pods across restarts).
        self._ensure(f"node-{name}",
                     lambda: self._node_argv(name, slots, taints, labels) + ["--kill-pods-on-exit"],
                     env=self._pod_env())

    def stop_node(self, name: str, delete: bool = True) -> None:
        """Stop an extra node agent and remove its Node object."""
        self.procs.stop(f"node-{name}")
        if delete:
            from kubernetes import client, config
            from kubernetes.client.rest import ApiException

            core = client.CoreV1Api(config.new_client_from_config(config_file=str(self.kubeconfig)))
            try:
                core.delete_node(name)
            except ApiException as e:
                if e.status != 404:
                    raise

    def _pod_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            x for x in [str(PROJECT_ROOT / "devcluster"), env.get("PYTHONPATH", "")] if x)
        return env

    def _operator_argv(self) -> list[str]:
        return [self.config.python, "-m", "kinflow_operator", "--all-namespaces"]

    def _operator_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        return env

    # ---- kubeconfigs -------------------------------------------------------

    def _write_kubeconfigs(self) -> None:
        p = self.pki.path
        write_kubeconfig(self.kubeconfig, self.server, self.pki.ca_cert,
                         p("admin.crt"), p("admin.key"), user="kinflow-admin")
        for name in ("kube-controller-manager", "kube-scheduler"):
            write_kubeconfig(self.component_kubeconfig(name), self.server, self.pki.ca_cert,
                             p(f"{name}.crt"), p(f"{name}.key"), user=name)
        crt, key = self.pki.node_cert(self.config.node_name)
        write_kubeconfig(self.component_kubeconfig(f"node-{self.config.node_name}"), self.server,
                         self.pki.ca_cert, crt, key, user=f"system:node:{self.config.node_name}")


def write_kubeconfig(path: Path, server: str, ca: Path, cert: Path, key: Path, user: str) -> None:
    """A kubeconfig that names its files (JSON is valid YAML, and cheap to parse)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "kinflow-dev", "cluster": {
            "server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": user, "user": {
            "client-certificate": str(cert), "client-key": str(key)}}],
        "contexts": [{"name": "kinflow-dev", "context": {
            "cluster": "kinflow-dev", "user": user, "namespace": "default"}}],
        "current-context": "kinflow-dev",
    }, indent=2))
    path.chmod(0o600)


def open_cluster(home: Path | None = None, **overrides) -> DevCluster:
    """The cluster at home, with its saved settings updated by overrides."""
    home = home or default_home()
    config = ClusterConfig.load(home) or ClusterConfig(home=home)
    for k, v in overrides.items():
        if v is not None:
            setattr(config, k, v)
    return DevCluster(config)


def choose_ports(config: ClusterConfig, dev: DevCluster) -> None:
    """Take the saved ports, or free ones if another cluster already has them."""
    config.api_port = _free_port(config.api_port)
    config.etcd_port = _free_port(config.etcd_port)
    config.etcd_peer_port = _free_port(config.etcd_peer_port)
