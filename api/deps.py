"""Dependencies the routers declare: settings, database session, Temporal client, caller."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Header, Path, Request
from sqlalchemy.ext.asyncio import async_sessionmaker
from temporalio.client import Client

from db import orders
from db.models import Order
from gateways.base import PaymentGateway
from kassa.errors import OrderNotFound, SupportOnly, Unauthorized
from kassa.settings import Settings
from kassa.statuses import Caller


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _sessions(request: Request) -> async_sessionmaker:
    return request.app.state.sessions


def _temporal(request: Request) -> Client:
    return request.app.state.temporal


def _gateways(request: Request) -> dict[str, PaymentGateway]:
    return request.app.state.gateways


def _caller(
    settings: Annotated[Settings, Depends(_settings)],
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Caller:
    scheme, _, key = (authorization or "").partition(" ")
    if scheme.lower() == "bearer" and key:
        for caller, expected in (
            (Caller.STOREFRONT, settings.storefront_api_key),
            (Caller.SUPPORT, settings.support_api_key),
        ):
            if hmac.compare_digest(key.encode(), expected.encode()):
                return caller
    raise Unauthorized("Send `Authorization: Bearer <key>` with the storefront or the support key.")


# Ids in paths obey the same rules as in bodies: anything else cannot exist, so 404.
_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
OrderIdPath = Annotated[str, Path(pattern=_ID_PATTERN)]
RefundIdPath = Annotated[str, Path(pattern=_ID_PATTERN)]

SettingsDep = Annotated[Settings, Depends(_settings)]
SessionsDep = Annotated[async_sessionmaker, Depends(_sessions)]
TemporalDep = Annotated[Client, Depends(_temporal)]
GatewaysDep = Annotated[dict[str, PaymentGateway], Depends(_gateways)]
CallerDep = Annotated[Caller, Depends(_caller)]


def _support(caller: CallerDep) -> Caller:
    if caller != Caller.SUPPORT:
        raise SupportOnly()
    return caller


SupportDep = Annotated[Caller, Depends(_support)]


async def find_order(sessions, order_id: str) -> Order:
    """The order as it stands now, or a 404. A short session of its own: no connection is
    held while a route waits on Temporal."""
    async with sessions() as session:
        order = await orders.get(session, order_id)
    if order is None:
        raise OrderNotFound(f"No order {order_id}")
    return order
