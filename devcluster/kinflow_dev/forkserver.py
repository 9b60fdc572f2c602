"""Fork server ("zygote") of the dev node: runner pods without interpreter start-up.

Why: every workflow task is a pod running `python -m kinflow.runner`, and on
the dev node most of such a pod's CPU is not the task. Starting Python costs
~25 ms, importing the runner, asyncio and pydantic ~60 ms, and building the
pydantic machinery the user's models need as much again. On a 2-core machine
that caps a fan-out at a few children per second. The fork server pays it once
per node: it starts with the interpreter, working directory, PYTHONPATH and
base environment a runner pod gets, imports what every runner imports, and then
forks a ready copy of itself for each runner pod.

What a pod is does not change. The node asks for a fork only when the
container's argv is exactly `[<node python>, "-m", "kinflow.runner"]`, its cwd
is the server's, and every environment variable that Python (or a preloaded
module) reads at start-up or import time has the server's value (see
`fork_refusal`); anything else, or a server that is down, takes the normal exec
path. The forked runner gets the pod's environment exactly (os.environ is
replaced, TZ re-read), cwd, stdio on the pod's log, the signal dispositions
and empty signal mask an exec'd python gets under the node's shim, sys.argv,
sys.orig_argv and sys.path as `python -m kinflow.runner` has them, and then
runs the runner as `__main__` the way `-m` does. What stays shared is what
cannot be re-done without exec: the hash seed and address-space layout of the
server, its module objects (so a module must not cache per-pod environment at
import: see IMPORT_TIME_ENV), and /proc/<pid>/cmdline, which names the server.

Process tree of a forked pod, mirroring the exec path (podstore.SHIM):

    node agent
    └── fork server        the node's child, in the node's process group;
        │                  exits when the node's end of the socket closes
        └── S (pod shim)   setsid(): leads the pod's session and process group;
            │              the pid the node records, signals and watches
            └── C (runner) the pod's process

S ignores SIGTERM, waits for C, writes C's exit status to the pod's exit file
(128+N for death by signal N) and exits with it, like the shell shim. The node
watches S with a pidfd and reads the exit file, exactly as it does for a
process adopted after an agent restart. So deletion (SIGTERM, grace, SIGKILL
to the process group), activeDeadlineSeconds, agent restarts, kill_all_pods
and `dev down` need nothing new, and a crash of the fork server loses no pod:
S and C do not depend on it once forked.

Protocol (one AF_UNIX SOCK_SEQPACKET socketpair; one JSON object per message,
file descriptors as SCM_RIGHTS):

    server -> node  {"hello": 1, "pid", "preloaded", "failed", "preload_cpu_ms", "runner": bool}
    node -> server  {"spawn": id, "argv", "env", "cwd", "log", "exit_file"}   + fd: go (read end of a pipe)
    server -> node  {"spawned": id, "pid"}                                     + fd: pidfd of S
                 or {"spawned": id, "error": text, "stale": bool}

S runs the pod only after the node writes one byte to the go pipe, which it
does after recording S's pid on disk: so a pod never runs unrecorded, and if
the node or the server dies mid-request, S sees EOF, exits without running,
and the node starts the pod the normal way. One request is in flight at a
time (the client holds a lock), so replies need no routing.

This file runs as a script (`python forkserver.py --fd N`) so that the server
imports nothing of kinflow_dev: its module set is what a runner pod's would be.
Module-level imports are therefore stdlib only, and the node-side class imports
what it needs when used.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import socket
import sys
import time

# What every runner pod imports (the runner, its lazy imports on the way to
# running a task and reporting it) and what every entrypoint module imports
# (pydantic). Measured with bench/runner_coldstart.py --fork-server; see
# docs/benchmarks.md. Modules that fail to import are skipped.
PRELOAD = (
    "kinflow.runner",
    "kinflow._entrypoint",
    "kinflow._execution",
    "kinflow._models",
    "kinflow.client",
    "kinflow.context",
    "kinflow.durable",
    "kinflow.spawn",
    "kinflow.wait",
    "kinflow.workflow",
    "asyncio",
    "concurrent.futures.thread",
    "logging",
    "traceback",
    "dataclasses",
    "datetime",
    "enum",
    "ssl",
    "pydantic",
)

# Environment variables read when the interpreter starts or a preloaded module is
# imported: a pod may be forked only if it has the server's values for all of them.
# Prefixes: PYTHON* (interpreter flags, PYTHONPATH, hash seed, io encoding),
# LC_* and LANG (locale, stdio encoding), PYDANTIC_* (pydantic caches its plugin
# list on first use). Names: HOME (user site-packages on sys.path) and what
# kinflow reads at import: kinflow._api's DEFAULT_QPS/DEFAULT_BURST.
IMPORT_TIME_ENV_PREFIXES = ("PYTHON", "LC_", "PYDANTIC_")
IMPORT_TIME_ENV = frozenset({"LANG", "LANGUAGE", "HOME"})

RUNNER_MODULE = "kinflow.runner"
MAX_MESSAGE = 1 << 20


def _import_time_keys(env: dict[str, str]) -> set[str]:
    return {k for k in env if k in IMPORT_TIME_ENV or k.startswith(IMPORT_TIME_ENV_PREFIXES)}


def fork_refusal(argv: list[str], env: dict[str, str], cwd: str, python: str,
                 server_env: dict[str, str], server_cwd: str, module: str = RUNNER_MODULE) -> str | None:
    """Why a container may NOT be forked from the server (None: it may).

    Pure, so the rule has unit tests: only `python -m kinflow.runner` with the
    node's python, in the server's cwd, and with the server's value for every
    variable read at start-up or import time (an exec'd python would see a
    different interpreter otherwise).
    """
    if argv != [python, "-m", module]:
        return f"command is not `{python} -m {module}`"
    if os.path.normpath(cwd) != os.path.normpath(server_cwd):
        return f"cwd {cwd!r} is not the fork server's {server_cwd!r}"
    for key in sorted(_import_time_keys(env) | _import_time_keys(server_env)):
        if env.get(key) != server_env.get(key):
            return f"env {key} differs from the fork server's (read at interpreter start or import)"
    return None


# -- the server (runs in its own process) ------------------------------------------------


def _cpu_ms() -> float:
    t = os.times()
    return (t.user + t.system) * 1000


def preload(modules: tuple[str, ...] | list[str]) -> tuple[list[str], list[str]]:
    """Import `modules` and warm pydantic's lazy internals; (loaded, failed)."""
    import importlib

    loaded, failed = [], []
    for name in modules:
        try:
            importlib.import_module(name)
            loaded.append(name)
        except Exception as exc:  # e.g. pydantic not installed: pods would not have it either
            failed.append(f"{name}: {exc.__class__.__name__}: {exc}")
    if "pydantic" in loaded:
        _warm_pydantic()
    return loaded, failed


