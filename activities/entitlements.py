"""Entitlements: a row saying customer X may access SKU Y, because of order Z."""

from __future__ import annotations

from sqlalchemy import func, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import async_sessionmaker
from temporalio import activity

from kassa.contracts import CheckoutInput, OrderRef
from kassa.models import Entitlement


class EntitlementActivities:
    def __init__(self, sessions: async_sessionmaker) -> None:
        self._sessions = sessions

    @activity.defn
    async def grant_entitlements(self, checkout: CheckoutInput) -> None:
        skus = sorted({item.sku for item in checkout.items})
        async with self._sessions.begin() as session:
            await session.execute(
                insert(Entitlement)
                .values(
                    [
                        {
                            "order_id": checkout.order_id,
                            "customer_id": checkout.customer_id,
                            "sku": sku,
                        }
                        for sku in skus
                    ]
                )
                .on_conflict_do_nothing(index_elements=["order_id", "sku"])
            )

    @activity.defn
    async def revoke_entitlements(self, order: OrderRef) -> None:
        """Undo of grant_entitlements: this order's access ends (another order's stays)."""
        async with self._sessions.begin() as session:
            await session.execute(
                update(Entitlement)
                .where(Entitlement.order_id == order.order_id)
                .where(Entitlement.revoked_at.is_(None))
                .values(revoked_at=func.now())
            )
