"""Custom search attributes: support finds checkouts and refunds in the Temporal UI by these.
This is the one list: the worker, `kassa run`, `kassa temporal setup`, docker-compose's set-up
and the tests register them on the server from it (orchestration/temporal.py).

Search attributes are not encrypted by the payload codec: they carry ids, codes and amounts,
never free text (a refund's reason, a support note), which goes in the encrypted details."""

from __future__ import annotations

from enum import StrEnum

from temporalio.common import SearchAttributeKey

ORDER_ID = SearchAttributeKey.for_keyword("OrderId")
CUSTOMER_ID = SearchAttributeKey.for_keyword("CustomerId")
# The order status, kept current, plus `declined_may_retry` while the buyer may try again.
PAYMENT_STATUS = SearchAttributeKey.for_keyword("PaymentStatus")
GATEWAY = SearchAttributeKey.for_keyword("Gateway")
AMOUNT_MINOR = SearchAttributeKey.for_int("AmountMinor")
CURRENCY = SearchAttributeKey.for_keyword("Currency")
PAYMENT_EXPIRES_AT = SearchAttributeKey.for_datetime("PaymentExpiresAt")
# What needs a human (a NeedsAttention value below); unset when nothing does.
NEEDS_ATTENTION = SearchAttributeKey.for_keyword("NeedsAttention")
REFUND_STATUS = SearchAttributeKey.for_keyword("RefundStatus")
REFUND_KIND = SearchAttributeKey.for_keyword("RefundKind")  # RefundInput.kind
SEARCH_ATTRIBUTES = (
    ORDER_ID,
    CUSTOMER_ID,
    PAYMENT_STATUS,
    GATEWAY,
    AMOUNT_MINOR,
    CURRENCY,
    PAYMENT_EXPIRES_AT,
    NEEDS_ATTENTION,
    REFUND_STATUS,
    REFUND_KIND,
)

DECLINED_MAY_RETRY = "declined_may_retry"  # PaymentStatus while the buyer may retry


class NeedsAttention(StrEnum):
    """Why a workflow needs a human; support's saved view is `NeedsAttention IS NOT NULL`."""

    HELD_PAYMENT = "held_payment"  # paid another amount or currency: support reviews it
    HELD_PAYMENT_OVERDUE = "held_payment_overdue"  # still held after KASSA_HOLD_ESCALATE_HOURS
    GATEWAY_UNREACHABLE = "gateway_unreachable"  # closing the payment keeps failing
    REFUND_FAILED = "refund_failed"  # a refund failed for good: the money is still with us
    REFUND_NEEDS_ACTION = "refund_needs_action"  # the gateway keeps refusing to take it
    COMPENSATION_FAILED = "compensation_failed"  # fulfilment failed and the buyer's refund too