def _warm_pydantic() -> None:
    """Build, validate and dump one throwaway model: pydantic imports most of its
    schema machinery (and scans plugin entry points) on the first model class,
    which every entrypoint module defines."""
    from typing import Any, Optional

    import pydantic

    class _Warm(pydantic.BaseModel):
        a: int = 0
        b: str = ""
        c: Optional[float] = None
        d: dict[str, Any] = {}
        e: list[str] = []

    _Warm.model_validate({"a": 1, "b": "x", "d": {"k": 1}, "e": ["y"]}).model_dump(mode="json")
    pydantic.TypeAdapter(dict).validate_python({})


def _watched_files() -> dict[str, tuple[int, int]]:
    """(mtime, size) of every imported module file outside the standard library, and of
    each site-packages folder on sys.path: if one changes, the server's modules are stale
    (someone edited the code, or installed or removed a package) and the server must be
    replaced. Project folders are not watched: new files there are found anyway
    (importlib.invalidate_caches in each pod), and editors touch them all the time."""
    stdlib = os.path.dirname(os.__file__) + os.sep
    watched: dict[str, tuple[int, int]] = {}
    paths = [getattr(m, "__file__", None) for m in list(sys.modules.values())]
    packages = [p for p in sys.path if os.path.basename(p) in ("site-packages", "dist-packages")]
    for path in [p for p in paths if isinstance(p, str)] + packages:
        if path.startswith(stdlib) and "site-packages" not in path:
            continue
        try:
            st = os.stat(path)
        except OSError:
            continue
        watched[path] = (st.st_mtime_ns, st.st_size)
    return watched


def _changed(watched: dict[str, tuple[int, int]]) -> str | None:
    for path, sig in watched.items():
        try:
            st = os.stat(path)
        except OSError:
            return path
        if (st.st_mtime_ns, st.st_size) != sig:
            return path
    return None


