"""Hatchet's parallel children: `asyncio.gather` over `aio_run` of SimpleWorkflow.

Run it: kinflow run examples.parallel:spawn --input '{}' --wait
Result: {"SpawnTask": {"results": [{"step1": {"transformed_message": "HELLO, WORLD!"}},
                                   {"step1": {"transformed_message": "HELLO, MOON!"}}]}}
"""

import asyncio
from typing import Any

from kinflow import Context, EmptyModel, Kinflow

from examples.simple import SimpleInput, simple

kf = Kinflow(debug=True)


@kf.task(name="SpawnTask")
async def spawn(input: EmptyModel, ctx: Context) -> dict[str, Any]:
    result1 = simple.aio_run(SimpleInput(message="Hello, World!"))
    result2 = simple.aio_run(SimpleInput(message="Hello, Moon!"))

    results = await asyncio.gather(result1, result2)

    print(results[0]["step1"]["transformed_message"])
    print(results[1]["step1"]["transformed_message"])
    return {"results": results}
