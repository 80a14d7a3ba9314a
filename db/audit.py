"""The audit log of support's actions: insert and read, nothing else (the table refuses
UPDATE and DELETE itself). An action's row is keyed by `action_key`, so a repeated request
(a retry, a replay) records the action once."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import AuditEntry


async def record(
    session: AsyncSession,
    *,
    action_key: str,
    actor: str,
    action: str,
    order_id: str,
    reason: str,
    before: dict,
    after: dict,
    request_id: str,
) -> None:
    await session.execute(
        insert(AuditEntry)
        .values(
            action_key=action_key,
            actor=actor,
            action=action,
            order_id=order_id,
            reason=reason,
            before=before,
            after=after,
            request_id=request_id,
        )
        .on_conflict_do_nothing(index_elements=[AuditEntry.action_key])
    )


async def of_order(session: AsyncSession, order_id: str, limit: int) -> list[AuditEntry]:
    """The order's first `limit` entries, oldest first."""
    return list(
        await session.scalars(
            select(AuditEntry)
            .where(AuditEntry.order_id == order_id)
            .order_by(AuditEntry.id)
            .limit(limit)
        )
    )