def _reap(_signum: int, _frame: object) -> None:
    """Collect ended pod shims (so their CPU time is counted in ours, and no zombies stay)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _send(sock: socket.socket, msg: dict, fds: list[int] = ()) -> None:
    data = json.dumps(msg).encode()
    if fds:
        socket.send_fds(sock, [data], list(fds))
    else:
        sock.send(data)


def _recv(sock: socket.socket) -> tuple[dict | None, list[int]]:
    """One message and the fds it carried; (None, []) at EOF."""
    data, fds, flags, _ = socket.recv_fds(sock, MAX_MESSAGE, 4, socket.MSG_CMSG_CLOEXEC)
    if not data and not fds:
        return None, []
    if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
        for fd in fds:
            os.close(fd)
        raise ValueError("fork server message truncated")
    return json.loads(data), fds


def serve(sock: socket.socket, modules: tuple[str, ...] | list[str], module: str = RUNNER_MODULE) -> int:
    """The server's life: preload, say hello, fork a pod per request until EOF.

    `module` is what forked pods run (kinflow.runner; tests use a small stand-in).
    """
    # sys.path as `python -m` started in this cwd has it (we run as a script, whose
    # folder would be first); set before preloading so imports resolve as in a pod.
    sys.path[0] = os.getcwd()
    pod_path = list(sys.path)
    cpu0 = _cpu_ms()
    loaded, failed = preload([*modules, module] if module not in modules else modules)
    watched = _watched_files()
    # Keep every object of the preloaded modules out of the children's garbage
    # collections: less CPU in each pod, and fewer copy-on-write page faults.
    gc.collect()
    gc.freeze()
    signal.signal(signal.SIGCHLD, _reap)
    _send(sock, {"hello": 1, "pid": os.getpid(), "preloaded": loaded, "failed": failed,
                 "preload_cpu_ms": round(_cpu_ms() - cpu0, 1), "runner": module in loaded})
    while True:
        try:
            req, fds = _recv(sock)
        except (OSError, ValueError) as exc:
            print(f"kinflow fork server: cannot read a request ({exc}); exiting", file=sys.stderr, flush=True)
            return 1
        if req is None:
            return 0  # the node closed its end: it stopped, or replaced us
        try:
            reply, pidfd = _spawn(sock, req, fds, watched, pod_path, module)
        finally:
            for fd in fds:
                os.close(fd)
        try:
            _send(sock, reply, [pidfd] if pidfd is not None else [])
        except OSError:
            return 0  # the node is gone; the forked shim sees EOF on its go pipe and exits
        finally:
            if pidfd is not None:
                os.close(pidfd)
        if reply.get("stale"):
            print(f"kinflow fork server: {reply['error']}; exiting so the node starts a fresh one",
                  file=sys.stderr, flush=True)
            return 0


def _spawn(sock: socket.socket, req: dict, fds: list[int], watched: dict, pod_path: list[str],
           module: str) -> tuple[dict, int | None]:
    """Fork S for one request; the reply and S's pidfd (None on error)."""
    rid = req.get("spawn")
    if len(fds) != 1:
        return {"spawned": rid, "error": f"expected 1 fd (the go pipe), got {len(fds)}"}, None
    changed = _changed(watched)
    if changed:
        return {"spawned": rid, "error": f"{changed} changed since it was imported", "stale": True}, None
    ready_r, ready_w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # S: never returns into the server
        code = 127
        try:
            os.close(ready_r)
            code = _pod_shim(req, fds[0], ready_w, sock, pod_path, module)
        except BaseException:
            try:
                import traceback

                traceback.print_exc()
            except BaseException:
                pass
        finally:
            os._exit(code)
    os.close(ready_w)
    with os.fdopen(ready_r, "rb") as ready:
        status = ready.read()
    if status != b"ok":
        return {"spawned": rid, "error": status.decode(errors="replace") or "the pod shim died before it was ready"}, None
    try:
        pidfd = os.pidfd_open(pid)
    except OSError as exc:
        return {"spawned": rid, "error": f"pidfd_open({pid}): {exc}"}, None
    return {"spawned": rid, "pid": pid}, pidfd


