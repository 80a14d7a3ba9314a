"""Idempotency keys for POSTs: the durable guard is the (caller, key) primary key, which binds
a key to one request (by hash) and to the resource it made. No cache, no expiry."""

from __future__ import annotations

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import IdempotencyKey
from kassa.statuses import Caller


async def bind(
    session: AsyncSession,
    caller: Caller,
    key: str,
    request_hash: str,
    order_id: str,
    refund_id: str | None = None,
) -> tuple[IdempotencyKey, bool]:
    """Bind `key` to this request and these ids unless it is bound already; returns the
    binding as it stands and whether it is new."""
    new = await session.scalar(
        insert(IdempotencyKey)
        .values(
            caller=caller,
            key=key,
            request_hash=request_hash,
            order_id=order_id,
            refund_id=refund_id,
        )
        .on_conflict_do_nothing()
        .returning(IdempotencyKey.key)
    )
    return await session.get(IdempotencyKey, (str(caller), key)), new is not None
