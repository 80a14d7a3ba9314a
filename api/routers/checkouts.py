"""POST /v1/checkouts: start a purchase and answer with the gateway's payment page.

Idempotency has two durable guards: the (caller, Idempotency-Key) row maps a key to one
request body and one order id, and the workflow id `checkout-<order_id>` (conflict policy
USE_EXISTING, reuse policy REJECT_DUPLICATE) makes a repeated start attach to the running
checkout instead of creating a second one.
"""

from __future__ import annotations

import hashlib
import uuid

from fastapi import APIRouter, Response
from temporalio.client import WorkflowUpdateFailedError

from api import idempotency
from api.deps import CallerDep, GatewaysDep, SessionsDep, SettingsDep, TemporalDep
from api.idempotency import REPLAYED_HEADER, IdempotencyKeyDep
from api.problems import invalid, responses
from api.schemas import CheckoutIn, CheckoutOut
from db import orders
from kassa import errors
from kassa.contracts import CheckoutInput, CheckoutView
from kassa.settings import Settings
from orchestration.client import CheckoutAlreadyEnded, start_checkout
from orchestration.seal import sealed

router = APIRouter(prefix="/v1", tags=["checkouts"])


@router.post(
    "/checkouts",
    status_code=201,
    response_model=CheckoutOut,
    operation_id="create_checkout",
    responses={
        201: {"description": "The checkout, with its payment page", "headers": REPLAYED_HEADER},
        **responses(
            errors.IdempotencyKeyRequired,
            errors.OrderIdConflict,
            errors.IdempotencyKeyReused,
            errors.CheckoutFailed,
            errors.CheckoutPending,
            errors.TemporalUnavailable,
        ),
    },
    openapi_extra=idempotency.OPENAPI,
)
async def create_checkout(
    body: CheckoutIn,
    caller: CallerDep,
    key: IdempotencyKeyDep,
    response: Response,
    settings: SettingsDep,
    sessions: SessionsDep,
    temporal: TemporalDep,
    gateways: GatewaysDep,
) -> CheckoutOut:
    """Start a purchase: the order, the risk check, and the gateway's payment page, in one
    call. A rejected order (risk) is a 201 too, with `status` `rejected` and `reason_code`
    `risk_rejected`; a payment that could not be opened, `failed` and `payment_failed`."""
    expires_in = _check_bounds(body, settings, gateways)
    # The database first: once Temporal's retention has passed, it alone remembers an order
    # id, and starting would make a second checkout under it.
    existing = None
    if body.order_id is not None:
        async with sessions() as session:
            existing = await orders.get(session, body.order_id)
        wanted = body.to_checkout_input(body.order_id, expires_in, settings)
        if existing is not None and not orders.same_contents(existing, wanted):
            raise errors.OrderIdConflict(
                f"Order {body.order_id} already exists with different contents",
                order_id=body.order_id,
            )

    request_hash = hashlib.sha256(body.model_dump_json().encode()).hexdigest()
    async with sessions.begin() as session:
        bound = await idempotency.claim(
            session,
            response,
            caller.role,
            key,
            request_hash,
            body.order_id or f"ord_{uuid.uuid4().hex}",
        )
    order_id = bound.order_id

    if existing is not None and existing.status.is_final:
        return CheckoutOut.of(orders.as_view(existing))  # its checkout no longer runs
    checkout = body.to_checkout_input(order_id, expires_in, settings)
    view = await _start(temporal, sessions, settings, checkout)
    async with sessions() as session:
        order = await orders.get(session, order_id)
    if order is None or not orders.same_contents(order, checkout):
        raise errors.OrderIdConflict(
            f"Order {order_id} already exists with different contents", order_id=order_id
        )
    return CheckoutOut.of(view)


def _check_bounds(body: CheckoutIn, settings: Settings, gateways: dict) -> int:
    """The limits that come from settings; returns the payment window in seconds."""
    wrong = []
    if body.gateway not in gateways:
        wrong.append(("gateway", f"unknown gateway; use one of {sorted(gateways)}"))
    elif (taken := gateways[body.gateway].currencies) is not None and body.currency not in taken:
        wrong.append(("currency", f"{body.gateway} takes only {', '.join(sorted(taken))}"))
    if len(body.items) > settings.max_items:
        wrong.append(("items", f"at most {settings.max_items} items"))
    for n, item in enumerate(body.items):
        if item.quantity > settings.max_quantity:
            wrong.append((f"items[{n}].quantity", f"at most {settings.max_quantity}"))
        if item.unit_amount > settings.max_unit_amount:
            wrong.append((f"items[{n}].unit_amount", f"at most {settings.max_unit_amount}"))
    expires_in = (
        settings.expires_in_default if body.expires_in_seconds is None else body.expires_in_seconds
    )
    if not settings.expires_in_min <= expires_in <= settings.expires_in_max:
        wrong.append(
            (
                "expires_in_seconds",
                f"between {settings.expires_in_min} and {settings.expires_in_max}",
            )
        )
    if wrong:
        raise invalid([{"field": f, "message": m} for f, m in wrong])
    return expires_in


async def _start(temporal, sessions, settings: Settings, checkout: CheckoutInput) -> CheckoutView:
    try:
        return await start_checkout(
            temporal,
            sealed(settings, checkout),  # the worker creates orders for sealed checkouts only
            settings.task_queue,
            settings.checkout_start_timeout_seconds,
        )
    except CheckoutAlreadyEnded as err:
        async with sessions() as session:
            order = await orders.get(session, checkout.order_id)
        if order is None:
            raise errors.OrderIdConflict("This order id is taken") from err
        return orders.as_view(order)
    except TimeoutError as err:
        raise errors.CheckoutPending() from err
    except WorkflowUpdateFailedError as err:
        raise errors.CheckoutFailed(f"The checkout could not start: {err.cause}") from err
