"""Statuses of orders, payments and refunds, and the order lifecycle (DESIGN.md): which status
may follow which. Stored as these values in PostgreSQL and in the search attributes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class OrderStatus(StrEnum):
    CREATED = "created"
    AWAITING_PAYMENT = "awaiting_payment"
    PAID = "paid"
    FULFILLED = "fulfilled"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    FAILED = "failed"
    REJECTED = "rejected"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    ON_HOLD = "on_hold"  # captured, but not what the order asked: support decides

    @property
    def is_final(self) -> bool:
        """No more money can move for this checkout (refunds come later, by their own path)."""
        return self in _FINAL

    @property
    def is_paid(self) -> bool:
        """The buyer's money was captured (some of it may have been refunded since)."""
        return self in _PAID

    @property
    def comes_from(self) -> frozenset[OrderStatus]:
        """The statuses an order may move to this one from (the lifecycle in DESIGN.md)."""
        return _PREDECESSORS[self]


_FINAL = frozenset(
    {
        OrderStatus.FULFILLED,
        OrderStatus.EXPIRED,
        OrderStatus.CANCELLED,
        OrderStatus.FAILED,
        OrderStatus.REJECTED,
        OrderStatus.PARTIALLY_REFUNDED,
        OrderStatus.REFUNDED,
    }
)
_PAID = frozenset(
    {
        OrderStatus.PAID,
        OrderStatus.FULFILLED,
        OrderStatus.PARTIALLY_REFUNDED,
        OrderStatus.REFUNDED,
    }
)
_REFUNDABLE = frozenset({OrderStatus.PAID, OrderStatus.FULFILLED, OrderStatus.PARTIALLY_REFUNDED})


_PREDECESSORS: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.CREATED: frozenset(),
    OrderStatus.AWAITING_PAYMENT: frozenset({OrderStatus.CREATED}),
    OrderStatus.REJECTED: frozenset({OrderStatus.CREATED}),
    # From on hold when support accepts a payment of more than the amount (the excess goes back).
    OrderStatus.PAID: frozenset({OrderStatus.AWAITING_PAYMENT, OrderStatus.ON_HOLD}),
    OrderStatus.FULFILLED: frozenset({OrderStatus.PAID}),
    OrderStatus.EXPIRED: frozenset({OrderStatus.AWAITING_PAYMENT}),
    OrderStatus.CANCELLED: frozenset({OrderStatus.CREATED, OrderStatus.AWAITING_PAYMENT}),
    OrderStatus.FAILED: frozenset(
        {OrderStatus.CREATED, OrderStatus.AWAITING_PAYMENT, OrderStatus.ON_HOLD}
    ),
    OrderStatus.ON_HOLD: frozenset({OrderStatus.AWAITING_PAYMENT}),
    # Refunds: by request after fulfilment, or as compensation when a step after payment fails.
    OrderStatus.PARTIALLY_REFUNDED: _REFUNDABLE,
    OrderStatus.REFUNDED: _REFUNDABLE,
}


class PaymentOutcome(StrEnum):
    """What a gateway says happened to a payment."""

    NOT_FOUND = "not_found"  # not at the gateway (yet): Alipay's QR before the buyer scans
    PENDING = "pending"
    PROCESSING = "processing"  # the buyer acted; the gateway has not decided yet
    SUCCEEDED = "succeeded"
    DECLINED = "declined"
    CLOSED = "closed"


class RefundStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class StrayKind(StrEnum):
    """Money captured that no order keeps: it goes back to the buyer."""

    LATE_PAYMENT = "late_payment"  # paid after the order expired, was cancelled or failed
    DOUBLE_PAYMENT = "double_payment"  # a second capture for an order already paid
    AMOUNT_MISMATCH = "amount_mismatch"  # not the amount or currency asked; support said refund
    OVERPAYMENT = "overpayment"  # what was paid beyond the amount, once support accepted it


class RefundKind(StrEnum):
    """Why a refund gives money back, besides the StrayKind of a stray capture's refund."""

    REQUESTED = "requested"  # by the storefront or support
    COMPENSATION = "compensation"  # fulfilment failed after payment: everything goes back


class Caller(StrEnum):
    """Who asked: the storefront's key, the support key, or Kassa itself (compensation)."""

    STOREFRONT = "storefront"
    SUPPORT = "support"
    SYSTEM = "system"


@dataclass(frozen=True)
class Authenticated:
    """A caller whose API key the API accepted: its role, and who holds the key (the
    holder named in KASSA_API_KEYS), so every action can say who acted. `str()` is the role,
    as Kassa recorded callers before keys had holders."""

    role: Caller
    holder: str

    def __str__(self) -> str:
        return str(self.role)

    @property
    def who(self) -> str:
        """Role and holder, e.g. "support:alice", for the record of an action."""
        return f"{self.role}:{self.holder}"


# How the API writes who acted: a key's role and holder (the holder as KASSA_API_KEYS allows).
_ACTOR = re.compile(r"(storefront|support):[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


def actor_role(who: str) -> Caller | None:
    """The role of an actor written the way the API writes it ("support:alice"), or None
    for anything else (a hand-typed "support", an empty string, another shape)."""
    if not isinstance(who, str) or not _ACTOR.fullmatch(who):
        return None
    return Caller(who.partition(":")[0])
