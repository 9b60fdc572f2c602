"""A TokenRequest refused while the node authorizer lags behind the binding is retried
quietly: no Pending report, no second-long wait."""

import time

from kinflow_dev.kubeclient import ApiError
from kinflow_dev.node import PodWorker

from .conftest import make_pod

LAG = ('serviceaccounts "sa" is forbidden: node requested token bound to a pod scheduled on a different node')


def test_token_refused_for_authorizer_lag_is_retried_quietly(agent):
    refusals = [ApiError(403, "Forbidden", LAG), ApiError(403, "Forbidden", LAG)]
    answer = agent.client.request

    def request(method, path, body=None, query=None, content_type=""):
        if path.endswith("/token") and refusals:
            agent.client.calls.append((method, path, body))
            raise refusals.pop(0)
        return answer(method, path, body, query, content_type)

    agent.client.request = request
    started = time.monotonic()
    worker = PodWorker(agent, make_pod(command=["python", "-c", "pass"]))
    worker.start()
    worker.join(20)
    assert time.monotonic() - started < 5
    phases = [s["phase"] for s in agent.client.statuses()]
    assert phases == ["Running", "Succeeded"]  # no Pending/CreateContainerConfigError in between
    assert sum(1 for c in agent.client.calls if c[1].endswith("/token")) == 3


def test_other_token_refusals_are_reported(agent):
    answer = agent.client.request

    def request(method, path, body=None, query=None, content_type=""):
        if path.endswith("/token"):
            agent.client.calls.append((method, path, body))
            raise ApiError(403, "Forbidden", "serviceaccounts \"sa\" is forbidden: nope")
        return answer(method, path, body, query, content_type)

    agent.client.request = request
    worker = PodWorker(agent, make_pod(command=["python", "-c", "pass"]))
    worker.start()
    deadline = time.monotonic() + 10
    while not agent.client.statuses() and time.monotonic() < deadline:
        time.sleep(0.02)
    worker.request_kill(0, gone=True)
    worker.join(10)
    waiting = agent.client.statuses()[0]["containerStatuses"][0]["state"]["waiting"]
    assert waiting["reason"] == "CreateContainerConfigError" and "nope" in waiting["message"]
