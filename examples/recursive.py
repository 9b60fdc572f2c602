"""A tree built by children spawning children: depth 3, breadth 3 (1 + 3 + 9 runs).

Every run of RecursiveTree spawns `breadth` copies of itself one level down,
until depth 1; each returns how many leaves lie below it.

Run it: kinflow run examples.recursive:tree_wf --input '{"depth": 3, "breadth": 3}' --wait
Result: {"grow": {"path": "root", "depth": 3, "leaves": 9, "runs": 13}}
"""

from datetime import timedelta
from typing import Any

from pydantic import BaseModel

from kinflow import Context, Kinflow

kf = Kinflow(debug=True)


class TreeInput(BaseModel):
    depth: int = 3
    breadth: int = 3
    path: str = "root"


tree_wf = kf.workflow(name="RecursiveTree", input_validator=TreeInput)


@tree_wf.task(execution_timeout=timedelta(minutes=10))
async def grow(input: TreeInput, ctx: Context) -> dict[str, Any]:
    if input.depth <= 1:
        return {"path": input.path, "depth": 1, "leaves": 1, "runs": 1}
    results = await tree_wf.aio_run_many(
        [
            tree_wf.create_bulk_run_item(
                input=TreeInput(depth=input.depth - 1, breadth=input.breadth, path=f"{input.path}.{i}"),
                key=f"branch{i}",
            )
            for i in range(input.breadth)
        ]
    )
    return {
        "path": input.path,
        "depth": input.depth,
        "leaves": sum(r["grow"]["leaves"] for r in results),
        "runs": 1 + sum(r["grow"]["runs"] for r in results),
    }
