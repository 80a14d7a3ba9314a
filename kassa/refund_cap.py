"""The refund rules, pure: who may refund an order in which status, within which window, and
how much. Cap = captured − (succeeded + pending refunds); db/refunds.py applies it with the
order row locked, so racing requests cannot overshoot."""

from __future__ import annotations

from datetime import datetime, timedelta

from kassa.errors import (
    NothingToRefund,
    OrderNotRefundable,
    RefundExceedsRemaining,
    RefundWindowClosed,
)
from kassa.statuses import Caller, OrderStatus

REFUNDABLE = {
    Caller.STOREFRONT: {OrderStatus.FULFILLED, OrderStatus.PARTIALLY_REFUNDED},
    Caller.SUPPORT: {OrderStatus.FULFILLED, OrderStatus.PARTIALLY_REFUNDED},
    # Compensation refunds a paid order whose fulfilment failed.
    Caller.SYSTEM: {OrderStatus.PAID, OrderStatus.FULFILLED, OrderStatus.PARTIALLY_REFUNDED},
}


def refund_amount(
    *,
    status: OrderStatus,
    caller: Caller,
    captured: int,
    reserved: int,
    requested: int | None,
    paid_at: datetime | None,
    now: datetime,
    window: timedelta | None = None,
    checkout_ended: bool = False,
) -> int:
    """How much this refund takes (`requested` None: all that is left), or the catalogue's
    reason it may not. `reserved`: succeeded and pending refunds. `checkout_ended`: the
    order's checkout no longer runs, so support may refund an order it left `paid` (its
    compensation failed) without racing the fulfilment."""
    if status == OrderStatus.REFUNDED:
        raise NothingToRefund("The order is refunded in full")
    stuck = checkout_ended and caller == Caller.SUPPORT and status == OrderStatus.PAID
    if status not in REFUNDABLE[caller] and not stuck:
        raise OrderNotRefundable(f"The order is {status}; only paid orders can be refunded")
    if window is not None and paid_at is not None and paid_at + window < now:
        raise RefundWindowClosed(
            f"Refunds are accepted for {window.days} days after payment; support can refund later"
        )
    remaining = captured - reserved
    if remaining <= 0:
        raise NothingToRefund("Nothing is left to refund (refunds in progress included)")
    if requested is not None and requested > remaining:
        raise RefundExceedsRemaining(f"At most {remaining} can still be refunded")
    return remaining if requested is None else requested
