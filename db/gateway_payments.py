"""Named queries on the gateway payments of orders (one per attempt, by the merchant
reference its gateway knows it by); none of them commits."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import GatewayPayment


async def record(
    session: AsyncSession, gateway: str, reference: str, order_id: str, attempt: int
) -> None:
    """Before the gateway is asked to open it; a repeat changes nothing."""
    await session.execute(
        insert(GatewayPayment)
        .values(gateway=gateway, reference=reference, order_id=order_id, attempt=attempt)
        .on_conflict_do_nothing()
    )


async def find(session: AsyncSession, gateway: str, reference: str) -> tuple[str, int] | None:
    """(order id, attempt) of the gateway payment with this reference, if there is one."""
    row = (
        await session.execute(
            select(GatewayPayment.order_id, GatewayPayment.attempt).where(
                GatewayPayment.gateway == gateway, GatewayPayment.reference == reference
            )
        )
    ).first()
    return (row.order_id, row.attempt) if row else None


async def of_orders(
    session: AsyncSession, order_ids: list[str]
) -> dict[str, list[tuple[int, str]]]:
    """For each order, (attempt, reference) of each of its gateway payments, first attempt
    first; in one query, for the passes over many orders (reconciliation, the ledger check)."""
    rows = await session.execute(
        select(GatewayPayment.order_id, GatewayPayment.attempt, GatewayPayment.reference)
        .where(GatewayPayment.order_id.in_(order_ids))
        .order_by(GatewayPayment.order_id, GatewayPayment.attempt)
    )
    references: dict[str, list[tuple[int, str]]] = {order_id: [] for order_id in order_ids}
    for order_id, attempt, reference in rows:
        references[order_id].append((attempt, reference))
    return references
