"""Invoices: one per fulfilled order. The worked example of adding a step
(docs/adding-a-step.md): an action and its undo, both idempotent, side by side."""

from __future__ import annotations

from sqlalchemy import func, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import async_sessionmaker
from temporalio import activity

from kassa.contracts import CheckoutInput, OrderRef
from kassa.models import Invoice


def invoice_id(order_id: str) -> str:
    return f"inv_{order_id}"


class InvoiceActivities:
    def __init__(self, sessions: async_sessionmaker) -> None:
        self._sessions = sessions

    @activity.defn
    async def issue_invoice(self, checkout: CheckoutInput) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                insert(Invoice)
                .values(
                    invoice_id=invoice_id(checkout.order_id),
                    order_id=checkout.order_id,
                    customer_id=checkout.customer_id,
                    amount=checkout.amount,
                    currency=checkout.currency,
                    status="issued",
                )
                .on_conflict_do_nothing(index_elements=[Invoice.invoice_id])
            )

    @activity.defn
    async def void_invoice(self, order: OrderRef) -> None:
        """Undo of issue_invoice; a no-op when none was issued."""
        async with self._sessions.begin() as session:
            await session.execute(
                update(Invoice)
                .where(Invoice.order_id == order.order_id)
                .where(Invoice.status == "issued")
                .values(status="void", voided_at=func.now())
            )
