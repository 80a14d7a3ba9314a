"""Idempotency-Key for POSTs: the durable guard is the (caller, key) primary key, which binds
a key to one request (by hash) and to the resource it made. No cache, no expiry."""

from __future__ import annotations

from typing import Annotated

from fastapi import Header, Response
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from api.problems import Problem
from kassa.contracts import Caller
from kassa.models import IdempotencyKey

IDEMPOTENCY_KEY = Annotated[
    str | None,
    Header(alias="Idempotency-Key", description="Required; retries with it are safe."),
]


def require_idempotency_key(key: str | None) -> str:
    if not key or len(key) > 255:
        raise Problem(
            400,
            "idempotency-key-required",
            "An Idempotency-Key header of 1 to 255 characters is required",
            field="Idempotency-Key",
        )
    return key


async def claim(
    session: AsyncSession,
    response: Response,
    caller: Caller,
    key: str,
    request_hash: str,
    order_id: str,
    refund_id: str | None = None,
) -> IdempotencyKey:
    """Bind `key` to this request and these ids, in the caller's transaction. A key seen
    before with the same request returns what it made then (and marks the answer replayed);
    with another request it is a 422."""
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
    bound = await session.get(IdempotencyKey, (str(caller), key))
    if bound.request_hash != request_hash or (refund_id is None) != (bound.refund_id is None):
        raise Problem(
            422,
            "idempotency-key-reused",
            "This Idempotency-Key was used with a different request",
            field="Idempotency-Key",
            order_id=bound.order_id,
        )
    if new is None:
        response.headers["Idempotent-Replayed"] = "true"
    return bound
