"""The capture enters the books: a step after payment of its own, so the story shows it."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import async_sessionmaker
from temporalio import activity

from db import ledger as books
from kassa import ledger
from kassa.contracts import CheckoutInput


class LedgerActivities:
    def __init__(self, sessions: async_sessionmaker) -> None:
        self._sessions = sessions

    @activity.defn
    async def book_capture(self, checkout: CheckoutInput) -> None:
        """Gateway +amount, revenue −amount; posting it again is a no-op. Never undone: a
        refund is a movement of its own."""
        posting = ledger.capture(
            checkout.order_id, checkout.gateway, checkout.amount, checkout.currency
        )
        async with self._sessions.begin() as session:
            await books.post(session, posting)
