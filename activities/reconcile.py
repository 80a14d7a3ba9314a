"""Reconciliation (对账): every capture at the gateways against what the orders kept. A late
or second payment whose callback never came (dropped, or the gateway gave up retrying) is
found here and given back by the same refund a callback would have started."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import async_sessionmaker
from temporalio import activity
from temporalio.client import Client

from db import gateway_payments, orders, refunds
from gateways.base import PaymentGateway, payments_of_order
from kassa.contracts import PaymentEvent, ReconcileReport, RefundInput
from kassa.ids import stray_refund_id
from kassa.settings import Settings
from kassa.statuses import RefundStatus
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
    async def reconcile(self, lookback_hours: int) -> ReconcileReport:
        """Compare the orders that ended in the last `lookback_hours` with their gateways.
        Safe to run at any time and as often as wanted: a capture reported twice is given
        back once."""
        since = datetime.now(UTC) - timedelta(hours=lookback_hours)
        async with self._sessions() as session:
            ended = await orders.ended_since(session, since)
            strays = await refunds.stray_payments(session)
            references = await gateway_payments.of_orders(session, [o.order_id for o in ended])
        found = []
        for order in ended:
            gateway = self._gateways.get(order.gateway)
            if gateway is None:
                continue
            payments = await payments_of_order(gateway, references[order.order_id])
            for attempt, payment in payments:
                if await self._given_back(strays.get(payment.payment_id), payment.payment_id):
                    continue
                event = PaymentEvent.answered(
                    order.gateway,
                    f"reconcile-{payment.payment_id}",
                    order.order_id,
                    attempt,
                    payment,
                )
                kind = stray_kind(order.status, order.gateway_payment_id, event)
                if kind is None:
                    continue
                refund = RefundInput.for_stray(event, order.gateway, kind, order.customer_id)
                async with self._sessions.begin() as session:
                    await refunds.record_stray(session, refund)
                if await temporal.give_back(
                    self._temporal, self._settings.task_queue, refund, event
                ):
                    found.append(payment.payment_id)
            activity.heartbeat(order.order_id)
        return ReconcileReport(len(ended), found, await self._resume_orphaned_refunds())

    async def _given_back(self, stray: tuple[RefundStatus, datetime] | None, payment_id: str):
        """Its refund runs or is over. A stray recorded a while ago whose refund never
        started (the process died in between) is given back again, by the same refund id."""
        if stray is None:
            return False
        status, recorded_at = stray
        if status != RefundStatus.PENDING or recorded_at > datetime.now(UTC) - ORPHANED_AFTER:
            return True
        return await temporal.refund_started(self._temporal, stray_refund_id(payment_id))

    async def _resume_orphaned_refunds(self) -> list[str]:
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
