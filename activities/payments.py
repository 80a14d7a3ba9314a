"""Gateway calls. A call that times out has an unknown outcome, so it is retried with the same
merchant order id (the gateway's idempotency key) and can never open a second payment."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy.ext.asyncio import async_sessionmaker
from temporalio import activity

from db import gateway_payments, orders
from gateways.base import GatewayError, GatewayPayment, NewPayment, PaymentGateway
from kassa.contracts import (
    OpenPaymentInput,
    OrderRef,
    PaymentCheck,
    PaymentEvent,
    PaymentSession,
)
from kassa.errors import GatewayRejected, UnknownGateway
from kassa.settings import Settings
from kassa.statuses import PaymentOutcome


def gateway_named(gateways: dict[str, PaymentGateway], name: str) -> PaymentGateway:
    """The adapter for `name`; an unknown name is a permanent failure, not a retry."""
    if name not in gateways:
        raise UnknownGateway(f"unknown gateway {name!r}", field=None)
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
        order (a retry after a decline replaces the declined one there). Its reference is
        stored first, so a callback that overtakes the gateway's answer finds its order.
        The adapter raises GatewayRejected (permanent) for a refusal; anything else retries."""
        checkout = request.checkout
        gateway = self._gateway(checkout.gateway)
        reference = gateway.reference(checkout.order_id, request.attempt)
        async with self._sessions.begin() as session:
            await gateway_payments.record(
                session, gateway.name, reference, checkout.order_id, request.attempt
            )
        opened = await gateway.create_payment(
            NewPayment(
                merchant_order_id=reference,
                amount=checkout.amount,
                currency=checkout.currency,
                description=", ".join(f"{i.quantity} × {i.title}" for i in checkout.items),
                expires_at=request.expires_at,
                notify_url=f"{self._settings.public_api_url}/v1/webhooks/{gateway.name}",
                return_url=checkout.return_url,
            )
        )
        opened = replace(opened, attempt=request.attempt)
        async with self._sessions.begin() as session:
            await orders.record_payment_opened(session, checkout.order_id, opened)
        return opened

    @activity.defn
    async def payment_status(self, order: OrderRef) -> PaymentCheck:
        """What the gateway says of the order's payment now (for lost callbacks)."""
        gateway = self._gateway(order.gateway)
        payment = await gateway.get_payment(gateway.reference(order.order_id, order.attempt))
        return _check(payment)

    @activity.defn
    async def confirm_payment(self, claim: PaymentEvent) -> PaymentCheck:
        """What the gateway says of the payment a callback names (NOT_FOUND if it knows no
        such payment under the order's reference): a callback only says where to look."""
        gateway = self._gateway(claim.gateway)
        reference = gateway.reference(claim.order_id, claim.attempt)
        for payment in await gateway.list_payments(reference):
            if payment.payment_id == claim.payment_id:
                return _check(payment)
        return PaymentCheck(PaymentOutcome.NOT_FOUND)

    @activity.defn
    async def close_payment(self, order: OrderRef) -> PaymentCheck:
        """Close an unpaid payment and say how it stands: SUCCEEDED means the buyer paid
        first, with what was paid.

        Every failure retries, even a refusal: an order must not expire while the gateway may
        still capture, so a close that keeps failing stays visible to support as a pending
        activity instead."""
        gateway = self._gateway(order.gateway)
        try:
            closed = await gateway.close_payment(gateway.reference(order.order_id, order.attempt))
        except GatewayRejected as err:  # not final here: retried, see above
            raise GatewayError(f"the gateway refused the close: {err.message}") from err
        if closed.outcome in (PaymentOutcome.PENDING, PaymentOutcome.PROCESSING):
            raise GatewayError(f"still payable after the close: {closed.outcome}")  # retried
        return _check(closed)


def _check(payment: GatewayPayment) -> PaymentCheck:
    return PaymentCheck(payment.outcome, payment.payment_id, payment.amount, payment.currency)
