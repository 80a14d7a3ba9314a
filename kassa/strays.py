"""Money captured at a gateway that no order keeps (a late or a second payment) goes back by
a refund workflow of its own. Every report of the same capture, by callback or by
reconciliation, reaches the same workflow: its id comes from the gateway payment, and it is
started with signal-with-start, so two reports start one refund."""

from __future__ import annotations

import structlog
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from kassa.contracts import (
    OrderStatus,
    PaymentEvent,
    PaymentOutcome,
    RefundInput,
    StrayKind,
    refund_workflow_id,
)
from kassa.models import Order
from workflows.refund import RefundWorkflow

log = structlog.get_logger("strays")


def stray_kind(order: Order, event: PaymentEvent) -> StrayKind | None:
    """Why the order does not keep this capture; None when it does, or when its checkout
    still runs and will judge the capture itself."""
    status = OrderStatus(order.status)
    if event.outcome != PaymentOutcome.SUCCEEDED:
        return None
    if status.is_paid and event.payment_id == order.gateway_payment_id:
        return None  # the capture the order kept
    if not status.is_final:
        return None
    return StrayKind.DOUBLE_PAYMENT if status.is_paid else StrayKind.LATE_PAYMENT


async def give_back(temporal: Client, task_queue: str, order: Order, event: PaymentEvent) -> bool:
    """Start the refund of a capture the order does not keep; False if it was started before
    (or is not a stray)."""
    kind = stray_kind(order, event)
    if kind is None:
        return False
    refund = RefundInput.for_stray(event, order.gateway, kind)
    try:
        await temporal.start_workflow(
            RefundWorkflow.run,
            refund,
            id=refund_workflow_id(refund.refund_id),
            task_queue=task_queue,
            start_signal="report",
            start_signal_args=[event],
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            static_summary=f"Refund of the {kind} {event.payment_id} on order {order.order_id}",
        )
    except WorkflowAlreadyStartedError:
        return False  # given back already, or on its way
    log.info("stray capture", kind=kind, order_id=order.order_id, payment_id=event.payment_id)
    return True
