"""Human approval: a durable task waits for an event, with a sleep-based timeout,
whichever comes first, and holds no pod while it waits.

Approve from anywhere with the CLI (the key names the request):

    kinflow event send approval:order-7 --data '{"approved": true, "by": "ann"}'

The wait and the sleep are raced with asyncio.wait: the task suspends once,
waiting for both (the operator resumes it on the first), and the replay sees
which one finished. Only an event sent after the task began waiting counts
(see docs/design.md, "Events").

Run it: kinflow run examples.approval:approval --input '{"request": "order-7"}' --wait
Result: {"approval": {"request": "order-7", "approved": true, "by": "ann"}}
        or, after timeout_seconds without an event: {"approved": false, "by": null, "reason": "timed out"}
"""

import asyncio
from datetime import timedelta

from pydantic import BaseModel

from kinflow import DurableContext, Kinflow

kf = Kinflow(debug=True)


class ApprovalInput(BaseModel):
    request: str
    timeout_seconds: float = 3600


@kf.durable_task(name="approval", input_validator=ApprovalInput, execution_timeout=timedelta(minutes=1))
async def approval(input: ApprovalInput, ctx: DurableContext) -> dict:
    event = asyncio.ensure_future(ctx.aio_wait_for_event(f"approval:{input.request}"))
    timeout = asyncio.ensure_future(ctx.aio_sleep_for(input.timeout_seconds))
    done, pending = await asyncio.wait({event, timeout}, return_when=asyncio.FIRST_COMPLETED)
    for later in pending:
        later.cancel()
    if event in done:
        decision = event.result() or {}
        return {"request": input.request, "approved": bool(decision.get("approved")), "by": decision.get("by")}
    return {"request": input.request, "approved": False, "by": None, "reason": "timed out"}
