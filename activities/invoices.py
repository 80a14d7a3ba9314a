"""Invoices: one per fulfilled order. The worked example of adding a step
(docs/adding-a-step.md): an action and its undo, both idempotent, side by side."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import async_sessionmaker
from temporalio import activity

from db import invoices
from kassa.contracts import CheckoutInput


class InvoiceActivities:
    def __init__(self, sessions: async_sessionmaker) -> None:
        self._sessions = sessions

    @activity.defn
    async def issue_invoice(self, checkout: CheckoutInput) -> None:
        async with self._sessions.begin() as session:
            await invoices.issue(session, checkout)

    @activity.defn
    async def void_invoice(self, checkout: CheckoutInput) -> None:
        """Undo of issue_invoice; a no-op when none was issued."""
        async with self._sessions.begin() as session:
            await invoices.void(session, checkout.order_id)
