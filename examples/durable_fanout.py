"""A durable parent fans out to `n` children and gives its pod back while they run.

The same shape as examples/fanout.py, but the parent is a durable task: when
it awaits the children, the runner records the wait and the pod exits, so the
children can use the parent's slot. The operator starts the parent again when
every child has finished; the replay finds the children (same keys) and
returns their results at once. It completes on a cluster with ONE slot, where
the plain fan-out would deadlock.

Run it: kinflow run examples.durable_fanout:parent_wf --input '{"n": 5}' --wait
Result: {"spawn": {"results": [{"process": {"status": "0"}}, ...], "resumes": 1}}
"""

from datetime import timedelta
from typing import Any

from pydantic import BaseModel

from kinflow import Context, DurableContext, Kinflow

kf = Kinflow(debug=True)


class ParentInput(BaseModel):
    n: int = 5


class ChildInput(BaseModel):
    a: str


parent_wf = kf.workflow(name="DurableFanoutParent", input_validator=ParentInput)
child_wf = kf.workflow(name="DurableFanoutChild", input_validator=ChildInput)


@parent_wf.durable_task(execution_timeout=timedelta(minutes=1))
async def spawn(input: ParentInput, ctx: DurableContext) -> dict[str, Any]:
    results = await child_wf.aio_run_many(
        [child_wf.create_bulk_run_item(input=ChildInput(a=str(i)), key=f"child{i}") for i in range(input.n)]
    )
    return {"results": results, "resumes": ctx.resume_count}


@child_wf.task()
async def process(input: ChildInput, ctx: Context) -> dict[str, str]:
    return {"status": input.a}
