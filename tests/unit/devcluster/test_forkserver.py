"""The node's fork server: who may be forked, the protocol, and what a forked pod is.

Real: a fork server process, pod shims and pods, /proc, files under tmp_path.
The pods run `forkee` (a stand-in for kinflow.runner that prints how it was
started), except where the real runner is the point.
"""

from __future__ import annotations

import json
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kinflow_dev.forkserver import PRELOAD, ForkServer, ForkServerError, fork_refusal
from kinflow_dev.node import PodWorker
from kinflow_dev.podstore import shim_argv

from .conftest import make_pod

HERE = Path(__file__).resolve().parent
PY = sys.executable


# -- who may be forked -------------------------------------------------------------------

SERVER_ENV = {"PATH": "/usr/bin", "PYTHONPATH": "/proj", "PYTHONUNBUFFERED": "1", "HOME": "/home/u",
              "LANG": "C.UTF-8"}
POD_ENV = {**SERVER_ENV, "KINFLOW_RUN": "r", "KUBECONFIG": "/k.json", "HOSTNAME": "pod-1", "TZ": "UTC"}
RUNNER = [PY, "-m", "kinflow.runner"]


def refusal(argv=RUNNER, env=POD_ENV, cwd="/proj"):
    return fork_refusal(argv, env, cwd, PY, SERVER_ENV, "/proj")


def test_a_runner_pod_with_the_servers_interpreter_env_is_forked():
    assert refusal() is None
    assert refusal(cwd="/proj/") is None


@pytest.mark.parametrize("argv", [
    ["python3", "-m", "kinflow.runner"],  # not resolved to the node's python: not what the server is
    ["/usr/bin/python3", "-m", "kinflow.runner"],
    [PY, "-m", "kinflow.runner", "--extra"],
    [PY, "-u", "-m", "kinflow.runner"],
    [PY, "-m", "kinflow.other"],
    [PY, "-c", "import kinflow.runner"],
    ["sleep", "1"],
])
def test_other_commands_take_the_exec_path(argv):
    assert "command is not" in refusal(argv=argv)


def test_another_cwd_takes_the_exec_path():
    assert "cwd" in refusal(cwd="/elsewhere")


@pytest.mark.parametrize("key, value", [
    ("PYTHONPATH", "/other"), ("PYTHONHASHSEED", "0"), ("PYTHONDONTWRITEBYTECODE", "1"),
    ("LANG", "de_DE.UTF-8"), ("LC_ALL", "C"), ("HOME", "/root"), ("PYDANTIC_DISABLE_PLUGINS", "1"),
])
def test_env_read_at_start_or_import_must_match(key, value):
    assert key in refusal(env={**POD_ENV, key: value})


def test_env_the_server_has_and_the_pod_lacks_must_match_too():
    env = dict(POD_ENV)
    del env["PYTHONUNBUFFERED"]
    assert "PYTHONUNBUFFERED" in refusal(env=env)


def test_env_read_at_run_time_may_differ():
    assert refusal(env={**POD_ENV, "TZ": "Europe/Berlin", "TMPDIR": "/t", "KINFLOW_TASK": "x",
                        "KUBECONFIG": "/other", "KINFLOW_CLIENT_QPS": "5"}) is None


# -- the protocol, with a real server -----------------------------------------------------


@pytest.fixture
def pkg(tmp_path: Path) -> Path:
    """A folder with a private copy of forkee (tests touch it), on the pods' PYTHONPATH."""
    folder = tmp_path / "pkg"
    folder.mkdir()
    shutil.copy(HERE / "forkee.py", folder / "forkee.py")
    return folder


@pytest.fixture
def server_env(pkg: Path) -> dict[str, str]:
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "LC_ALL", "TZ") if k in os.environ}
    return {**env, "PYTHONPATH": str(pkg), "PYTHONUNBUFFERED": "1", "SERVER_ONLY": "1"}


@pytest.fixture
def forks(tmp_path: Path, pkg: Path, server_env: dict[str, str]):
    server = ForkServer(PY, str(pkg), server_env, tmp_path / "forkserver.json", preload=("json",),
                        module="forkee", start_timeout=30)
    yield server
    server.close()


