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
# A durable task's checkpoints (memo values, times) together; events' data is capped at the CLI.
MAX_CHECKPOINT_BYTES = 64 * 1024
MAX_EVENT_DATA_BYTES = 64 * 1024

# Events (`kinflow event send`): core/v1 Events with this reason, label and annotations.
EVENT_REASON = "KinflowEvent"
LABEL_EVENT = "kinflow.io/event"
ANNOTATION_EVENT_KEY = "kinflow.io/event-key"
ANNOTATION_EVENT_DATA = "kinflow.io/event-data"
ANNOTATION_EVENT_RUN = "kinflow.io/event-run"

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
