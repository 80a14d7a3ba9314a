"""Idempotency-Key for POSTs: required, bound to one request body and the resource it made
(db/idempotency.py). A retry with the same key and body gets the original answer, marked
`Idempotent-Replayed: true`; the same key with another body is a 422."""

from __future__ import annotations

from typing import Annotated

from fastapi import Header, Response
from sqlalchemy.ext.asyncio import AsyncSession

from db import idempotency
from db.models import IdempotencyKey
from kassa.errors import IdempotencyKeyRequired, IdempotencyKeyReused
from kassa.statuses import Caller

IDEMPOTENCY_KEY = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Required, 1 to 255 characters: a retry with the same key and body is "
        "safe and gets the original answer (with `Idempotent-Replayed: true`).",
    ),
]


def require_idempotency_key(key: str | None) -> str:
    if not key or len(key) > 255:
        raise IdempotencyKeyRequired()
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
    bound, new = await idempotency.bind(session, caller, key, request_hash, order_id, refund_id)
    if bound.request_hash != request_hash or (refund_id is None) != (bound.refund_id is None):
        raise IdempotencyKeyReused(order_id=bound.order_id)
    if not new:
        response.headers["Idempotent-Replayed"] = "true"
    return bound
