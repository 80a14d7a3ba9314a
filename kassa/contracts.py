"""What the API, the workflows and the activities say to each other.

Standard library and temporalio only: workflow code imports this module inside the sandbox.
Every workflow, activity and handler takes exactly one of these dataclasses, so fields with
defaults can be added later without breaking running workflows.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from temporalio.common import SearchAttributeKey

TASK_QUEUE = "kassa-checkout"


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

    PENDING = "pending"
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


class Caller(StrEnum):
    """Who asked: the storefront's key, the support key, or Kassa itself (compensation)."""

    STOREFRONT = "storefront"
    SUPPORT = "support"
    SYSTEM = "system"


# Custom search attributes: support finds checkouts in the Temporal UI by these.
# `kassa run` and the tests register them on the server.
SA_ORDER_ID = SearchAttributeKey.for_keyword("OrderId")
SA_CUSTOMER_ID = SearchAttributeKey.for_keyword("CustomerId")
SA_PAYMENT_STATUS = SearchAttributeKey.for_keyword("PaymentStatus")
SA_GATEWAY = SearchAttributeKey.for_keyword("Gateway")
SA_AMOUNT_MINOR = SearchAttributeKey.for_int("AmountMinor")
SA_REFUND_STATUS = SearchAttributeKey.for_keyword("RefundStatus")
SEARCH_ATTRIBUTES = (
    SA_ORDER_ID,
    SA_CUSTOMER_ID,
    SA_PAYMENT_STATUS,
    SA_GATEWAY,
    SA_AMOUNT_MINOR,
    SA_REFUND_STATUS,
)


def checkout_workflow_id(order_id: str) -> str:
    return f"checkout-{order_id}"


def refund_workflow_id(refund_id: str) -> str:
    return f"refund-{refund_id}"


def stray_refund_id(payment_id: str) -> str:
    """The one refund of a capture no order keeps: every report of it finds the same one."""
    return f"rf_stray_{hashlib.sha256(payment_id.encode()).hexdigest()[:32]}"


# A retry after a decline opens a new gateway payment, which needs a merchant order id of its
# own. The first attempt uses the order id itself (so payments opened before retries existed
# keep theirs); later ones append `~n`, a character order ids never contain.
_ATTEMPT = "~"
ORDER_ID_MAX_LENGTH = 64


def payment_reference(order_id: str, attempt: int = 1) -> str:
    """The merchant order id of the order's `attempt`-th gateway payment."""
    return order_id if attempt == 1 else f"{order_id}{_ATTEMPT}{attempt}"


def order_of_reference(reference: str) -> tuple[str, int]:
    """The order and attempt a merchant order id belongs to."""
    order_id, _, attempt = reference.partition(_ATTEMPT)
    return order_id, int(attempt) if attempt.isdigit() else 1


def compensation_refund_id(order_id: str) -> str:
    """The one refund that undoes a checkout; short whatever the order id's length."""
    return f"rf_comp_{hashlib.sha256(order_id.encode()).hexdigest()[:32]}"


@dataclass(frozen=True)
class LineItem:
    sku: str
    title: str
    unit_amount: int  # minor units (fen, cents)
    quantity: int


@dataclass(frozen=True)
class CheckoutInput:
    order_id: str
    customer_id: str
    items: list[LineItem]
    currency: str  # ISO-4217, upper case
    gateway: str
    expires_in_seconds: int
    return_url: str | None = None
    # While waiting, ask the gateway after this long, then twice as long each time, up to
    # the maximum: a payment whose callback was lost is still found before the window ends.
    status_check_first_seconds: int = 15
    status_check_max_seconds: int = 300
    # How many gateway payments the buyer may open, the first included: after a decline the
    # buyer may try again within the window. Bounded, so a checkout cannot test stolen cards.
    max_payment_attempts: int = 1

    @property
    def amount(self) -> int:
        return sum(item.unit_amount * item.quantity for item in self.items)


@dataclass(frozen=True)
class PaymentSession:
    """A payment opened at the gateway, with the page the buyer pays on."""

    gateway: str
    payment_id: str
    payment_url: str
    expires_at: datetime
    attempt: int = 1  # the first payment of the order, or a retry after a decline


