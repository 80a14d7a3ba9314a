"""Entitlements: a row saying customer X may access SKU Y, because of order Z."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import async_sessionmaker
from temporalio import activity

from db import entitlements
from kassa.contracts import CheckoutInput


class EntitlementActivities:
    def __init__(self, sessions: async_sessionmaker) -> None:
        self._sessions = sessions

    @activity.defn
    async def grant_entitlements(self, checkout: CheckoutInput) -> None:
        async with self._sessions.begin() as session:
            await entitlements.grant(session, checkout)

    @activity.defn
    async def revoke_entitlements(self, checkout: CheckoutInput) -> None:
        """Undo of grant_entitlements: this order's access ends (another order's stays)."""
        async with self._sessions.begin() as session:
            await entitlements.revoke(session, checkout.order_id)
