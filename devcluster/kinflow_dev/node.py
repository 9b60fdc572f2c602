"""The dev cluster's node agent: a kubelet that runs pods as local processes.

    python -m kinflow_dev.node --kubeconfig PATH --name NODE --slots N --state-dir DIR

It registers a Node, keeps its Lease fresh, watches the pods bound to it and
runs each container's command as a process in its own session (so the whole
tree can be signalled), with the pod's env and a real, bound service-account
token. It reports pod status as a kubelet does, enforces activeDeadlineSeconds,
terminates pods on deletion, and keeps logs on disk (see podstore for the
layout and `read_log`).

Runner pods (`python -m kinflow.runner` in the node's own interpreter setup) are
forked from a warm interpreter, the node's fork server, instead of exec'd: same
pod, a fraction of the CPU (see forkserver; --no-fork-server turns it off).

Threads: one watches pods, one renews the Lease, and one per pod supervises its
processes. Every wait blocks on something (socket, pidfd, eventfd, timer), so an
idle node uses no CPU.

Restarting the agent neither duplicates nor orphans a pod: every start is
recorded on disk; a new agent adopts live processes, reports those that ended
meanwhile, and kills those whose pod was deleted. SIGTERM stops the agent and
leaves pods running (like a kubelet restart) unless --kill-pods-on-exit.
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import platform
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .forkserver import ForkServer, ForkServerError
from .logserver import start_log_server
from .kubeclient import STRATEGIC_PATCH, MERGE_PATCH, ApiError, KubeClient, WatchExpired, pod_path
from .podspec import (
    BASE_ENV_KEYS,
    POD_IP,
    ConfigError,
    ContainerRun,
    build_env,
    exit_reason,
    now_rfc3339,
    parse_rfc3339,
    pod_status,
    resolve_command,
    restart_backoff,
    should_restart,
)
from .podstore import (
    PodFiles,
    judge_record,
    kill_all_pods,  # noqa: F401  (re-exported for `kinflow dev down`)
    pid_start_time,
    pod_dir_name,
    process_alive,
    prune_pod_dirs,
    read_json,
    read_log,  # noqa: F401  (re-exported for `kinflow logs`)
    shim_argv,
    write_json,
)

JSON = dict[str, Any]
log = logging.getLogger("kinflow.node")

LEASE_SECONDS = 40
LEASE_RENEW_EVERY = 10.0
NODE_STATUS_EVERY = 60.0
WATCH_TIMEOUT = 240  # seconds; the server ends the stream, we resume from the last resourceVersion
TOKEN_SECONDS = 3600
KEEP_REMOVED_POD_DIRS = 200
DEFAULT_GRACE = 30


# Seconds between quiet retries of a TokenRequest refused because the node authorizer
# has not seen the pod's binding yet (see PodWorker.prepare).
AUTHORIZER_LAG_RETRIES = (0.02, 0.05, 0.1, 0.2, 0.4)


def _authorizer_lag(exc: Exception) -> bool:
    """A 403 saying the pod is not (yet) bound to this node, as the authorizer sees it."""
    return isinstance(exc, ApiError) and exc.status == 403 and (
        "scheduled on a different node" in exc.message or "no relationship found between node" in exc.message)


def _pod_key(pod: JSON) -> str:
    meta = pod.get("metadata", {})
    return f"{meta.get('namespace')}/{meta.get('name')}"


def _event(msg: str, pod: JSON | str, **fields: Any) -> None:
    """One structured line per pod transition: `event pod=ns/name k=v ...`."""
    key = pod if isinstance(pod, str) else _pod_key(pod)
    extra = " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
    log.info("%s pod=%s %s", msg, key, extra)


@dataclass
class NodeConfig:
    """Everything the agent was started with."""

    name: str
    slots: int
    state_dir: Path
    workdir: str
    pythonpath: str
    python: str
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[JSON] = field(default_factory=list)
    kill_pods_on_exit: bool = False
    fork_server: bool = True  # fork runner pods from a warm interpreter (see forkserver)

    @property
    def pods_dir(self) -> Path:
        return self.state_dir / "nodes" / self.name / "pods"


def parse_taint(text: str) -> JSON:
    """`key=value:Effect` or `key:Effect` -> a taint dict."""
    spec, _, effect = text.rpartition(":")
    if not spec or effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
        raise argparse.ArgumentTypeError(f"taint {text!r} is not key[=value]:NoSchedule|PreferNoSchedule|NoExecute")
    key, _, value = spec.partition("=")
    taint = {"key": key, "effect": effect}
    if value:
        taint["value"] = value
    return taint


def parse_label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"label {text!r} is not key=value")
    return key, value


# -- processes ------------------------------------------------------------------


@dataclass
class Proc:
    """One running container process (the shim leads its process group)."""

    container: str
    pid: int
    pid_start: int | None
    pidfd: int
    popen: subprocess.Popen | None  # None when adopted from a previous agent

    def collect(self, files: PodFiles) -> int | None:
        """The exit code once the process has ended (None if it cannot be known)."""
        os.close(self.pidfd)
        if self.popen is not None:
            code = self.popen.wait()
            return 128 - code if code < 0 else code
        return files.recorded_exit_code(self.container)

    def signal(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            pass


# -- one pod --------------------------------------------------------------------


class PodWorker(threading.Thread):
    """Supervises one pod from first start to final report, in its own thread.

    The watch thread hands it newer pod objects and kill requests through
    `update`/`request_kill`, which wake it through an eventfd.
    """

    def __init__(self, agent: "NodeAgent", pod: JSON):
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.agent = agent
        self.pod = pod
        self.uid: str = meta["uid"]
        self.key = _pod_key(pod)
        self.files = PodFiles(agent.config.pods_dir / pod_dir_name(meta["namespace"], meta["name"], self.uid))
        spec = pod["spec"]
        self.init_specs: list[JSON] = [c for c in spec.get("initContainers") or []]
        self.main_specs: list[JSON] = list(spec["containers"])
        self.restart_policy: str = spec.get("restartPolicy", "Always")
        self.runs = {c["name"]: ContainerRun(name=c["name"], image=c.get("image", ""))
                     for c in self.init_specs + self.main_specs}
        self.procs: dict[str, Proc] = {}
        self.wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._lock = threading.Lock()
        self._kill_grace: float | None = None
        self.pod_gone = False
        self.killing = False  # processes are being stopped (deletion or deadline)
        self.deleting = False  # the pod is being deleted: remove it once stopped
        self.node_shutdown = False  # --kill-pods-on-exit: stop it, report it Failed, keep it
        self.escalate_at: float | None = None
        self.deadline_exceeded = False
        self.failed_init = False
        self.start_time = ""
        self.deadline: float | None = None
        self.token_refresh_at: float | None = None
        self.env: dict[str, dict[str, str]] = {}

    # -- called from the watch thread ---------------------------------------------

    def update(self, pod: JSON) -> None:
        with self._lock:
            self.pod = pod
        meta = pod["metadata"]
        if meta.get("deletionTimestamp"):
            grace = meta.get("deletionGracePeriodSeconds")
            self.request_kill(float(DEFAULT_GRACE if grace is None else grace))

    def request_kill(self, grace: float, gone: bool = False, shutdown: bool = False) -> None:
        """Stop the pod's processes: SIGTERM, SIGKILL after `grace`. The pod is then
        removed from the API, unless this is the node shutting down (`shutdown`)."""
        with self._lock:
            self.node_shutdown = self.node_shutdown or shutdown
            self._kill_grace = grace if self._kill_grace is None else min(grace, self._kill_grace)
            self.pod_gone = self.pod_gone or gone
        os.eventfd_write(self.wake_fd, 1)

    # -- the pod's life -----------------------------------------------------------

    def run(self) -> None:
        try:
            self._run()
        except Exception:  # a bug: say so loudly, but keep the node alive
            log.exception("pod worker crashed pod=%s", self.key)
        finally:
            for proc in self.procs.values():
                try:
                    os.close(proc.pidfd)
                except OSError:
                    pass
            os.close(self.wake_fd)
            self.agent.worker_done(self)

    def _run(self) -> None:
        self.files.root.mkdir(parents=True, exist_ok=True)
        meta = read_json(self.files.meta) or {}
        if meta.get("terminal"):
            return
        status = self.pod.get("status") or {}
        self.start_time = meta.get("start_time") or status.get("startTime") or now_rfc3339()
        write_json(self.files.meta, {
            "namespace": self.pod["metadata"]["namespace"], "name": self.pod["metadata"]["name"],
            "uid": self.uid, "node": self.agent.config.name, "start_time": self.start_time,
            "containers": [c["name"] for c in self.main_specs],
            "init_containers": [c["name"] for c in self.init_specs],
        })
        seconds = self.pod["spec"].get("activeDeadlineSeconds")
        self.deadline = parse_rfc3339(self.start_time) + float(seconds) if seconds is not None else None

        recorded = self.recover()
        if not recorded and self._api_says_started():
            # Started by an agent whose records are gone: never run it twice.
            for run in self.runs.values():
                self._terminate_run(run, 137, "ContainerStatusUnknown",
                                    "the container could not be located: the node lost its record of it")
            self.finish()
            return
        if (not recorded and self._take_kill() is not None) or not self.prepare():
            self.finish()  # deleted before it started (or while it could not start): just remove it
            return
        for spec in self.init_specs:
            if not self.supervise([spec]):
                self.failed_init = not self.killing and not self.deadline_exceeded
                break
        else:
            self.supervise(self.main_specs)
        self.finish()

    def _api_says_started(self) -> bool:
        status = self.pod.get("status") or {}
        for cs in (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or []):
            state = cs.get("state") or {}
            if state.get("running") or state.get("terminated"):
                return True
        return False

    def recover(self) -> bool:
        """Load the records of a previous agent; adopt live processes. True if any existed."""
        any_record = False
        for name, run in self.runs.items():
            record = read_json(self.files.state(name))
            if not record:
                continue
            any_record = True
            run.restart_count = record.get("restart_count", 0)
            run.started_at = record.get("started_at")
            run.last_terminated = record.get("last_terminated")
            run.pid = record.get("pid")
            verdict, code = judge_record(record, self.files, name)
            if verdict == "running" and self._adopt(name, record):
                run.state = "running"
                _event("adopted", self.key, container=name, pid=run.pid)
            elif verdict == "finished":
                run.state, run.exit_code = "terminated", code
                run.reason, run.message = record.get("reason", exit_reason(code or 0)), record.get("message", "")
                run.finished_at = record.get("finished_at")
            elif verdict == "exited" and code is not None:
                self._terminate_run(run, code, exit_reason(code), "")
                _event("exited while the node was down", self.key, container=name, exit_code=code)
            else:
                self._terminate_run(run, 137, "ContainerStatusUnknown",
                                    "the process ended while the node agent was down; its exit code was not recorded")
                _event("lost while the node was down", self.key, container=name)
        return any_record

    def _adopt(self, name: str, record: JSON) -> bool:
        pid = record["pid"]
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            return False
        if not process_alive(pid, record.get("pid_start")):  # re-check: the pid may have been reused
            os.close(pidfd)
            return False
        self.procs[name] = Proc(name, pid, record.get("pid_start"), pidfd, None)
        return True

    def _record(self, run: ContainerRun, **extra: Any) -> None:
        record = {"pid": run.pid, "pid_start": extra.pop("pid_start", None), "started_at": run.started_at,
                  "restart_count": run.restart_count, "last_terminated": run.last_terminated}
        old = read_json(self.files.state(run.name)) or {}
        if record["pid_start"] is None:
            record["pid_start"] = old.get("pid_start")
        record.update(extra)
        write_json(self.files.state(run.name), record)

    def _terminate_run(self, run: ContainerRun, code: int, reason: str, message: str) -> None:
        run.state, run.exit_code, run.reason, run.message = "terminated", code, reason, message
        run.finished_at = now_rfc3339()
        run.started_at = run.started_at or run.finished_at
        self._record(run, exit_code=code, reason=reason, message=message, finished_at=run.finished_at)

    # -- preparing: token, kubeconfig, env ------------------------------------------

    def prepare(self) -> bool:
        """Token files and each container's env; retried (as the kubelet does) until it
        works or the pod is deleted. False if the pod went away first."""
        delay = 1.0
        quick = list(AUTHORIZER_LAG_RETRIES)
        while True:
            try:
                self._prepare_once()
                return True
            except (ApiError, ConfigError) as exc:
                if quick and _authorizer_lag(exc):
                    # Right after binding, the node authorizer may not know yet that the pod
                    # is ours (it learns bindings from its own watch): the TokenRequest gets
                    # 403 for a few milliseconds. Retry quietly before calling it an error,
                    # instead of a Pending report and a second's wait (13% of fan-out pods).
                    if self._wait_for_kill(quick.pop(0)):
                        return False
                    continue
                reason = "CreateContainerConfigError"
                for spec in self.init_specs + self.main_specs:
                    run = self.runs[spec["name"]]
                    if run.state == "waiting":
                        run.reason, run.message = reason, str(exc)
                self.report("Pending")
                _event("cannot start yet", self.key, reason=reason, error=repr(str(exc)))
            if self._wait_for_kill(delay):
                return False
            delay = min(delay * 2, 10.0)

    def _wait_for_kill(self, seconds: float) -> bool:
        poller = select.poll()
        poller.register(self.wake_fd, select.POLLIN)
        if poller.poll(seconds * 1000):
            self._drain_wake()
        return self._take_kill() is not None

    def _prepare_once(self) -> None:
        spec = self.pod["spec"]
        extra = {
            "HOSTNAME": self.pod["metadata"]["name"],
            **self.agent.interpreter_env(),
            "KUBERNETES_SERVICE_HOST": self.agent.client.creds.host,
            "KUBERNETES_SERVICE_PORT": str(self.agent.client.creds.port),
            "KUBERNETES_SERVICE_PORT_HTTPS": str(self.agent.client.creds.port),
        }
        if spec.get("automountServiceAccountToken", True) and self.token_refresh_at is None:
            self.refresh_token()
        if spec.get("automountServiceAccountToken", True):
            extra["KUBECONFIG"] = str(self.files.kubeconfig)
            extra["KINFLOW_SERVICEACCOUNT_DIR"] = str(self.files.sa_dir)
        base = self.agent.base_env()
        for container in self.init_specs + self.main_specs:
            self.env[container["name"]] = build_env(self.pod, container, base, extra, self.agent.lookup_ref)

    def refresh_token(self) -> None:
        """A TokenRequest bound to this pod, written atomically where the kubeconfig points."""
        meta, spec = self.pod["metadata"], self.pod["spec"]
        sa = spec.get("serviceAccountName") or "default"
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"audiences": [], "expirationSeconds": TOKEN_SECONDS,
                         "boundObjectRef": {"apiVersion": "v1", "kind": "Pod",
                                            "name": meta["name"], "uid": self.uid}}}
        resp = self.agent.client.request(
            "POST", f"/api/v1/namespaces/{meta['namespace']}/serviceaccounts/{sa}/token", body)
        token = resp["status"]["token"]
        expires = parse_rfc3339(resp["status"]["expirationTimestamp"])
        sa_dir = self.files.sa_dir
        sa_dir.mkdir(mode=0o700, exist_ok=True)
        tmp = sa_dir / "token.tmp"
        tmp.write_text(token)
        tmp.chmod(0o600)
        os.replace(tmp, sa_dir / "token")
        (sa_dir / "namespace").write_text(meta["namespace"])
        ca = self.agent.client.creds.ca_file
        if ca and not (sa_dir / "ca.crt").exists():
            shutil.copyfile(ca, sa_dir / "ca.crt")
        if not self.files.kubeconfig.exists():
            write_json(self.files.kubeconfig, self.agent.pod_kubeconfig(sa_dir, meta["namespace"], sa))
        now = time.time()
        # Like the kubelet: refresh at 80% of the token's life (and at least daily).
        self.token_refresh_at = now + 0.8 * min(max(60.0, expires - now), 86400.0)

    # -- supervising processes ------------------------------------------------------

    def _take_kill(self) -> float | None:
        with self._lock:
            return self._kill_grace

    def _drain_wake(self) -> None:
        try:
            os.eventfd_read(self.wake_fd)
        except BlockingIOError:
            pass

    def _begin_kill(self, grace: float, why: str) -> None:
        """SIGTERM every process group now, SIGKILL after `grace` seconds."""
        escalate = time.time() + grace
        if self.killing and self.escalate_at is not None and self.escalate_at <= escalate:
            return
        if not self.killing:
            _event("killing", self.key, why=why, grace=grace)
            for proc in self.procs.values():
                proc.signal(signal.SIGTERM if grace > 0 else signal.SIGKILL)
        self.killing = True
        self.escalate_at = escalate

    def supervise(self, specs: list[JSON]) -> bool:
        """Run `specs` together until each has ended for good. True if all exited 0."""
        names = [s["name"] for s in specs]
        pending: dict[str, float] = {}  # container -> when to (re)start it
        for name in names:
            run = self.runs[name]
            if name in self.procs:
                continue
            if run.state == "terminated":
                if run.exit_code is not None and should_restart(self.restart_policy, run.exit_code):
                    pending[name] = time.time()
                continue
            pending[name] = time.time()
        if self.procs:
            self.report()
        poller = select.poll()
        poller.register(self.wake_fd, select.POLLIN)
        by_fd: dict[int, Proc] = {}
        for proc in self.procs.values():
            poller.register(proc.pidfd, select.POLLIN)
            by_fd[proc.pidfd] = proc

        while True:
            now = time.time()
            grace = self._take_kill()
            if grace is not None:
                self.deleting = not self.node_shutdown
                self._begin_kill(grace, "node shutdown" if self.node_shutdown else "deleted")
                pending.clear()
            if not self.killing and self.deadline is not None and now >= self.deadline:
                self.deadline_exceeded = True
                pending.clear()
                self._begin_kill(float(self.pod["spec"].get("terminationGracePeriodSeconds", DEFAULT_GRACE)),
                                 "DeadlineExceeded")
            if self.killing and self.escalate_at is not None and now >= self.escalate_at:
                for proc in self.procs.values():
                    proc.signal(signal.SIGKILL)
                self.escalate_at = None
            started = False
            for name, due in list(pending.items()):
                if due <= now:
                    del pending[name]
                    proc = self.start_container(self._spec(name))
                    if proc is not None:
                        poller.register(proc.pidfd, select.POLLIN)
                        by_fd[proc.pidfd] = proc
                        started = True
                    elif should_restart(self.restart_policy, 128):
                        pending[name] = now + restart_backoff(self.runs[name].restart_count)
                        self.runs[name].restart_count += 1
            if started:
                self.report()
            if not self.procs and not pending:
                return all(self.runs[n].exit_code == 0 for n in names)
            if self.token_refresh_at is not None and now >= self.token_refresh_at:
                try:
                    self.refresh_token()
                except ApiError as exc:
                    log.warning("token refresh failed pod=%s error=%r; retrying in 30s", self.key, str(exc))
                    self.token_refresh_at = now + 30
            wakeups = [t for t in (self.deadline if not self.killing else None, self.escalate_at,
                                   self.token_refresh_at, *pending.values()) if t is not None]
            timeout = min(3600.0, max(0.0, min(wakeups) - time.time())) if wakeups else None
            ready = poller.poll(None if timeout is None else timeout * 1000 + 1)
            for fd, _ in ready:
                if fd == self.wake_fd:
                    self._drain_wake()
                    continue
                proc = by_fd.pop(fd)
                poller.unregister(fd)
                self._exited(proc, pending)

    def _spec(self, name: str) -> JSON:
        return next(s for s in self.init_specs + self.main_specs if s["name"] == name)

    def _exited(self, proc: Proc, pending: dict[str, float]) -> None:
        del self.procs[proc.container]
        code = proc.collect(self.files)
        run = self.runs[proc.container]
        if code is None:  # adopted, and killed before the shim could record it
            code = 137 if self.killing else 1
        reason = exit_reason(code)
        self._terminate_run(run, code, reason, "")
        _event("container exited", self.key, container=proc.container, exit_code=code, reason=reason)
        if not self.killing and should_restart(self.restart_policy, code):
            run.last_terminated = run.terminated_dict()
            pending[proc.container] = time.time() + restart_backoff(run.restart_count)
            run.restart_count += 1
            self.report()

    def start_container(self, spec: JSON) -> Proc | None:
        """Start one container under the shim; None (and a StartError status) if it cannot run."""
        name = spec["name"]
        run = self.runs[name]
        env = self.env[name]
        cfg = self.agent.config
        try:
            argv = resolve_command(spec, env, cfg.python)
        except ConfigError as exc:
            self._terminate_run(run, 128, "StartError", str(exc))
            _event("cannot start", self.key, container=name, error=repr(str(exc)))
            return None
        exe = argv[0] if "/" in argv[0] else shutil.which(argv[0], path=env.get("PATH"))
        if not exe or not os.access(exe, os.X_OK):
            message = f'exec: "{argv[0]}": executable file not found in $PATH'
            self._terminate_run(run, 128, "StartError", message)
            _event("cannot start", self.key, container=name, error=repr(message))
            return None
        exit_file = self.files.exit_file(name)
        exit_file.unlink(missing_ok=True)
        proc = self._start_forked(run, argv, env)
        if proc is None:
            with open(self.files.log(name), "ab") as log_file:
                popen = subprocess.Popen(
                    shim_argv(exit_file, argv), stdin=subprocess.DEVNULL, stdout=log_file,
                    stderr=subprocess.STDOUT, cwd=cfg.workdir, env=env, start_new_session=True)
            pid_start = pid_start_time(popen.pid)
            self._mark_running(run, popen.pid, pid_start)
            proc = Proc(name, popen.pid, pid_start, os.pidfd_open(popen.pid), popen)
        self.procs[name] = proc
        _event("started", self.key, container=name, pid=proc.pid, restarts=run.restart_count or None,
               via="fork" if proc.popen is None else None)
        return proc

    def _mark_running(self, run: ContainerRun, pid: int, pid_start: int | None) -> None:
        """Record the new process on disk before it can do anything (see podstore)."""
        run.state, run.pid, run.started_at = "running", pid, now_rfc3339()
        run.exit_code = None
        run.reason = run.message = ""
        self._record(run, pid_start=pid_start)

    def _start_forked(self, run: ContainerRun, argv: list[str], env: dict[str, str]) -> Proc | None:
        """Start a runner container by the node's fork server; None: use the exec path.

        The shim S the server forked leads the pod's process group and writes its
        exit file, like the exec path's shell shim; the node is not its parent, so
        it is watched like an adopted process (pidfd + exit file). S runs the pod
        only once its pid is recorded here (`go`), so a crash anywhere in between
        leaves nothing running that the node does not know about.
        """
        server = self.agent.forkserver
        if server is None or server.refusal(argv, env, self.agent.config.workdir) is not None:
            return None
        try:
            forked = server.spawn(argv, env, self.agent.config.workdir, self.files.log(run.name),
                                  self.files.exit_file(run.name))
        except ForkServerError as exc:
            log.debug("fork server did not start pod=%s container=%s (%s); exec instead", self.key, run.name, exc)
            return None
        pid_start = pid_start_time(forked.pid)
        if pid_start is None:  # S died already: nothing of the pod ran
            forked.abandon()
            return None
        self._mark_running(run, forked.pid, pid_start)
        if not forked.go():
            os.close(forked.pidfd)
            return None
        return Proc(run.name, forked.pid, pid_start, forked.pidfd, None)

    # -- reporting ------------------------------------------------------------------

    def report(self, phase: str | None = None, reason: str | None = None, message: str | None = None,
               persist: bool = False) -> bool:
        """Patch the pod's status. With persist, retry until it lands or the pod is gone.

        Without a phase: Running once a main container has started, else Pending.
        """
        if phase is None:
            started = any(self.runs[s["name"]].started_at for s in self.main_specs)
            phase = "Running" if started else "Pending"
        init = [self.runs[s["name"]] for s in self.init_specs]
        main = [self.runs[s["name"]] for s in self.main_specs]
        for run in main if self.init_specs and not all(r.exit_code == 0 for r in init) else []:
            if run.state == "waiting" and run.reason == "ContainerCreating":
                run.reason = "PodInitializing"
        body = {"status": pod_status(phase, init, main, self.start_time, now_rfc3339(), reason, message)}
        meta = self.pod["metadata"]
        delay = 0.5
        for attempt in range(1000 if persist else 2):
            if self.pod_gone:
                return False
            try:
                self.agent.client.request("PATCH", pod_path(meta["namespace"], meta["name"], "status"),
                                          body, content_type=STRATEGIC_PATCH)
                return True
            except ApiError as exc:
                if exc.status == 404:
                    self.pod_gone = True
                    return False
                if attempt == 0 or not persist:
                    log.warning("status update failed pod=%s phase=%s error=%r", self.key, phase, str(exc))
            time.sleep(delay)
            delay = min(delay * 2, 10.0)
        return False

    def finish(self) -> None:
        """Report the terminal phase once, then remove the pod if it was being deleted."""
        main = [self.runs[s["name"]] for s in self.main_specs]
        reason = message = None
        if self.deadline_exceeded:
            phase, reason = "Failed", "DeadlineExceeded"
            message = "Pod was active on the node longer than the specified deadline"
        elif self.node_shutdown:
            phase, reason = "Failed", "Shutdown"
            message = "The node agent was stopped with --kill-pods-on-exit"
        elif self.failed_init or any(r.exit_code != 0 for r in main):
            phase = "Failed"
        else:
            phase = "Succeeded"
        if self._take_kill() is not None:
            self.deleting = not self.node_shutdown
        ever_started = any(r.started_at for r in self.runs.values())
        if ever_started or not self.deleting:
            if self.report(phase, reason, message, persist=True):
                meta = read_json(self.files.meta) or {}
                write_json(self.files.meta, {**meta, "terminal": True, "phase": phase})
                _event("finished", self.key, phase=phase, reason=reason)
        if self.deleting and not self.pod_gone:
            self.agent.delete_pod(self.pod)


# -- the node -------------------------------------------------------------------


class NodeAgent:
    """Registers the node, renews its lease, and dispatches pod events to workers."""

    def __init__(self, client: KubeClient, config: NodeConfig):
        self.client = client
        self.config = config
        self.stop = threading.Event()
        self.workers: dict[str, PodWorker] = {}
        self.done: set[str] = set()  # uids whose worker finished (pod still exists)
        self.lock = threading.Lock()
        self.kubelet_version = "v0.0.0"
        self._last_error: tuple[str, float] = ("", 0.0)
        self.log_port = 0  # the kubelet endpoint for `kubectl logs`; 0 when not served
        self.forkserver: ForkServer | None = None  # set in run() unless --no-fork-server

    # -- what pods start from ------------------------------------------------------------

    def base_env(self) -> dict[str, str]:
        """The part of a pod's env taken from the agent's own (never all of it: it may hold
        an admin KUBECONFIG)."""
        base = {k: os.environ[k] for k in BASE_ENV_KEYS if k in os.environ}
        # Commands such as `kinflow` resolve in the pods' Python environment first
        # (a virtualenv need not be activated for its scripts to be found).
        base["PATH"] = os.pathsep.join(
            p for p in [os.path.dirname(self.config.python), base.get("PATH", "")] if p)
        return base

    def interpreter_env(self) -> dict[str, str]:
        """What the node adds for Python itself: unbuffered output (logs appear as they are
        written, for `kinflow logs -f`) and the pods' PYTHONPATH."""
        env = {"PYTHONUNBUFFERED": "1"}
        if self.config.pythonpath:
            env["PYTHONPATH"] = self.config.pythonpath
        return env

    def start_fork_server(self) -> None:
        """Start the fork server with exactly what a runner pod's interpreter starts with."""
        cfg = self.config
        self.forkserver = ForkServer(cfg.python, cfg.workdir, {**self.base_env(), **self.interpreter_env()},
                                     cfg.pods_dir.parent / "forkserver.json")
        # In the background: registration need not wait for the preloading.
        threading.Thread(target=self.forkserver.ensure_started, name="forkserver-start", daemon=True).start()

    # -- node and lease ---------------------------------------------------------------

    def node_object(self) -> JSON:
        arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
        labels = {"kubernetes.io/hostname": self.config.name, "kubernetes.io/os": "linux",
                  "kubernetes.io/arch": arch, "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": arch,
                  "kinflow.io/dev-node": "true", **self.config.labels}
        return {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": self.config.name, "labels": labels,
                             "annotations": {"node.alpha.kubernetes.io/ttl": "0"}},
                "spec": {"taints": self.config.taints} if self.config.taints else {}}

    def node_status(self) -> JSON:
        now = now_rfc3339()
        resources = {"cpu": "32", "memory": "64Gi", "ephemeral-storage": "100Gi", "pods": str(self.config.slots)}

        def cond(kind: str, ok: bool, reason: str, message: str) -> JSON:
            return {"type": kind, "status": "True" if ok else "False", "reason": reason, "message": message,
                    "lastHeartbeatTime": now, "lastTransitionTime": now}

        uname = platform.uname()
        return {"status": {
            "capacity": resources, "allocatable": resources,
            "conditions": [
                cond("MemoryPressure", False, "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                cond("DiskPressure", False, "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                cond("PIDPressure", False, "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                cond("Ready", True, "KubeletReady", "kinflow dev node is posting ready status"),
            ],
            # No Hostname address: the API server would try to resolve it to reach our log endpoint.
            "addresses": [{"type": "InternalIP", "address": POD_IP}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.log_port}},
            "nodeInfo": {"machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": uname.release,
                         "osImage": f"kinflow dev node ({platform.system()})",
                         "containerRuntimeVersion": "kinflow-process://0.1",
                         "kubeletVersion": self.kubelet_version, "kubeProxyVersion": "",
                         "operatingSystem": "linux", "architecture": self.node_object()["metadata"]["labels"]["kubernetes.io/arch"]},
        }}

    def register(self) -> None:
        """Create the Node (or update our labels on an existing one) and mark it Ready."""
        self.kubelet_version = self.client.server_version()
        node = self.node_object()
        try:
            self.client.request("POST", "/api/v1/nodes", node)
            log.info("node registered node=%s slots=%d", self.config.name, self.config.slots)
        except ApiError as exc:
            if exc.status != 409:
                raise
            patch = {"metadata": {"labels": node["metadata"]["labels"]}}
            try:
                self.client.request("PATCH", f"/api/v1/nodes/{self.config.name}", patch, content_type=MERGE_PATCH)
            except ApiError as exc2:
                log.warning("could not update labels of existing node=%s error=%r", self.config.name, str(exc2))
            log.info("node re-registered node=%s slots=%d", self.config.name, self.config.slots)
        self.post_node_status()

    def post_node_status(self) -> None:
        try:
            # A merge patch replaces lists whole: our conditions and addresses are the truth.
            self.client.request("PATCH", f"/api/v1/nodes/{self.config.name}/status", self.node_status(),
                                content_type=MERGE_PATCH)
        except ApiError as exc:
            if exc.status == 404:  # someone deleted the Node: register again, as the kubelet does
                self.register()
            else:
                raise

    def renew_lease(self) -> None:
        name = self.config.name
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}"
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        spec = {"holderIdentity": name, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": now}
        try:
            self.client.request("PATCH", path, {"spec": spec}, content_type=MERGE_PATCH)
        except ApiError as exc:
            if exc.status != 404:
                raise
            node = self.client.get(f"/api/v1/nodes/{name}")
            lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                     "metadata": {"name": name, "namespace": "kube-node-lease",
                                  "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": name,
                                                       "uid": node["metadata"]["uid"]}]},
                     "spec": spec}
            self.client.request("POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", lease)

    def heartbeat_loop(self) -> None:
        """Renew the Lease every 10s and re-post Ready every minute; errors are logged, not fatal."""
        last_status = time.monotonic()
        while not self.stop.wait(LEASE_RENEW_EVERY):
            try:
                self.renew_lease()
                if time.monotonic() - last_status >= NODE_STATUS_EVERY:
                    self.post_node_status()
                    last_status = time.monotonic()
            except ApiError as exc:
                self._log_error("heartbeat failed", exc)

    def _log_error(self, what: str, exc: Exception) -> None:
        """Log a recurring error once a minute at most, so a down API server cannot flood the log."""
        text = f"{what}: {exc}"
        last, when = self._last_error
        if text != last or time.monotonic() - when > 60:
            log.warning("%s node=%s error=%r", what, self.config.name, str(exc))
            self._last_error = (text, time.monotonic())

    # -- helpers the workers use ------------------------------------------------------

    def lookup_ref(self, kind: str, namespace: str, name: str) -> dict[str, str] | None:
        """Data of a ConfigMap or Secret that env refers to (None when it does not exist)."""
        import base64

        plural = {"configMap": "configmaps", "secret": "secrets"}[kind]
        try:
            obj = self.client.get(f"/api/v1/namespaces/{namespace}/{plural}/{name}")
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        data = dict(obj.get("data") or {})
        if kind == "secret":
            data = {k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()}
        return data

    def pod_kubeconfig(self, sa_dir: Path, namespace: str, service_account: str) -> JSON:
        """The pod's kubeconfig: the cluster CA, and a tokenFile that is refreshed in place."""
        cluster: JSON = {"server": self.client.creds.server}
        if self.client.creds.ca_file:
            cluster["certificate-authority"] = str(sa_dir / "ca.crt")
        else:
            cluster["insecure-skip-tls-verify"] = True
        user = f"system:serviceaccount:{namespace}:{service_account}"
        return {"apiVersion": "v1", "kind": "Config", "current-context": "pod",
                "clusters": [{"name": "dev", "cluster": cluster}],
                "users": [{"name": user, "user": {"tokenFile": str(sa_dir / "token")}}],
                "contexts": [{"name": "pod", "context": {"cluster": "dev", "user": user, "namespace": namespace}}]}

    def delete_pod(self, pod: JSON) -> None:
        """The kubelet's last word on a deleted pod: remove it for good (grace 0, this uid only)."""
        meta = pod["metadata"]
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0,
                "preconditions": {"uid": meta["uid"]}}
        try:
            self.client.request("DELETE", pod_path(meta["namespace"], meta["name"]), body)
            _event("deleted", pod)
        except ApiError as exc:
            if exc.status not in (404, 409):
                log.warning("delete failed pod=%s error=%r", _pod_key(pod), str(exc))

    def worker_done(self, worker: PodWorker) -> None:
        with self.lock:
            self.workers.pop(worker.uid, None)
            if worker.pod_gone:
                self._forget(worker.files.root)
            else:
                self.done.add(worker.uid)

    def _forget(self, root: Path) -> None:
        """A pod is gone from the API: drop its credentials, keep its logs a while."""
        shutil.rmtree(root / "serviceaccount", ignore_errors=True)
        (root / "kubeconfig.json").unlink(missing_ok=True)
        if root.is_dir():
            (root / ".removed").touch()
        prune_pod_dirs(self.config.pods_dir, KEEP_REMOVED_POD_DIRS)

    # -- pod events ---------------------------------------------------------------------

    def handle(self, kind: str, pod: JSON) -> None:
        """Route one pod event; quick, since it runs on the watch thread."""
        meta = pod["metadata"]
        uid = meta["uid"]
        with self.lock:
            worker = self.workers.get(uid)
            if kind == "DELETED":
                if worker is not None:
                    worker.request_kill(0, gone=True)
                else:
                    self.done.discard(uid)
                    self._forget(self.config.pods_dir / pod_dir_name(meta["namespace"], meta["name"], uid))
                return
            if worker is not None:
                worker.update(pod)
                return
            phase = (pod.get("status") or {}).get("phase")
            if uid in self.done or phase in ("Succeeded", "Failed"):
                if meta.get("deletionTimestamp"):
                    threading.Thread(target=self.delete_pod, args=(pod,), daemon=True).start()
                return
            worker = PodWorker(self, pod)
            self.workers[uid] = worker
        worker.start()
        if meta.get("deletionTimestamp"):
            worker.update(pod)

    def sync(self, pods: list[JSON]) -> None:
        """After a (re)list: handle every pod, and treat pods we run that vanished as deleted.

        Pod dirs on disk whose pod no longer exists (deleted while the agent was
        down) get their processes killed: no orphans.
        """
        present = {p["metadata"]["uid"] for p in pods}
        for pod in pods:
            self.handle("MODIFIED", pod)
        with self.lock:
            vanished = [w for uid, w in self.workers.items() if uid not in present]
            self.done &= present
        for worker in vanished:
            worker.request_kill(0, gone=True)
        pods_dir = self.config.pods_dir
        for root in sorted(pods_dir.iterdir()) if pods_dir.is_dir() else []:
            meta = read_json(root / "pod.json") or {}
            if meta.get("uid") in present or (root / ".removed").exists() or not meta:
                continue
            for state in root.glob("*.state.json"):
                record = read_json(state) or {}
                if record.get("exit_code") is None and process_alive(record.get("pid") or 0, record.get("pid_start")):
                    try:
                        os.killpg(record["pid"], signal.SIGKILL)
                    except ProcessLookupError:
                        continue
                    _event("killed orphan", f"{meta.get('namespace')}/{meta.get('name')}", pid=record["pid"])
            self._forget(root)

    def watch_loop(self) -> None:
        """List, then watch from the list's resourceVersion; relist on 410 or errors."""
        path = "/api/v1/pods"
        selector = f"spec.nodeName={self.config.name}"
        delay = 1.0
        while not self.stop.is_set():
            try:
                listing = self.client.get(path, fieldSelector=selector)
                self.sync(listing.get("items") or [])
                rv = listing["metadata"]["resourceVersion"]
                delay = 1.0
                while not self.stop.is_set():
                    for event in self.client.watch(path, rv, WATCH_TIMEOUT, fieldSelector=selector):
                        obj = event["object"]
                        rv = obj["metadata"].get("resourceVersion", rv)
                        if event["type"] != "BOOKMARK":
                            self.handle(event["type"], obj)
            except WatchExpired:
                continue
            except ApiError as exc:
                self._log_error("pod watch failed", exc)
                self.stop.wait(delay)
                delay = min(delay * 2, 30.0)
            except Exception:  # a bug: log it, and keep the node serving
                log.exception("pod watch crashed node=%s; listing again", self.config.name)
                self.stop.wait(delay)
                delay = min(delay * 2, 30.0)

    # -- lifecycle ------------------------------------------------------------------------

    def claim(self) -> bool:
        """Hold the node's lock file for our lifetime: two agents of one node would run every pod twice."""
        path = self.config.pods_dir.parent / "agent.lock"
        self._lock_file = open(path, "a+")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.seek(0)
            log.error("another node agent for node=%s already runs on this state dir (pid %s); exiting",
                      self.config.name, self._lock_file.read().strip() or "?")
            return False
        self._lock_file.truncate(0)
        self._lock_file.write(str(os.getpid()))
        self._lock_file.flush()
        return True

    def run(self) -> int:
        """Register, then serve until SIGTERM/SIGINT. Returns the process exit code."""
        self.config.pods_dir.mkdir(parents=True, exist_ok=True)
        if not self.claim():
            return 1
        creds = self.client.creds
        if creds.cert_file and creds.key_file and creds.ca_file:
            try:
                self.log_port = start_log_server(self.config.state_dir, creds.cert_file, creds.key_file, creds.ca_file)
            except (OSError, ValueError) as exc:
                log.warning("kubectl logs will not work: cannot serve logs node=%s error=%r", self.config.name, str(exc))
        delay = 1.0
        while not self.stop.is_set():
            try:
                self.register()
                self.renew_lease()
                break
            except ApiError as exc:
                self._log_error("registration failed (retrying)", exc)
                self.stop.wait(delay)
                delay = min(delay * 2, 10.0)
        if self.config.fork_server:
            self.start_fork_server()
        threading.Thread(target=self.heartbeat_loop, name="heartbeat", daemon=True).start()
        threading.Thread(target=self.watch_loop, name="pod-watch", daemon=True).start()
        self.stop.wait()
        if self.config.kill_pods_on_exit:
            with self.lock:
                workers = list(self.workers.values())
            for worker in workers:
                worker.request_kill(0, shutdown=True)
            for worker in workers:
                worker.join(timeout=10)
        if self.forkserver is not None:
            self.forkserver.close()  # pods it forked keep running, as exec'd ones do
        log.info("node agent stopped node=%s pods_left_running=%s", self.config.name,
                 not self.config.kill_pods_on_exit)
        return 0