def pod_env(server_env: dict[str, str], **extra: str) -> dict[str, str]:
    env = {k: v for k, v in server_env.items() if k != "SERVER_ONLY"}
    return {**env, "KINFLOW_RUN": "r", **extra}


def wait_exit(pidfd: int, timeout: float = 20) -> None:
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    assert poller.poll(timeout * 1000), "the pod shim did not end"
    os.close(pidfd)


def run_forked(forks: ForkServer, tmp_path: Path, env: dict[str, str], name: str = "c") -> tuple[int | None, str]:
    log, exit_file = tmp_path / f"{name}.log", tmp_path / f"{name}.exit"
    forked = forks.spawn([PY, "-m", "forkee"], env, forks.workdir, log, exit_file)
    assert forked.go()
    wait_exit(forked.pidfd)
    code = int(exit_file.read_text()) if exit_file.exists() else None
    return code, log.read_text() if log.exists() else ""


def run_exec(tmp_path: Path, cwd: str, env: dict[str, str], name: str = "e") -> tuple[int, str]:
    """What the node's exec path does: the shell shim, its own session, log as stdout+stderr."""
    log, exit_file = tmp_path / f"{name}.log", tmp_path / f"{name}.exit"
    with open(log, "ab") as out:
        subprocess.run(shim_argv(exit_file, [PY, "-m", "forkee"]), stdin=subprocess.DEVNULL, stdout=out,
                       stderr=subprocess.STDOUT, cwd=cwd, env=env, start_new_session=True, timeout=30)
    return int(exit_file.read_text()), log.read_text()


def test_server_says_hello_and_records_itself(forks, tmp_path):
    assert forks.ensure_started()
    assert forks.hello["runner"] and forks.hello["preloaded"] == ["json", "forkee"]
    state = json.loads((tmp_path / "forkserver.json").read_text())
    assert state["pid"] == forks.pid


def test_a_forked_pod_looks_exactly_like_an_exec_one(forks, tmp_path, server_env):
    env = pod_env(server_env, FORKEE_EXIT="0")
    code, forked_log = run_forked(forks, tmp_path, env)
    exec_code, exec_log = run_exec(tmp_path, forks.workdir, env)
    assert code == exec_code == 0
    forked, execd = json.loads(forked_log), json.loads(exec_log)
    assert forked["grandparent"] == forks.pid  # it was forked ...
    assert execd["grandparent"] == os.getpid()
    for key in ("grandparent",):
        del forked[key], execd[key]
    assert forked == execd  # ... and nothing else tells
    assert "SERVER_ONLY" not in forked["env"]
    assert forked["env"]["PWD"] == forks.workdir  # the shim's sh exports PWD; so does the fork
    assert forked["argv"] == [str(Path(forks.workdir) / "forkee.py")]
    assert forked["orig_argv"] == [PY, "-m", "forkee"]
    assert forked["path"][0] == forks.workdir
    assert forked["signals"]["SIGINT"] == str(signal.SIG_IGN)  # a background job of sh
    assert forked["signals"]["SIGTERM"] == str(signal.SIG_DFL) and forked["mask"] == []
    assert forked["in_parents_session"] and not forked["leads_group"]  # the shim leads the session


@pytest.mark.parametrize("mode, extra, code, text", [
    ("", {"FORKEE_EXIT": "3"}, 3, None),
    ("raise", {}, 1, "RuntimeError: forkee failed on purpose"),
    ("exit-message", {}, 1, "forkee says goodbye"),
    ("interrupt", {}, 130, "KeyboardInterrupt"),
    ("atexit", {}, 0, "atexit ran"),
])
def test_exit_status_and_output_match_the_exec_path(forks, tmp_path, server_env, mode, extra, code, text):
    env = pod_env(server_env, FORKEE_MODE=mode, **extra)
    forked = run_forked(forks, tmp_path, env)
    execd = run_exec(tmp_path, forks.workdir, env)
    assert forked[0] == execd[0] == code
    if text:
        assert text in forked[1] and text in execd[1]
    assert forked[1].splitlines()[1:] == execd[1].splitlines()[1:]


