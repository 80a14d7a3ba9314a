"""Gateway calls. A call that times out has an unknown outcome, so it is retried with the same
merchant order id (the gateway's idempotency key) and can never open a second payment."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import func, update
from sqlalchemy.ext.asyncio import async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from gateways.base import GatewayRejected, NewPayment, PaymentGateway
from kassa.contracts import (
    CloseResult,
    OpenPaymentInput,
    OrderRef,
    OrderStatus,
    PaymentCheck,
    PaymentOutcome,
    PaymentSession,
    payment_reference,
)
from kassa.models import Order
from kassa.settings import Settings


def gateway_named(gateways: dict[str, PaymentGateway], name: str) -> PaymentGateway:
    """The adapter for `name`; an unknown name is a permanent failure, not a retry."""
    if name not in gateways:
        raise ApplicationError(
            f"unknown gateway {name!r}", type="UnknownGateway", non_retryable=True
        )
    return gateways[name]


class PaymentActivities:
    def __init__(
        self,
        gateways: dict[str, PaymentGateway],
        sessions: async_sessionmaker,
        settings: Settings,
    ) -> None:
        self._gateways = gateways
        self._sessions = sessions
        self._settings = settings

    def _gateway(self, name: str) -> PaymentGateway:
        return gateway_named(self._gateways, name)

    @activity.defn
    async def create_payment(self, request: OpenPaymentInput) -> PaymentSession:
        """Open the order's `attempt`-th payment at the gateway and record its page on the
        order (a retry after a decline replaces the declined one there)."""
        checkout = request.checkout
        gateway = self._gateway(checkout.gateway)
        try:
            session = await gateway.create_payment(
                NewPayment(
                    merchant_order_id=payment_reference(checkout.order_id, request.attempt),
                    amount=checkout.amount,
                    currency=checkout.currency,
                    description=", ".join(f"{i.quantity} × {i.title}" for i in checkout.items),
                    expires_at=request.expires_at,
                    notify_url=f"{self._settings.public_api_url}/v1/webhooks/{gateway.name}",
                    return_url=checkout.return_url,
                )
            )
        except GatewayRejected as exc:
            raise ApplicationError(str(exc), type="GatewayRejected", non_retryable=True) from exc
        async with self._sessions.begin() as db:
            await db.execute(
                update(Order)
                .where(Order.order_id == checkout.order_id)
                .where(Order.status.in_([OrderStatus.CREATED, OrderStatus.AWAITING_PAYMENT]))
                .where(Order.payment_attempts <= request.attempt)
                .values(
                    status=OrderStatus.AWAITING_PAYMENT,
                    status_reason=None,
                    gateway_payment_id=session.payment_id,
                    payment_url=session.payment_url,
                    expires_at=session.expires_at,
                    payment_attempts=request.attempt,
                    updated_at=func.now(),
                )
            )
        return replace(session, attempt=request.attempt)

    @activity.defn
    async def payment_status(self, order: OrderRef) -> PaymentCheck:
        """What the gateway says of the order's payment now (for lost callbacks)."""
        payment = await self._gateway(order.gateway).get_payment(order.reference)
        return PaymentCheck(payment.outcome, payment.payment_id, payment.amount, payment.currency)

    @activity.defn
    async def close_payment(self, order: OrderRef) -> CloseResult:
        """Close an unpaid payment. SUCCEEDED means the buyer paid first: the order is paid.

        Every failure retries, even a refusal: an order must not expire while the gateway may
        still capture, so a close that keeps failing stays visible to support as a pending
        activity instead."""
        gateway = self._gateway(order.gateway)
        outcome = await gateway.close_payment(order.reference)
        if outcome != PaymentOutcome.SUCCEEDED:
            return CloseResult(outcome)
        paid = await gateway.get_payment(order.reference)  # what was paid: is it the order's?
        return CloseResult(outcome, paid.payment_id, paid.amount, paid.currency)
