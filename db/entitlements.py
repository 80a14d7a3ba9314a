"""Named queries on entitlements (customer X may access SKU Y because of order Z). Access is
counted per order: revoking one order's leaves another purchase of the same SKU in force."""

from __future__ import annotations

from sqlalchemy import func, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Entitlement
from kassa.contracts import CheckoutInput


async def grant(session: AsyncSession, checkout: CheckoutInput) -> None:
    skus = sorted({item.sku for item in checkout.items})
    await session.execute(
        insert(Entitlement)
        .values(
            [
                {"order_id": checkout.order_id, "customer_id": checkout.customer_id, "sku": sku}
                for sku in skus
            ]
        )
        .on_conflict_do_nothing(index_elements=["order_id", "sku"])
    )


async def revoke(session: AsyncSession, order_id: str) -> None:
    """This order's access ends; a repeat is a no-op."""
    await session.execute(
        update(Entitlement)
        .where(Entitlement.order_id == order_id)
        .where(Entitlement.revoked_at.is_(None))
        .values(revoked_at=func.now())
    )
