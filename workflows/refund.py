"""One refund as one durable workflow (id `refund-<refund_id>`); how other workflows start one
is in workflows/refunding.py.

Kassa reserves the amount within the cap before the workflow starts (the API the refunds it
is asked for, the checkout its compensation; a stray capture is recorded and booked). The
workflow checks that reservation, refusing one started from outside Kassa, asks the gateway
(the refund id is its idempotency key, so a retried call never refunds twice), then waits
for the gateway to settle it: a callback makes it ask the gateway at once, and while none
comes it asks anyway, backing off from seconds to an hour. On success the refund is recorded
everywhere in one database transaction; on a permanent failure the reservation is released
and support finds the refund by `NeedsAttention = 'refund_failed'`. Its search attributes
(OrderId, CustomerId, AmountMinor, Currency, Gateway, RefundKind, RefundStatus) say whose
and what; its reason, free text, is only in its details.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, FailureError

from workflows.steps import (
    GATEWAY_CALL,
    GATEWAY_RETRY,
    ask_gateway,
    attention,
    db_step,
    failure_message,
    gave_up_in_time,
    notify_storefront,
    resolved,
    show,
    wait_for_word,
)

with workflow.unsafe.imports_passed_through():
    from activities.refunds import RefundActivities
    from kassa import search
    from kassa.contracts import (
        REFUND_WORKFLOW,
        PaymentEvent,
        RefundEvent,
        RefundFailure,
        RefundInput,
        RefundView,
        StorefrontEvent,
    )
    from kassa.money import format_amount
    from kassa.reasons import ReasonCode
    from kassa.search import NeedsAttention
    from kassa.statuses import RefundStatus

FIRST_CHECK = timedelta(seconds=10)
CONFIRM_WITHIN = timedelta(minutes=1)  # an unanswered confirmation: the next check asks again
LAST_CHECK_INTERVAL = timedelta(hours=1)
# Asking the gateway for the refund has kept failing this long: support looks (it goes on).
REQUEST_ALERT = timedelta(minutes=10)
# Still not settled after this long: someone has to act (the gateway, the buyer's bank).
SETTLE_ALERT = timedelta(days=1)


@workflow.defn(name=REFUND_WORKFLOW)
class RefundWorkflow:
    @workflow.init
    def __init__(self, refund: RefundInput) -> None:
        self._refund = refund
        self._status = RefundStatus.PENDING
        self._failure_code: ReasonCode | None = None  # what the storefront is told, and
        self._failure: str | None = None  # the detail, support's
        self._settled: RefundStatus | None = None  # the gateway's word, asked (maybe on a callback)
        self._asked = False  # the gateway was asked for the refund
        self._confirming = False

    @workflow.run
    async def run(self, refund: RefundInput) -> RefundView:
        """A cancellation in Temporal does not stop a refund: Kassa decided it and reserved
        it (the storefront was told 202, a checkout may wait on it), and once the gateway was
        asked it cannot be taken back. So the refund runs as a shielded task of its own and
        ends as it would have; the cancellation is only noted in the details."""
        story = asyncio.create_task(self._story(refund))
        while True:
            try:
                return await asyncio.shield(story)
            except asyncio.CancelledError:
                if story.done():
                    raise
                workflow.set_current_details(
                    "A cancellation in Temporal does not stop a refund Kassa decided; it goes on"
                )

    async def _story(self, refund: RefundInput) -> RefundView:
        show(
            search.ORDER_ID.value_set(refund.order_id),
            search.REFUND_STATUS.value_set(str(self._status)),
            # Support lists stray captures by RefundKind = 'late_payment' and so on.
            search.REFUND_KIND.value_set(refund.kind),
            search.AMOUNT_MINOR.value_set(refund.amount),
            search.CURRENCY.value_set(refund.currency),
            search.GATEWAY.value_set(refund.gateway),
            *([search.CUSTOMER_ID.value_set(refund.customer_id)] if refund.customer_id else []),
        )
        try:
            reserved = await db_step(
                RefundActivities.check_reservation, refund, "check the reservation"
            )
        except FailureError as err:  # a local activity's failure is not wrapped in ActivityError
            return await self._fail(
                ReasonCode.REFUND_REFUSED, f"refused: {failure_message(err)}", reserved=False
            )
        if reserved.status != RefundStatus.PENDING:
            # This refund id was settled before (a reset, a repeated start): never ask again.
            self._status, self._failure = reserved.status, reserved.failure_reason
            self._failure_code = reserved.failure_code
            return self._view()

        shown = format_amount(refund.amount, refund.currency)
        # The reason is free text: here, in the encrypted details, never a search attribute.
        about = f"{shown} of order {refund.order_id} ({refund.reason})"
        workflow.set_current_details(f"Asking {refund.gateway} to refund {about}")
        while True:
            try:
                status = await workflow.execute_activity_method(
                    RefundActivities.request_refund,
                    refund,
                    start_to_close_timeout=GATEWAY_CALL,
                    schedule_to_close_timeout=REQUEST_ALERT,
                    retry_policy=GATEWAY_RETRY,
                    summary=f"refund {shown} at the gateway",
                )
                break
            except ActivityError as err:
                if gave_up_in_time(err):  # unreachable: keep trying
                    show(attention(NeedsAttention.GATEWAY_UNREACHABLE))
                    workflow.set_current_details(
                        f"Asking {refund.gateway} to refund {about} keeps failing "
                        f"({failure_message(err)}); still trying"
                    )
                    continue
                return await self._fail(
                    ReasonCode.REFUND_FAILED,
                    f"the gateway refused the refund: {failure_message(err)}",
                )
        resolved(NeedsAttention.GATEWAY_UNREACHABLE)
        asked_at = workflow.now()
        if status != RefundStatus.PENDING:
            self._settled = status
        self._asked = True
        workflow.set_current_details(
            f"Waiting for {refund.gateway} to settle the refund of {about}"
        )

        async def ask(interval: timedelta) -> None:
            pending = workflow.now() - asked_at
            if pending >= SETTLE_ALERT:
                show(attention(NeedsAttention.REFUND_NEEDS_ACTION))
            workflow.set_current_details(
                f"Waiting for {refund.gateway} to settle the refund of {about} for "
                f"{pending // timedelta(hours=1)} h (checked at "
                f"{workflow.now():%Y-%m-%d %H:%M:%S} UTC; next check in {interval})"
            )
            answer = await ask_gateway(
                RefundActivities.refund_status, refund, "ask about the refund", LAST_CHECK_INTERVAL
            )
            if answer not in (None, RefundStatus.PENDING):
                self._settled = answer
            elif self._settled is None and workflow.info().is_continue_as_new_suggested():
                workflow.continue_as_new(refund)  # asking again is safe: same refund id

        await wait_for_word(
            lambda: self._settled is not None,
            ask,
            first=FIRST_CHECK,
            most=LAST_CHECK_INTERVAL,
            summary="the gateway's word on the refund",
        )
        if self._settled == RefundStatus.FAILED:
            return await self._fail(
                ReasonCode.REFUND_FAILED, "the gateway could not pay the refund out"
            )
        await db_step(RefundActivities.complete_refund, refund, "record the refund")
        self._set_status(RefundStatus.SUCCEEDED)
        workflow.set_current_details(f"Refunded {about}")
        await self._notify()
        return self._view()

    @workflow.signal
    async def refund_event(self, event: RefundEvent) -> None:
        """A gateway callback about the refund, taken as a hint: the gateway is asked, and
        only its answer settles the refund (a hand-typed signal moves no money and hides
        none). One that comes before the gateway was asked waits for the first check."""
        if self._settled is not None or not self._asked or self._confirming:
            return
        self._confirming = True
        try:
            answer = await ask_gateway(
                RefundActivities.refund_status,
                self._refund,
                "confirm the callback with the gateway",
                CONFIRM_WITHIN,
            )
        finally:
            self._confirming = False
        if self._settled is None and answer not in (None, RefundStatus.PENDING):
            self._settled = answer

    @workflow.signal
    def report(self, event: PaymentEvent) -> None:
        """Another report of the stray capture this refund gives back (signal-with-start
        makes every report land here, so two reports start one refund). Nothing to do: the
        refund is already under way."""

    @workflow.query
    def state(self) -> RefundView:
        return self._view()

    async def _fail(self, code: ReasonCode, reason: str, reserved: bool = True) -> RefundView:
        if reserved:
            failure = RefundFailure(self._refund.refund_id, code, reason)
            await db_step(RefundActivities.fail_refund, failure, "release the reservation")
        self._failure_code, self._failure = code, reason
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
        """The status, and what needs a human: a failed refund leaves the money with us."""
        self._status = status
        failed = NeedsAttention.REFUND_FAILED if status == RefundStatus.FAILED else None
        show(search.REFUND_STATUS.value_set(str(status)), attention(failed))

    def _view(self) -> RefundView:
        r = self._refund
        return RefundView(
            r.refund_id,
            r.order_id,
            self._status,
            r.amount,
            r.currency,
            r.reason,
            self._failure,
            self._failure_code,
            r.requested_by,
        )