def test_sigterm_to_the_pods_group_ends_it_with_143(forks, tmp_path, server_env):
    log, exit_file = tmp_path / "c.log", tmp_path / "c.exit"
    forked = forks.spawn([PY, "-m", "forkee"], pod_env(server_env, FORKEE_MODE="sleep"), forks.workdir,
                         log, exit_file)
    assert forked.go()
    deadline = time.monotonic() + 20
    while "sleeping" not in (log.read_text() if log.exists() else "") and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(forked.pid, signal.SIGTERM)  # what the node does on deletion
    wait_exit(forked.pidfd)
    assert exit_file.read_text().strip() == "143"


def test_the_pod_runs_only_after_go_and_not_at_all_when_abandoned(forks, tmp_path, server_env):
    log, exit_file = tmp_path / "c.log", tmp_path / "c.exit"
    forked = forks.spawn([PY, "-m", "forkee"], pod_env(server_env), forks.workdir, log, exit_file)
    time.sleep(0.3)
    assert log.read_text() == ""  # S exists (it opened the log) but the pod has not run
    pidfd = os.dup(forked.pidfd)
    forked.abandon()
    wait_exit(pidfd)
    assert log.read_text() == "" and not exit_file.exists()


def test_a_server_crash_loses_no_running_pod_and_the_next_pod_gets_a_new_server(forks, tmp_path, server_env):
    log, exit_file = tmp_path / "c.log", tmp_path / "c.exit"
    forked = forks.spawn([PY, "-m", "forkee"], pod_env(server_env, FORKEE_MODE="sleep"), forks.workdir,
                         log, exit_file)
    assert forked.go()
    first = forks.pid
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while "sleeping" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "sleeping" in log.read_text()  # the pod lives on without the server
    os.killpg(forked.pid, signal.SIGTERM)
    wait_exit(forked.pidfd)
    assert exit_file.read_text().strip() == "143"  # and its exit status is still recorded
    code, _ = run_forked(forks, tmp_path, pod_env(server_env), name="next")
    assert code == 0 and forks.pid not in (None, first)


def test_a_server_that_dies_mid_request_runs_nothing_and_backs_off(forks, tmp_path, server_env):
    assert forks.ensure_started()
    forks._sock.settimeout(0.5)
    os.kill(forks.pid, signal.SIGSTOP)  # hangs: the request times out
    with pytest.raises(ForkServerError):
        forks.spawn([PY, "-m", "forkee"], pod_env(server_env), forks.workdir, tmp_path / "c.log",
                    tmp_path / "c.exit")
    assert forks.pid is None  # killed and reaped
    with pytest.raises(ForkServerError, match="not running"):  # backing off: the node execs meanwhile
        forks.spawn([PY, "-m", "forkee"], pod_env(server_env), forks.workdir, tmp_path / "d.log",
                    tmp_path / "d.exit")
    forks._retry_at = 0
    assert run_forked(forks, tmp_path, pod_env(server_env), name="later")[0] == 0


def test_edited_code_replaces_the_server(forks, tmp_path, server_env, pkg):
    assert run_forked(forks, tmp_path, pod_env(server_env), name="a")[0] == 0
    first = forks.pid
    source = pkg / "forkee.py"
    source.write_text(source.read_text().replace("sys.exit(int(os.environ.get(\"FORKEE_EXIT\", \"0\")))",
                                                 "sys.exit(7)"))
    with pytest.raises(ForkServerError, match="changed since it was imported"):
        run_forked(forks, tmp_path, pod_env(server_env), name="b")
    assert run_forked(forks, tmp_path, pod_env(server_env), name="c")[0] == 7
    assert forks.pid != first


def test_closing_stops_the_server(forks):
    assert forks.ensure_started()
    pid = forks.pid
    forks.close()
    assert forks.pid is None and not Path(f"/proc/{pid}").exists()
    with pytest.raises(ForkServerError):
        forks.spawn([PY, "-m", "forkee"], {}, forks.workdir, "/dev/null", "/dev/null")


def test_default_preload_has_the_runner_and_pydantic(tmp_path, server_env):
    server = ForkServer(PY, str(tmp_path), server_env, tmp_path / "fs.json")
    try:
        assert server.ensure_started(), server.hello
        assert set(PRELOAD) <= set(server.hello["preloaded"]) and not server.hello["failed"]
    finally:
        server.close()


# -- in the node agent --------------------------------------------------------------------


