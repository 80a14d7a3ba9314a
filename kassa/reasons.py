"""Why an order stands where it does, or why a refund failed, as the storefront is told: a
stable code to branch on, and a short fixed text to show. The details (risk thresholds,
support's notes, the gateway's own errors) are support's: the order row's `status_reason`,
the refund row's `failure_reason`, the checkout's view in the Temporal UI."""

from __future__ import annotations

from enum import StrEnum


class ReasonCode(StrEnum):
    RISK_REJECTED = "risk_rejected"  # rejected
    PAYMENT_FAILED = "payment_failed"  # failed: the gateway payment could not be opened
    DECLINED_MAY_RETRY = "declined_may_retry"  # awaiting_payment: can_retry
    DECLINED = "declined"  # failed: declined, and no retry in the window
    EXPIRED = "expired"  # expired
    CANCELLED_BY_STOREFRONT = "cancelled_by_storefront"  # cancelled
    CANCELLED_BY_SUPPORT = "cancelled_by_support"  # cancelled
    AMOUNT_MISMATCH = "amount_mismatch"  # on_hold
    REFUNDED_ON_REVIEW = "refunded_on_review"  # failed: support refunded the held payment
    ACCEPTED_ON_REVIEW = "accepted_on_review"  # paid, fulfilled: support kept an overpayment
    FULFILMENT_FAILED_REFUNDED = "fulfilment_failed_refunded"  # refunded
    REFUND_REFUSED = "refund_refused"  # a refund: Kassa's refund rules refused it
    REFUND_FAILED = "refund_failed"  # a refund: the gateway refused it or could not pay it out

    @property
    def text(self) -> str:
        """The short text the storefront may show."""
        return _TEXTS[self]


_TEXTS = {
    ReasonCode.RISK_REJECTED: "Risk control refused the order.",
    ReasonCode.PAYMENT_FAILED: "The payment could not be opened at the gateway.",
    ReasonCode.DECLINED_MAY_RETRY: "The gateway declined the payment; the buyer may try again.",
    ReasonCode.DECLINED: "The gateway declined the payment.",
    ReasonCode.EXPIRED: "The payment window closed before the buyer paid.",
    ReasonCode.CANCELLED_BY_STOREFRONT: "Cancelled at the storefront's request.",
    ReasonCode.CANCELLED_BY_SUPPORT: "Cancelled by support.",
    ReasonCode.AMOUNT_MISMATCH: (
        "The payment was not the order's amount or currency; support is reviewing it."
    ),
    ReasonCode.REFUNDED_ON_REVIEW: (
        "The payment was not the order's amount or currency; it was refunded."
    ),
    ReasonCode.ACCEPTED_ON_REVIEW: (
        "The payment was more than the order's amount; the order was kept and the excess goes back."
    ),
    ReasonCode.FULFILMENT_FAILED_REFUNDED: (
        "The order could not be fulfilled after payment; the payment was refunded."
    ),
    ReasonCode.REFUND_REFUSED: "The refund was refused: it is not allowed for this order.",
    ReasonCode.REFUND_FAILED: "The gateway could not make the refund; support follows it up.",
}
