"""`kassa ledger check`: the books against themselves and against the gateways. Every
gateway call is retried with backoff on a transient error (`patiently`): a flaky gateway
slows the check down, it does not stop it."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import async_sessionmaker

from db import gateway_payments, ledger, refunds
from gateways.base import PaymentGateway, patiently, payments_of_order
from kassa.statuses import OrderStatus, PaymentOutcome, RefundStatus


async def check(sessions: async_sessionmaker, gateways: dict[str, PaymentGateway]) -> list[str]:
    """Every violation of the ledger's invariants; an empty list means the books are right."""
    async with sessions() as session:
        problems = [
            f"transaction {t} does not balance in {c}: {s}"
            for t, c, s in await ledger.unbalanced(session)
        ]
        books = await ledger.books_per_order(session)
        in_flight = await ledger.orders_with_refunds_in_flight(session)
        references = await gateway_payments.of_orders(session, [b[0].order_id for b in books])
    for order, held_amount, refunded_amount, captured_amount in books:
        if order.order_id in in_flight or order.status == OrderStatus.ON_HOLD:
            continue  # a refund on its way, or support to decide: the books follow
        if refunded_amount > captured_amount:
            problems.append(
                f"order {order.order_id}: refunded {refunded_amount} is more "
                f"than captured {captured_amount}"
            )
        if refunded_amount != order.refunded_amount:
            problems.append(
                f"order {order.order_id}: ledger refunds {refunded_amount}, "
                f"order row says {order.refunded_amount}"
            )
        gateway = gateways.get(order.gateway)
        if gateway is None:
            problems.append(f"order {order.order_id}: unknown gateway {order.gateway}")
            continue
        payments = await payments_of_order(gateway, references[order.order_id])
        at_gateway = 0
        for attempt, payment in payments:
            if payment.outcome == PaymentOutcome.SUCCEEDED:
                at_gateway += payment.amount
            if payment.refunded_amount is not None:
                at_gateway -= payment.refunded_amount
            else:  # the gateway says per refund only: ask it about each of ours
                at_gateway -= await _refunded_at(sessions, gateway, order, attempt, payment)
        if held_amount != at_gateway:
            problems.append(
                f"order {order.order_id}: ledger says the gateway holds "
                f"{held_amount}, the gateway says {at_gateway}"
            )
    return problems


async def _refunded_at(sessions, gateway, order, attempt: int, payment) -> int:
    """What the gateway confirms it refunded of one payment, asked refund by refund: the
    order's refunds (of the payment it kept) and the refund of a stray capture."""
    async with sessions() as session:
        numbers = await refunds.numbers_of_payment(
            session,
            order.order_id,
            payment.payment_id,
            kept=payment.payment_id == order.gateway_payment_id,
        )
    reference = gateway.reference(order.order_id, attempt)
    confirmed = 0
    for number in numbers:
        answer = await patiently(lambda n=number: gateway.get_refund(n, reference))
        if answer.status == RefundStatus.SUCCEEDED:
            confirmed += answer.amount
    return confirmed
