"""Dependencies the routers declare: settings, database session, Temporal client, caller."""

from __future__ import annotations

import hashlib
import logging
import uuid
from typing import Annotated

from fastapi import Depends, Header, Path, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import async_sessionmaker
from temporalio.client import Client

from api.ratelimit import RateLimits
from api.schemas import ID_PATTERN
from db import audit as audit_log
from db import orders
from db.models import Order
from gateways.base import PaymentGateway
from kassa.contracts import AuditRecord
from kassa.errors import OrderNotFound, SupportOnly, Unauthorized
from kassa.settings import Settings
from kassa.statuses import Authenticated, Caller

# Who did what: each action a key's holder takes, "support:alice cancels ord_…" (never a key).
audit = logging.getLogger("kassa.audit")


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _sessions(request: Request) -> async_sessionmaker:
    return request.app.state.sessions


def _temporal(request: Request) -> Client:
    return request.app.state.temporal


def _gateways(request: Request) -> dict[str, PaymentGateway]:
    return request.app.state.gateways


def _rate_limits(request: Request) -> RateLimits:
    return request.app.state.rate_limits


# Documents the scheme in the OpenAPI (Swagger's Authorize button, schemathesis' auth); it
# never answers itself: `_caller` reads the header and answers our own 401 problem.
_BEARER = HTTPBearer(
    auto_error=False, description="A storefront or a support API key: `Bearer <key>`."
)


def _caller(
    settings: Annotated[Settings, Depends(_settings)],
    _documented: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)],
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Authenticated:
    """The key's holder and role. Keys are configured as their SHA-256 (KASSA_API_KEYS):
    the presented key's hash is compared with every configured one in constant time."""
    scheme, _, key = (authorization or "").partition(" ")
    if scheme.lower() == "bearer" and key and (found := settings.holder_of(key)) is not None:
        return Authenticated(Caller(found.role), found.holder)
    raise Unauthorized("Send `Authorization: Bearer <key>` with a storefront or a support key.")


async def _within_rate_limit(
    caller: Annotated[Authenticated, Depends(_caller)],
    rate_limits: Annotated[RateLimits, Depends(_rate_limits)],
) -> Authenticated:
    """The caller, once its request is counted against its holder's rate limit (else 429)."""
    await rate_limits.take_caller(caller)
    return caller


authenticates = _caller  # the dependency of every route that asks for a key (api/openapi.py)

# Ids in paths obey the same rules as in bodies (anything else cannot exist): a 422 names them.
OrderIdPath = Annotated[str, Path(min_length=1, max_length=64, pattern=ID_PATTERN)]
RefundIdPath = Annotated[str, Path(min_length=1, max_length=64, pattern=ID_PATTERN)]

SettingsDep = Annotated[Settings, Depends(_settings)]
SessionsDep = Annotated[async_sessionmaker, Depends(_sessions)]
TemporalDep = Annotated[Client, Depends(_temporal)]
GatewaysDep = Annotated[dict[str, PaymentGateway], Depends(_gateways)]
CallerDep = Annotated[Authenticated, Depends(_within_rate_limit)]  # every key is rate limited
RateLimitsDep = Annotated[RateLimits, Depends(_rate_limits)]


def _support(caller: CallerDep) -> Authenticated:
    if caller.role != Caller.SUPPORT:
        raise SupportOnly()
    return caller


SupportDep = Annotated[Authenticated, Depends(_support)]
support_only = _support  # for a route that needs support's key but not the caller (/metrics)


# A caller's request id (a proxy's, a support tool's) ties an audit row to their logs.
REQUEST_ID_PATTERN = r"^[A-Za-z0-9._:/+=-]+$"


def _request_id(
    x_request_id: Annotated[
        str | None,
        Header(
            alias="X-Request-ID",
            min_length=1,
            max_length=128,
            pattern=REQUEST_ID_PATTERN,
            description="Recorded with support's actions in the audit log; generated if absent.",
        ),
    ] = None,
) -> str:
    return x_request_id or f"req_{uuid.uuid4().hex}"


RequestIdDep = Annotated[str, Depends(_request_id)]


def per_request(action: str, subject: str, request_id: str) -> str:
    """The audit key of an action every request does anew (a redelivery, a reconciliation):
    a retried request (the same X-Request-ID) writes one row. The request id is digested,
    so the key fits its column whatever the lengths of the subject and the request id."""
    return f"{action}:{subject}:{hashlib.sha256(request_id.encode()).hexdigest()[:32]}"


async def record_support_action(
    sessions,
    caller: Authenticated,
    action: str,
    key: str,
    order_id: str,
    reason: str,
    before: dict,
    after: dict,
    request_id: str,
) -> None:
    """One audit row for one support action (`key` names the action: its repeats, retried
    or replayed, add none)."""
    async with sessions.begin() as session:
        entry = AuditRecord(key, caller.who, action, order_id, reason, before, after, request_id)
        await audit_log.record(session, entry)


async def find_order(sessions, order_id: str) -> Order:
    """The order as it stands now, or a 404. A short session of its own: no connection is
    held while a route waits on Temporal."""
    async with sessions() as session:
        order = await orders.get(session, order_id)
    if order is None:
        raise OrderNotFound(f"No order {order_id}")
    return order
