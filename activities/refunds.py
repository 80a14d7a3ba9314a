"""Refunds: reserve within the cap, ask the gateway (idempotent by refund id), and on success
record it everywhere at once: refund row, order amounts and status, ledger, entitlements."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import async_sessionmaker
from temporalio import activity

from activities.payments import gateway_named
from db import entitlements, orders, refunds
from db import ledger as books
from gateways.base import NewRefund, PaymentGateway
from kassa import ledger, metrics
from kassa.contracts import RefundFailure, RefundInput, RefundView
from kassa.errors import RefundStateConflict
from kassa.statuses import OrderStatus, RefundStatus


class RefundActivities:
    def __init__(self, gateways: dict[str, PaymentGateway], sessions: async_sessionmaker) -> None:
        self._gateways = gateways
        self._sessions = sessions

    def _gateway(self, name: str) -> PaymentGateway:
        return gateway_named(self._gateways, name)

    @activity.defn
    async def reserve_refund(self, request: RefundInput) -> RefundView:
        """Reserve a compensation within the cap, before its workflow starts (the API
        reserves the refunds it is asked for itself). A refusal (RefundRefused and its
        kinds) is permanent."""
        async with self._sessions.begin() as session:
            refund = await refunds.reserve(
                session,
                refund_id=request.refund_id,
                order_id=request.order_id,
                amount=request.amount,
                reason=request.reason,
                requested_by=request.requested_by,
            )
            return refunds.as_view(refund)

    @activity.defn
    async def record_stray_capture(self, request: RefundInput) -> RefundView:
        """Record and book money no order keeps, before the workflow that gives it back."""
        async with self._sessions.begin() as session:
            return refunds.as_stray_view(await refunds.record_stray(session, request), request)

    @activity.defn
    async def check_reservation(self, request: RefundInput) -> RefundView:
        """The refund workflow's first step: its reservation as it stands. A workflow
        started from outside Kassa, with no reservation or another amount, is refused
        (RefundNotReserved, permanent) before anything reaches the gateway."""
        async with self._sessions() as session:
            return await refunds.reservation(session, request)

    @activity.defn
    async def request_refund(self, request: RefundInput) -> RefundStatus:
        """Ask the gateway to refund; retried with the same refund id, never a second refund.
        The gateway refusing it (GatewayRejected) is permanent."""
        gateway, refund = await self._refund_at(request)
        return (await gateway.refund(refund)).status

    @activity.defn
    async def refund_status(self, request: RefundInput) -> RefundStatus:
        """How the gateway stands on the refund. One it does not know (its answer to the
        request was lost before it took it) is asked for again, under the same number."""
        gateway, refund = await self._refund_at(request)
        answer = await gateway.get_refund(refund.refund_no, refund.merchant_order_id)
        if answer.status is None:
            answer = await gateway.refund(refund)
        return answer.status

    async def _refund_at(self, request: RefundInput) -> tuple[PaymentGateway, NewRefund]:
        """The gateway, and the refund as it is asked there: of the capture the order kept
        (a retry's, maybe), or of a stray capture, under its payment's merchant reference."""
        gateway = self._gateway(request.gateway)
        payment_id, attempt = request.payment_id, request.attempt
        if payment_id is None or attempt is None:
            async with self._sessions() as session:
                order = await orders.get(session, request.order_id)
            payment_id = payment_id or order.gateway_payment_id
            attempt = attempt or order.payment_attempts
        refund = NewRefund(
            request.refund_id,
            gateway.reference(request.order_id, attempt),
            request.amount,
            request.currency,
            request.reason,
            payment_id,
        )
        return gateway, refund

    @activity.defn
    async def complete_refund(self, request: RefundInput) -> None:
        async with self._sessions.begin() as session:
            if request.stray:
                stray = await refunds.complete_stray(session, request.payment_id)
                if stray is not None:
                    posting = ledger.stray_refund(
                        stray.order_id,
                        stray.gateway,
                        stray.payment_id,
                        stray.amount,
                        stray.currency,
                    )
                    await books.post(session, posting)
                    metrics.REFUNDS.labels(str(RefundStatus.SUCCEEDED)).inc()
                return
            completed = await refunds.complete(session, request.refund_id)
            if completed is None:
                refund = await refunds.get(session, request.refund_id)
                if refund.status == RefundStatus.SUCCEEDED:
                    return  # completed before: this is a retry
                raise RefundStateConflict(
                    f"refund {request.refund_id} succeeded at the gateway but is "
                    f"{refund.status} here"
                )
            refund, order = completed
            if order.status == OrderStatus.REFUNDED:
                # Access is counted per order: another purchase of the same SKU keeps it.
                await entitlements.revoke(session, order.order_id)
            # The money came in by the capture: book it first if its step never did (it
            # failed for good, and this refund is the compensation). Normally a no-op.
            await books.post(
                session, ledger.capture(order.order_id, order.gateway, order.amount, order.currency)
            )
            posting = ledger.refund(
                order.order_id, order.gateway, refund.refund_id, refund.amount, refund.currency
            )
            await books.post(session, posting)
        metrics.REFUNDS.labels(str(RefundStatus.SUCCEEDED)).inc()

    @activity.defn
    async def fail_refund(self, failure: RefundFailure) -> None:
        """Release the reservation; the order keeps its money and its status."""
        async with self._sessions.begin() as session:
            failed = await refunds.fail(session, failure.refund_id, failure.code, failure.reason)
        if failed:
            metrics.REFUNDS.labels(str(RefundStatus.FAILED)).inc()
