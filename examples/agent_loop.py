"""An agent loop: a durable task spawns a child run of itself with updated input
until a condition holds (Hatchet's agent-loop pattern).

Each iteration is its own run (visible in `kinflow tree`), a child of the one
before. Here the "agent" guesses a hidden number by halving an interval; a
real one would ask a model what to do next and pass what it learnt down as
input. Every waiting iteration is durable, so a deep loop holds no pods while
its later iterations run: it completes on a single slot.

Run it: kinflow run examples.agent_loop:agent --input '{"target": 11}' --wait
Result: {"agent": {"answer": 11, "guesses": [8, 12, 10, 11], "iterations": 4}}
"""

from datetime import timedelta

from pydantic import BaseModel

from kinflow import DurableContext, Kinflow, TriggerWorkflowOptions

kf = Kinflow(debug=True)


class AgentInput(BaseModel):
    target: int = 11  # what the "environment" knows; the agent only learns higher/lower
    low: int = 0
    high: int = 16
    guesses: list[int] = []
    max_iterations: int = 10


@kf.durable_task(name="agent", input_validator=AgentInput, execution_timeout=timedelta(minutes=1))
async def agent(input: AgentInput, ctx: DurableContext) -> dict:
    guess = (input.low + input.high) // 2  # "reason": pick the next action
    guesses = input.guesses + [guess]
    if guess == input.target or len(guesses) >= input.max_iterations or input.low >= input.high:
        return {"answer": guess, "guesses": guesses, "iterations": len(guesses)}
    low, high = (guess + 1, input.high) if guess < input.target else (input.low, guess)  # "observe"
    # Loop: the next iteration is a child run of this same task, with the updated input.
    return await agent.aio_run(
        AgentInput(target=input.target, low=low, high=high, guesses=guesses,
                   max_iterations=input.max_iterations),
        options=TriggerWorkflowOptions(key="next"),
    )
