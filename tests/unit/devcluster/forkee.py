"""A stand-in for kinflow.runner in the fork-server tests: run as `python -m forkee`
(forked or exec'd), it prints what a process can observe about how it was started
as one JSON line, then behaves as FORKEE_MODE says."""

import json
import os
import signal
import sys
import time


def observe() -> dict:
    grandparent = int(open(f"/proc/{os.getppid()}/stat").read().rsplit(")", 1)[1].split()[1])
    return {
        "argv": sys.argv, "orig_argv": sys.orig_argv, "path": sys.path, "cwd": os.getcwd(),
        "env": dict(os.environ), "name": __name__, "main": sys.modules["__main__"].__dict__ is globals(),
        "signals": {s.name: str(signal.getsignal(s)) for s in signal.valid_signals()
                    if isinstance(s, signal.Signals) and s not in (signal.SIGKILL, signal.SIGSTOP)},
        "mask": sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])),
        "fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd"))[:3],
        "leads_group": os.getpgid(0) == os.getpid(), "in_parents_session": os.getsid(0) == os.getppid(),
        "stdio": [(s.encoding, s.errors, s.write_through, s.line_buffering) for s in (sys.stdout, sys.stderr)],
        "stdin": os.readlink("/proc/self/fd/0"), "flags": list(sys.flags), "executable": sys.executable,
        "grandparent": grandparent,
    }


if __name__ == "__main__":
    print(json.dumps(observe()), flush=True)
    mode = os.environ.get("FORKEE_MODE", "")
    if mode == "sleep":
        print("sleeping", flush=True)
        time.sleep(60)
    elif mode == "raise":
        raise RuntimeError("forkee failed on purpose")
    elif mode == "exit-message":
        sys.exit("forkee says goodbye")
    elif mode == "interrupt":
        raise KeyboardInterrupt
    elif mode == "atexit":
        import atexit

        atexit.register(lambda: print("atexit ran", flush=True))
    sys.exit(int(os.environ.get("FORKEE_EXIT", "0")))
