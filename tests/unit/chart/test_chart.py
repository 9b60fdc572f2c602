"""The Helm chart, rendered by a real helm: lint, objects, RBAC, values schema."""

from __future__ import annotations

import pytest

from kinflow_dev.bootstrap import TASK_RULES
from tests.unit.chart.conftest import CHART, RELEASE_NAMESPACE, find

OPERATOR = "kinflow-operator"


# ---- lint -------------------------------------------------------------------

@pytest.mark.parametrize("values", [None, {"operator": {"watchNamespaces": ["team-a", "team-b"]},
                                           "tasks": {"namespaces": ["team-a"]}}],
                         ids=["defaults", "namespaced"])
def test_helm_lint_is_clean(chart, values):
    proc = chart.run("lint", "--strict", str(CHART), "--namespace", RELEASE_NAMESPACE, values=values)
    assert "0 chart(s) failed" in proc.stdout, proc.stdout
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout, proc.stdout


# ---- the operator Deployment -------------------------------------------------

def _deployment(objects):
    [dep] = find(objects, "Deployment", OPERATOR, RELEASE_NAMESPACE)
    return dep


def test_defaults_render_the_expected_objects(chart):
    objects = chart.template()
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in objects)
    assert kinds == sorted([
        ("ClusterRole", OPERATOR), ("ClusterRoleBinding", OPERATOR),
        ("Deployment", OPERATOR), ("ServiceAccount", OPERATOR),
        ("ServiceAccount", "kinflow-task"), ("Role", "kinflow-task"), ("RoleBinding", "kinflow-task"),
    ])
    for o in objects:
        assert o["metadata"]["labels"]["app.kubernetes.io/instance"] == "kinflow"


def test_operator_container_is_locked_down(chart):
    dep = _deployment(chart.template())
    spec = dep["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == OPERATOR
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    [c] = pod["containers"]
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["resources"]["requests"] and c["resources"]["limits"]
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]


def test_operator_command_probes_and_image(chart):
    dep = _deployment(chart.template({
        "operator": {"image": {"repository": "reg.example/op", "tag": "1.2.3", "pullPolicy": "Always"},
                     "healthPort": 9099, "metrics": {"port": 9191}},
        "tasks": {"image": {"repository": "reg.example/task", "digest": "sha256:" + "a" * 64}},
    }))
    [c] = dep["spec"]["template"]["spec"]["containers"]
    assert c["image"] == "reg.example/op:1.2.3"
    assert c["imagePullPolicy"] == "Always"
    assert c["command"] == ["kinflow", "operator"]
    assert c["args"] == [
        "--all-namespaces",
        "--task-image=reg.example/task@sha256:" + "a" * 64,
        "--liveness=http://0.0.0.0:9099/healthz",
        "--metrics-port=9191",
    ]
    assert c["ports"] == [{"name": "health", "containerPort": 9099, "protocol": "TCP"},
                          {"name": "metrics", "containerPort": 9191, "protocol": "TCP"}]
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "health"}


@pytest.mark.parametrize("values", [
    None,
    {"operator": {"watchNamespaces": ["a", "b"], "metrics": {"enabled": False}, "extraArgs": ["--verbose"]},
     "tasks": {"namespaces": ["a"]}},
], ids=["defaults", "namespaced"])
def test_operator_args_parse_with_the_operators_own_parser(chart, values):
    """The contract with operator/kinflow_operator/main.py: every flag the chart passes exists."""
    from kinflow_operator.main import parser

    [c] = _deployment(chart.template(values))["spec"]["template"]["spec"]["containers"]
    args = parser().parse_args(c["args"])
    assert args.liveness.endswith("/healthz") and args.task_image
    if values:
        assert args.namespaces == ["a", "b"] and not args.all_namespaces
        assert args.metrics_port is None and args.verbose
    else:
        assert args.all_namespaces and args.metrics_port == 9090