def _pod_shim(req: dict, go_fd: int, ready_w: int, server_sock: socket.socket, pod_path: list[str],
              module: str) -> int:
    """S: lead the pod's session, wait for the node's go, fork C, record C's exit status."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    # TERM stays blocked until C exists: a TERM meant for the pod is then forwarded, not lost.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    os.setsid()
    fd = server_sock.detach()  # only the server holds the node's socket: EOF there means "server gone"
    os.close(fd)
    try:
        log_fd = os.open(req["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        null_fd = os.open(os.devnull, os.O_RDONLY)
    except OSError as exc:
        os.write(ready_w, f"cannot open the pod's log: {exc}".encode())
        return 127
    os.write(ready_w, b"ok")
    os.close(ready_w)
    go = os.read(go_fd, 1)
    if go != b"1":
        return 0  # the node did not confirm (it or the server died): it starts the pod itself
    os.dup2(null_fd, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.closerange(3, _max_fd())  # an exec'd pod has 0, 1 and 2 only
    child = os.fork()
    if child == 0:  # C
        code = 1
        try:
            code = run_runner(req, pod_path, module)
        finally:
            os._exit(code)
    pending = signal.SIGTERM in signal.sigpending()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # like the shell shim's `trap : TERM`
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    if pending:
        os.kill(child, signal.SIGTERM)
    _, status = os.waitpid(child, 0)
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        code = 128 - code  # killed by signal N: 128+N, as the kubelet reports it
    with open(req["exit_file"], "w") as f:
        f.write(f"{code}\n")
    return code


def _max_fd() -> int:
    try:
        return os.sysconf("SC_OPEN_MAX")
    except (ValueError, OSError):
        return 65536


def run_runner(req: dict, pod_path: list[str], module: str = RUNNER_MODULE) -> int:
    """C: become what `python -m <module>` is in the pod, run it, return its exit code.

    Signals: what a python started by the node's shell shim has (a background job
    of a non-interactive sh ignores INT and QUIT; Python ignores PIPE and XFSZ).
    Exit: what Py_FinalizeEx does visibly (wait for non-daemon threads, atexit,
    flush stdio; 120 if that flush fails), then _exit, without tearing down the
    server's modules.
    """
    for sig in signal.valid_signals():
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_IGN)
    signal.set_wakeup_fd(-1)
    signal.pthread_sigmask(signal.SIG_SETMASK, ())

    os.chdir(req["cwd"])
    env = dict(req["env"])
    # The exec path's shim is /bin/sh, which exports PWD (keeping a given one only if it
    # names the working directory): an exec'd pod sees it, so a forked one does too.
    try:
        pwd_ok = "PWD" in env and os.path.samefile(env["PWD"], ".")
    except OSError:
        pwd_ok = False
    if not pwd_ok:
        env["PWD"] = os.getcwd()
    os.environ.clear()
    os.environ.update(env)
    time.tzset()
    sys.path[:] = pod_path
    sys.argv[:] = ["-m"]  # what `python -m` has until runpy sets argv[0] to the module's file
    sys.orig_argv[:] = list(req["argv"])
    import importlib

    importlib.invalidate_caches()  # files added since the server listed a folder are found
    if "tempfile" in sys.modules:
        sys.modules["tempfile"].tempdir = None  # TMPDIR is read again on first use
    # The module runs fresh as __main__ (as with -m); the preloaded copy only warmed its imports.
    sys.modules.pop(module, None)
    parent, _, leaf = module.rpartition(".")
    package = sys.modules.get(parent)
    if package is not None and hasattr(package, leaf):
        delattr(package, leaf)
    return _run_main(module)


def _run_main(module: str) -> int:
    """Run `module` as `python -m module` would, and exit as the interpreter would."""
    import builtins
    import runpy
    import types

    # `python -m` runs the module in the interpreter's own __main__ (runpy._run_module_as_main):
    # afterwards __main__ and sys.argv[0] stay the module's, for atexit handlers and threads.
    # run_module(alter_sys=True) would put the fork server's back as soon as it returns.
    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = main
    code = 0
    interrupted = False
    try:
        run_as_main = getattr(runpy, "_run_module_as_main", None)
        if run_as_main is not None:
            run_as_main(module, alter_argv=True)
        else:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = _system_exit_code(exc)
    except BaseException as exc:
        interrupted = isinstance(exc, KeyboardInterrupt)
        tb = exc.__traceback__
        if tb is not None and tb.tb_frame.f_code is _run_main.__code__:
            tb = tb.tb_next  # the traceback starts where `python -m` would start it
        try:
            sys.excepthook(type(exc), exc.with_traceback(tb), tb)
        except BaseException:
            pass
        code = 1
    code = _finalize(code)
    if interrupted:  # CPython re-raises an unhandled KeyboardInterrupt as death by SIGINT
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    return code


def _system_exit_code(exc: SystemExit) -> int:
    """The exit status for SystemExit, as CPython computes it (_Py_HandleSystemExit)."""
    value = exc.code
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    try:
        print(value, file=sys.stderr)
    except BaseException:
        pass
    return 1


def _finalize(code: int) -> int:
    """The visible part of interpreter shutdown: threads, atexit, stdio flush."""
    threading = sys.modules.get("threading")
    if threading is not None:
        try:
            threading._shutdown()
        except BaseException:
            pass
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except BaseException:
            if stream is sys.stdout and code == 0:
                code = 120
    return code


def server_main(argv: list[str]) -> int:
    """`forkserver.py --fd N [--preload a,b,c]` (parsed by hand: argparse is no runner import,
    and whatever the server imports, every forked pod has imported)."""
    opts = dict(zip(argv[::2], argv[1::2]))
    if len(argv) % 2 or "--fd" not in opts or set(opts) - {"--fd", "--preload", "--module"}:
        print("usage: forkserver.py --fd N [--preload module,module,...] [--module M]", file=sys.stderr)
        return 2
    sock = socket.socket(fileno=int(opts["--fd"]))
    modules = opts.get("--preload", ",".join(PRELOAD))
    return serve(sock, [m for m in modules.split(",") if m], opts.get("--module", RUNNER_MODULE))


# -- the node's side -------------------------------------------------------------------


class ForkServerError(Exception):
    """The fork server could not start a pod: the node starts it the normal way."""


class Forked:
    """A pod shim the server forked, waiting for the node's go."""

    def __init__(self, pid: int, pidfd: int, go_fd: int):
        self.pid = pid
        self.pidfd = pidfd
        self._go_fd = go_fd

    def go(self) -> bool:
        """Let the pod run (call after recording the pid). False if S is gone."""
        try:
            os.write(self._go_fd, b"1")
            return True
        except OSError:
            return False
        finally:
            os.close(self._go_fd)

    def abandon(self) -> None:
        """Do not run it: S sees EOF and exits."""
        os.close(self._go_fd)
        os.close(self.pidfd)


