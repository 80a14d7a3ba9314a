"""Reconciliation (对账): every capture at the gateways against what the orders kept. A late
or second payment whose callback never came (dropped, or the gateway gave up retrying) is
found here and given back by the same refund a callback would have started."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker
from temporalio import activity
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from gateways.base import PaymentGateway, payments_of_order
from kassa import refunds, strays
from kassa.contracts import (
    OrderStatus,
    PaymentEvent,
    ReconcileReport,
    RefundStatus,
    refund_workflow_id,
)
from kassa.models import Order, Refund, StrayCapture
from kassa.settings import Settings

ENDED = [status for status in OrderStatus if status.is_final]
ORPHANED_AFTER = timedelta(minutes=5)  # an API request that reserved it has long given up


class ReconcileActivities:
    def __init__(
        self,
        temporal: Client,
        gateways: dict[str, PaymentGateway],
        sessions: async_sessionmaker,
        settings: Settings,
    ) -> None:
        self._temporal = temporal
        self._gateways = gateways
        self._sessions = sessions
        self._settings = settings

    @activity.defn
    async def reconcile(self, lookback_hours: int) -> ReconcileReport:
        """Compare the orders that ended in the last `lookback_hours` with their gateways.
        Safe to run at any time and as often as wanted: a capture reported twice is given
        back once."""
        since = datetime.now(UTC) - timedelta(hours=lookback_hours)
        async with self._sessions() as session:
            orders = list(
                await session.scalars(
                    select(Order)
                    .where(Order.updated_at >= since)
                    .where(Order.status.in_(ENDED))
                    .where(Order.gateway_payment_id.is_not(None))
                    .order_by(Order.updated_at)
                )
            )
            known = set(await session.scalars(select(StrayCapture.payment_id)))
        found = []
        for order in orders:
            gateway = self._gateways.get(order.gateway)
            if gateway is None:
                continue
            payments = await payments_of_order(gateway, order.order_id, order.payment_attempts)
            for attempt, payment in payments:
                if payment.payment_id in known:
                    continue  # its refund runs or ran
                event = PaymentEvent(
                    order.gateway,
                    f"reconcile-{payment.payment_id}",
                    order.order_id,
                    payment.payment_id,
                    payment.outcome,
                    payment.amount,
                    payment.currency,
                    attempt,
                )
                if await strays.give_back(self._temporal, self._settings.task_queue, order, event):
                    found.append(payment.payment_id)
            activity.heartbeat(order.order_id)
        return ReconcileReport(len(orders), found, await self._resume_orphaned_refunds())

    async def _resume_orphaned_refunds(self) -> list[str]:
        """Refunds the API reserved but never started (it died in between, and the client
        never retried): the reservation would hold the refund cap forever. Start them."""
        async with self._sessions() as session:
            pending = list(
                await session.execute(
                    select(Refund, Order.gateway)
                    .join(Order, Order.order_id == Refund.order_id)
                    .where(Refund.status == RefundStatus.PENDING)
                    .where(Refund.created_at < datetime.now(UTC) - ORPHANED_AFTER)
                )
            )
        resumed = []
        for refund, gateway in pending:
            try:
                await self._temporal.get_workflow_handle(
                    refund_workflow_id(refund.refund_id)
                ).describe()
                continue  # it runs (or ran): nothing to resume
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise
            await refunds.start(self._temporal, self._settings.task_queue, refund, gateway)
            resumed.append(refund.refund_id)
        return resumed
