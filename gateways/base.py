"""The one interface every payment gateway adapter implements.

Adapters translate their protocol's states and errors into these types. A refusal for good
is `GatewayRejected` (the catalogue's, so a step fails for good with it); `GatewayError`, or
any other exception, means the outcome is unknown: retry with the same idempotency key.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeVar

from kassa.contracts import PaymentSession, RefundEvent
from kassa.statuses import PaymentOutcome, RefundStatus

T = TypeVar("T")


def shorten(text: str, limit: int) -> str:
    """Text cut to a gateway's limit with an ellipsis (a long cart must not fail there)."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


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
    merchant_order_id: str
    outcome: PaymentOutcome
    payment_id: str | None = None  # the capture's id; None while there is none
    amount: int = 0
    currency: str = ""
    refunded_amount: int | None = 0  # None: the gateway does not say (ask per refund)


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
    status: RefundStatus | None  # None: the gateway does not know this refund
    amount: int = 0


@dataclass(frozen=True)
class PaymentWord:
    """What a verified callback says about a payment, before Kassa knows whose it is: the
    API finds the order and attempt by the merchant reference (db/gateway_payments.py)."""

    event_id: str  # the gateway's id of this notification: redeliveries repeat it
    merchant_order_id: str  # the reference the payment was opened under
    payment_id: str  # the gateway's id of the capture (trade_no, transaction_id, pay_…)
    outcome: PaymentOutcome
    amount: int
    currency: str


@dataclass(frozen=True)
class CallbackReply:
    """What the gateway must read back to stop redelivering a callback."""

    body: str
    media_type: str = "application/json"


class PaymentGateway(Protocol):
    name: str
    currencies: frozenset[str] | None  # what it takes (checked at POST /v1/checkouts); None: any
    callback_reply: CallbackReply

    def reference(self, order_id: str, attempt: int) -> str:
        """The merchant reference of the order's `attempt`-th payment, in what the gateway
        allows; the same every time (it is the gateway's idempotency key for creation)."""
        ...

    async def create_payment(self, payment: NewPayment) -> PaymentSession:
        """Open a payment; calling again with the same reference returns the same one. The
        session's `payment_id` is the gateway's id of the payment where it names one at
        creation (the capture's id to be), else None (Alipay numbers a trade only once the
        buyer scans): the checkout then tells its payment by the reference alone."""
        ...

    async def get_payment(self, merchant_order_id: str) -> GatewayPayment:
        """The payment as the gateway sees it. Not there yet (the buyer has not scanned) is
        NOT_FOUND, never an error."""
        ...

    async def list_payments(self, merchant_order_id: str) -> list[GatewayPayment]:
        """Every capture attempt under the reference, extra ones (a second payment) included."""
        ...

    async def close_payment(self, merchant_order_id: str) -> GatewayPayment:
        """Close an unpaid payment, then ask the gateway how it stands: CLOSED (or NOT_FOUND),
        or SUCCEEDED with what was captured when the buyer paid first."""
        ...

    async def refund(self, refund: NewRefund) -> GatewayRefund:
        """Refund part of a captured payment; the same refund_no again returns the same refund.
        PENDING means the gateway will settle it later (callback, or ask with get_refund)."""
        ...

    async def get_refund(self, refund_no: str, merchant_order_id: str) -> GatewayRefund:
        """NOT_FOUND when the gateway does not know the refund: ask for it again, same number."""
        ...

    def parse_callback(
        self, headers: Mapping[str, str], body: bytes
    ) -> PaymentWord | RefundEvent | None:
        """Verify and decode a callback; None for verified events Kassa does not act on.
        Raises InvalidSignature (kassa.errors) for anything that does not verify,
        MalformedCallback for a verified body that makes no sense."""
        ...


async def patiently(
    call: Callable[[], Awaitable[T]], attempts: int = 5, first_delay: float = 0.2
) -> T:
    """`call()`, again after a transient GatewayError, backing off (0.2 s, 0.4 s, …): a
    pass over many orders must not fail for one flaky call. The last error is raised. Only
    for calls that are safe to repeat (reads, and writes keyed by an idempotency key)."""
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except GatewayError:
            if attempt == attempts:
                raise
            await asyncio.sleep(first_delay * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


async def payments_of_order(
    gateway: PaymentGateway, references: list[tuple[int, str]]
) -> list[tuple[int, GatewayPayment]]:
    """Every gateway payment of an order with the attempt it belongs to, from its stored
    references (db/gateway_payments.py), second captures under one reference included. Each
    listing is retried on its own (`patiently`): one flaky call costs one call."""
    found = []
    for attempt, reference in references:
        for payment in await patiently(lambda ref=reference: gateway.list_payments(ref)):
            found.append((attempt, payment))
    return found
