"""The stray judge: whether a capture reported after its checkout ended is money the order
keeps, or money that goes back to the buyer (a late or a second payment). Pure; the checkout
judges captures itself while it runs (workflows/payment.py)."""

from __future__ import annotations

from kassa.contracts import PaymentEvent
from kassa.statuses import OrderStatus, PaymentOutcome, StrayKind


def stray_kind(
    status: OrderStatus, kept_payment_id: str | None, event: PaymentEvent
) -> StrayKind | None:
    """Why an order in `status`, whose gateway payment is `kept_payment_id`, does not keep
    this capture; None when it does, or when its checkout still runs and judges it."""
    if event.outcome != PaymentOutcome.SUCCEEDED:
        return None
    if status.is_paid and event.payment_id == kept_payment_id:
        return None  # the capture the order kept
    if not status.is_final:
        return None
    return StrayKind.DOUBLE_PAYMENT if status.is_paid else StrayKind.LATE_PAYMENT