def test_kinflow_operator_forwards_the_charts_args(chart, monkeypatch):
    """`kinflow operator ARGS` (the chart's command) hands ARGS to the operator unchanged."""
    import kinflow_operator.main as operator_main
    from kinflow_cli.main import main

    [c] = _deployment(chart.template())["spec"]["template"]["spec"]["containers"]
    seen = []
    monkeypatch.setattr(operator_main, "main", lambda argv: seen.append(list(argv)) or 0)
    try:
        code = main([*c["command"][1:], *c["args"]])
    except SystemExit as e:  # argparse refused the arguments
        code = e.code
    assert code == 0 and seen == [c["args"]], f"exit {code}, operator got {seen}"


def test_image_tag_defaults_to_app_version(chart):
    import yaml

    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    [c] = _deployment(chart.template())["spec"]["template"]["spec"]["containers"]
    assert c["image"].endswith(f":{app_version}")
    assert f"--task-image=ghcr.io/kinflow/kinflow-task:{app_version}" in c["args"]


def test_probes_can_be_disabled(chart):
    dep = _deployment(chart.template({"operator": {"livenessProbe": {"enabled": False},
                                                   "readinessProbe": {"enabled": False}}}))
    [c] = dep["spec"]["template"]["spec"]["containers"]
    assert "livenessProbe" not in c and "readinessProbe" not in c


# ---- operator RBAC -----------------------------------------------------------

NAMESPACED_RULES = [
    {"apiGroups": ["kinflow.io"], "resources": ["workflowruns"],
     "verbs": ["get", "list", "watch", "patch", "update"]},
    {"apiGroups": ["kinflow.io"], "resources": ["workflowruns/status"], "verbs": ["get", "patch", "update"]},
    {"apiGroups": ["kinflow.io"], "resources": ["workflowruns/finalizers"], "verbs": ["update"]},
    {"apiGroups": ["batch"], "resources": ["jobs"],
     "verbs": ["create", "get", "list", "watch", "delete", "patch"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch", "get", "list", "watch"]},
]
CRD_RULE = {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
            "verbs": ["list", "watch"]}
NAMESPACES_RULE = {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]}


def test_operator_rbac_is_cluster_wide_by_default(chart):
    objects = chart.template()
    [role] = find(objects, "ClusterRole", OPERATOR)
    assert role["rules"] == [CRD_RULE, NAMESPACES_RULE, *NAMESPACED_RULES]
    [binding] = find(objects, "ClusterRoleBinding", OPERATOR)
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": OPERATOR, "namespace": RELEASE_NAMESPACE}]
    assert not find(objects, "Role", OPERATOR)


def test_operator_rbac_limited_to_watched_namespaces(chart):
    objects = chart.template({"operator": {"watchNamespaces": ["team-a", "team-b"]},
                              "tasks": {"namespaces": ["team-a", "team-b"]}})
    [cluster_role] = find(objects, "ClusterRole", OPERATOR)
    assert cluster_role["rules"] == [CRD_RULE, NAMESPACES_RULE]  # only the cluster-scoped reads kopf makes
    for ns in ("team-a", "team-b"):
        [role] = find(objects, "Role", OPERATOR, ns)
        assert role["rules"] == NAMESPACED_RULES
        [binding] = find(objects, "RoleBinding", OPERATOR, ns)
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": OPERATOR}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": OPERATOR,
                                        "namespace": RELEASE_NAMESPACE}]
    [c] = _deployment(objects)["spec"]["template"]["spec"]["containers"]
    assert c["args"][:2] == ["--namespace=team-a", "--namespace=team-b"]
    assert "--all-namespaces" not in c["args"]


def test_operator_rbac_never_grants_wildcards_or_secrets(chart):
    for values in (None, {"operator": {"watchNamespaces": ["a"]}, "tasks": {"namespaces": ["a"]}}):
        for obj in chart.template(values):
            for rule in obj.get("rules", []):
                assert "*" not in rule["verbs"] and "*" not in rule["resources"], rule
                assert not {"secrets", "configmaps"} & set(rule["resources"]), rule