@pytest.fixture
def forking_agent(agent, pkg):
    """The unit-test agent with a fork server whose 'runner' is forkee."""
    agent.config.workdir = str(pkg)
    agent.config.pythonpath = str(pkg)
    agent.forkserver = ForkServer(agent.config.python, agent.config.workdir,
                                  {**agent.base_env(), **agent.interpreter_env()},
                                  agent.config.pods_dir.parent / "forkserver.json", preload=("json",),
                                  module="forkee")
    yield agent
    agent.forkserver.close()


def run_pod(agent, pod, timeout=30):
    worker = PodWorker(agent, pod)
    worker.start()
    worker.join(timeout)
    assert not worker.is_alive()
    return worker


def forkee_pod(mode="", **spec):
    pod = make_pod(command=["python", "-m", "forkee"], **spec)
    pod["spec"]["containers"][0]["env"] = [{"name": "FORKEE_MODE", "value": mode},
                                           {"name": "FORKEE_EXIT", "value": "4"}]
    return pod


def pod_log(agent, worker) -> str:
    return worker.files.log("main").read_text()


def test_node_forks_a_runner_pod_and_reports_its_exit_code(forking_agent):
    worker = run_pod(forking_agent, forkee_pod())
    status = forking_agent.client.statuses()[-1]
    assert status["phase"] == "Failed"
    assert status["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 4
    seen = json.loads(pod_log(forking_agent, worker).splitlines()[0])
    assert seen["grandparent"] == forking_agent.forkserver.pid  # forked, not exec'd
    assert seen["env"]["KUBECONFIG"] == str(worker.files.kubeconfig)
    record = json.loads(worker.files.state("main").read_text())
    assert record["exit_code"] == 4 and record["pid_start"]


def test_node_execs_when_the_fork_server_is_off_or_refuses(forking_agent):
    pod = forkee_pod()
    pod["spec"]["containers"][0]["env"].append({"name": "PYTHONHASHSEED", "value": "1"})
    worker = run_pod(forking_agent, pod)
    assert json.loads(pod_log(forking_agent, worker).splitlines()[0])["grandparent"] == os.getpid()
    forking_agent.forkserver.close()
    worker = run_pod(forking_agent, forkee_pod(uid="uid-2", name="q"))
    assert json.loads(pod_log(forking_agent, worker).splitlines()[0])["grandparent"] == os.getpid()
    assert forking_agent.client.statuses()[-1]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 4


def test_deleting_a_forked_pod_kills_it_and_removes_it(forking_agent):
    worker = PodWorker(forking_agent, forkee_pod("sleep", terminationGracePeriodSeconds=5))
    worker.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and "sleeping" not in (
            worker.files.log("main").read_text() if worker.files.log("main").exists() else ""):
        time.sleep(0.05)
    worker.request_kill(5)
    worker.join(20)
    assert not worker.is_alive()
    status = forking_agent.client.statuses()[-1]
    assert status["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 143
    assert any(c[0] == "DELETE" for c in forking_agent.client.calls)


def test_a_forked_pod_past_its_deadline_is_killed(forking_agent):
    started = time.monotonic()
    run_pod(forking_agent, forkee_pod("sleep", activeDeadlineSeconds=1, terminationGracePeriodSeconds=2))
    assert time.monotonic() - started < 15
    status = forking_agent.client.statuses()[-1]
    assert (status["phase"], status["reason"]) == ("Failed", "DeadlineExceeded")
    assert status["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 143


def test_the_real_runner_is_forked_and_says_what_it_misses(agent, caplog):
    """kinflow.runner itself, from the default preload: without KINFLOW_RUN it exits 2."""
    agent.forkserver = ForkServer(agent.config.python, agent.config.workdir,
                                  {**agent.base_env(), **agent.interpreter_env()},
                                  agent.config.pods_dir.parent / "forkserver.json")
    try:
        with caplog.at_level(logging.INFO, logger="kinflow.node"):
            worker = run_pod(agent, make_pod(command=["python", "-m", "kinflow.runner"]))
        term = agent.client.statuses()[-1]["containerStatuses"][0]["state"]["terminated"]
        assert term["exitCode"] == 2
        assert "missing environment: KINFLOW_RUN" in worker.files.log("main").read_text()
        assert any("started" in r.getMessage() and "via=fork" in r.getMessage() for r in caplog.records)
    finally:
        agent.forkserver.close()
