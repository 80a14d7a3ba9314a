"""Support's actions on an order (the support key only): read it with the details behind
its reason codes, read its ledger and its audit log, decide on a held payment, send a
storefront webhook again. Refunds outside the
storefront's window go through the refunds route with the support key."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from temporalio.service import RPCError

from api.deps import (
    OrderIdPath,
    RequestIdDep,
    SessionsDep,
    SettingsDep,
    SupportDep,
    TemporalDep,
    audit,
    find_order,
    per_request,
    record_support_action,
)
from api.problems import responses
from api.schemas import (
    CURSOR_PATTERN,
    AuditEntryOut,
    AuditLogOut,
    LedgerPageOut,
    LedgerTransactionOut,
    ReconcileIn,
    ReconcileOut,
    RedeliverIn,
    RedeliveryOut,
    ReviewIn,
    SupportOrderOut,
)
from db import audit as audit_log
from db import ledger, refunds, webhooks
from kassa import errors
from kassa.contracts import Redelivery, ReviewDecision
from kassa.settings import MAX_LISTED
from orchestration.client import ask_checkout, start_reconcile_order, start_redelivery

router = APIRouter(prefix="/v1/orders", tags=["support"])


@router.get(
    "/{order_id}/details",
    response_model=SupportOrderOut,
    operation_id="get_order_details",
    responses=responses(errors.SupportOnly, errors.OrderNotFound),
)
async def get_order_details(
    order_id: OrderIdPath, caller: SupportDep, sessions: SessionsDep
) -> SupportOrderOut:
    """The order as the storefront sees it, with what happened in full: `reason_detail`
    (risk thresholds, notes, the gateway's own errors) and each refund's reason and
    `failure_detail`."""
    return await _details(sessions, order_id)


@router.get(
    "/{order_id}/ledger",
    response_model=LedgerPageOut,
    operation_id="get_order_ledger",
    responses=responses(errors.SupportOnly, errors.OrderNotFound, errors.LedgerTransactionNotFound),
)
async def get_order_ledger(
    order_id: OrderIdPath,
    caller: SupportDep,
    sessions: SessionsDep,
    limit: Annotated[
        int, Query(ge=1, le=MAX_LISTED, description=f"Transactions per page, at most {MAX_LISTED}.")
    ] = MAX_LISTED,
    starting_after: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=160,
            pattern=CURSOR_PATTERN,
            description="The `key` of the last transaction of the page before.",
        ),
    ] = None,
) -> LedgerPageOut:
    """The order's ledger transactions, oldest first, a page at a time."""
    await find_order(sessions, order_id)
    async with sessions() as session:
        after = 0
        if starting_after is not None:
            after = await ledger.transaction_of(session, order_id, starting_after)
            if after is None:  # it names something that is not there, like an unknown id
                raise errors.LedgerTransactionNotFound(
                    "starting_after is not the key of a transaction of this order"
                )
        rows, has_more = await ledger.of_order(session, order_id, limit, after)
    return LedgerPageOut(transactions=LedgerTransactionOut.of_rows(rows), has_more=has_more)


@router.post(
    "/{order_id}/review",
    response_model=SupportOrderOut,
    operation_id="review_held_payment",
    responses=responses(
        errors.SupportOnly,
        errors.OrderNotFound,
        errors.NotOnHold,
        errors.CheckoutEnded,
        errors.CannotAccept,
        errors.ReviewPending,
        errors.TemporalUnavailable,
    ),
)
async def review_held_payment(
    order_id: OrderIdPath,
    body: ReviewIn,
    caller: SupportDep,
    sessions: SessionsDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    request_id: RequestIdDep,
) -> SupportOrderOut:
    """Decide on a payment held because it did not match its order (another amount or
    currency). `refund` (the default): the money goes back by its own refund and the order
    ends `failed`. `accept`, for more than the order's amount in its currency: the excess
    goes back and the order is fulfilled. The first decision stands."""
    before = await find_order(sessions, order_id)
    audit.info("%s decides %s on order %s", caller.who, body.decision, order_id)
    decision = ReviewDecision(body.note, caller.who, accept=body.decision == "accept")
    view = await ask_checkout(
        temporal,
        order_id,
        "review",
        decision,
        update_id="review",
        pending=errors.ReviewPending,
        wait_seconds=settings.checkout_start_timeout_seconds,
    )
    if view is None:
        raise errors.NotOnHold("No checkout is waiting for a decision on this order")
    await record_support_action(
        sessions,
        caller,
        "review",
        f"review:{order_id}",  # the first decision stands: one row
        order_id,
        decision.note,
        {"status": before.status},
        {"status": view.status, "decision": body.decision},
        request_id,
    )
    return await _details(sessions, order_id)


@router.get(
    "/{order_id}/audit",
    response_model=AuditLogOut,
    operation_id="get_order_audit_log",
    responses=responses(errors.SupportOnly, errors.OrderNotFound),
)
async def get_order_audit_log(
    order_id: OrderIdPath, caller: SupportDep, sessions: SessionsDep
) -> AuditLogOut:
    """What support did to the order, oldest first (at most 100, then `has_more`): who,
    what, why, the order's status before and after, the request's id."""
    await find_order(sessions, order_id)
    async with sessions() as session:
        rows = await audit_log.of_order(session, order_id, MAX_LISTED + 1)
    return AuditLogOut(
        entries=[AuditEntryOut.of(row) for row in rows[:MAX_LISTED]],
        has_more=len(rows) > MAX_LISTED,
    )


async def _details(sessions, order_id: str) -> SupportOrderOut:
    order = await find_order(sessions, order_id)
    async with sessions() as session:
        return SupportOrderOut.of(order, await refunds.of_order(session, order_id, MAX_LISTED + 1))


@router.post(
    "/{order_id}/webhooks/redeliver",
    status_code=202,
    response_model=RedeliveryOut,
    operation_id="redeliver_webhook",
    responses=responses(
        errors.SupportOnly,
        errors.OrderNotFound,
        errors.WebhookNotFound,
        errors.TemporalUnavailable,
    ),
)
async def redeliver_webhook(
    order_id: OrderIdPath,
    body: RedeliverIn,
    caller: SupportDep,
    sessions: SessionsDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    request_id: RequestIdDep,
) -> RedeliveryOut:
    """Send one of the order's storefront webhooks again (`event_id`; default: its last),
    as first sent: same id and body, so a storefront that has it drops the repeat. Retried
    for a day; the same request again (same `X-Request-ID`) sends it once."""
    order = await find_order(sessions, order_id)
    async with sessions() as session:
        if body.event_id is None:
            webhook = await webhooks.latest_of_order(session, order_id)
        else:
            webhook = await webhooks.get(session, body.event_id)
    if webhook is None or webhook.order_id != order_id:
        raise errors.WebhookNotFound(f"No webhook {body.event_id or ''} of order {order_id}")
    audit.info("%s redelivers webhook %s of order %s", caller.who, webhook.event_id, order_id)
    redelivery = Redelivery(webhook.event_id, order_id)
    try:
        await start_redelivery(temporal, settings.task_queue, redelivery, request_id)
    except RPCError as err:
        raise errors.TemporalUnavailable() from err
    await record_support_action(
        sessions,
        caller,
        "redeliver_webhook",
        per_request("redeliver", webhook.event_id, request_id),  # every request its own
        order_id,
        body.reason,
        {"status": order.status},
        {"status": order.status, "event_id": webhook.event_id, "type": webhook.type},
        request_id,
    )
    return RedeliveryOut(
        order_id=order_id,
        event_id=webhook.event_id,
        type=webhook.type,
        workflow_id=f"redeliver-{webhook.event_id}-{request_id}",
    )


@router.post(
    "/{order_id}/reconcile",
    status_code=202,
    response_model=ReconcileOut,
    operation_id="reconcile_order",
    responses=responses(errors.SupportOnly, errors.OrderNotFound, errors.TemporalUnavailable),
)
async def reconcile_order(
    order_id: OrderIdPath,
    body: ReconcileIn,
    caller: SupportDep,
    sessions: SessionsDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    request_id: RequestIdDep,
) -> ReconcileOut:
    """Run reconciliation for this order now: every capture at its gateway against what the
    order kept (a stray is given back), and, if it is unpaid and its checkout no longer runs
    (terminated in Temporal), its payments closed and the order ended. Changes nothing for
    an order whose checkout runs, or whose money is where it should be."""
    order = await find_order(sessions, order_id)
    audit.info("%s reconciles order %s", caller.who, order_id)
    try:
        workflow_id = await start_reconcile_order(
            temporal, settings.task_queue, order_id, request_id
        )
    except RPCError as err:
        raise errors.TemporalUnavailable() from err
    await record_support_action(
        sessions,
        caller,
        "reconcile",
        per_request("reconcile", order_id, request_id),
        order_id,
        body.reason,
        {"status": order.status},
        {"status": order.status, "workflow_id": workflow_id},
        request_id,
    )
    return ReconcileOut(order_id=order_id, workflow_id=workflow_id)
