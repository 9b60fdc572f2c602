"""What the node agent keeps on disk per pod, and the readers that use it.

Layout, under `<state-dir>/nodes/<node>/pods/<namespace>_<pod>_<uid>/`:

    pod.json                 namespace, name, uid, container names; "terminal" once reported
    <container>.log          the container's stdout and stderr
    <container>.state.json   the current run: pid, pid start time, times, exit code once known
    <container>.exit         the exit code, written by the shim when the process ends
    serviceaccount/          token, ca.crt, namespace (like /var/run/secrets/...)
    kubeconfig.json          the pod's kubeconfig (tokenFile -> serviceaccount/token)

A record is written before anything else can observe the process, so a
restarted agent knows every process it started: it adopts the live ones and
reports the ones that ended while it was away. The pid start time from /proc
defends against a recycled pid.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal, overload

JSON = dict[str, Any]

# Runs the container as a child, keeps running through SIGTERM (which the whole
# process group receives) until the child ends, then records its exit status.
# $0 is the exit-code file. An exit by signal N is recorded as 128+N, as the
# kubelet reports it.
SHIM = (
    '"$@" & pid=$!\n'
    "trap : TERM\n"
    'while :; do wait "$pid"; rc=$?; kill -0 "$pid" 2>/dev/null || break; done\n'
    'echo "$rc" > "$0"\n'
    'exit "$rc"\n'
)


def shim_argv(exit_file: Path, argv: list[str]) -> list[str]:
    """The argv that runs `argv` under the exit-recording shim."""
    return ["/bin/sh", "-c", SHIM, str(exit_file), *argv]


def write_json(path: Path, data: JSON) -> None:
    """Atomic write: a reader (or a restarted agent) never sees half a file."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


def read_json(path: Path) -> JSON | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def pid_start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie has ended: only its parent's wait is missing
        return None
    return int(fields[19])


def process_alive(pid: int, start_time: int | None) -> bool:
    """Whether `pid` still names the process we started (not a recycled pid)."""
    return start_time is not None and pid_start_time(pid) == start_time


def nodes_dir(state_dir: str | os.PathLike[str]) -> Path:
    return Path(state_dir) / "nodes"


def pod_dir_name(namespace: str, name: str, uid: str) -> str:
    return f"{namespace}_{name}_{uid}"


@dataclass
class PodFiles:
    """Paths of one pod's files; creating the object touches nothing."""

    root: Path

    @property
    def meta(self) -> Path:
        return self.root / "pod.json"

    @property
    def sa_dir(self) -> Path:
        return self.root / "serviceaccount"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig.json"

    def log(self, container: str) -> Path:
        return self.root / f"{container}.log"

    def state(self, container: str) -> Path:
        return self.root / f"{container}.state.json"

    def exit_file(self, container: str) -> Path:
        return self.root / f"{container}.exit"

    def recorded_exit_code(self, container: str) -> int | None:
        try:
            return int(self.exit_file(container).read_text().strip())
        except (OSError, ValueError):
            return None


# What a restarted agent finds for a recorded container run.
Verdict = Literal["running", "exited", "lost", "finished"]


def judge_record(record: JSON, files: PodFiles, container: str, alive=process_alive) -> tuple[Verdict, int | None]:
    """Decide what became of a recorded run: still running, ended with a known
    code, ended unknown ("lost"), or already reported ("finished")."""
    if record.get("exit_code") is not None:
        return "finished", record["exit_code"]
    pid = record.get("pid")
    if pid and alive(pid, record.get("pid_start")):
        return "running", None
    code = files.recorded_exit_code(container)
    if code is not None:
        return "exited", code
    return "lost", None


def iter_pod_dirs(state_dir: str | os.PathLike[str], node: str | None = None) -> Iterator[Path]:
    base = nodes_dir(state_dir)
    for node_dir in sorted(base.iterdir()) if base.is_dir() else []:
        if node is not None and node_dir.name != node:
            continue
        pods = node_dir / "pods"
        if pods.is_dir():
            yield from (p for p in sorted(pods.iterdir()) if p.is_dir())


