"""Two ways an engineer might change the checkout, for the replay tests. A module of its own,
because the workflow sandbox re-imports the module a workflow is defined in."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from kassa.contracts import CheckoutInput, CheckoutView
    from workflows.checkout import CheckoutWorkflow


@workflow.defn(name="CheckoutWorkflow")
class CheckoutWithUnguardedStep(CheckoutWorkflow):
    """An engineer adds a step (here a timer) without `workflow.patched`."""

    @workflow.run
    async def run(self, checkout: CheckoutInput) -> CheckoutView:
        await workflow.sleep(1)
        return await super().run(checkout)


@workflow.defn(name="CheckoutWorkflow")
class CheckoutWithPatchedStep(CheckoutWorkflow):
    """The same step behind `workflow.patched`: old histories skip it, new runs take it."""

    @workflow.run
    async def run(self, checkout: CheckoutInput) -> CheckoutView:
        if workflow.patched("example-extra-step"):
            await workflow.sleep(1)
        return await super().run(checkout)
