"""Names and limits every part of kinflow agrees on (see docs/design.md)."""

GROUP = "kinflow.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "WorkflowRun"
PLURAL = "workflowruns"

LABEL_RUN = "kinflow.io/run"
LABEL_TASK = "kinflow.io/task"
LABEL_ATTEMPT = "kinflow.io/attempt"
LABEL_WORKFLOW = "kinflow.io/workflow"
LABEL_PARENT = "kinflow.io/parent"
LABEL_PARENT_TASK = "kinflow.io/parent-task"
LABEL_ROOT = "kinflow.io/root"

ANNOTATION_SPAWN_KEY = "kinflow.io/spawn-key"
ANNOTATION_INPUT_HASH = "kinflow.io/input-hash"

# The JSON of all task outputs of one run together; keeps the object far from etcd's limit.
MAX_OUTPUT_BYTES = 256 * 1024

ENV_RUN = "KINFLOW_RUN"
ENV_NAMESPACE = "KINFLOW_NAMESPACE"
ENV_TASK = "KINFLOW_TASK"
ENV_ATTEMPT = "KINFLOW_ATTEMPT"
ENV_RESUME = "KINFLOW_RESUME"
ENV_JOB = "KINFLOW_JOB"

DEFAULT_SERVICE_ACCOUNT = "kinflow-task"
DEFAULT_EXECUTION_TIMEOUT = "60s"
DEFAULT_SCHEDULE_TIMEOUT = "5m"

TERMINAL_PHASES = frozenset({"Succeeded", "Failed", "Cancelled"})
