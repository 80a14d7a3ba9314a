"""One purchase, start to finish, as one durable workflow (id `checkout-<order_id>`).

The story: create the order, check risk, open the payment at the gateway, wait for the
buyer's payment (the gateway's callback arrives as a signal) or for the payment window to
close; on expiry or a cancel request close the gateway payment first, and if the buyer paid
in the meantime go on as paid; then mark paid, grant the entitlement, mark fulfilled, and
tell the storefront.

Round trips: the short database steps run as local activities inside the workflow task, so a
paid checkout costs four workflow tasks (start, payment opened, paid, storefront notified).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    FailureError,
    WorkflowAlreadyStartedError,
)
from temporalio.workflow import ParentClosePolicy

from workflows.refund import RefundWorkflow
from workflows.saga import Saga
from workflows.steps import (
    GATEWAY_CALL,
    GATEWAY_RETRY,
    db_step,
    failure_message,
    notify_storefront,
)

with workflow.unsafe.imports_passed_through():
    from activities.entitlements import EntitlementActivities
    from activities.invoices import InvoiceActivities
    from activities.orders import OrderActivities
    from activities.payments import PaymentActivities
    from activities.risk import RiskActivities
    from kassa.contracts import (
        SA_PAYMENT_STATUS,
        Caller,
        CancelRequest,
        CheckoutInput,
        CheckoutView,
        OpenPaymentInput,
        OrderRef,
        OrderStatus,
        PaymentEvent,
        PaymentOutcome,
        PaymentSession,
        RefundInput,
        RefundStatus,
        ReviewDecision,
        StatusChange,
        StorefrontEvent,
        StrayKind,
        checkout_workflow_id,
        compensation_refund_id,
        refund_workflow_id,
    )
    from kassa.money import format_amount

# Opening the payment must finish while the storefront's request still waits for the URL.
# Room for a retry after a worker died mid-call, well inside the shortest payment window.
OPEN_PAYMENT_DEADLINE = timedelta(seconds=45)


@workflow.defn
class CheckoutWorkflow:
    @workflow.init
    def __init__(self, checkout: CheckoutInput) -> None:
        self._checkout = checkout
        self._status = OrderStatus.CREATED
        self._reason: str | None = None
        self._session: PaymentSession | None = None
        self._outcome: PaymentOutcome | None = None  # the first decisive word from the gateway
        self._events_seen: set[str] = set()
        self._cancel: CancelRequest | None = None
        self._window_closed = False  # the gateway payment was closed unpaid
        self._strays: list[PaymentEvent] = []  # captures this order does not keep
        self._held: PaymentEvent | None = None  # a capture of another amount: support decides
        self._review: ReviewDecision | None = None
        self._attempt = 1  # which of the order's gateway payments is current
        self._awaiting_retry = False  # declined; the buyer may open another payment
        self._retry: int | None = None  # the attempt the buyer asked for, until it is open
        self._background: list[asyncio.Task] = []  # webhooks that must not hold the checkout
        self._accepted: str | None = None  # support kept a held payment: why

    @workflow.run
    async def run(self, checkout: CheckoutInput) -> CheckoutView:
        self._details("Creating the order and checking risk")
        await db_step(OrderActivities.create_order, checkout, "create the order")
        risk = await db_step(RiskActivities.check_risk, checkout, "risk check")
        if not risk.approved:
            return await self._finish(OrderStatus.REJECTED, risk.reason)

        if workflow.patched("cancel-before-opening") and self._cancel is not None:
            # Cancelled while the order was being created: no gateway payment to open.
            return await self._finish(OrderStatus.CANCELLED, self._cancel.reason)

        expires_at = workflow.now() + timedelta(seconds=checkout.expires_in_seconds)
        self._details(f"Opening the payment at {checkout.gateway}")
        if failure := await self._open_payment(expires_at):
            return await self._finish(OrderStatus.FAILED, failure)
        self._set_status(OrderStatus.AWAITING_PAYMENT)

        workflow.set_current_details(
            f"Waiting for the buyer to pay {format_amount(checkout.amount, checkout.currency)} "
            f"at {checkout.gateway} since {workflow.now():%Y-%m-%d %H:%M:%S} UTC; "
            f"the payment window closes at {expires_at:%Y-%m-%d %H:%M:%S} UTC"
        )
        if workflow.patched("check-gateway-while-waiting"):
            await self._wait_for_the_buyer(checkout, expires_at)
            # `patched` last: checkouts that never had a retry to offer replay as before.
            while self._may_retry() and workflow.patched("retry-after-decline"):
                if not await self._await_retry(expires_at):
                    break
                if failure := await self._open_next_attempt(expires_at):
                    return await self._finish(OrderStatus.FAILED, failure)
                await self._wait_for_the_buyer(checkout, expires_at)
        else:  # checkouts started before status checks existed wait for the callback alone
            try:
                await workflow.wait_condition(
                    lambda: self._outcome is not None or self._cancel is not None,
                    timeout=max(expires_at - workflow.now(), timedelta(0)),
                    timeout_summary="payment window",
                )
            except TimeoutError:
                pass

        if self._outcome is None and self._held is None:
            # Expiry or cancellation: close at the gateway first, then decide (invariant 3).
            ending = OrderStatus.CANCELLED if self._cancel else OrderStatus.EXPIRED
            self._details(f"Closing the unpaid payment at {checkout.gateway} ({ending})")
            if not await self._close_payment():
                self._window_closed = True
                reason = self._cancel.reason if self._cancel else "payment window closed"
                return await self._finish(ending, reason)
        if self._held is not None and (ended := await self._hold_for_support()) is not None:
            return ended

        if self._outcome == PaymentOutcome.DECLINED:
            return await self._finish(OrderStatus.FAILED, "declined by the gateway")

        self._details("Paid; granting access")
        paid = StatusChange(checkout.order_id, OrderStatus.PAID, self._accepted)
        await db_step(OrderActivities.set_status, paid, "order paid")
        self._set_status(OrderStatus.PAID)

        # Steps after payment: each registers its undo right before it runs. If one fails for
        # good, what was done is undone in reverse and the buyer gets the money back.
        saga = Saga()
        saga.add("refund the payment", self._refund_in_full)
        order = OrderRef(checkout.order_id, checkout.gateway)
        try:
            saga.add(
                "revoke access",
                lambda _: db_step(
                    EntitlementActivities.revoke_entitlements, order, "revoke access"
                ),
            )
            await db_step(EntitlementActivities.grant_entitlements, checkout, "grant access")

            if workflow.patched("issue-invoice"):  # checkouts paid before this step skip it
                saga.add(
                    "void the invoice",
                    lambda _: db_step(InvoiceActivities.void_invoice, order, "void the invoice"),
                )
                await db_step(InvoiceActivities.issue_invoice, checkout, "issue the invoice")
        except FailureError as err:  # a local activity's failure is not wrapped in ActivityError
            reason = f"fulfilment failed: {failure_message(err)}"
            undone = await saga.compensate(reason)
            return await self._finish(
                OrderStatus.REFUNDED, f"{reason}; compensated: {', '.join(undone)}"
            )
        return await self._finish(OrderStatus.FULFILLED)

    async def _wait_for_the_buyer(self, checkout: CheckoutInput, expires_at) -> None:
        """Until the gateway's callback, a cancel request, or the end of the payment window;
        meanwhile ask the gateway, backing off, so a lost callback cannot lose a payment.
        The number of checks is bounded by the window (a few per 15 minutes)."""
        interval = timedelta(seconds=checkout.status_check_first_seconds)
        order = OrderRef(checkout.order_id, checkout.gateway, self._attempt)
        while self._outcome is None and self._cancel is None and self._held is None:
            left = expires_at - workflow.now()
            if left <= timedelta(0):
                return
            try:
                await workflow.wait_condition(
                    lambda: (self._outcome, self._cancel, self._held) != (None, None, None),
                    timeout=min(interval, left),
                    timeout_summary="callback, or time to ask the gateway",
                )
            except TimeoutError:
                if workflow.now() >= expires_at:
                    return
                try:
                    outcome = await workflow.execute_activity_method(
                        PaymentActivities.payment_status,
                        order,
                        start_to_close_timeout=GATEWAY_CALL,
                        # Bounded: a gateway outage must not keep us from the callback or
                        # the deadline; the next check tries again.
                        schedule_to_close_timeout=min(interval, timedelta(minutes=1)),
                        retry_policy=GATEWAY_RETRY,
                        summary="ask the gateway about the payment",
                    )
                except ActivityError:
                    outcome = None
                if outcome is not None:
                    self._take(
                        PaymentEvent(
                            checkout.gateway,
                            f"check-{workflow.now()}",
                            checkout.order_id,
                            outcome.payment_id,
                            outcome.outcome,
                            outcome.amount,
                            outcome.currency,
                            self._attempt,
                        )
                    )
                interval = min(interval * 2, timedelta(seconds=checkout.status_check_max_seconds))

    # ---- messages -----------------------------------------------------------------------------

    @workflow.signal
    def payment_event(self, event: PaymentEvent) -> None:
        """A verified gateway callback (duplicates are dropped by event id)."""
        if event.event_id in self._events_seen:
            return
        self._events_seen.add(event.event_id)
        self._take(event)

    def _take(self, event: PaymentEvent) -> None:
        """One word from the gateway, by callback or when asked. The first decisive word
        about this checkout's payment counts; repeats and contrary words change nothing. A
        capture of another amount or currency is held for support. Money the order does
        not keep (another payment, or one after the window closed) is given back by its own
        refund when the checkout ends."""
        if event.outcome not in (PaymentOutcome.SUCCEEDED, PaymentOutcome.DECLINED):
            return
        c = self._checkout
        ours = event.attempt == self._attempt and (
            self._session is None or event.payment_id == self._session.payment_id
        )
        # While the buyer may retry, a capture of the declined payment outranks the decline.
        overruled = self._awaiting_retry and event.outcome == PaymentOutcome.SUCCEEDED
        undecided = (
            (self._outcome is None or overruled) and self._held is None and not self._window_closed
        )
        if ours and undecided:
            if event.outcome == PaymentOutcome.SUCCEEDED and (event.amount, event.currency) != (
                c.amount,
                c.currency,
            ):
                self._held = event
            else:
                self._outcome = event.outcome
            if event.outcome == PaymentOutcome.SUCCEEDED:  # kept after all (a decline's close)
                self._strays = [s for s in self._strays if s.payment_id != event.payment_id]
        elif event.outcome == PaymentOutcome.SUCCEEDED and not (
            ours and (self._outcome == PaymentOutcome.SUCCEEDED or self._held is not None)
        ):
            self._strays.append(event)

    @workflow.update
    async def payment_session(self) -> CheckoutView:
        """Returns once the payment page exists (or the checkout ended without one)."""
        await workflow.wait_condition(lambda: self._session is not None or self._status.is_final)
        return self._view()

    @workflow.update
    async def cancel(self, request: CancelRequest) -> CheckoutView:
        """Cancel an unpaid checkout; returns how it ended (paid, if the buyer was faster; on
        hold, if the close found a payment of another amount)."""
        if self._cancel is None:
            self._cancel = request
        await workflow.wait_condition(
            lambda: self._status.is_final or self._status in (OrderStatus.PAID, OrderStatus.ON_HOLD)
        )
        return self._view()

    @workflow.update
    async def retry_payment(self) -> CheckoutView:
        """After a decline, open another payment at the gateway for the same order. Returns
        once its page exists, or how the checkout went on instead (paid after all: the
        declined payment's close found it captured; cancelled; over)."""
        if self._retry is None:
            self._retry = self._attempt + 1
        attempt = self._retry
        await workflow.wait_condition(
            lambda: (
                (self._attempt >= attempt and self._retry is None)
                or self._status.is_final
                or self._status.is_paid
                or self._status == OrderStatus.ON_HOLD
            )
        )
        return self._view()

    @retry_payment.validator
    def _only_after_a_decline(self) -> None:
        if self._retry is None and not self._awaiting_retry:
            raise ApplicationError(
                f"the order is {self._status} and its payment is not declined, or no attempt "
                f"is left ({self._attempt} of {self._checkout.max_payment_attempts} used)",
                type="RetryNotAllowed",
            )

    @workflow.update
    async def review(self, decision: ReviewDecision) -> CheckoutView:
        """Support's decision on a held payment (see ReviewDecision); returns how it ended."""
        self._review = decision
        await workflow.wait_condition(lambda: self._status.is_final)
        return self._view()

    @review.validator
    def _only_held(self, decision: ReviewDecision) -> None:
        if self._status != OrderStatus.ON_HOLD:
            raise ApplicationError(f"the order is {self._status}, not on hold", type="NotOnHold")
        held, c = self._held, self._checkout
        if decision.accept and (held.currency != c.currency or held.amount < c.amount):
            raise ApplicationError(
                f"only a payment of more than {c.amount} {c.currency} can be accepted (the "
                f"excess is refunded); {held.amount} {held.currency} can only be refunded",
                type="CannotAccept",
            )

    @cancel.validator
    def _only_unpaid(self, request: CancelRequest) -> None:
        if self._held is not None:
            raise ApplicationError("the payment is held for support", type="OrderOnHold")
        if self._status.is_paid or self._outcome == PaymentOutcome.SUCCEEDED:
            raise ApplicationError("the order is already paid", type="OrderAlreadyPaid")
        if self._status.is_final:
            raise ApplicationError(f"the order is already {self._status}", type="OrderClosed")

    @workflow.query
    def state(self) -> CheckoutView:
        return self._view()

    # ---- the gateway payment: open, close, retry -----------------------------------------------

    async def _open_payment(self, expires_at) -> str | None:
        """Open the current attempt's payment at the gateway; the failure, if it could not."""
        try:
            self._session = await workflow.execute_activity_method(
                PaymentActivities.create_payment,
                OpenPaymentInput(self._checkout, expires_at, self._attempt),
                start_to_close_timeout=GATEWAY_CALL,
                schedule_to_close_timeout=OPEN_PAYMENT_DEADLINE,
                retry_policy=GATEWAY_RETRY,
                summary="open the payment at the gateway",
            )
        except ActivityError as err:
            return f"could not open the payment: {err.cause}"
        return None

    async def _close_payment(self) -> bool:
        """Close the current payment at the gateway. False: closed unpaid. True: the buyer
        paid first, and that capture is judged like any word from the gateway."""
        c = self._checkout
        closed = await workflow.execute_activity_method(
            PaymentActivities.close_payment,
            OrderRef(c.order_id, c.gateway, self._attempt),
            start_to_close_timeout=GATEWAY_CALL,
            retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=5)),
            summary="close the payment at the gateway",
        )
        if closed.outcome != PaymentOutcome.SUCCEEDED:
            return False
        self._outcome = None  # a decline before it was not the last word
        if closed.amount is None:  # a close recorded before closes said what was paid
            self._outcome = PaymentOutcome.SUCCEEDED
        else:  # another amount than the order's is held for support
            paid = PaymentEvent(
                c.gateway,
                f"close-{self._attempt}",
                c.order_id,
                closed.payment_id,
                PaymentOutcome.SUCCEEDED,
                closed.amount,
                closed.currency,
                self._attempt,
            )
            self._take(paid)
        return True

    def _may_retry(self) -> bool:
        return (
            self._outcome == PaymentOutcome.DECLINED
            and self._cancel is None
            and self._held is None
            and self._attempt < self._checkout.max_payment_attempts
        )

    async def _await_retry(self, expires_at) -> bool:
        """Declined: until the window closes the buyer may try again. True once they do;
        False when the window closes (the order fails) or on a cancel (the order is closed
        at the gateway and cancelled, as any cancel)."""
        c = self._checkout
        self._reason = (
            f"declined by the gateway (attempt {self._attempt} of {c.max_payment_attempts})"
        )
        declined = StatusChange(
            c.order_id, OrderStatus.AWAITING_PAYMENT, f"{self._reason}; the buyer may try again"
        )
        await db_step(OrderActivities.set_status, declined, "record the decline")
        self._awaiting_retry = True
        # In the background: a storefront that is down must not hold up the buyer's retry.
        event = StorefrontEvent(
            f"evt_{c.order_id}_declined_{self._attempt}",
            "order.payment_declined",
            self._view(),
            workflow.now(),
        )
        self._background.append(asyncio.create_task(notify_storefront(event)))
        self._details(
            f"Declined; waiting for the buyer to try again until {expires_at:%Y-%m-%d %H:%M:%S} UTC"
        )
        try:
            await workflow.wait_condition(
                lambda: (
                    self._retry is not None
                    or self._cancel is not None
                    or self._outcome != PaymentOutcome.DECLINED  # paid on the same page after all
                    or self._held is not None
                ),
                timeout=max(expires_at - workflow.now(), timedelta(0)),
                timeout_summary="the buyer's retry",
            )
        except TimeoutError:
            # Close it before failing the order: the gateway may have captured it after all.
            await self._close_payment()
        self._awaiting_retry = False
        if self._outcome != PaymentOutcome.DECLINED or self._held is not None:
            return False  # paid (or held) with this attempt
        if self._cancel is not None:
            self._outcome = None  # close the declined payment, then cancel
            return False
        return self._retry is not None

    async def _open_next_attempt(self, expires_at) -> str | None:
        """Close the declined payment first: if the buyer paid it after all, that capture
        counts and no other payment is opened. Otherwise open the next one; at most one of
        an order's payments is ever kept, any other capture is refunded as a stray."""
        c = self._checkout
        self._details(f"Opening payment attempt {self._retry} at {c.gateway}")
        if await self._close_payment():
            self._retry = None
            return None
        self._attempt, self._session, self._outcome, self._reason = self._retry, None, None, None
        failure = await self._open_payment(expires_at)
        if failure is None:
            self._retry = None  # else the retry's caller learns how the checkout ended
        self._details(f"Waiting for the buyer to pay (attempt {self._attempt})")
        return failure

    # ---- helpers ------------------------------------------------------------------------------

    async def _finish(self, status: OrderStatus, reason: str | None = None) -> CheckoutView:
        order_id = self._checkout.order_id
        await db_step(
            OrderActivities.set_status, StatusChange(order_id, status, reason), f"order {status}"
        )
        self._reason = reason
        self._set_status(status)
        self._details(f"Telling the storefront: order {status}")
        await notify_storefront(
            StorefrontEvent(
                f"evt_{order_id}_{status}", f"order.{status}", self._view(), workflow.now()
            )
        )
        workflow.set_current_details(f"Done: {status}" + (f" ({reason})" if reason else ""))
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._give_back_strays()
        return self._view()

    async def _hold_for_support(self) -> CheckoutView | None:
        """Wait for support's decision on a held payment. Refund: the order ends failed (its
        view is returned). Accept: the excess goes back and the checkout goes on as paid."""
        held, c = self._held, self._checkout
        reason = (
            f"paid {held.amount} {held.currency} (minor units) instead of {c.amount} {c.currency}"
        )
        hold = StatusChange(c.order_id, OrderStatus.ON_HOLD, reason)
        await db_step(OrderActivities.set_status, hold, "hold for support")
        self._reason = reason
        self._set_status(OrderStatus.ON_HOLD)
        self._details(
            f"Held for support: {reason}; refund (or accept, if more than the amount) with "
            f"POST /v1/orders/{c.order_id}/review"
        )
        await workflow.wait_condition(lambda: self._review is not None)
        if self._review.accept:
            excess = held.amount - c.amount
            self._accepted = f"{reason}; accepted on support's decision, {excess} refunded: "
            try:
                await self._refund_and_wait(
                    RefundInput.for_stray(
                        replace(held, amount=excess), c.gateway, StrayKind.OVERPAYMENT
                    ),
                    "ExcessRefundFailed",
                    "refund of the excess failed",
                )
            except ApplicationError as err:
                # The order is kept all the same; the failed refund (RefundStatus = 'failed',
                # stray_captures) is support's, and the books hold the excess as unallocated.
                self._accepted = f"{reason}; accepted on support's decision, {err.message}: "
            self._accepted += self._review.note
            self._held, self._outcome = None, PaymentOutcome.SUCCEEDED
            return None
        await self._refund_and_wait(
            RefundInput.for_stray(held, c.gateway, StrayKind.AMOUNT_MISMATCH),
            "HeldRefundFailed",
            "refund of the held payment failed",
        )
        return await self._finish(
            OrderStatus.FAILED, f"{reason}; refunded on support's decision: {self._review.note}"
        )

    async def _give_back_strays(self) -> None:
        """Start the refund of every capture this order does not keep. Reports that come
        after the checkout ended reach the same refunds through the API (same ids)."""
        kind = StrayKind.DOUBLE_PAYMENT if self._status.is_paid else StrayKind.LATE_PAYMENT
        c = self._checkout
        while self._strays:
            event = self._strays.pop(0)
            refund = RefundInput.for_stray(event, c.gateway, kind)
            try:
                await workflow.start_child_workflow(
                    RefundWorkflow.run,
                    refund,
                    id=refund_workflow_id(refund.refund_id),
                    parent_close_policy=ParentClosePolicy.ABANDON,
                )
            except WorkflowAlreadyStartedError:
                pass

    async def _refund_in_full(self, reason: str) -> None:
        """Compensation: give the buyer everything back, through the refund workflow."""
        c = self._checkout
        if workflow.patched("short-compensation-refund-id"):
            refund_id = compensation_refund_id(c.order_id)
        else:  # compensations started before: the id their history already has
            refund_id = f"rf_{c.order_id}_compensation"
        refund = RefundInput(
            refund_id,
            c.order_id,
            c.gateway,
            c.amount,
            c.currency,
            reason,
            Caller.SYSTEM,
        )
        # The buyer paid and got nothing: fail loudly if even this fails, so support sees it.
        await self._refund_and_wait(
            refund,
            "CompensationFailed",
            f"compensating refund failed; order {c.order_id} is paid but not fulfilled",
        )

    async def _refund_and_wait(self, refund: RefundInput, failure_type: str, failure: str):
        """Give money back through the refund workflow, as a child that survives this
        checkout; a refund that fails for good fails the checkout, loudly."""
        result = await workflow.execute_child_workflow(
            RefundWorkflow.run,
            refund,
            id=refund_workflow_id(refund.refund_id),
            # Terminating this checkout must not stop a refund that moves money.
            parent_close_policy=ParentClosePolicy.ABANDON,
        )
        if result.status != RefundStatus.SUCCEEDED:
            raise ApplicationError(
                f"{failure} ({result.failure_reason})", type=failure_type, non_retryable=True
            )

    def _details(self, doing: str) -> None:
        """What support reads in the UI: what the checkout does, and since when."""
        workflow.set_current_details(f"{doing} (since {workflow.now():%Y-%m-%d %H:%M:%S} UTC)")

    def _set_status(self, status: OrderStatus) -> None:
        self._status = status
        workflow.upsert_search_attributes([SA_PAYMENT_STATUS.value_set(str(status))])

    def _view(self) -> CheckoutView:
        c = self._checkout
        return CheckoutView(
            order_id=c.order_id,
            workflow_id=checkout_workflow_id(c.order_id),
            status=self._status,
            amount=c.amount,
            currency=c.currency,
            customer_id=c.customer_id,
            gateway=c.gateway,
            payment=self._session,
            reason=self._reason,
            can_retry=self._awaiting_retry and self._retry is None,
        )