@dataclass(frozen=True)
class CheckoutView:
    """The checkout as the storefront sees it; returned by the workflow's updates and query."""

    order_id: str
    workflow_id: str
    status: OrderStatus
    amount: int
    currency: str
    customer_id: str
    gateway: str
    payment: PaymentSession | None = None
    reason: str | None = None
    can_retry: bool = False  # the payment was declined; the buyer may try again


@dataclass(frozen=True)
class PaymentEvent:
    """A verified gateway callback, as delivered to the checkout workflow."""

    gateway: str
    event_id: str
    order_id: str
    payment_id: str
    outcome: PaymentOutcome
    amount: int
    currency: str
    attempt: int = 1  # which of the order's gateway payments (see payment_reference)


@dataclass(frozen=True)
class PaymentCheck:
    """What the gateway says of the order's payment when asked."""

    outcome: PaymentOutcome
    payment_id: str
    amount: int
    currency: str


@dataclass(frozen=True)
class ReviewDecision:
    """Support's decision on a payment held for review: refund it (the order fails), or,
    for more than the order's amount in its currency, accept it (the excess goes back and
    the order is fulfilled)."""

    note: str
    decided_by: str = "support"
    accept: bool = False


@dataclass(frozen=True)
class CancelRequest:
    reason: str = "cancelled by request"
    requested_by: str = "storefront"


# ---- activity inputs and results -------------------------------------------------------------


@dataclass(frozen=True)
class OpenPaymentInput:
    checkout: CheckoutInput
    expires_at: datetime
    attempt: int = 1


@dataclass(frozen=True)
class OrderRef:
    order_id: str
    gateway: str = ""
    attempt: int = 1  # for gateway calls: which of the order's payments

    @property
    def reference(self) -> str:
        return payment_reference(self.order_id, self.attempt)


@dataclass(frozen=True)
class StatusChange:
    order_id: str
    status: OrderStatus
    reason: str | None = None


@dataclass(frozen=True)
class RiskDecision:
    approved: bool
    reason: str | None = None


@dataclass(frozen=True)
class CloseResult:
    outcome: PaymentOutcome  # CLOSED, or SUCCEEDED when the buyer paid before the close
    # What was captured, when SUCCEEDED (results recorded before these existed have none).
    payment_id: str | None = None
    amount: int | None = None
    currency: str | None = None


@dataclass(frozen=True)
class ReconcileReport:
    """One reconciliation pass: how many ended orders were compared with their gateway, and
    the captures found that no order keeps (each now has a refund on its way)."""

    orders_checked: int
    strays_found: list[str]  # gateway payment ids
    refunds_resumed: list[str] = field(default_factory=list)  # reserved, never started


@dataclass(frozen=True)
class StorefrontEvent:
    """An outgoing webhook; `event_id` is stable so redeliveries can be deduplicated."""

    event_id: str
    type: str
    order: CheckoutView | None
    occurred_at: datetime
    refund: RefundView | None = None


# ---- refunds ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RefundInput:
    refund_id: str  # also the gateway's idempotency key for this refund (out_request_no)
    order_id: str
    gateway: str
    amount: int
    currency: str
    reason: str
    requested_by: Caller = Caller.STOREFRONT
    # Set for the refund of a stray capture: which gateway payment, and why it is stray.
    payment_id: str | None = None
    stray: StrayKind | None = None

    @classmethod
    def for_stray(cls, event: PaymentEvent, gateway: str, kind: StrayKind) -> RefundInput:
        """The one refund that gives back a capture no order keeps."""
        return cls(
            stray_refund_id(event.payment_id),
            event.order_id,
            gateway,
            event.amount,
            event.currency,
            f"{kind}: payment {event.payment_id}",
            Caller.SYSTEM,
            payment_id=event.payment_id,
            stray=kind,
        )


@dataclass(frozen=True)
class RefundView:
    refund_id: str
    order_id: str
    status: RefundStatus
    amount: int
    currency: str
    reason: str
    failure_reason: str | None = None


@dataclass(frozen=True)
class RefundEvent:
    """A verified gateway callback about a refund."""

    gateway: str
    event_id: str
    refund_id: str
    status: RefundStatus


@dataclass(frozen=True)
class RefundFailure:
    refund_id: str
    reason: str
