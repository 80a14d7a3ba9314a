"""POST /v1/webhooks/{gateway}: gateway callbacks (异步通知).

No API key: the gateway's signature instead. A callback that does not verify is refused
with 401 and changes nothing. A verified one is recorded in the payment_events inbox (one
row per gateway event id) and then signalled to its checkout, which ignores what no longer
applies. The signal is sent even for a recorded duplicate: the first delivery may have been
recorded and then failed to signal.
"""

from __future__ import annotations

import json

import structlog
from fastapi import APIRouter, Request
from sqlalchemy.dialects.postgresql import insert
from temporalio.service import RPCError, RPCStatusCode

from api.deps import GatewaysDep, SessionsDep, SettingsDep, TemporalDep
from api.problems import Problem
from gateways.base import InvalidSignature, MalformedCallback
from kassa import strays
from kassa.contracts import (
    OrderStatus,
    PaymentEvent,
    PaymentOutcome,
    RefundEvent,
    checkout_workflow_id,
    refund_workflow_id,
)
from kassa.models import Order, PaymentEventRecord
from kassa.settings import Settings
from workflows.checkout import CheckoutWorkflow
from workflows.refund import RefundWorkflow

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
log = structlog.get_logger("webhooks")


@router.post("/{gateway}", operation_id="receive_gateway_callback")
async def receive_callback(
    gateway: str,
    request: Request,
    gateways: GatewaysDep,
    sessions: SessionsDep,
    temporal: TemporalDep,
    settings: SettingsDep,
) -> dict:
    adapter = gateways.get(gateway)
    if adapter is None:
        raise Problem(404, "unknown-gateway", f"No gateway {gateway!r}", field="gateway")
    body = await request.body()
    try:
        event = adapter.parse_callback(request.headers, body)
    except InvalidSignature as err:
        log.warning("callback refused", gateway=gateway, reason=str(err))
        raise Problem(
            401,
            "invalid-signature",
            "The callback's signature does not verify",
            str(err),
            field="signature",
        ) from err
    except MalformedCallback as err:
        log.warning("callback unreadable", gateway=gateway, reason=str(err))
        raise Problem(
            400,
            "malformed-callback",
            "The callback's body is not what the gateway's protocol says",
            field="body",
        ) from err
    if event is None:
        return {"received": True}
    if isinstance(event, RefundEvent):
        await _signal(
            temporal, refund_workflow_id(event.refund_id), RefundWorkflow.refund_event, event
        )
        return {"received": True}

    async with sessions.begin() as session:
        await session.execute(
            insert(PaymentEventRecord)
            .values(
                gateway=event.gateway,
                event_id=event.event_id,
                order_id=event.order_id,
                outcome=event.outcome,
                payload=json.loads(body),
            )
            .on_conflict_do_nothing()
        )
    delivered = await _signal(
        temporal, checkout_workflow_id(event.order_id), CheckoutWorkflow.payment_event, event
    )
    if not delivered and event.outcome == PaymentOutcome.SUCCEEDED:
        await _report_stray(temporal, sessions, settings, event)
    return {"received": True}


async def _signal(temporal, workflow_id: str, signal, event) -> bool:
    """Signal a running workflow; False if none runs under that id."""
    try:
        await temporal.get_workflow_handle(workflow_id).signal(signal, event)
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise Problem(503, "temporal-unavailable", "Try again later") from err
        log.info(
            "callback for no running workflow", workflow_id=workflow_id, event_id=event.event_id
        )
        return False
    return True


async def _report_stray(temporal, sessions, settings: Settings, event: PaymentEvent) -> None:
    """A capture reported after its checkout ended: unless it is the capture the order kept,
    it is a late or a second payment, and its own refund gives it back."""
    async with sessions() as session:
        order = await session.get(Order, event.order_id)
    if order is None:
        log.warning(
            "capture for an unknown order", order_id=event.order_id, payment_id=event.payment_id
        )
        return
    if not OrderStatus(order.status).is_final and event.payment_id != order.gateway_payment_id:
        # No checkout runs, yet the order never ended (terminated by hand?): support decides.
        log.error(
            "capture for an order stuck in %s",
            order.status,
            order_id=order.order_id,
            payment_id=event.payment_id,
        )
    await strays.give_back(temporal, settings.task_queue, order, event)  # if it is a stray