def test_task_namespace_must_be_watched(chart):
    proc = chart.run("template", "kinflow", str(CHART), values={
        "operator": {"watchNamespaces": ["team-a"]}, "tasks": {"namespaces": ["team-b"]}}, check=False)
    assert proc.returncode != 0
    assert 'task namespace "team-b" is not in operator.watchNamespaces' in proc.stderr


# ---- task RBAC -----------------------------------------------------------------

@pytest.mark.parametrize("task_namespaces", [[], ["wf-1", "wf-2"]], ids=["release-namespace", "listed"])
def test_task_rbac_equals_the_dev_cluster_rules(chart, task_namespaces):
    objects = chart.template({"tasks": {"namespaces": task_namespaces}})
    expected = task_namespaces or [RELEASE_NAMESPACE]
    roles = find(objects, "Role", "kinflow-task")
    assert sorted(r["metadata"]["namespace"] for r in roles) == sorted(expected)
    for role in roles:
        assert role["rules"] == TASK_RULES
    for ns in expected:
        [sa] = find(objects, "ServiceAccount", "kinflow-task", ns)
        [binding] = find(objects, "RoleBinding", "kinflow-task", ns)
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "kinflow-task", "namespace": ns}]
        assert binding["roleRef"]["name"] == "kinflow-task"


def test_task_serviceaccount_can_be_left_to_others(chart):
    objects = chart.template({"tasks": {"serviceAccount": {"create": False}}})
    assert not find(objects, "ServiceAccount", "kinflow-task")
    assert find(objects, "Role", "kinflow-task")


# ---- values schema ---------------------------------------------------------------

@pytest.mark.parametrize("values, complaint", [
    ({"bogus": 1}, "bogus"),
    ({"operator": {"replicas": 2}}, "replicas"),
    ({"operator": {"image": {"repo": "x"}}}, "repo"),
    ({"tasks": {"serviceAccount": {"name": "other"}}}, "name"),
    ({"operator": {"healthPort": "8080"}}, "healthPort"),
    ({"operator": {"watchNamespaces": ["Not_A_Namespace"]}}, "watchNamespaces"),
    ({"operator": {"image": {"pullPolicy": "Sometimes"}}}, "pullPolicy"),
])
def test_schema_rejects_bad_values(chart, values, complaint):
    proc = chart.run("template", "kinflow", str(CHART), values=values, check=False)
    assert proc.returncode != 0, f"{values} was accepted"
    assert "values don't meet the specifications of the schema" in proc.stderr, proc.stderr
    assert complaint in proc.stderr, proc.stderr


def test_every_value_is_in_the_schema_and_explained():
    """values.yaml and values.schema.json describe the same keys, and each key has a comment."""
    import json

    import yaml

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())

    def walk(v, s, path):
        assert s.get("additionalProperties") is False, f"{path or 'top level'}: schema allows unknown keys"
        assert set(v) == set(s["properties"]), f"{path}: values {sorted(v)} vs schema {sorted(s['properties'])}"
        for key, sub in v.items():
            sub_schema = s["properties"][key]
            if isinstance(sub, dict) and sub_schema.get("additionalProperties") is False:
                walk(sub, sub_schema, f"{path}.{key}".lstrip("."))

    walk(values, schema, "")
    assert_every_leaf_commented((CHART / "values.yaml").read_text())


def assert_every_leaf_commented(text: str) -> None:
    """Each leaf value has a comment right above it, or above one of its enclosing sections."""
    import re

    stack: list[tuple[int, bool]] = []  # (indent, explained) of enclosing sections
    previous = ""
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        match = re.match(r"^(\s*)([A-Za-z_][\w.-]*):(.*)$", line)
        if match and not stripped.startswith("#"):
            indent = len(match.group(1))
            while stack and stack[-1][0] >= indent:
                stack.pop()
            here = previous.startswith("#") and previous_indent == indent
            explained = here or any(e for _, e in stack)
            if match.group(3).strip():
                assert explained, f"values.yaml:{number}: `{stripped}` is not explained by a comment"
            else:
                stack.append((indent, explained))
        if stripped:
            previous, previous_indent = stripped, len(line) - len(line.lstrip())
