"""The checkout's middle chapter: collect the payment at the gateway. Open it, wait for the
buyer (asking the gateway now and then, in case the callback is lost), let the buyer try
again after a decline, and close whatever is still open before the order ends. What each
word from the gateway means is decided by the `Payment` (workflows/payment.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

from workflows.payment import Payment, Verdict
from workflows.steps import GATEWAY_CALL, GATEWAY_RETRY, ask_gateway, details, wait_for_word

with workflow.unsafe.imports_passed_through():
    from activities.payments import PaymentActivities
    from kassa.contracts import CheckoutInput, OpenPaymentInput, OrderRef, PaymentEvent
    from kassa.statuses import PaymentOutcome

# Opening the payment must finish while the storefront's request still waits for the URL.
# Room for a retry after a worker died mid-call, well inside the shortest payment window.
OPEN_PAYMENT_DEADLINE = timedelta(seconds=45)


class Collection:
    """One checkout's payment at the gateway, from opening to decided."""

    def __init__(self, checkout: CheckoutInput, payment: Payment, expires_at: datetime) -> None:
        self.checkout, self.payment, self.expires_at = checkout, payment, expires_at

    async def open(self) -> str | None:
        """Open the current attempt's payment at the gateway; the failure, if it could not."""
        payment = self.payment
        details(f"Opening payment attempt {payment.attempt} at {self.checkout.gateway}")
        try:
            payment.session = await workflow.execute_activity_method(
                PaymentActivities.create_payment,
                OpenPaymentInput(self.checkout, self.expires_at, payment.attempt),
                start_to_close_timeout=GATEWAY_CALL,
                schedule_to_close_timeout=OPEN_PAYMENT_DEADLINE,
                retry_policy=GATEWAY_RETRY,
                summary="open the payment at the gateway",
            )
        except ActivityError as err:
            return f"could not open the payment: {err.cause}"
        return None

    async def until_decided(self, on_decline: Callable[[], Awaitable[None]]) -> str | None:
        """Until the payment is paid, held, declined for good, or closed unpaid at the
        gateway. `on_decline` tells the order and the storefront that the buyer may retry.
        Returns why it failed, if a retry's payment could not be opened."""
        payment = self.payment
        await self._wait_for_the_buyer()
        while payment.may_retry() and await self._await_retry(on_decline):
            if failure := await self._open_next_attempt():
                return failure
            await self._wait_for_the_buyer()
        if payment.verdict == Verdict.UNDECIDED:
            # Expiry or cancellation: close at the gateway first, then decide (invariant 3).
            details(f"Closing the unpaid payment at {self.checkout.gateway}")
            await self.close()
        return None

    async def close(self) -> None:
        """Close the current payment at the gateway; if the buyer paid first, that capture
        is judged like any word from the gateway."""
        checkout, payment = self.checkout, self.payment
        closed = await workflow.execute_activity_method(
            PaymentActivities.close_payment,
            OrderRef(checkout.order_id, checkout.gateway, payment.attempt),
            start_to_close_timeout=GATEWAY_CALL,
            retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=5)),
            summary="close the payment at the gateway",
        )
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
        """Until the gateway's word, a cancel request, or the end of the payment window;
        meanwhile ask the gateway, backing off (a few checks per 15 minutes)."""
        checkout, payment = self.checkout, self.payment
        order = OrderRef(checkout.order_id, checkout.gateway, payment.attempt)

        async def ask(interval: timedelta) -> None:
            # Bounded: a gateway outage must not keep us from the callback or the deadline.
            within = min(interval, timedelta(minutes=1))
            answer = await ask_gateway(
                PaymentActivities.payment_status, order, "ask the gateway", within
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

        await wait_for_word(
            payment.waiting_is_over,
            ask,
            first=timedelta(seconds=checkout.status_check_first_seconds),
            most=timedelta(seconds=checkout.status_check_max_seconds),
            until=self.expires_at,
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
        try:
            await workflow.wait_condition(
                payment.retry_wait_is_over,
                timeout=max(self.expires_at - workflow.now(), timedelta(0)),
                timeout_summary="the buyer's retry",
            )
        except TimeoutError:
            # Close it before failing the order: the gateway may have captured it after all.
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
