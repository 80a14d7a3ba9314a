"""Idempotency-Key for POSTs: required, bound to one request body and the resource it made
(db/idempotency.py). A retry with the same key and body gets the original answer, marked
`Idempotent-Replayed: true`; the same key with another body is a 422."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Header, Response
from sqlalchemy.ext.asyncio import AsyncSession

from db import idempotency
from db.models import IdempotencyKey
from kassa.errors import IdempotencyKeyRequired, IdempotencyKeyReused
from kassa.statuses import Caller

MAX_LENGTH = 255

# The route's OpenAPI (`openapi_extra`): the header is required there. FastAPI itself is not
# told, so that a request without it gets our 400 problem naming the header, not its 422.
OPENAPI: dict[str, Any] = {
    "parameters": [
        {
            "name": "Idempotency-Key",
            "in": "header",
            "required": True,
            "description": "A new key for each new request, 1 to 255 characters. A retry "
            "with the same key and body is safe: it gets the original answer again, marked "
            "`Idempotent-Replayed: true`; the same key with another body is a 422 "
            "`idempotency-key-reused`.",
            "schema": {"type": "string", "minLength": 1, "maxLength": MAX_LENGTH},
        }
    ]
}
REPLAYED_HEADER = {
    "Idempotent-Replayed": {
        "description": "`true` when this is the original answer to an earlier request "
        "with the same Idempotency-Key and body.",
        "schema": {"type": "string", "enum": ["true"]},
    }
}


def _idempotency_key(
    key: Annotated[str | None, Header(alias="Idempotency-Key", include_in_schema=False)] = None,
) -> str:
    if not key or len(key) > MAX_LENGTH:
        raise IdempotencyKeyRequired()
    return key


IdempotencyKeyDep = Annotated[str, Depends(_idempotency_key)]


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
