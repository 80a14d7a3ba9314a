"""Reconciliation (对账): every capture at the gateways against what the orders kept. A late
or second payment whose callback never came (dropped, or the gateway gave up retrying) is
found here and given back by the same refund a callback would have started. An order left
unfinished by a checkout that no longer runs (terminated in the Temporal UI) is ended here:
its payments closed, any capture given back.

A pass goes a page of orders at a time (workflows/reconcile.py): each page is one activity,
retried on its own, and each gateway call in it is retried on its own (`patiently`), so one
flaky call costs one call, not the pass."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import async_sessionmaker
from temporalio import activity
from temporalio.client import Client

from db import gateway_payments, orders, refunds
from db.models import Order
from gateways.base import (
    GatewayError,
    GatewayPayment,
    PaymentGateway,
    patiently,
    payments_of_order,
)
from kassa.contracts import (
    PaymentEvent,
    ReconcileBatch,
    ReconcileBatchResult,
    RefundInput,
)
from kassa.errors import GatewayRejected
from kassa.ids import stray_refund_id
from kassa.reasons import ReasonCode
from kassa.settings import Settings
from kassa.statuses import OrderStatus, PaymentOutcome, RefundStatus
from kassa.strays import stray_kind
from orchestration import client as temporal

ORPHANED_AFTER = timedelta(minutes=5)  # an API request that reserved it has long given up


class ReconcileActivities:
    def __init__(
        self,
        temporal_client: Client,
        gateways: dict[str, PaymentGateway],
        sessions: async_sessionmaker,
        settings: Settings,
    ) -> None:
        self._temporal = temporal_client
        self._gateways = gateways
        self._sessions = sessions
        self._settings = settings

    @activity.defn
    async def reconcile_ended(self, batch: ReconcileBatch) -> ReconcileBatchResult:
        """Compare a page of the orders that ended since `batch.since` with their gateways.
        Safe to run at any time and as often as wanted: a capture reported twice is given
        back once."""
        async with self._sessions() as session:
            ended = await orders.ended_since(
                session, batch.since, batch.after, batch.limit, batch.order_id
            )
            ids = [o.order_id for o in ended]
            strays = await refunds.stray_payments(session, ids)
            references = await gateway_payments.of_orders(session, ids)
        found = []
        for order in ended:
            found += await self._give_back_strays(order, references[order.order_id], strays)
            activity.heartbeat(order.order_id)
        return ReconcileBatchResult(len(ended), ids[-1] if ids else None, found)

    @activity.defn
    async def close_abandoned(self, batch: ReconcileBatch) -> ReconcileBatchResult:
        """End a page of the orders left created or awaiting payment past the grace period
        whose checkout no longer runs (Temporal says so): close every attempt's gateway
        payment, end the order (expired once a payment was opened, else failed), and give
        back whatever was captured. Idempotent: a repeat finds the order ended and its
        captures given back already."""
        grace = timedelta(seconds=self._settings.reconcile_grace_seconds)
        async with self._sessions() as session:
            page = await orders.unfinished_before(
                session, datetime.now(UTC) - grace, batch.after, batch.limit, batch.order_id
            )
        closed, found, views = [], [], []
        for order in page:
            activity.heartbeat(order.order_id)
            if await temporal.checkout_runs(self._temporal, order.order_id):
                continue  # its checkout ends it (a long wait for a close, a slow worker)
            gateway = self._gateways.get(order.gateway)
            if gateway is None:
                continue  # a gateway no longer offered: support's (the ledger check says so)
            async with self._sessions() as session:
                references = (await gateway_payments.of_orders(session, [order.order_id]))[
                    order.order_id
                ]
            for _, reference in references:
                await _close(gateway, reference)
            ended = await self._end(order)
            if ended is None:
                continue  # something else ended it meanwhile: the ended pass compares it
            closed.append(order.order_id)
            views.append(orders.as_view(ended))
            async with self._sessions() as session:
                strays = await refunds.stray_payments(session, [order.order_id])
            found += await self._give_back_strays(ended, references, strays)
        return ReconcileBatchResult(
            len(page), page[-1].order_id if page else None, found, closed, views
        )

    async def _end(self, order: Order) -> Order | None:
        """The order ended as its checkout would have: expired once a payment was opened
        (and is now closed), failed when the checkout stopped before one was."""
        status, code = OrderStatus.FAILED, ReasonCode.PAYMENT_FAILED
        if order.status == OrderStatus.AWAITING_PAYMENT:
            status, code = OrderStatus.EXPIRED, ReasonCode.EXPIRED
        reason = (
            "its checkout stopped before it ended (terminated?); reconciliation closed "
            "its gateway payments and ended it"
        )
        async with self._sessions.begin() as session:
            return await orders.move(session, order.order_id, status, code, reason)

    async def _give_back_strays(
        self,
        order: Order,
        references: list[tuple[int, str]],
        strays: dict[str, tuple[RefundStatus, datetime]],
    ) -> list[str]:
        """Start the refund of every capture of the order's payments that it does not keep;
        the gateway payment ids of those started now."""
        gateway = self._gateways.get(order.gateway)
        if gateway is None:
            return []
        found = []
        for attempt, payment in await payments_of_order(gateway, references):
            if await self._given_back(strays.get(payment.payment_id), payment.payment_id):
                continue
            event = PaymentEvent.answered(
                order.gateway, f"reconcile-{payment.payment_id}", order.order_id, attempt, payment
            )
            kind = stray_kind(order.status, order.gateway_payment_id, event)
            if kind is None:
                continue
            refund = RefundInput.for_stray(event, order.gateway, kind, order.customer_id)
            async with self._sessions.begin() as session:
                await refunds.record_stray(session, refund)
            if await temporal.give_back(self._temporal, self._settings.task_queue, refund, event):
                found.append(payment.payment_id)
        return found

    async def _given_back(self, stray: tuple[RefundStatus, datetime] | None, payment_id: str):
        """Its refund runs or is over. A stray recorded a while ago whose refund never
        started (the process died in between) is given back again, by the same refund id."""
        if stray is None:
            return False
        status, recorded_at = stray
        if status != RefundStatus.PENDING or recorded_at > datetime.now(UTC) - ORPHANED_AFTER:
            return True
        return await temporal.refund_started(self._temporal, stray_refund_id(payment_id))

    @activity.defn
    async def resume_orphaned_refunds(self) -> list[str]:
        """Refunds the API reserved but never started (it died in between, and the client
        never retried): the reservation would hold the refund cap forever. Start them."""
        async with self._sessions() as session:
            pending = await refunds.pending_since(session, datetime.now(UTC) - ORPHANED_AFTER)
        resumed = []
        for refund, gateway in pending:
            if await temporal.refund_started(self._temporal, refund.refund_id):
                continue  # it runs (or ran): nothing to resume
            await temporal.start_refund(
                self._temporal, self._settings.task_queue, refunds.as_input(refund, gateway)
            )
            resumed.append(refund.refund_id)
        return resumed


async def _close(gateway: PaymentGateway, reference: str) -> GatewayPayment:
    """Close one gateway payment, retried on its own; a gateway that refuses the close
    (closed already, declined) is asked how the payment stands instead. Still payable
    afterwards is an error: the order must not end while the gateway may still capture."""
    try:
        closed = await patiently(lambda: gateway.close_payment(reference))
    except GatewayRejected:
        closed = await patiently(lambda: gateway.get_payment(reference))
    if closed.outcome in (PaymentOutcome.PENDING, PaymentOutcome.PROCESSING):
        raise GatewayError(f"{reference} still payable after the close: {closed.outcome}")
    return closed
