"""POST /v1/webhooks/{gateway}: gateway callbacks (异步通知).

No API key: the gateway's signature instead. A callback that does not verify is refused
with 401 and changes nothing. A verified one is recorded in the payment_events inbox (one
row per gateway event id) and then signalled to its checkout, which ignores what no longer
applies. The signal is sent even for a recorded duplicate: the first delivery may have been
recorded and then failed to signal. Callbacks are rate limited per gateway and client address
(api/ratelimit.py).
"""

from __future__ import annotations

import json
from urllib.parse import parse_qsl

import structlog
from fastapi import APIRouter, Request, Response
from temporalio.service import RPCError

from api.deps import GatewaysDep, RateLimitsDep, SessionsDep, SettingsDep, TemporalDep
from api.problems import responses
from db import gateway_payments, orders, refunds
from gateways.base import PaymentWord
from kassa import errors
from kassa.contracts import PaymentEvent, RefundEvent, RefundInput
from kassa.settings import Settings
from kassa.statuses import PaymentOutcome
from kassa.strays import stray_kind
from orchestration import client as temporal_client

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
log = structlog.get_logger("webhooks")


@router.post(
    "/{gateway}",
    operation_id="receive_gateway_callback",
    responses=responses(
        errors.MalformedCallback,
        errors.InvalidSignature,
        errors.UnknownGateway,
        errors.BodyTooLarge,
        errors.RateLimited,
        errors.TemporalUnavailable,
    ),
    # Read as it came, for the signature: FastAPI does not parse it, the gateway's adapter does.
    openapi_extra={
        "requestBody": {
            "description": "The gateway's callback, signed as its protocol says (the sandbox: "
            "a `Sandbox-Signature` header); one that does not verify is a 401.",
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
async def receive_callback(
    gateway: str,
    request: Request,
    gateways: GatewaysDep,
    sessions: SessionsDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    rate_limits: RateLimitsDep,
) -> Response:
    adapter = gateways.get(gateway)
    if adapter is None:  # never echo the path (anyone may send anything): name what exists
        known = ", ".join(sorted(gateways)) or "none"
        raise errors.UnknownGateway(f"Callbacks are taken for: {known}")
    await rate_limits.take_callback(adapter.name, request.client.host if request.client else "-")
    body = await request.body()
    try:
        event = adapter.parse_callback(request.headers, body)
    except errors.InvalidSignature as err:
        log.warning("callback refused", gateway=gateway, reason=str(err))
        raise
    except errors.MalformedCallback as err:
        log.warning("callback unreadable", gateway=gateway, reason=str(err))
        raise errors.MalformedCallback() from err  # the details stay in our log
    try:
        if isinstance(event, RefundEvent):
            await temporal_client.report_refund(temporal, event)
        elif isinstance(event, PaymentWord):
            await _report_payment(temporal, sessions, settings, adapter.name, event, body)
    except RPCError as err:
        raise errors.TemporalUnavailable() from err
    reply = adapter.callback_reply  # what the gateway must read to stop redelivering
    return Response(reply.body, media_type=reply.media_type)


async def _report_payment(
    temporal, sessions, settings: Settings, gateway: str, word: PaymentWord, body: bytes
) -> None:
    """Whose payment the word is about (by its merchant reference), recorded in the inbox
    and handed to its checkout; once the checkout has ended, a capture it did not keep is
    given back."""
    async with sessions.begin() as session:
        found = await gateway_payments.find(session, gateway, word.merchant_order_id)
        if found is None:  # verified, but no payment of ours: nothing to act on
            log.warning("callback for an unknown payment", reference=word.merchant_order_id)
            return
        order_id, attempt = found
        event = PaymentEvent(
            gateway,
            word.event_id,
            order_id,
            word.payment_id,
            word.outcome,
            word.amount,
            word.currency,
            attempt,
        )
        await orders.record_callback(session, event, _as_record(body))
    delivered = await temporal_client.report_payment(temporal, event)
    if event.outcome == PaymentOutcome.SUCCEEDED:
        # Also when delivered: a checkout that has ended (or is ending) may no longer look
        # at it. Judged by the order row; a capture given back twice is given back once.
        await _report_stray(temporal, sessions, settings, event, delivered)


def _as_record(body: bytes) -> dict:
    """The callback as the inbox keeps it: a JSON body as it is, a form body as its fields."""
    try:
        return json.loads(body)
    except ValueError:
        return dict(parse_qsl(body.decode(errors="replace"), keep_blank_values=True))


async def _report_stray(
    temporal, sessions, settings: Settings, event: PaymentEvent, delivered: bool
) -> None:
    """A capture reported once its order has ended: unless it is the capture the order kept,
    it is a late or a second payment, and its own refund gives it back."""
    async with sessions() as session:
        order = await orders.get(session, event.order_id)  # its payment was opened: it exists
    if delivered and not order.status.is_final:
        return  # its checkout runs and judges it
    if not order.status.is_final and event.payment_id != order.gateway_payment_id:
        # No checkout runs, yet the order never ended (terminated by hand?): support decides.
        log.error(
            "capture for an order stuck in %s",
            order.status,
            order_id=order.order_id,
            payment_id=event.payment_id,
        )
    kind = stray_kind(order.status, order.gateway_payment_id, event)
    if kind is not None:
        refund = RefundInput.for_stray(event, order.gateway, kind, order.customer_id)
        async with sessions.begin() as session:
            await refunds.record_stray(session, refund)  # its refund refuses what is not
        await temporal_client.give_back(temporal, settings.task_queue, refund, event)
