"""Hatchet's SimpleWorkflow: one task that upper-cases a message.

Run it: kinflow run examples.simple:simple --input '{"message": "hello"}' --wait
Result: {"step1": {"transformed_message": "HELLO"}}
"""

from pydantic import BaseModel

from kinflow import Context, Kinflow

kf = Kinflow(debug=True)


class SimpleInput(BaseModel):
    message: str


class SimpleOutput(BaseModel):
    transformed_message: str


simple = kf.workflow(name="SimpleWorkflow", input_validator=SimpleInput)


@simple.task(name="step1")
def step1(input: SimpleInput, ctx: Context) -> SimpleOutput:
    print("executed step1: ", input.message)
    return SimpleOutput(transformed_message=input.message.upper())
