"""Durable workflows the runner tests import by entrypoint (tests.unit.sdk.durable_workflows:...)."""

import asyncio
import random

from pydantic import BaseModel

from kinflow import DurableContext, Kinflow

kf = Kinflow()


class FanIn(BaseModel):
    n: int = 3
    salt: str = ""


child = kf.workflow(name="Child")


@child.task()
def work(input, ctx) -> dict:
    return {"x": input["i"]}


@kf.durable_task(input_validator=FanIn)
async def fanout(input: FanIn, ctx: DurableContext) -> dict:
    results = await child.aio_run_many(
        [child.create_bulk_run_item({"i": i, "salt": input.salt}, key=f"c{i}") for i in range(input.n)]
    )
    return {"sum": sum(r["work"]["x"] for r in results)}


@kf.durable_task(input_validator=FanIn)
async def gathered(input: FanIn, ctx: DurableContext) -> dict:
    async def one(i: int):
        await asyncio.sleep(0.01 * (input.n - i))  # siblings register at different times
        return await child.aio_run({"i": i, "salt": input.salt})

    results = await asyncio.gather(*(one(i) for i in range(input.n)))
    return {"sum": sum(r["work"]["x"] for r in results)}


@kf.durable_task()
def sync_fanout(input, ctx: DurableContext) -> dict:
    results = child.run_many([child.create_bulk_run_item({"i": i}) for i in range(3)])
    single = child.run({"i": 10})
    return {"sum": sum(r["work"]["x"] for r in results) + single["work"]["x"]}


@kf.durable_task()
async def sleeper(input, ctx: DurableContext) -> dict:
    started = await ctx.aio_now()
    pick = await ctx.aio_memo(random.random)
    await ctx.aio_sleep_for("10s")
    return {"started": started.isoformat(), "pick": pick}


@kf.durable_task()
async def approval(input, ctx: DurableContext) -> dict:
    try:
        data = await ctx.aio_wait_for_event("approve", timeout="30s")
    except TimeoutError:
        return {"approved": False, "why": "timeout"}
    return {"approved": bool(data.get("ok")), "data": data}
