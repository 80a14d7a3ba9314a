"""POST /v1/checkouts: start a purchase and answer with the gateway's payment page.

Idempotency has two durable guards: the (caller, Idempotency-Key) row maps a key to one
request body and one order id, and the workflow id `checkout-<order_id>` (conflict policy
USE_EXISTING, reuse policy REJECT_DUPLICATE) makes a repeated start attach to the running
checkout instead of creating a second one.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import asdict

from fastapi import APIRouter, Response
from temporalio.client import WorkflowUpdateFailedError

from api import idempotency
from api.checkout_start import CheckoutAlreadyEnded, start_checkout
from api.deps import CallerDep, GatewaysDep, SessionsDep, SettingsDep, TemporalDep
from api.idempotency import IDEMPOTENCY_KEY, require_idempotency_key
from api.orders_view import order_as_checkout
from api.problems import Problem
from api.schemas import CheckoutIn, CheckoutOut
from kassa.contracts import (
    CheckoutInput,
    CheckoutView,
)
from kassa.models import Order
from kassa.settings import Settings

router = APIRouter(prefix="/v1", tags=["checkouts"])


@router.post(
    "/checkouts",
    status_code=201,
    response_model=CheckoutOut,
    operation_id="create_checkout",
    responses={
        409: {"description": "order_id already used for a different checkout"},
        422: {"description": "invalid body, or Idempotency-Key reused with another"},
        503: {"description": "the payment page is not ready yet; retry"},
    },
)
async def create_checkout(
    body: CheckoutIn,
    caller: CallerDep,
    response: Response,
    settings: SettingsDep,
    sessions: SessionsDep,
    temporal: TemporalDep,
    gateways: GatewaysDep,
    idempotency_key: IDEMPOTENCY_KEY = None,
) -> CheckoutOut:
    key = require_idempotency_key(idempotency_key)
    expires_in = _check_bounds(body, settings, gateways)

    request_hash = hashlib.sha256(body.model_dump_json().encode()).hexdigest()
    async with sessions.begin() as session:
        bound = await idempotency.claim(
            session, response, caller, key, request_hash, body.order_id or f"ord_{uuid.uuid4().hex}"
        )
    order_id = bound.order_id

    checkout = body.to_checkout_input(order_id, expires_in, settings)
    view = await _start(temporal, sessions, settings, checkout)
    async with sessions() as session:
        order = await session.get(Order, order_id)
    if order is None or (
        order.customer_id,
        order.items,
        order.currency,
        order.gateway,
        order.return_url,
    ) != (
        checkout.customer_id,
        [asdict(item) for item in checkout.items],
        checkout.currency,
        checkout.gateway,
        checkout.return_url,
    ):
        raise Problem(
            409,
            "order-id-conflict",
            f"Order {order_id} already exists with different contents",
            field="order_id",
            order_id=order_id,
        )
    return CheckoutOut.of(view)


def _check_bounds(body: CheckoutIn, settings: Settings, gateways: dict) -> int:
    """The limits that come from settings; returns the payment window in seconds."""
    errors = []
    if body.gateway not in gateways:
        errors.append(("gateway", f"unknown gateway; use one of {sorted(gateways)}"))
    if len(body.items) > settings.max_items:
        errors.append(("items", f"at most {settings.max_items} items"))
    for n, item in enumerate(body.items):
        if item.quantity > settings.max_quantity:
            errors.append((f"items[{n}].quantity", f"at most {settings.max_quantity}"))
        if item.unit_amount > settings.max_unit_amount:
            errors.append((f"items[{n}].unit_amount", f"at most {settings.max_unit_amount}"))
    expires_in = (
        settings.expires_in_default if body.expires_in_seconds is None else body.expires_in_seconds
    )
    if not settings.expires_in_min <= expires_in <= settings.expires_in_max:
        errors.append(
            (
                "expires_in_seconds",
                f"between {settings.expires_in_min} and {settings.expires_in_max}",
            )
        )
    if errors:
        field, message = errors[0]
        raise Problem(
            422,
            "validation-error",
            "The request is not valid",
            f"{field}: {message}",
            field=field,
            errors=[{"field": f, "message": m} for f, m in errors],
        )
    return expires_in


async def _start(temporal, sessions, settings: Settings, checkout: CheckoutInput) -> CheckoutView:
    try:
        return await start_checkout(
            temporal, checkout, settings.task_queue, settings.checkout_start_timeout_seconds
        )
    except CheckoutAlreadyEnded as err:
        async with sessions() as session:
            order = await session.get(Order, checkout.order_id)
        if order is None:
            raise Problem(
                409, "order-id-conflict", "This order id is taken", field="order_id"
            ) from err
        return order_as_checkout(order)
    except TimeoutError as err:
        raise Problem(
            503,
            "checkout-pending",
            "The payment page is not ready yet; retry with the same Idempotency-Key",
            headers={"Retry-After": "2"},
        ) from err
    except WorkflowUpdateFailedError as err:
        raise Problem(502, "checkout-failed", f"The checkout could not start: {err.cause}") from err
