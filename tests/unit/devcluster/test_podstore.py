"""Records, the exit-code shim, logs and kill_all_pods, with real local processes."""

import os
import signal
import subprocess
import time

import pytest

from kinflow_dev.podstore import (
    LogNotFound,
    PodFiles,
    judge_record,
    kill_all_pods,
    pid_start_time,
    process_alive,
    read_log,
    shim_argv,
    write_json,
)


def _pod_root(state, name="p", uid="u1", node="n1"):
    root = state / "nodes" / node / "pods" / f"ns_{name}_{uid}"
    root.mkdir(parents=True)
    return PodFiles(root)


def _start(files, argv, container="main"):
    with open(files.log(container), "ab") as log:
        proc = subprocess.Popen(shim_argv(files.exit_file(container), argv), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    write_json(files.state(container), {"pid": proc.pid, "pid_start": pid_start_time(proc.pid)})
    return proc


def test_shim_records_exit_code_and_output(tmp_path):
    files = _pod_root(tmp_path)
    proc = _start(files, ["sh", "-c", "echo out; echo err >&2; exit 7"])
    assert proc.wait(10) == 7
    assert files.recorded_exit_code("main") == 7
    assert read_log(tmp_path, "ns", "p") == "out\nerr\n"


def test_shim_survives_sigterm_and_records_the_childs_graceful_exit(tmp_path):
    files = _pod_root(tmp_path)
    script = "import signal,sys,time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(0)); print('up', flush=True); time.sleep(30)"
    proc = _start(files, ["python3", "-c", script])
    deadline = time.monotonic() + 10
    while "up" not in files.log("main").read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(10) == 0
    assert files.recorded_exit_code("main") == 0


def test_pid_start_time_tells_a_recycled_pid_apart():
    start = pid_start_time(os.getpid())
    assert process_alive(os.getpid(), start)
    assert not process_alive(os.getpid(), (start or 0) + 1)
    assert not process_alive(os.getpid(), None)


def test_judge_record(tmp_path):
    files = _pod_root(tmp_path)
    assert judge_record({"exit_code": 2}, files, "main") == ("finished", 2)
    assert judge_record({"pid": 1, "pid_start": 5}, files, "main", alive=lambda p, s: True) == ("running", None)
    assert judge_record({"pid": 1, "pid_start": 5}, files, "main", alive=lambda p, s: False) == ("lost", None)
    files.exit_file("main").write_text("3\n")
    assert judge_record({"pid": 1, "pid_start": 5}, files, "main", alive=lambda p, s: False) == ("exited", 3)


def test_kill_all_pods_kills_the_whole_tree(tmp_path):
    files = _pod_root(tmp_path)
    proc = _start(files, ["sh", "-c", "sleep 60 & sleep 60; wait"])
    time.sleep(0.2)
    assert kill_all_pods(tmp_path, grace=5) == [proc.pid]
    assert proc.wait(10) != 0
    # Members may linger as zombies until init reaps them; none may still run.
    states = subprocess.run(["ps", "-o", "stat=", "-g", str(proc.pid)], capture_output=True, text=True).stdout
    assert all(s.startswith("Z") for s in states.split())
    assert kill_all_pods(tmp_path) == []


def test_read_log_errors_and_follow(tmp_path):
    with pytest.raises(LogNotFound):
        read_log(tmp_path, "ns", "nope")
    files = _pod_root(tmp_path)
    proc = _start(files, ["sh", "-c", "echo one; sleep 0.3; echo two"])
    chunks = list(read_log(tmp_path, "ns", "p", follow=True))
    assert "".join(chunks) == "one\ntwo\n"
    proc.wait(5)


def test_read_log_picks_the_newest_pod_of_that_name(tmp_path):
    old = _pod_root(tmp_path, uid="old")
    old.log("main").write_text("old\n")
    os.utime(old.root, (1, 1))
    new = _pod_root(tmp_path, uid="new")
    new.log("main").write_text("new\n")
    assert read_log(tmp_path, "ns", "p") == "new\n"
    assert read_log(tmp_path, "ns", "p", container="main") == "new\n"