class ForkServer:
    """The node agent's handle on its fork server: started lazily, restarted after a
    crash (with back-off, so a server that cannot start costs nothing), replaced
    when its code is stale. Thread-safe: one request at a time."""

    def __init__(self, python: str, workdir: str, env: dict[str, str], state_file: os.PathLike | str,
                 preload: tuple[str, ...] = PRELOAD, module: str = RUNNER_MODULE,
                 start_timeout: float = 60.0, request_timeout: float = 10.0):
        import logging
        import threading

        self.python = python
        self.workdir = workdir
        self.env = dict(env)
        self.state_file = os.fspath(state_file)
        self.preload = preload
        self.module = module
        self.start_timeout = start_timeout
        self.request_timeout = request_timeout
        self.log = logging.getLogger("kinflow.node")
        self._lock = threading.Lock()
        self._popen = None
        self._sock: socket.socket | None = None
        self._retry_at = 0.0
        self._failures = 0
        self._next_id = 0
        self.hello: dict | None = None
        self.closed = False

    # -- decisions --

    def refusal(self, argv: list[str], env: dict[str, str], cwd: str) -> str | None:
        """Why this container takes the exec path (None: fork it)."""
        return fork_refusal(argv, env, cwd, self.python, self.env, self.workdir, self.module)

    # -- life --

    def ensure_started(self) -> bool:
        """Start the server unless it runs or is backing off; True if it is usable."""
        with self._lock:
            return self._ensure_locked()

    def _ensure_locked(self) -> bool:
        if self.closed:
            return False
        if self._sock is not None and self._popen is not None and self._popen.poll() is None:
            return bool(self.hello and self.hello.get("runner"))
        if self._sock is not None:
            self._reset("exited")
        if time.monotonic() < self._retry_at:
            return False
        try:
            self._start_locked()
        except (OSError, ValueError, ForkServerError) as exc:
            self._failed(f"cannot start: {exc}")
            return False
        if not self.hello.get("runner"):
            self.log.warning("fork server cannot import %s (%s): runner pods take the exec path",
                             self.module, "; ".join(self.hello.get("failed") or []))
        return bool(self.hello.get("runner"))

    def _start_locked(self) -> None:
        import subprocess

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            argv = [self.python, os.path.abspath(__file__), "--fd", str(theirs.fileno()),
                    "--preload", ",".join(self.preload), "--module", self.module]
            self._popen = subprocess.Popen(argv, cwd=self.workdir, env=self.env, stdin=subprocess.DEVNULL,
                                           pass_fds=[theirs.fileno()])
        finally:
            theirs.close()
        self._sock = ours
        ours.settimeout(self.start_timeout)
        try:
            hello, fds = _recv(ours)
        except (OSError, ValueError) as exc:
            self._reset("no hello")
            raise ForkServerError(f"no hello from the fork server: {exc}") from exc
        for fd in fds:
            os.close(fd)
        if not hello or "hello" not in hello:
            self._reset("bad hello")
            raise ForkServerError(f"fork server said {hello!r} instead of hello")
        self.hello = hello
        ours.settimeout(self.request_timeout)
        self._write_state()
        self.log.info("fork server started pid=%s preloaded=%d preload_cpu_ms=%s failed=%s",
                      hello.get("pid"), len(hello.get("preloaded") or []), hello.get("preload_cpu_ms"),
                      hello.get("failed") or None)

    def _write_state(self) -> None:
        """pid and start time on disk, for `kinflow dev` tools and the fan-out bench's CPU count."""
        pid = self._popen.pid
        try:
            with open(f"/proc/{pid}/stat") as f:
                start = f.read().rsplit(")", 1)[1].split()[19]
        except OSError:
            start = None
        tmp = f"{self.state_file}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump({"pid": pid, "pid_start": start, "preloaded": self.hello.get("preloaded")}, f)
        os.replace(tmp, self.state_file)

    def _failed(self, why: str) -> None:
        self._failures += 1
        delay = min(60.0, 2.0 ** min(self._failures, 6))
        self._retry_at = time.monotonic() + delay
        self.log.warning("fork server %s; runner pods take the exec path, retrying in %.0fs", why, delay)

    def _reset(self, why: str) -> None:
        """Forget the current server (closing our end makes it exit) and reap it."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        popen, self._popen = self._popen, None
        self.hello = None
        if popen is not None:
            try:
                popen.wait(timeout=2)
            except Exception:
                popen.kill()  # our own child, by its Popen: never a stranger
                popen.wait()
        try:
            os.unlink(self.state_file)
        except OSError:
            pass

    def close(self) -> None:
        """Stop the server (pods it forked keep running: they do not depend on it)."""
        with self._lock:
            self.closed = True
            self._reset("closed")

    # -- requests --

    def spawn(self, argv: list[str], env: dict[str, str], cwd: str, log: os.PathLike | str,
              exit_file: os.PathLike | str) -> Forked:
        """Fork S for one pod; raises ForkServerError when the node must exec instead.

        S waits for `Forked.go()`; call it once S's pid is recorded.
        """
        with self._lock:
            if not self._ensure_locked():
                raise ForkServerError("the fork server is not running")
            self._next_id += 1
            rid = self._next_id
            go_r, go_w = os.pipe()
            req = {"spawn": rid, "argv": argv, "env": env, "cwd": cwd,
                   "log": os.fspath(log), "exit_file": os.fspath(exit_file)}
            try:
                try:
                    _send(self._sock, req, [go_r])
                finally:
                    os.close(go_r)
                reply, fds = _recv(self._sock)
            except (OSError, ValueError) as exc:
                os.close(go_w)
                self._reset("failed")
                self._failed(f"request failed ({exc.__class__.__name__}: {exc})")
                raise ForkServerError(f"fork server request failed: {exc}") from exc
            if reply is None or reply.get("spawned") != rid:
                for fd in fds:
                    os.close(fd)
                os.close(go_w)
                self._reset("lost")
                self._failed("closed its socket" if reply is None else f"answered {reply!r}")
                raise ForkServerError("the fork server went away")
            if "error" in reply:
                for fd in fds:
                    os.close(fd)
                os.close(go_w)
                if reply.get("stale"):
                    self._reset("stale")  # not a failure: start a fresh one next time
                    self.log.info("fork server replaced: %s", reply["error"])
                raise ForkServerError(reply["error"])
            self._failures = 0
            if len(fds) != 1:
                for fd in fds:
                    os.close(fd)
                os.close(go_w)
                raise ForkServerError(f"fork server sent {len(fds)} fds, expected a pidfd")
            return Forked(int(reply["pid"]), fds[0], go_w)

    @property
    def pid(self) -> int | None:
        popen = self._popen
        return popen.pid if popen is not None else None


if __name__ == "__main__":
    sys.exit(server_main(sys.argv[1:]))
