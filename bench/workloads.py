"""Workflows the benchmarks run: a parent that fans out to N no-op children.

Imported by task pods as `bench.workloads` (the dev cluster's pods run from the
project root).
"""

from pydantic import BaseModel

from kinflow import Context, EmptyModel, Kinflow

kf = Kinflow()


class FanInput(BaseModel):
    n: int


noop = kf.workflow(name="bench-noop")


@noop.task()
def nothing(input: EmptyModel, ctx: Context) -> dict:
    return {}


@kf.task(name="bench-fanout", execution_timeout="30m")
async def fanout(input: FanInput, ctx: Context) -> dict:
    results = await noop.aio_run_many(
        [noop.create_bulk_run_item(input={}, key=f"c{i}") for i in range(input.n)]
    )
    return {"joined": len(results)}
