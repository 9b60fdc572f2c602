"""Workflows the runner tests import by entrypoint (tests.unit.sdk.runner_workflows:...)."""

from pydantic import BaseModel

from kinflow import Context, Kinflow, MAX_OUTPUT_BYTES

kf = Kinflow()


class In(BaseModel):
    a: str


class First(BaseModel):
    status: str


dag = kf.workflow(name="Dag", input_validator=In)


@dag.task()
def first(input: In, ctx: Context) -> First:
    return First(status=input.a)


@dag.task(parents=[first])
async def second(input: In, ctx: Context) -> dict:
    got = ctx.task_output(first)
    assert isinstance(got, First), got  # typed by first's return annotation
    ctx.log("second ran")
    return {"status2": got.status + "2", "attempt": ctx.attempt_number, "run": ctx.workflow_run_id,
            "meta": ctx.additional_metadata}


@kf.task(input_validator=In)
def boom(input: In, ctx: Context) -> dict:
    raise ValueError(f"bad {input.a}")


@kf.task()
def huge(input, ctx: Context) -> dict:
    return {"blob": "x" * MAX_OUTPUT_BYTES}


not_a_workflow = 42
