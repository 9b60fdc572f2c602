"""A failing child seen from its parent: Hatchet's `try: child.run(...) except Exception`.

`catch_one` catches one child's failure; `gather_many` joins several children
with return_exceptions=True and gets each failure in place of its result.

Run it: kinflow run examples.error_handling:error_wf --input '{}' --wait
"""

from typing import Any

from pydantic import BaseModel

from kinflow import Context, EmptyModel, Kinflow

kf = Kinflow(debug=True)


class ChildInput(BaseModel):
    a: str
    fail: bool = False


child_wf = kf.workflow(name="MaybeFailingChild", input_validator=ChildInput)
error_wf = kf.workflow(name="ErrorHandlingParent")


@child_wf.task()
def work(input: ChildInput, ctx: Context) -> dict[str, str]:
    if input.fail:
        raise ValueError(f"child {input.a} failed on purpose")
    return {"a": input.a}


@error_wf.task()
def catch_one(input: EmptyModel, ctx: Context) -> dict[str, Any]:
    try:
        child_wf.run(ChildInput(a="b", fail=True))
    except Exception as e:
        print(f"Child workflow failed: {e}")
        return {"caught": type(e).__name__, "message": str(e)}
    return {"caught": None}


@error_wf.task()
def gather_many(input: EmptyModel, ctx: Context) -> dict[str, Any]:
    results = child_wf.run_many(
        [
            child_wf.create_bulk_run_item(input=ChildInput(a="ok")),
            child_wf.create_bulk_run_item(input=ChildInput(a="bad", fail=True)),
        ],
        return_exceptions=True,
    )
    return {
        "results": [
            {"error": type(r).__name__, "message": str(r)} if isinstance(r, Exception) else r
            for r in results
        ]
    }
