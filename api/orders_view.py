"""Reading orders from PostgreSQL for answers (strongly consistent, unlike visibility)."""

from __future__ import annotations

from kassa.contracts import CheckoutView, OrderStatus, PaymentSession, checkout_workflow_id
from kassa.models import Order


def order_as_checkout(order: Order) -> CheckoutView:
    payment = None
    if order.payment_url and order.gateway_payment_id and order.expires_at:
        payment = PaymentSession(
            order.gateway, order.gateway_payment_id, order.payment_url, order.expires_at
        )
    return CheckoutView(
        order_id=order.order_id,
        workflow_id=checkout_workflow_id(order.order_id),
        status=OrderStatus(order.status),
        amount=order.amount,
        currency=order.currency,
        customer_id=order.customer_id,
        gateway=order.gateway,
        payment=payment,
        reason=order.status_reason,
    )