def live_processes(state_dir: str | os.PathLike[str]) -> list[tuple[int, int]]:
    """(pid, start time) of every recorded container process still running."""
    found = []
    for pod in iter_pod_dirs(state_dir):
        for state in pod.glob("*.state.json"):
            record = read_json(state) or {}
            pid, start = record.get("pid"), record.get("pid_start")
            if pid and record.get("exit_code") is None and process_alive(pid, start):
                found.append((pid, start))
    return found


def kill_all_pods(state_dir: str | os.PathLike[str], grace: float = 5.0) -> list[int]:
    """Stop every pod process recorded under `state_dir` (for `kinflow dev down`).

    SIGTERM to each process group, up to `grace` seconds to exit, then SIGKILL.
    Processes are found by recorded pid and checked by start time, never by
    name. Returns the pids that were running.
    """
    procs = live_processes(state_dir)
    for pid, _ in procs:
        _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(process_alive(p, s) for p, s in procs):
        time.sleep(0.1)
    for pid, start in procs:
        if process_alive(pid, start):
            _signal_group(pid, signal.SIGKILL)
    return [pid for pid, _ in procs]


def _signal_group(pid: int, sig: int) -> None:
    """Signal the process group the container leads (it was started in its own session)."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        try:
            os.kill(pid, sig)
        except OSError:
            pass


# -- logs -----------------------------------------------------------------------


class LogNotFound(LookupError):
    """No log is recorded for that pod (or container) on any node of this state dir."""


def find_log(state_dir: str | os.PathLike[str], namespace: str, pod: str, container: str | None = None) -> Path:
    """The log file of a pod's container; the newest pod of that name if it was recreated."""
    prefix = f"{namespace}_{pod}_"
    candidates = [p for p in iter_pod_dirs(state_dir) if p.name.startswith(prefix)
                  and "_" not in p.name[len(prefix):]]
    if not candidates:
        raise LogNotFound(f"no logs for pod {namespace}/{pod} under {nodes_dir(state_dir)}")
    root = max(candidates, key=lambda p: p.stat().st_mtime)
    if container is None:
        names = (read_json(root / "pod.json") or {}).get("containers") or [
            p.name[: -len(".log")] for p in sorted(root.glob("*.log"))]
        if not names:
            raise LogNotFound(f"pod {namespace}/{pod} has no container logs yet")
        container = names[0]
    path = PodFiles(root).log(container)
    if not path.exists():
        raise LogNotFound(f"no log for container {container!r} of pod {namespace}/{pod}")
    return path


@overload
def read_log(state_dir: str | os.PathLike[str], namespace: str, pod: str,
             container: str | None = None, follow: Literal[False] = False) -> str: ...
@overload
def read_log(state_dir: str | os.PathLike[str], namespace: str, pod: str,
             container: str | None = None, follow: Literal[True] = ...) -> Iterator[str]: ...


def read_log(state_dir, namespace, pod, container=None, follow=False):
    """A container's log (stdout and stderr interleaved, as written).

    follow=False returns the whole log as a string. follow=True returns an
    iterator of chunks that ends once the container's process has ended
    (like `kubectl logs -f`). Raises LogNotFound when there is none.
    """
    path = find_log(state_dir, namespace, pod, container)
    if not follow:
        return path.read_text(errors="replace")
    return _follow(path, PodFiles(path.parent), path.name[: -len(".log")])


def _follow(path: Path, files: PodFiles, container: str, start: int = 0) -> Iterator[str]:
    with path.open("r", errors="replace") as f:
        f.seek(start)
        while True:
            chunk = f.read()
            if chunk:
                yield chunk
                continue
            record = read_json(files.state(container)) or {}
            ended = record.get("exit_code") is not None or not process_alive(
                record.get("pid") or 0, record.get("pid_start"))
            if ended and record:
                rest = f.read()
                if rest:
                    yield rest
                return
            time.sleep(0.2)


def prune_pod_dirs(node_pods_dir: Path, keep: int) -> None:
    """Remove the oldest dirs of pods that are gone, keeping the newest `keep` (bounded disk)."""
    gone = [p for p in node_pods_dir.iterdir() if (p / ".removed").exists()] if node_pods_dir.is_dir() else []
    gone.sort(key=lambda p: p.stat().st_mtime)
    for path in gone[: max(0, len(gone) - keep)]:
        shutil.rmtree(path, ignore_errors=True)
