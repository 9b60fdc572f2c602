"""CPU time of a process from /proc, shared by the benchmark scripts."""

import os
from pathlib import Path


def cpu_seconds(pid: int, children: bool = False) -> float:
    """CPU time of a process (utime + stime); with children=True, of its reaped children
    (cutime + cstime). Raises OSError when the process is gone."""
    # Fields after the parenthesised command name, which may hold spaces.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    first = 13 if children else 11
    return (int(fields[first]) + int(fields[first + 1])) / os.sysconf("SC_CLK_TCK")
