"""Named queries on invoices (one per fulfilled order; voided, never deleted)."""

from __future__ import annotations

from sqlalchemy import func, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Invoice
from kassa.contracts import CheckoutInput
from kassa.ids import invoice_id


async def issue(session: AsyncSession, checkout: CheckoutInput) -> None:
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


async def void(session: AsyncSession, order_id: str) -> None:
    """A no-op when none was issued, or it is void already."""
    await session.execute(
        update(Invoice)
        .where(Invoice.order_id == order_id)
        .where(Invoice.status == "issued")
        .values(status="void", voided_at=func.now())
    )
