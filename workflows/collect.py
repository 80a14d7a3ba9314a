"""The checkout's middle chapter: collect the payment at the gateway. Open it, wait for the
buyer (asking the gateway now and then, in case the callback is lost), let the buyer try
again after a decline, and close whatever is still open before the order ends. What each
word from the gateway means is decided by the `Payment` (workflows/payment.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, FailureError

from workflows.payment import Payment, Verdict
from workflows.steps import (
    GATEWAY_CALL,
    GATEWAY_RETRY,
    ask_gateway,
    attention,
    details,
    failure_message,
    gave_up_in_time,
    resolved,
    show,
    wait_for_word,
)

with workflow.unsafe.imports_passed_through():
    from activities.payments import PaymentActivities
    from kassa import search
    from kassa.contracts import CheckoutInput, OpenPaymentInput, OrderRef, PaymentEvent
    from kassa.money import format_amount
    from kassa.search import NeedsAttention
    from kassa.statuses import OrderStatus, PaymentOutcome

# Opening the payment must finish while the storefront's request still waits for the URL.
# Room for a retry after a worker died mid-call, well inside the shortest payment window.
OPEN_PAYMENT_DEADLINE = timedelta(seconds=45)
# A close that has kept failing this long is support's to look at (NeedsAttention =
# gateway_unreachable); it goes on trying all the same, the order waits for its answer.
CLOSE_ALERT = timedelta(minutes=10)


class Collection:
    """One checkout's payment at the gateway, from opening to decided."""

    def __init__(self, checkout: CheckoutInput, payment: Payment, expires_at: datetime) -> None:
        self.checkout, self.payment, self.expires_at = checkout, payment, expires_at
        self._window: asyncio.Task | None = None  # the payment window's own timer

    async def open(self) -> str | None:
        """Open the current attempt's payment at the gateway; the failure, if it could not."""
        payment = self.payment
        details(f"Opening payment attempt {payment.attempt} at {self.checkout.gateway}")
        try:
            # Local: the storefront's request waits for this page, and a server round trip
            # less is what it waits for least. Retrying it is safe (the merchant reference
            # is the gateway's idempotency key).
            payment.session = await workflow.execute_local_activity_method(
                PaymentActivities.create_payment,
                OpenPaymentInput(self.checkout, self.expires_at, payment.attempt),
                start_to_close_timeout=GATEWAY_CALL,
                schedule_to_close_timeout=OPEN_PAYMENT_DEADLINE,
                retry_policy=GATEWAY_RETRY,
                summary="open the payment at the gateway",
            )
        except FailureError as err:  # a local activity's failure comes unwrapped
            return f"could not open the payment: {failure_message(err)}"
        return None

    async def until_decided(self, on_decline: Callable[[], Awaitable[None]]) -> str | None:
        """Until the payment is paid, held, declined for good, or closed unpaid at the
        gateway. `on_decline` tells the order and the storefront that the buyer may retry.
        Returns why it failed, if a retry's payment could not be opened."""
        payment = self.payment
        # One named timer for the whole window, so the UI shows when it closes.
        self._window = asyncio.create_task(
            workflow.sleep(
                max(self.expires_at - workflow.now(), timedelta(0)),
                summary="payment window closes",
            )
        )
        try:
            await self._wait_for_the_buyer()
            while payment.may_retry() and await self._await_retry(on_decline):
                if failure := await self._open_next_attempt():
                    return failure
                await self._wait_for_the_buyer()
        finally:
            self._window.cancel()
        if payment.verdict == Verdict.UNDECIDED:
            # Expiry or cancellation: close at the gateway first, then decide (invariant 3).
            details(f"Closing the unpaid payment at {self.checkout.gateway}")
            await self.close()
        return None

    def _window_closed(self) -> bool:
        return self._window is not None and self._window.done()

    async def close(self) -> None:
        """Close the current payment at the gateway; if the buyer paid first, that capture
        is judged like any word from the gateway."""
        checkout, payment = self.checkout, self.payment
        while True:
            try:
                closed = await workflow.execute_activity_method(
                    PaymentActivities.close_payment,
                    OrderRef(checkout.order_id, checkout.gateway, payment.attempt),
                    start_to_close_timeout=GATEWAY_CALL,
                    schedule_to_close_timeout=CLOSE_ALERT,
                    retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=5)),
                    summary="close the payment at the gateway",
                )
                break
            except ActivityError as err:
                if not gave_up_in_time(err):
                    raise  # a refusal: as before, the checkout fails loudly
                show(attention(NeedsAttention.GATEWAY_UNREACHABLE))
                details(
                    f"Closing the payment at {checkout.gateway} keeps failing "
                    f"({failure_message(err)}); still trying"
                )
        resolved(NeedsAttention.GATEWAY_UNREACHABLE)
        captured = None
        if closed.outcome == PaymentOutcome.SUCCEEDED:
            captured = PaymentEvent.answered(
                checkout.gateway,
                f"close-{payment.attempt}",
                checkout.order_id,
                payment.attempt,
                closed,
            )
        payment.closed_at_gateway(captured)

    async def _wait_for_the_buyer(self) -> None:
        """Until the gateway's word, a cancel request, or the end of the payment window.
        Meanwhile the gateway is asked once, early (most buyers pay within minutes), and
        then only if the checkout says so: a lost callback is redelivered by the gateway
        (for a day), the close at the window's end asks again, and reconciliation sweeps
        what is left. Polling every open checkout would cost the server and the worker in
        proportion to the checkouts waiting (docs/performance.md)."""
        checkout, payment = self.checkout, self.payment
        show(search.PAYMENT_STATUS.value_set(str(OrderStatus.AWAITING_PAYMENT)))  # after a retry
        workflow.set_current_details(
            f"Waiting for the buyer to pay {format_amount(checkout.amount, checkout.currency)} "
            f"at {checkout.gateway} since {workflow.now():%Y-%m-%d %H:%M:%S} UTC (attempt "
            f"{payment.attempt} of {payment.max_attempts}); the payment window closes at "
            f"{self.expires_at:%Y-%m-%d %H:%M:%S} UTC"
        )

        async def ask(interval: timedelta) -> None:
            # Bounded: a gateway outage must not keep us from the callback or the deadline.
            await ask_about_payment(
                checkout, payment, "ask the gateway", min(interval, timedelta(minutes=1))
            )

        await wait_for_word(
            lambda: payment.waiting_is_over() or self._window_closed(),
            ask,
            first=timedelta(seconds=checkout.status_check_first_seconds),
            most=timedelta(seconds=later) if (later := checkout.status_check_max_seconds) else None,
            summary="callback, or time to ask the gateway",
        )

    async def _await_retry(self, on_decline: Callable[[], Awaitable[None]]) -> bool:
        """Declined: until the window closes the buyer may try again. True once they do."""
        payment = self.payment
        payment.awaiting_retry = True
        await on_decline()
        details(
            "Declined; waiting for the buyer to try again until "
            f"{self.expires_at:%Y-%m-%d %H:%M:%S} UTC"
        )
        await workflow.wait_condition(lambda: payment.retry_wait_is_over() or self._window_closed())
        if not payment.retry_wait_is_over():
            # The window closed. Close the payment before failing the order: the gateway may
            # have captured it after all.
            await self.close()
        return payment.end_retry_wait()

    async def _open_next_attempt(self) -> str | None:
        """Close the declined payment first: if the buyer paid it after all, that capture
        counts and no other payment is opened. Otherwise open the next one; at most one of
        an order's payments is ever kept, any other capture is refunded as a stray."""
        payment = self.payment
        await self.close()
        if payment.captured:
            payment.retry_opened()
            return None
        payment.next_attempt()
        failure = await self.open()
        if failure is None:
            payment.retry_opened()  # else the retry's caller learns how the checkout ended
        return failure


async def ask_about_payment(
    checkout: CheckoutInput,
    payment: Payment,
    summary: str,
    within: timedelta,
    *,
    local: bool = False,
) -> None:
    """Ask the gateway how the current attempt's payment stands, and tell the payment: a
    status check while waiting, or one someone asked for (the checkout's `check_payment`).
    An unanswered check decides nothing."""
    order = OrderRef(checkout.order_id, checkout.gateway, payment.attempt)
    answer = await ask_gateway(
        PaymentActivities.payment_status, order, summary, within, local=local
    )
    if answer is not None:
        payment.take(
            PaymentEvent.answered(
                checkout.gateway,
                f"check-{workflow.now()}",
                checkout.order_id,
                order.attempt,
                answer,
            )
        )
