"""Start and stop the dev cluster's processes by PID file, never by name.

A PID file alone is not proof: PIDs are reused. Each record also keeps the
process's start time from /proc, so a stale file never makes us signal a
stranger.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


def _proc_start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime) follows the parenthesised command name, which may hold spaces.
    return stat.rsplit(")", 1)[1].split()[19]


@dataclass(frozen=True)
class Record:
    name: str
    pid: int
    start_time: str
    argv: list[str]

    def alive(self) -> bool:
        if _proc_start_time(self.pid) != self.start_time:
            return False
        try:
            state = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        return state != "Z"


class Supervisor:
    """Keeps one JSON record per component under <home>/pids."""

    def __init__(self, home: Path):
        self.pids = home / "pids"
        self.logs = home / "logs"

    def record(self, name: str) -> Record | None:
        try:
            data = json.loads((self.pids / f"{name}.json").read_text())
        except (OSError, ValueError):
            return None
        return Record(**data)

    def running(self, name: str) -> Record | None:
        rec = self.record(name)
        return rec if rec and rec.alive() else None

    def log_path(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None,
              cwd: Path | None = None) -> Record:
        """Start argv detached (own session, so it outlives the CLI) with its log in logs/."""
        self.pids.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        with open(self.log_path(name), "ab") as log:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=env, cwd=cwd, start_new_session=True,
            )
        start_time = None
        for _ in range(100):
            start_time = _proc_start_time(proc.pid)
            if start_time:
                break
            time.sleep(0.01)
        rec = Record(name=name, pid=proc.pid, start_time=start_time or "?", argv=argv)
        (self.pids / f"{name}.json").write_text(json.dumps(rec.__dict__))
        return rec

    def stop(self, name: str, grace: float = 10.0) -> bool:
        """SIGTERM the component's process group, SIGKILL after grace; True if it was running."""
        rec = self.running(name)
        (self.pids / f"{name}.json").unlink(missing_ok=True)
        if not rec:
            return False
        _signal_group(rec.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while rec.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if rec.alive():
            _signal_group(rec.pid, signal.SIGKILL)
            while rec.alive() and time.monotonic() < deadline + 5:
                time.sleep(0.05)
        return True

    def names(self) -> list[str]:
        if not self.pids.exists():
            return []
        return sorted(p.stem for p in self.pids.glob("*.json"))


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # started with start_new_session: pgid == pid
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)
