"""build_job(): the Job manifest for one task attempt, and the podTemplate merge."""

from __future__ import annotations

from kinflow._names import job_name
from kinflow_operator.jobs import build_job, label_value, merge_pod_template
from kinflow_operator.resource import RunSpec


def _job(pod_template=None, **task):
    spec = RunSpec.model_validate({
        "workflow": "w", "entrypoint": "examples.dag:dag_wf",
        "tasks": [{"name": "process", **task}], "podTemplate": pod_template or {},
    })
    return build_job(run_name="wf", namespace="ns", run_uid="u1", spec=spec, task=spec.tasks[0],
                     attempt=2, resume=1, default_image="img:1")


def _container(job):
    return next(c for c in job["spec"]["template"]["spec"]["containers"] if c["name"] == "task")


def test_the_job_follows_the_pod_contract():
    job = _job(executionTimeout="90s")
    meta = job["metadata"]
    assert meta["name"] == job_name("wf", "process", 2, 1)
    assert meta["labels"] == {"kinflow.io/run": "wf", "kinflow.io/task": "process", "kinflow.io/attempt": "2"}
    owner = meta["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == ("WorkflowRun", "wf", "u1", True)
    assert job["spec"]["backoffLimit"] == 0
    # On the pod: counted from the pod's start, so waiting for a slot is not execution time.
    assert job["spec"]["template"]["spec"]["activeDeadlineSeconds"] == 90
    assert "activeDeadlineSeconds" not in job["spec"]
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["serviceAccountName"] == "kinflow-task"
    c = _container(job)
    assert c["command"] == ["python", "-m", "kinflow.runner"] and c["image"] == "img:1"
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env == {"KINFLOW_RUN": "wf", "KINFLOW_NAMESPACE": "ns", "KINFLOW_TASK": "process",
                   "KINFLOW_ATTEMPT": "2", "KINFLOW_RESUME": "1", "KINFLOW_JOB": meta["name"]}
    assert job["spec"]["template"]["metadata"]["labels"]["kinflow.io/run"] == "wf"


def test_pod_template_merges_without_breaking_the_contract():
    job = _job({
        "metadata": {"labels": {"team": "a"}, "annotations": {"x": "y"}},
        "spec": {
            "nodeSelector": {"disk": "ssd"},
            "tolerations": [{"key": "k", "operator": "Exists"}],
            "restartPolicy": "Always",
            "containers": [{"resources": {"limits": {"cpu": "1"}}, "command": ["sh"],
                            "env": [{"name": "A", "value": "1"}, {"name": "KINFLOW_TASK", "value": "evil"}]}],
        },
    })
    tpl = job["spec"]["template"]
    assert tpl["metadata"]["labels"]["team"] == "a" and tpl["metadata"]["labels"]["kinflow.io/run"] == "wf"
    assert tpl["metadata"]["annotations"]["x"] == "y"
    assert tpl["spec"]["nodeSelector"] == {"disk": "ssd"}
    assert tpl["spec"]["tolerations"] == [{"key": "k", "operator": "Exists"}]
    assert tpl["spec"]["restartPolicy"] == "Never"
    assert len(tpl["spec"]["containers"]) == 1
    c = _container(job)
    assert c["resources"] == {"limits": {"cpu": "1"}} and c["command"] == ["python", "-m", "kinflow.runner"]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["A"] == "1" and env["KINFLOW_TASK"] == "process"


def test_sidecars_and_volumes_are_added_by_name():
    base = _job()["spec"]["template"]
    merged = merge_pod_template(base, {"spec": {"containers": [{"name": "side", "image": "s"}],
                                                "volumes": [{"name": "v", "emptyDir": {}}]}})
    assert [c["name"] for c in merged["spec"]["containers"]] == ["task", "side"]
    assert merged["spec"]["volumes"] == [{"name": "v", "emptyDir": {}}]


def test_label_values_are_made_valid():
    assert label_value("process") == "process"
    assert label_value("_private_") == "private"
    assert label_value("a" * 80) == "a" * 63
