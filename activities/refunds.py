"""Refunds: reserve within the cap, ask the gateway (idempotent by refund id), and on success
record it everywhere at once: refund row, order amounts and status, ledger, entitlements."""

from __future__ import annotations

from sqlalchemy import case, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.payments import gateway_named
from gateways.base import GatewayRejected, NewRefund, PaymentGateway
from kassa import ledger, refunds
from kassa.contracts import (
    OrderStatus,
    RefundFailure,
    RefundInput,
    RefundStatus,
    RefundView,
)
from kassa.models import Entitlement, Order, Refund, StrayCapture


def refund_view(refund: Refund) -> RefundView:
    return RefundView(
        refund.refund_id,
        refund.order_id,
        RefundStatus(refund.status),
        refund.amount,
        refund.currency,
        refund.reason,
        refund.failure_reason,
    )


class RefundActivities:
    def __init__(self, gateways: dict[str, PaymentGateway], sessions: async_sessionmaker) -> None:
        self._gateways = gateways
        self._sessions = sessions

    def _gateway(self, name: str) -> PaymentGateway:
        return gateway_named(self._gateways, name)

    @activity.defn
    async def reserve_refund(self, request: RefundInput) -> RefundView:
        """A no-op for refunds the API reserved already; compensation reserves here."""
        async with self._sessions.begin() as session:
            try:
                refund = await refunds.reserve(
                    session,
                    refund_id=request.refund_id,
                    order_id=request.order_id,
                    amount=request.amount,
                    reason=request.reason,
                    requested_by=request.requested_by,
                )
            except refunds.RefundRefused as err:
                raise ApplicationError(
                    err.message, type="RefundRefused", non_retryable=True
                ) from err
            return refund_view(refund)

    @activity.defn
    async def record_stray_capture(self, request: RefundInput) -> RefundView:
        """Book money no order keeps (gateway +, unallocated −) before giving it back."""
        async with self._sessions.begin() as session:
            await session.execute(
                insert(StrayCapture)
                .values(
                    payment_id=request.payment_id,
                    refund_id=request.refund_id,
                    order_id=request.order_id,
                    gateway=request.gateway,
                    kind=request.stray,
                    amount=request.amount,
                    currency=request.currency,
                    status=RefundStatus.PENDING,
                )
                .on_conflict_do_nothing(index_elements=[StrayCapture.payment_id])
            )
            stray = await session.get(StrayCapture, request.payment_id)
            await ledger.post_stray_capture(session, stray)
            return RefundView(
                request.refund_id,
                request.order_id,
                RefundStatus(stray.status),
                stray.amount,
                stray.currency,
                request.reason,
            )

    @activity.defn
    async def request_refund(self, request: RefundInput) -> RefundStatus:
        """Ask the gateway to refund; retried with the same refund id, never a second refund."""
        gateway = self._gateway(request.gateway)
        payment_id = request.payment_id
        if payment_id is None:  # the order's own: the payment it kept (a retry's, maybe)
            async with self._sessions() as session:
                payment_id = await session.scalar(
                    select(Order.gateway_payment_id).where(Order.order_id == request.order_id)
                )
        try:
            refund = await gateway.refund(
                NewRefund(
                    request.refund_id,
                    request.order_id,
                    request.amount,
                    request.currency,
                    request.reason,
                    payment_id,
                )
            )
        except GatewayRejected as err:
            raise ApplicationError(str(err), type="GatewayRejected", non_retryable=True) from err
        return refund.status

    @activity.defn
    async def refund_status(self, request: RefundInput) -> RefundStatus:
        return (await self._gateway(request.gateway).get_refund(request.refund_id)).status

    @activity.defn
    async def complete_refund(self, request: RefundInput) -> None:
        if request.stray:
            return await self._complete_stray_refund(request)
        async with self._sessions.begin() as session:
            refund = await session.scalar(
                update(Refund)
                .where(Refund.refund_id == request.refund_id)
                .where(Refund.status == RefundStatus.PENDING)
                .values(
                    status=RefundStatus.SUCCEEDED, completed_at=func.now(), updated_at=func.now()
                )
                .returning(Refund)
            )
            if refund is None:
                status = await session.scalar(
                    select(Refund.status).where(Refund.refund_id == request.refund_id)
                )
                if status == RefundStatus.SUCCEEDED:
                    return  # completed before: this is a retry
                raise ApplicationError(  # money moved for a refund we had written off
                    f"refund {request.refund_id} succeeded at the gateway but is {status} here",
                    type="RefundStateConflict",
                    non_retryable=True,
                )
            order = await session.scalar(
                update(Order)
                .where(Order.order_id == refund.order_id)
                .values(
                    refunded_amount=Order.refunded_amount + refund.amount,
                    status=case(
                        (
                            Order.refunded_amount + refund.amount >= Order.amount,
                            OrderStatus.REFUNDED,
                        ),
                        else_=OrderStatus.PARTIALLY_REFUNDED,
                    ),
                    updated_at=func.now(),
                )
                .returning(Order)
            )
            if order.status == OrderStatus.REFUNDED:
                # Access is counted per order: another purchase of the same SKU keeps it.
                await session.execute(
                    update(Entitlement)
                    .where(Entitlement.order_id == order.order_id)
                    .where(Entitlement.revoked_at.is_(None))
                    .values(revoked_at=func.now())
                )
            await ledger.post_refund(session, order, refund)

    async def _complete_stray_refund(self, request: RefundInput) -> None:
        async with self._sessions.begin() as session:
            stray = await session.scalar(
                update(StrayCapture)
                .where(StrayCapture.payment_id == request.payment_id)
                .where(StrayCapture.status == RefundStatus.PENDING)
                .values(status=RefundStatus.SUCCEEDED, refunded_at=func.now())
                .returning(StrayCapture)
            )
            if stray is not None:
                await ledger.post_stray_refund(session, stray)

    @activity.defn
    async def fail_refund(self, failure: RefundFailure) -> None:
        """Release the reservation; the order keeps its money and its status."""
        async with self._sessions.begin() as session:
            await session.execute(
                update(Refund)
                .where(Refund.refund_id == failure.refund_id)
                .where(Refund.status == RefundStatus.PENDING)
                .values(
                    status=RefundStatus.FAILED, failure_reason=failure.reason, updated_at=func.now()
                )
            )
            await session.execute(  # or a stray capture's refund: support takes over
                update(StrayCapture)
                .where(StrayCapture.refund_id == failure.refund_id)
                .where(StrayCapture.status == RefundStatus.PENDING)
                .values(status=RefundStatus.FAILED)
            )
