"""The one interface every payment gateway adapter implements.

Adapters translate their protocol's states and errors into these types. A refusal for good
is `GatewayRejected` (the catalogue's, so a step fails for good with it); `GatewayError`, or
any other exception, means the outcome is unknown: retry with the same idempotency key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from kassa.contracts import PaymentEvent, PaymentSession, RefundEvent
from kassa.statuses import PaymentOutcome, RefundStatus

# A retry after a decline opens a new gateway payment, which needs a merchant order id of its
# own: the first attempt uses the order id itself, later ones append `~n`, a character order
# ids never contain.
_ATTEMPT = "~"


def payment_reference(order_id: str, attempt: int = 1) -> str:
    """The merchant order id of the order's `attempt`-th gateway payment."""
    return order_id if attempt == 1 else f"{order_id}{_ATTEMPT}{attempt}"


def order_of_reference(reference: str) -> tuple[str, int]:
    """The order and attempt a merchant order id belongs to."""
    order_id, _, attempt = reference.partition(_ATTEMPT)
    return order_id, int(attempt) if attempt.isdigit() else 1


class GatewayError(Exception):
    """The call failed or its outcome is unknown: retry with the same idempotency key."""


@dataclass(frozen=True)
class NewPayment:
    merchant_order_id: str  # the gateway's idempotency key for creation
    amount: int
    currency: str
    description: str
    expires_at: datetime
    notify_url: str
    return_url: str | None = None


@dataclass(frozen=True)
class GatewayPayment:
    payment_id: str
    merchant_order_id: str
    outcome: PaymentOutcome
    amount: int
    currency: str
    refunded_amount: int = 0


@dataclass(frozen=True)
class NewRefund:
    refund_no: str  # the gateway's idempotency key for this refund (out_request_no)
    merchant_order_id: str
    amount: int
    currency: str
    reason: str
    payment_id: str | None = None  # a particular capture; default: the order's payment


@dataclass(frozen=True)
class GatewayRefund:
    refund_no: str
    status: RefundStatus
    amount: int


class PaymentGateway(Protocol):
    name: str

    async def create_payment(self, payment: NewPayment) -> PaymentSession:
        """Open a payment; calling again with the same merchant order id returns the same one."""
        ...

    async def get_payment(self, merchant_order_id: str) -> GatewayPayment: ...

    async def list_payments(self, merchant_order_id: str) -> list[GatewayPayment]:
        """Every capture attempt for the order, extra ones (a second payment) included."""
        ...

    async def close_payment(self, merchant_order_id: str) -> PaymentOutcome:
        """Close an unpaid payment: CLOSED, or SUCCEEDED when the buyer already paid."""
        ...

    async def refund(self, refund: NewRefund) -> GatewayRefund:
        """Refund part of a captured payment; the same refund_no again returns the same refund.
        PENDING means the gateway will settle it later (callback, or ask with get_refund)."""
        ...

    async def get_refund(self, refund_no: str) -> GatewayRefund: ...

    def parse_callback(
        self, headers: Mapping[str, str], body: bytes
    ) -> PaymentEvent | RefundEvent | None:
        """Verify and decode a callback; None for verified events Kassa does not act on.
        Raises InvalidSignature (kassa.errors) for anything that does not verify,
        MalformedCallback for a verified body that makes no sense."""
        ...


async def payments_of_order(
    gateway: PaymentGateway, order_id: str, attempts: int
) -> list[tuple[int, GatewayPayment]]:
    """Every gateway payment of an order with the attempt it belongs to: one merchant order
    id per attempt (`payment_reference`), second captures under it included."""
    return [
        (attempt, payment)
        for attempt in range(1, attempts + 1)
        for payment in await gateway.list_payments(payment_reference(order_id, attempt))
    ]
