from pydantic import BaseModel

from kinflow import Context, Kinflow

kf = Kinflow()


class ChildInput(BaseModel):
    a: str


child_wf = kf.workflow(name="quickstart-child", input_validator=ChildInput)


@child_wf.task()
def process(input: ChildInput, ctx: Context) -> dict:
    return {"status": input.a}


@kf.task(execution_timeout="5m", retries=2)
async def parent(input: dict, ctx: Context) -> dict:
    results = await child_wf.aio_run_many(
        [child_wf.create_bulk_run_item(input=ChildInput(a=str(i)), key=f"child{i}") for i in range(10)]
    )
    return {"results": results}
