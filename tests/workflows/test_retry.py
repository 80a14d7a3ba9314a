"""The buyer tries again after a decline (hard case 9), on the time-skipping server: each
attempt is a gateway payment of its own, and at most one of them is kept."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError

from gateways.sandbox import sandbox_reference
from kassa.statuses import OrderStatus, PaymentOutcome
from tests.support import buyer_acts, eventually, new_checkout, record_history
from tests.workflows.conftest import (
    gateway_event,
    gateway_payment,
    order_row,
    pass_the_payment_window,
    pay,
)
from workflows.checkout import CheckoutWorkflow


def attempts(sandbox, order_id: str, n: int) -> list[dict]:
    """The gateway payments of the order's attempts 1..n, as the gateway sees them."""
    return [gateway_payment(sandbox, sandbox_reference(order_id, a)) for a in range(1, n + 1)]


async def decline(view, handle) -> None:
    await buyer_acts(view.payment.payment_url, "declined")
    await handle.signal(
        CheckoutWorkflow.payment_event, gateway_event(view, PaymentOutcome.DECLINED)
    )


async def approved_after_all(settings, view) -> None:
    """The declined payment is captured after all (the buyer's bank approved it late)."""
    async with httpx.AsyncClient(base_url=settings.sandbox_url) as http:
        captured = await http.post(f"/_emulator/payments/{view.payment.payment_id}/late-capture")
        captured.raise_for_status()


async def _row_with_code(sessions, order_id: str, code: str):
    row = await order_row(sessions, order_id)
    return row if row.reason_code == code else None


async def until_retry_is_offered(handle):
    while not (view := await handle.query(CheckoutWorkflow.state)).can_retry:
        pass
    return view


async def test_the_buyer_pays_on_the_second_attempt(started, sandbox, sessions):
    checkout = new_checkout(max_payment_attempts=3)
    first, handle = await started(checkout)
    await decline(first, handle)
    declined = await until_retry_is_offered(handle)
    assert declined.status == OrderStatus.AWAITING_PAYMENT
    assert "declined by the gateway (attempt 1 of 3)" in declined.reason
    # The row follows the workflow's state (the offer is made while the row is written).
    row = await eventually(
        lambda: _row_with_code(sessions, checkout.order_id, "declined_may_retry")
    )
    assert declined.reason_code == "declined_may_retry"
    assert "may try again" in row.status_reason

    first_click, second_click = await asyncio.gather(
        handle.execute_update(CheckoutWorkflow.retry_payment, id="click-1"),
        handle.execute_update(CheckoutWorkflow.retry_payment, id="click-2"),
    )
    second = first_click
    with pytest.raises(WorkflowUpdateFailedError):  # it is open and not declined
        await handle.execute_update(CheckoutWorkflow.retry_payment, id="click-3")
    await pay(second, handle)
    result = await handle.result()

    assert second.payment.attempt == 2 and second_click.payment == second.payment  # one payment
    assert second.payment.payment_id != first.payment.payment_id
    assert result.status == OrderStatus.FULFILLED
    one, two = attempts(sandbox, checkout.order_id, 2)
    assert (one["status"], two["status"]) == ("declined", "succeeded")
    assert gateway_payment(sandbox, sandbox_reference(checkout.order_id, 3)) is None
    order = await order_row(sessions, checkout.order_id)
    assert (order.payment_attempts, order.gateway_payment_id) == (2, two["id"])
    assert (order.reason_code, order.status_reason) == (None, None)
    await record_history(handle, "checkout-paid-on-a-retry")


async def test_a_decline_nobody_retries_fails_when_the_window_closes(
    started, workflow_env, sessions, sandbox
):
    checkout = new_checkout(max_payment_attempts=3)
    view, handle = await started(checkout)
    await decline(view, handle)
    await until_retry_is_offered(handle)

    await pass_the_payment_window(workflow_env)
    result = await handle.result()

    assert (result.status, result.reason_code, result.reason) == (
        OrderStatus.FAILED,
        "declined",
        "declined by the gateway",
    )
    assert [p["status"] for p in attempts(sandbox, checkout.order_id, 1)] == ["declined"]
    assert (await order_row(sessions, checkout.order_id)).payment_attempts == 1


async def test_the_last_allowed_decline_fails_at_once_and_refuses_a_retry(started, sandbox):
    checkout = new_checkout(max_payment_attempts=2)
    first, handle = await started(checkout)
    await decline(first, handle)
    await until_retry_is_offered(handle)
    second = await handle.execute_update(CheckoutWorkflow.retry_payment, id="retry-after-1")
    await decline(second, handle)

    assert (await handle.result()).status == OrderStatus.FAILED
    with pytest.raises(RPCError):  # the checkout is over
        await handle.execute_update(CheckoutWorkflow.retry_payment, id="retry-after-2")


async def test_no_retry_before_a_decline(started):
    view, handle = await started(new_checkout(max_payment_attempts=3))
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(CheckoutWorkflow.retry_payment, id="retry-after-1")
    assert refused.value.cause.type == "RetryNotAllowed"
    assert (await handle.query(CheckoutWorkflow.state)).payment == view.payment


async def test_a_declined_payment_that_was_paid_after_all_is_kept(
    started, sandbox, sessions, settings
):
    """The decline was not the last word: the buyer's payment went through. The close before
    the retry finds it captured, so the order is paid with it and no other payment opens."""
    checkout = new_checkout(max_payment_attempts=3)
    view, handle = await started(checkout)
    await decline(view, handle)
    await until_retry_is_offered(handle)
    await approved_after_all(settings, view)  # its callback is lost

    answer = await handle.execute_update(CheckoutWorkflow.retry_payment, id="retry-after-1")
    result = await handle.result()

    assert answer.status.is_paid and answer.payment.attempt == 1
    assert result.status == OrderStatus.FULFILLED
    assert gateway_payment(sandbox, sandbox_reference(checkout.order_id, 2)) is None
    assert (await order_row(sessions, checkout.order_id)).payment_attempts == 1


async def test_a_declined_payment_approved_while_a_retry_is_offered_is_kept(
    started, sandbox, settings
):
    """The declined payment is captured after all (a late approval, or a gateway that lets
    the buyer pay again on the same page): its capture outranks the decline, and the order
    is paid with it (nothing refunded)."""
    checkout = new_checkout(max_payment_attempts=3)
    view, handle = await started(checkout)
    await decline(view, handle)
    await until_retry_is_offered(handle)
    await approved_after_all(settings, view)
    await handle.signal(
        CheckoutWorkflow.payment_event, gateway_event(view, PaymentOutcome.SUCCEEDED, n=2)
    )

    assert (await handle.result()).status == OrderStatus.FULFILLED
    assert gateway_payment(sandbox, checkout.order_id)["refunded_amount"] == 0
    assert gateway_payment(sandbox, sandbox_reference(checkout.order_id, 2)) is None


async def test_the_declined_payment_is_closed_before_the_order_fails(
    started, workflow_env, sandbox, settings
):
    """No retry came, but the declined payment was captured after all and its callback was
    lost: the close at the end of the window finds it, and the order is paid."""
    checkout = new_checkout(max_payment_attempts=3)
    view, handle = await started(checkout)
    await decline(view, handle)
    await until_retry_is_offered(handle)
    await approved_after_all(settings, view)  # no callback reaches the workflow

    await pass_the_payment_window(workflow_env)

    assert (await handle.result()).status == OrderStatus.FULFILLED
    assert "close_payment" in (await handle.fetch_history()).to_json()
