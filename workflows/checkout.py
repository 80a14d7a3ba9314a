"""One purchase, start to finish, as one durable workflow (id `checkout-<order_id>`).

The story (`run`): create the order and check risk; open the payment at the gateway; collect
it (the gateway's callback arrives as a signal; while none comes the gateway is asked now
and then; after a decline the buyer may try again; on expiry or a cancel the payment is
closed at the gateway first, and if the buyer paid meanwhile it counts); a payment of
another amount waits for support; then the steps after payment (workflows/fulfilment.py)
and the storefront is told. The payment's rules live in workflows/payment.py, pure.

Round trips: the short database steps run as local activities inside the workflow task.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

from temporalio import workflow
from temporalio.common import SearchAttributeUpdate
from temporalio.exceptions import FailureError

from workflows.collect import Collection, ask_about_payment
from workflows.fulfilment import AFTER_PAYMENT
from workflows.payment import DECISIVE, Payment, Verdict
from workflows.refunding import give_back, refund_and_wait
from workflows.saga import Saga
from workflows.steps import (
    ask_gateway,
    attention,
    db_step,
    details,
    failure_message,
    notify_storefront,
    show,
)

with workflow.unsafe.imports_passed_through():
    from activities.orders import OrderActivities
    from activities.payments import PaymentActivities
    from activities.risk import RiskActivities
    from kassa import errors, search
    from kassa.contracts import (
        CHECKOUT_WORKFLOW,
        TEMPORAL_CANCEL,
        AuditRecord,
        CancelRequest,
        CheckoutInput,
        CheckoutView,
        PaymentEvent,
        RefundInput,
        ReviewDecision,
        StatusChange,
        StorefrontEvent,
    )
    from kassa.ids import checkout_workflow_id
    from kassa.money import format_amount
    from kassa.reasons import ReasonCode
    from kassa.search import NeedsAttention
    from kassa.statuses import OrderStatus, StrayKind

CONFIRM_WITHIN = timedelta(minutes=1)  # unanswered: the status checks and the close remain


@workflow.defn(name=CHECKOUT_WORKFLOW)
class CheckoutWorkflow:
    @workflow.init
    def __init__(self, checkout: CheckoutInput) -> None:
        self._checkout = checkout
        self._status = OrderStatus.CREATED
        self._code: ReasonCode | None = None  # what the storefront is told, and
        self._reason: str | None = None  # the detail, support's
        self._payment = Payment(checkout.amount, checkout.currency, checkout.max_payment_attempts)
        self._webhooks: list[asyncio.Task] = []  # held, or asyncio may collect them mid-flight
        # The first cancellation in Temporal: the status it came in, and what it did.
        self._temporal_cancel: tuple[OrderStatus, str] | None = None
        self._checking = False  # a check_payment question is under way

    @workflow.run
    async def run(self, checkout: CheckoutInput) -> CheckoutView:
        """The story runs as a task of its own, shielded: a cancellation in Temporal (the
        UI's "Request Cancellation") becomes a cancel request instead of interrupting
        whatever step is under way, so the gateway payment is closed like any cancel's."""
        view = await self._not_interrupted(self._story(checkout))
        if (cancelled := self._temporal_cancel) is not None:
            before, reason = cancelled
            record = AuditRecord(
                f"temporal-cancel:{checkout.order_id}",
                TEMPORAL_CANCEL,
                "cancel",
                checkout.order_id,
                reason,
                {"status": before},
                {"status": view.status},
                f"temporal:{workflow.info().run_id}",
            )
            await self._not_interrupted(
                db_step(OrderActivities.record_audit, record, "audit the cancellation")
            )
        return view

    async def _not_interrupted(self, step):
        """Run `step` to its end: a cancellation meanwhile becomes a cancel request."""
        task = asyncio.create_task(step)
        while True:
            try:
                return await asyncio.shield(task)
            except asyncio.CancelledError:
                if task.done():
                    raise
                self._cancelled_in_temporal()

    def _cancelled_in_temporal(self) -> None:
        """Unpaid: cancel like support would (close at the gateway first). Paid: fulfilment,
        or its compensation, goes on. Held: support decides, nothing changes. The first one
        goes to the audit log when the checkout ends."""
        try:
            self._payment.check_cancel(self._status)
        except errors.OrderNotCancellable as refused:
            details(f"A cancellation in Temporal changes nothing: {refused.message}; going on")
            reason = f"cancellation in Temporal changed nothing: {refused.message}"
        else:
            # The reason typed with the cancellation, if any (Temporal gives no identity):
            # printable only, as the API's texts, since support reads it in the order.
            typed = workflow.cancellation_reason() or ""
            typed = "".join(c for c in typed if c.isprintable()).strip()[:200]
            reason = f"cancelled in Temporal: {typed}" if typed else "cancelled in Temporal"
            if self._payment.cancel is None:
                self._payment.cancel = CancelRequest(reason, TEMPORAL_CANCEL)
        if self._temporal_cancel is None:
            self._temporal_cancel = (self._status, reason)

    async def _story(self, checkout: CheckoutInput) -> CheckoutView:
        details("Creating the order and checking risk")
        await db_step(OrderActivities.create_order, checkout, "create the order")
        risk = await db_step(RiskActivities.check_risk, checkout, "risk check")
        if not risk.approved:
            return await self._finish(OrderStatus.REJECTED, ReasonCode.RISK_REJECTED, risk.reason)
        if cancel := self._payment.cancel:  # while the order was being created
            return await self._finish(OrderStatus.CANCELLED, cancel.code, cancel.reason)

        expires_at = workflow.now() + timedelta(seconds=checkout.expires_in_seconds)
        collection = Collection(checkout, self._payment, expires_at)
        if failure := await collection.open():
            return await self._finish(OrderStatus.FAILED, ReasonCode.PAYMENT_FAILED, failure)
        self._set_status(
            OrderStatus.AWAITING_PAYMENT, search.PAYMENT_EXPIRES_AT.value_set(expires_at)
        )
        if failure := await collection.until_decided(self._tell_declined):
            return await self._finish(OrderStatus.FAILED, ReasonCode.PAYMENT_FAILED, failure)

        match self._payment.verdict:
            case Verdict.CLOSED:
                cancel = self._payment.cancel
                if cancel is not None:
                    return await self._finish(OrderStatus.CANCELLED, cancel.code, cancel.reason)
                return await self._finish(
                    OrderStatus.EXPIRED, ReasonCode.EXPIRED, "payment window closed"
                )
            case Verdict.DECLINED:
                return await self._finish(
                    OrderStatus.FAILED, ReasonCode.DECLINED, "declined by the gateway"
                )
            case Verdict.HELD:
                if (ended := await self._hold_for_support()) is not None:
                    return ended
            case Verdict.UNDECIDED:  # the close decides: cannot happen, so fail loudly
                raise RuntimeError(f"payment of {checkout.order_id} undecided after its close")

        # With a reason only if support accepted a held payment.
        paid = StatusChange(
            checkout.order_id, OrderStatus.PAID, self._code, self._reason, self._payment.kept
        )
        await db_step(OrderActivities.set_status, paid, "order paid")
        self._set_status(OrderStatus.PAID)
        return await self._fulfil()

    # ---- the story's chapters -----------------------------------------------------------------

    async def _tell_declined(self) -> None:
        """Declined, and the buyer may try again: the order row and the storefront say so."""
        checkout, payment = self._checkout, self._payment
        note = f"{payment.decline_note}; the buyer may try again"
        declined = StatusChange(
            checkout.order_id, OrderStatus.AWAITING_PAYMENT, ReasonCode.DECLINED_MAY_RETRY, note
        )
        await db_step(OrderActivities.set_status, declined, "record the decline")
        # Still awaiting_payment for the storefront; support tells it apart from untouched.
        show(search.PAYMENT_STATUS.value_set(search.DECLINED_MAY_RETRY))
        # In the background: a storefront that is down must not hold up the buyer's retry.
        event = StorefrontEvent(
            f"evt_{checkout.order_id}_declined_{payment.attempt}",
            "order.payment_declined",
            self._view(),
            workflow.now(),
        )
        self._webhooks.append(asyncio.create_task(notify_storefront(event)))

    async def _fulfil(self) -> CheckoutView:
        """The steps after payment, each registering its undo before it runs. If one fails
        for good, what was done is undone in reverse and the buyer gets the money back."""
        checkout = self._checkout
        saga = Saga()
        # The buyer paid and got nothing: if even this fails, the checkout fails, loudly.
        saga.add(
            "refund the payment",
            lambda why: self._give_back(
                RefundInput.compensation(checkout, why),
                errors.CompensationFailed,
                NeedsAttention.COMPENSATION_FAILED,
            ),
        )
        try:
            for step in AFTER_PAYMENT:
                if step.undo is not None:
                    saga.add(step.undoes, lambda _, s=step: db_step(s.undo, checkout, s.undoes))
                details(f"Paid; {step.does}")
                await db_step(step.action, checkout, step.does)
        except FailureError as err:  # a local activity's failure is not wrapped in ActivityError
            reason = f"fulfilment failed: {failure_message(err)}"
            undone = await saga.compensate(reason)
            return await self._finish(
                OrderStatus.REFUNDED,
                ReasonCode.FULFILMENT_FAILED_REFUNDED,
                f"{reason}; compensated: {', '.join(undone)}",
            )
        return await self._finish(OrderStatus.FULFILLED)

    async def _hold_for_support(self) -> CheckoutView | None:
        """Wait for support's decision on a held payment. Refund: the order ends failed (its
        view is returned). Accept: the excess goes back and the checkout goes on as paid."""
        payment, checkout = self._payment, self._checkout
        held = payment.held
        reason = f"paid {format_amount(held.amount, held.currency)} instead of {self._amount()}"
        hold = StatusChange(
            checkout.order_id, OrderStatus.ON_HOLD, ReasonCode.AMOUNT_MISMATCH, reason
        )
        await db_step(OrderActivities.set_status, hold, "hold for support")
        self._code, self._reason = ReasonCode.AMOUNT_MISMATCH, reason
        self._set_status(OrderStatus.ON_HOLD)
        await self._await_review(reason)
        review = payment.review
        if not review.accept:
            refund = RefundInput.for_stray(
                held, checkout.gateway, StrayKind.AMOUNT_MISMATCH, checkout.customer_id
            )
            await self._give_back(refund, errors.HeldRefundFailed, NeedsAttention.REFUND_FAILED)
            return await self._finish(
                OrderStatus.FAILED,
                ReasonCode.REFUNDED_ON_REVIEW,
                f"{reason}; refunded on support's decision: {review.note}",
            )
        excess = replace(held, amount=held.amount - checkout.amount)
        refund = RefundInput.for_stray(
            excess, checkout.gateway, StrayKind.OVERPAYMENT, checkout.customer_id
        )
        try:
            await refund_and_wait(refund, errors.ExcessRefundFailed)
            outcome = f"{format_amount(excess.amount, excess.currency)} refunded"
        except errors.ExcessRefundFailed as err:
            # The order is kept all the same; the failed refund (its NeedsAttention says
            # refund_failed; stray_captures) is support's, and the books hold the excess as
            # unallocated.
            outcome = err.message
        self._code = ReasonCode.ACCEPTED_ON_REVIEW
        self._reason = f"{reason}; accepted on support's decision, {outcome}: {review.note}"
        payment.accept_held()
        return None

    async def _await_review(self, reason: str) -> None:
        """Until support decides. The hold never ends by itself, but once it has waited
        longer than the checkout's `hold_escalate_hours` it says so (NeedsAttention =
        held_payment_overdue), and again each such period, with how long it has waited."""
        payment, checkout = self._payment, self._checkout
        since = workflow.now()
        review = (
            "refund (or accept, if more than the amount) with "
            f"POST /v1/orders/{checkout.order_id}/review"
        )
        details(f"Held for support: {reason}; {review}")
        period = timedelta(hours=checkout.hold_escalate_hours)
        while True:
            try:
                await workflow.wait_condition(
                    lambda: payment.review is not None,
                    timeout=period,
                    timeout_summary="a held payment escalates",
                )
                return
            except TimeoutError:
                waited = (workflow.now() - since) // timedelta(hours=1)
                show(attention(NeedsAttention.HELD_PAYMENT_OVERDUE))
                workflow.set_current_details(
                    f"Overdue: held for support for {waited} h (since "
                    f"{since:%Y-%m-%d %H:%M:%S} UTC): {reason}; {review}"
                )

    async def _give_back(
        self, refund: RefundInput, failure: type[errors.KassaError], why: NeedsAttention
    ) -> None:
        """A refund the checkout cannot end without: if it fails for good, the checkout
        fails loudly, and says what needs a human on its way out."""
        try:
            await refund_and_wait(refund, failure)
        except failure:
            show(attention(why))
            raise

    async def _finish(
        self, status: OrderStatus, code: ReasonCode | None = None, reason: str | None = None
    ) -> CheckoutView:
        """End the checkout: the order row, then the storefront. With no `code`, the reason
        stands (fulfilled after support accepted a held payment) or there is none."""
        order_id = self._checkout.order_id
        if code is not None:
            self._code, self._reason = code, reason
        change = StatusChange(order_id, status, self._code, self._reason)
        await db_step(OrderActivities.set_status, change, f"order {status}")
        self._set_status(status)
        details(f"Telling the storefront: order {status}")
        await notify_storefront(
            StorefrontEvent(
                f"evt_{order_id}_{status}", f"order.{status}", self._view(), workflow.now()
            )
        )
        reason = self._reason
        workflow.set_current_details(f"Done: {status}" + (f" ({reason})" if reason else ""))
        await workflow.wait_condition(workflow.all_handlers_finished)
        kind = StrayKind.DOUBLE_PAYMENT if status.is_paid else StrayKind.LATE_PAYMENT
        while strays := self._payment.take_strays():  # and those reported meanwhile
            await give_back(strays, self._checkout.gateway, kind, self._checkout.customer_id)
        return self._view()

    # ---- messages -----------------------------------------------------------------------------

    # Abandoned when the checkout ends first (failed, say): its answer no longer matters.
    @workflow.signal(unfinished_policy=workflow.HandlerUnfinishedPolicy.ABANDON)
    async def payment_event(self, event: PaymentEvent) -> None:
        """A gateway callback, relayed by the API. It only says which payment to ask about:
        the gateway's answer is what counts, so a signal typed by hand in the Temporal UI
        marks nothing paid. Duplicates are dropped by event id; a confirmation that gets
        no answer leaves the payment to the status checks and the close."""
        checkout = self._checkout
        if not self._payment.first_hearing(event):
            return
        # Only the payment's identity is read from the signal, never whose or how much.
        claim = replace(event, gateway=checkout.gateway, order_id=checkout.order_id)
        answer = await ask_gateway(
            PaymentActivities.confirm_payment,
            claim,
            "confirm the callback",
            CONFIRM_WITHIN,
            local=True,
        )
        if answer is None or answer.outcome not in DECISIVE:
            self._payment.undecided_hearing(event)
            return
        self._payment.take(
            PaymentEvent.answered(
                checkout.gateway, event.event_id, checkout.order_id, event.attempt, answer
            )
        )

    @workflow.signal(unfinished_policy=workflow.HandlerUnfinishedPolicy.ABANDON)
    async def check_payment(self) -> None:
        """Ask the gateway about the current payment now: the buyer came back from the
        payment page saying they paid (the storefront's `POST /v1/orders/{id}/check-payment`),
        or support asks. The checkout asks once up front and then trusts the gateway's
        redelivery and the close; this finds a lost callback the moment someone cares. Only
        a reason to ask, so one sent by hand is harmless; one question at a time."""
        checkout, payment = self._checkout, self._payment
        if self._status != OrderStatus.AWAITING_PAYMENT or self._checking:
            return
        self._checking = True
        try:
            await ask_about_payment(
                checkout, payment, "ask the gateway (asked to)", CONFIRM_WITHIN, local=True
            )
        finally:
            self._checking = False

    @workflow.update
    async def payment_session(self) -> CheckoutView:
        """Returns once the payment page exists (or the checkout ended without one)."""
        await workflow.wait_condition(
            lambda: self._payment.session is not None or self._status.is_final
        )
        return self._view()

    @workflow.update
    async def cancel(self, request: CancelRequest) -> CheckoutView:
        """Cancel an unpaid checkout; returns how it ended (paid, if the buyer was faster; on
        hold, if the close found a payment of another amount)."""
        if self._payment.cancel is None:
            self._payment.cancel = request
        await workflow.wait_condition(
            lambda: self._status.is_final or self._status in (OrderStatus.PAID, OrderStatus.ON_HOLD)
        )
        return self._view()

    @cancel.validator
    def _only_unpaid(self, request: CancelRequest) -> None:
        request.check()  # a hand-typed cancel without its actor never reaches the history
        self._payment.check_cancel(self._status)

    @workflow.update
    async def retry_payment(self) -> CheckoutView:
        """After a decline, open another payment at the gateway for the same order. Returns
        once its page exists, or how the checkout went on instead (paid after all: the
        declined payment's close found it captured; cancelled; over)."""
        payment = self._payment
        attempt = payment.ask_retry()
        await workflow.wait_condition(
            lambda: (
                (payment.attempt >= attempt and payment.retry is None)
                or self._status.is_final
                or self._status.is_paid
                or self._status == OrderStatus.ON_HOLD
            )
        )
        return self._view()

    @retry_payment.validator
    def _only_after_a_decline(self) -> None:
        self._payment.check_retry(self._status)

    @workflow.update
    async def review(self, decision: ReviewDecision) -> CheckoutView:
        """Support's decision on a held payment (see ReviewDecision); returns how it ended."""
        self._payment.review = decision
        await workflow.wait_condition(lambda: self._status.is_final)
        return self._view()

    @review.validator
    def _only_held(self, decision: ReviewDecision) -> None:
        decision.check()
        self._payment.check_review(decision, self._status)

    @workflow.query
    def state(self) -> CheckoutView:
        return self._view()

    # ---- what support and the storefront see -----------------------------------------------

    def _amount(self) -> str:
        return format_amount(self._checkout.amount, self._checkout.currency)

    def _set_status(self, status: OrderStatus, *also: SearchAttributeUpdate) -> None:
        """The status, and what needs a human with it: a held payment, else nothing (a
        cause that ends without a status, a failed compensation, fails the workflow)."""
        self._status = status
        held = NeedsAttention.HELD_PAYMENT if status == OrderStatus.ON_HOLD else None
        show(search.PAYMENT_STATUS.value_set(str(status)), attention(held), *also)

    def _view(self) -> CheckoutView:
        c, declined = self._checkout, self._payment.decline_note
        return CheckoutView(
            order_id=c.order_id,
            workflow_id=checkout_workflow_id(c.order_id),
            status=self._status,
            amount=c.amount,
            currency=c.currency,
            customer_id=c.customer_id,
            gateway=c.gateway,
            payment=self._payment.session,
            reason=self._reason or declined,
            can_retry=self._payment.can_retry,
            reason_code=self._code or (ReasonCode.DECLINED_MAY_RETRY if declined else None),
        )
