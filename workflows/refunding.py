"""How a workflow gives money back: the refund reserved (or, for a stray capture, recorded)
first, then a refund workflow (workflows/refund.py) as a child that outlives its parent.

A helper shared by the workflows, loaded once by the worker rather than anew for every
workflow run (worker.py, SHARED_WORKFLOW_HELPERS): so it names the refund workflow by its
type, not its class.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import FailureError, WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

from workflows.steps import db_step, failure_message

with workflow.unsafe.imports_passed_through():
    from activities.refunds import RefundActivities
    from kassa import errors
    from kassa.contracts import REFUND_WORKFLOW, PaymentEvent, RefundInput, RefundView
    from kassa.ids import refund_workflow_id
    from kassa.money import format_amount
    from kassa.statuses import RefundStatus, StrayKind


async def refund_and_wait(refund: RefundInput, failure: type[errors.KassaError]) -> None:
    """Give money back through a refund workflow, as a child that survives its parent (a
    terminated checkout must not stop a refund that moves money); a refund that fails for
    good fails the parent with `failure`, loudly, so support sees it. Reserved (or, for a
    stray, recorded) first: a refund workflow refuses what Kassa did not reserve."""
    try:
        await _reserve(refund)
    except FailureError as err:
        reason = failure_message(err)
        raise failure(f"{failure.title} for order {refund.order_id} ({reason})") from err
    result = await workflow.execute_child_workflow(
        REFUND_WORKFLOW,
        refund,
        id=refund_workflow_id(refund.refund_id),
        result_type=RefundView,
        parent_close_policy=ParentClosePolicy.ABANDON,
        static_summary=refund_summary(refund),
    )
    if result.status != RefundStatus.SUCCEEDED:
        raise failure(f"{failure.title} for order {refund.order_id} ({result.failure_reason})")


async def give_back(
    strays: list[PaymentEvent], gateway: str, kind: StrayKind, customer_id: str | None = None
) -> None:
    """Start the refund of every capture an order does not keep, without waiting for them.
    Reports that come later reach the same refunds through the API (same ids)."""
    for event in strays:
        refund = RefundInput.for_stray(event, gateway, kind, customer_id)
        await _reserve(refund)
        try:
            await workflow.start_child_workflow(
                REFUND_WORKFLOW,
                refund,
                id=refund_workflow_id(refund.refund_id),
                parent_close_policy=ParentClosePolicy.ABANDON,
                static_summary=refund_summary(refund),
            )
        except WorkflowAlreadyStartedError:
            pass


def refund_summary(refund: RefundInput) -> str:
    """The refund's one line in the UI's list (orchestration/client.py says the same for
    the refunds the API and reconciliation start)."""
    return (
        f"Refund ({refund.kind}) of {format_amount(refund.amount, refund.currency)} "
        f"on order {refund.order_id}"
    )


async def _reserve(refund: RefundInput) -> None:
    if refund.stray:
        await db_step(RefundActivities.record_stray_capture, refund, f"record the {refund.stray}")
    else:
        await db_step(RefundActivities.reserve_refund, refund, "reserve the amount")
