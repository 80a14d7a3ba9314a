"""One refund as one durable workflow (id `refund-<refund_id>`).

Reserve the amount within the cap, ask the gateway (the refund id is its idempotency key, so
a retried call never refunds twice), then wait for the gateway to settle it: its callback
arrives as a signal, and while none comes the workflow asks the gateway itself, backing off
from seconds to an hour. On success the refund is recorded everywhere in one database
transaction; on a permanent failure the reservation is released and support finds the
refund by `RefundStatus = 'failed'`.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, FailureError

from workflows.steps import (
    GATEWAY_CALL,
    GATEWAY_RETRY,
    db_step,
    failure_message,
    notify_storefront,
)

with workflow.unsafe.imports_passed_through():
    from activities.refunds import RefundActivities
    from kassa.contracts import (
        SA_ORDER_ID,
        SA_PAYMENT_STATUS,
        SA_REFUND_STATUS,
        PaymentEvent,
        RefundEvent,
        RefundFailure,
        RefundInput,
        RefundStatus,
        RefundView,
        StorefrontEvent,
    )
    from kassa.money import format_amount

FIRST_CHECK = timedelta(seconds=10)
LAST_CHECK_INTERVAL = timedelta(hours=1)


@workflow.defn
class RefundWorkflow:
    @workflow.init
    def __init__(self, refund: RefundInput) -> None:
        self._refund = refund
        self._status = RefundStatus.PENDING
        self._failure: str | None = None
        self._reported: RefundStatus | None = None  # settled, says the gateway's callback

    @workflow.run
    async def run(self, refund: RefundInput) -> RefundView:
        workflow.upsert_search_attributes(
            [
                SA_ORDER_ID.value_set(refund.order_id),
                SA_REFUND_STATUS.value_set(str(self._status)),
                # Support lists stray captures by PaymentStatus = 'late_payment' and so on.
                *([SA_PAYMENT_STATUS.value_set(str(refund.stray))] if refund.stray else []),
            ]
        )
        try:
            if refund.stray:  # money no order keeps: book it, then give it back
                reserved = await db_step(
                    RefundActivities.record_stray_capture, refund, f"record the {refund.stray}"
                )
            else:
                reserved = await db_step(
                    RefundActivities.reserve_refund, refund, "reserve the amount"
                )
        except FailureError as err:  # a local activity's failure is not wrapped in ActivityError
            return await self._fail(f"refused: {failure_message(err)}", reserved=False)
        if reserved.status != RefundStatus.PENDING:
            # This refund id was settled before (a reset, a repeated start): never ask again.
            self._status, self._failure = reserved.status, reserved.failure_reason
            return self._view()

        shown = format_amount(refund.amount, refund.currency)
        workflow.set_current_details(f"Asking {refund.gateway} to refund {shown}")
        try:
            status = await workflow.execute_activity_method(
                RefundActivities.request_refund,
                refund,
                start_to_close_timeout=GATEWAY_CALL,
                retry_policy=GATEWAY_RETRY,
                summary=f"refund {shown} at the gateway",
            )
        except ActivityError as err:
            return await self._fail(f"the gateway refused the refund: {failure_message(err)}")

        interval = FIRST_CHECK
        while status == RefundStatus.PENDING:
            workflow.set_current_details(
                f"Waiting for {refund.gateway} to settle the refund of {shown} "
                f"(checked at {workflow.now():%Y-%m-%d %H:%M:%S} UTC; next check in {interval})"
            )
            try:
                await workflow.wait_condition(
                    lambda: self._reported is not None,
                    timeout=interval,
                    timeout_summary="refund status check",
                )
                status = self._reported
            except TimeoutError:
                try:
                    status = await workflow.execute_activity_method(
                        RefundActivities.refund_status,
                        refund,
                        start_to_close_timeout=GATEWAY_CALL,
                        schedule_to_close_timeout=LAST_CHECK_INTERVAL,
                        retry_policy=GATEWAY_RETRY,
                        summary="ask the gateway about the refund",
                    )
                except ActivityError:
                    pass  # an unanswered check decides nothing: wait and ask again
                interval = min(interval * 2, LAST_CHECK_INTERVAL)
            if (
                status == RefundStatus.PENDING
                and self._reported is None  # a callback in hand would be lost by continuing
                and workflow.info().is_continue_as_new_suggested()
            ):
                workflow.continue_as_new(refund)  # asking again is safe: same refund id

        if status == RefundStatus.FAILED:
            return await self._fail("the gateway could not pay the refund out")
        await db_step(RefundActivities.complete_refund, refund, "record the refund")
        self._set_status(RefundStatus.SUCCEEDED)
        workflow.set_current_details(f"Refunded {shown}")
        await self._notify()
        return self._view()

    @workflow.signal
    def refund_event(self, event: RefundEvent) -> None:
        """A verified gateway callback; the first settled status counts."""
        if self._reported is None and event.status != RefundStatus.PENDING:
            self._reported = event.status

    @workflow.signal
    def report(self, event: PaymentEvent) -> None:
        """Another report of the stray capture this refund gives back (signal-with-start
        makes every report land here, so two reports start one refund). Nothing to do: the
        refund is already under way."""

    @workflow.query
    def state(self) -> RefundView:
        return self._view()

    async def _fail(self, reason: str, reserved: bool = True) -> RefundView:
        if reserved:
            failure = RefundFailure(self._refund.refund_id, reason)
            await db_step(RefundActivities.fail_refund, failure, "release the reservation")
        self._failure = reason
        self._set_status(RefundStatus.FAILED)
        workflow.set_current_details(f"Refund failed: {reason}. Support decides what next.")
        await self._notify()
        return self._view()

    async def _notify(self) -> None:
        refund = self._refund
        await notify_storefront(
            StorefrontEvent(
                f"evt_{refund.refund_id}_{self._status}",
                f"refund.{self._status}",
                order=None,
                occurred_at=workflow.now(),
                refund=self._view(),
            )
        )

    def _set_status(self, status: RefundStatus) -> None:
        self._status = status
        workflow.upsert_search_attributes([SA_REFUND_STATUS.value_set(str(status))])

    def _view(self) -> RefundView:
        r = self._refund
        return RefundView(
            r.refund_id, r.order_id, self._status, r.amount, r.currency, r.reason, self._failure
        )
