"""The audit log of support's actions: insert and read, nothing else (the table refuses
UPDATE and DELETE itself). An action's row is keyed by `action_key`, so a repeated request
(a retry, a replay) records the action once."""

from __future__ import annotations

from dataclasses import asdict

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import AuditEntry
from kassa.contracts import AuditRecord


async def record(session: AsyncSession, entry: AuditRecord) -> None:
    await session.execute(
        insert(AuditEntry)
        .values(**asdict(entry))
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
