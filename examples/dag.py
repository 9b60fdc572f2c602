"""A two-task DAG: `process2` runs after `process` and reads its typed output.

Run it: kinflow run examples.dag:dag_wf --input '{"a": "7"}' --wait
Result: {"process": {"status": "7"}, "process2": {"status2": "72"}}
"""

from pydantic import BaseModel

from kinflow import Context, Kinflow

kf = Kinflow()


class DagInput(BaseModel):
    a: str


class ProcessOutput(BaseModel):
    status: str


class Process2Output(BaseModel):
    status2: str


dag_wf = kf.workflow(name="DagWorkflow", input_validator=DagInput)


@dag_wf.task()
def process(input: DagInput, ctx: Context) -> ProcessOutput:
    ctx.log(f"process {input.a}")
    return ProcessOutput(status=input.a)


@dag_wf.task(parents=[process])
def process2(input: DagInput, ctx: Context) -> Process2Output:
    # Typed by process's return annotation: a ProcessOutput, not a dict.
    process_output = ctx.task_output(process)
    return Process2Output(status2=process_output.status + "2")