def parse_args(argv: list[str] | None = None) -> tuple[NodeConfig, str]:
    """The agent's configuration and the kubeconfig path, from the command line."""
    parser = argparse.ArgumentParser(prog="python -m kinflow_dev.node", description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--name", required=True, help="the Node's name")
    parser.add_argument("--slots", type=int, default=4, help="pods capacity: how many pods may run at once")
    parser.add_argument("--state-dir", required=True, help="the cluster's state dir (logs and records go under nodes/NAME)")
    parser.add_argument("--workdir", default=os.getcwd(), help="cwd of pod processes (default: this cwd)")
    parser.add_argument("--pythonpath", default=os.environ.get("PYTHONPATH", ""),
                        help="PYTHONPATH of pod processes (default: this PYTHONPATH)")
    parser.add_argument("--python", default=sys.executable, help="what `python`/`python3` run in pods")
    parser.add_argument("--label", action="append", type=parse_label, default=[], metavar="KEY=VALUE")
    parser.add_argument("--taint", action="append", type=parse_taint, default=[], metavar="KEY=VALUE:EFFECT")
    parser.add_argument("--kill-pods-on-exit", action="store_true",
                        help="on SIGTERM, kill the pods too (default: leave them running, like a kubelet restart)")
    parser.add_argument("--no-fork-server", dest="fork_server", action="store_false",
                        help="exec every pod (default: fork `python -m kinflow.runner` pods from a warm "
                             "interpreter, see kinflow_dev.forkserver)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return NodeConfig(name=args.name, slots=args.slots, state_dir=Path(args.state_dir).resolve(),
                      workdir=os.path.abspath(args.workdir), pythonpath=args.pythonpath, python=args.python,
                      labels=dict(args.label), taints=args.taint, kill_pods_on_exit=args.kill_pods_on_exit,
                      fork_server=args.fork_server), args.kubeconfig


def main(argv: list[str] | None = None) -> int:
    config, kubeconfig = parse_args(argv)
    agent = NodeAgent(KubeClient.from_kubeconfig(kubeconfig), config)

    def stop(signum: int, _frame: Any) -> None:
        agent.stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return agent.run()


if __name__ == "__main__":
    sys.exit(main())
