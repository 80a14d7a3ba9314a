"""The checkout workflow on the time-skipping server, with its real activities: a real
PostgreSQL and the sandbox gateway over HTTP. A 15-minute payment window passes in
milliseconds."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import timedelta

import pytest
from temporalio.client import WorkflowFailureError

from kassa.contracts import CancelRequest
from kassa.ids import checkout_workflow_id
from kassa.statuses import OrderStatus, PaymentOutcome
from orchestration.seal import sealed
from tests.history_events import local_activity_types
from tests.support import buyer_acts, eventually, new_checkout, record_history
from tests.workflows.conftest import (
    entitlements,
    gateway_event,
    gateway_payment,
    order_row,
    pass_the_payment_window,
    pay,
)
from workflows.checkout import CheckoutWorkflow


async def test_paid_checkout_is_fulfilled(started, sessions, sandbox, storefront):
    checkout = new_checkout(amount=12345, quantity=2)
    view, handle = await started(checkout)
    assert view.status == OrderStatus.AWAITING_PAYMENT
    assert view.payment.payment_url.startswith("http://127.0.0.1:")

    await buyer_acts(view.payment.payment_url, "succeeded")
    await handle.signal(
        CheckoutWorkflow.payment_event, gateway_event(view, PaymentOutcome.SUCCEEDED)
    )
    result = await handle.result()

    assert result.status == OrderStatus.FULFILLED
    order = await order_row(sessions, checkout.order_id)
    assert (order.status, order.amount, order.currency) == ("fulfilled", 24690, "CNY")
    assert order.paid_at is not None
    assert await entitlements(sessions, checkout.order_id) == [
        (checkout.customer_id, "course-python-101")
    ]
    assert gateway_payment(sandbox, checkout.order_id)["status"] == "succeeded"
    assert gateway_payment(sandbox, checkout.order_id)["amount"] == 24690
    [webhook] = storefront.for_order(checkout.order_id)
    assert webhook["payload"]["type"] == "order.fulfilled"
    assert webhook["id"] == f"evt_{checkout.order_id}_fulfilled"


async def test_unpaid_checkout_expires_after_its_window(
    started, time_skipping_env, sessions, sandbox, storefront
):
    checkout = new_checkout()
    before = await time_skipping_env.get_current_time()
    view, handle = await started(checkout)

    await pass_the_payment_window(time_skipping_env)
    result = await handle.result()

    assert result.status == OrderStatus.EXPIRED
    assert await time_skipping_env.get_current_time() - before >= timedelta(minutes=15)
    assert (await order_row(sessions, checkout.order_id)).status == "expired"
    assert gateway_payment(sandbox, checkout.order_id)["status"] == "closed"
    assert await entitlements(sessions, checkout.order_id) == []
    assert [w["payload"]["type"] for w in storefront.for_order(checkout.order_id)] == [
        "order.expired"
    ]
    await record_history(handle, "checkout-expired")


async def test_cancel_closes_the_gateway_payment(started, sessions, sandbox):
    checkout = new_checkout()
    view, handle = await started(checkout)

    ended = await handle.execute_update(
        CheckoutWorkflow.cancel, CancelRequest("buyer left", "storefront:shop")
    )

    assert ended.status == OrderStatus.CANCELLED
    assert (await handle.result()).status == OrderStatus.CANCELLED
    order = await order_row(sessions, checkout.order_id)
    assert (order.status, order.reason_code, order.status_reason) == (
        "cancelled",
        "cancelled_by_storefront",
        "buyer left",
    )
    assert gateway_payment(sandbox, checkout.order_id)["status"] == "closed"
    await record_history(handle, "checkout-cancelled")


async def test_declined_payment_fails_the_order(started, sessions, sandbox):
    checkout = new_checkout()
    view, handle = await started(checkout)

    await buyer_acts(view.payment.payment_url, "declined")
    await handle.signal(
        CheckoutWorkflow.payment_event, gateway_event(view, PaymentOutcome.DECLINED)
    )

    assert (await handle.result()).status == OrderStatus.FAILED
    assert (await order_row(sessions, checkout.order_id)).status == "failed"
    assert await entitlements(sessions, checkout.order_id) == []
    await record_history(handle, "checkout-declined")


async def test_order_over_the_amount_limit_is_rejected_before_the_gateway(
    started, sessions, sandbox, settings
):
    checkout = new_checkout(amount=settings.risk_max_order_major * 100 + 1)  # CNY
    view, handle = await started(checkout)

    assert view.status == OrderStatus.REJECTED
    assert view.payment is None
    assert view.reason_code == "risk_rejected" and "over the limit" in view.reason
    assert (await order_row(sessions, checkout.order_id)).status == "rejected"
    assert gateway_payment(sandbox, checkout.order_id) is None  # the gateway saw nothing
    await handle.result()
    await record_history(handle, "checkout-rejected")


async def test_customer_over_the_velocity_limit_is_rejected(started, settings, sandbox):
    customer = f"cus_{uuid.uuid4().hex[:8]}"
    for _ in range(settings.risk_max_orders_per_customer):
        view, _ = await started(new_checkout(customer_id=customer))
        assert view.status == OrderStatus.AWAITING_PAYMENT

    one_more = new_checkout(customer_id=customer)
    view, _ = await started(one_more)

    assert view.status == OrderStatus.REJECTED
    assert "orders in the last" in view.reason
    assert gateway_payment(sandbox, one_more.order_id) is None


async def test_parallel_checkouts_of_one_customer_open_exactly_the_limit(
    started, settings, sandbox
):
    """Checkouts started at once for one customer: the velocity limit lets exactly its
    number through to the gateway, however their risk checks interleave."""
    customer = f"cus_{uuid.uuid4().hex[:8]}"
    limit = settings.risk_max_orders_per_customer
    checkouts = [new_checkout(customer_id=customer) for _ in range(limit + 4)]

    views = [view for view, _ in await asyncio.gather(*map(started, checkouts))]

    assert sorted(v.status for v in views) == sorted(
        [OrderStatus.AWAITING_PAYMENT] * limit + [OrderStatus.REJECTED] * 4
    )
    opened = [c for c in checkouts if gateway_payment(sandbox, c.order_id) is not None]
    assert len(opened) == limit


async def test_expiry_finds_the_buyer_paid_at_the_gateway(
    started, time_skipping_env, sessions, sandbox
):
    """The buyer paid but the callback never came: closing at the gateway is refused because
    the payment succeeded, so the order is paid, never expired (invariant 3)."""
    checkout = new_checkout()
    view, handle = await started(checkout)
    await buyer_acts(view.payment.payment_url, "succeeded")  # and no signal follows

    await pass_the_payment_window(time_skipping_env)
    result = await handle.result()

    assert result.status == OrderStatus.FULFILLED
    assert (await order_row(sessions, checkout.order_id)).status == "fulfilled"
    assert await entitlements(sessions, checkout.order_id) != []
    assert gateway_payment(sandbox, checkout.order_id)["status"] == "succeeded"
    await record_history(handle, "checkout-paid-before-close")


async def test_duplicate_and_late_contrary_callbacks_change_nothing(started, sessions):
    checkout = new_checkout()
    view, handle = await started(checkout)
    await buyer_acts(view.payment.payment_url, "succeeded")

    succeeded = gateway_event(view, PaymentOutcome.SUCCEEDED, n=1)
    await handle.signal(CheckoutWorkflow.payment_event, succeeded)
    await handle.signal(CheckoutWorkflow.payment_event, succeeded)
    await handle.signal(
        CheckoutWorkflow.payment_event, gateway_event(view, PaymentOutcome.DECLINED, 2)
    )

    assert (await handle.result()).status == OrderStatus.FULFILLED
    assert (await order_row(sessions, checkout.order_id)).status == "fulfilled"


async def test_a_hand_typed_payment_callback_pays_nothing(started, sessions, sandbox):
    """`payment_event` sent by hand (the Temporal UI's Send a Signal) while the buyer has
    paid nothing: the checkout asks the gateway, which says pending, and the order still
    waits. Once the buyer really pays, the real callback pays it, even though the forgery
    borrowed its event id."""
    checkout = new_checkout()
    view, handle = await started(checkout)
    forged = gateway_event(view, PaymentOutcome.SUCCEEDED)
    elsewhere = replace(
        forged, event_id="evt_x", payment_id="pay_forged", order_id="ord_other", amount=1
    )
    await handle.signal(CheckoutWorkflow.payment_event, forged)
    await handle.signal(CheckoutWorkflow.payment_event, elsewhere)

    async def both_confirmed() -> bool:
        asked = local_activity_types(await handle.fetch_history())  # each once it ended
        return asked.count("confirm_payment") == 2

    await eventually(both_confirmed)
    state = await handle.query(CheckoutWorkflow.state)
    assert state.status == OrderStatus.AWAITING_PAYMENT
    assert (await order_row(sessions, checkout.order_id)).status == "awaiting_payment"
    assert await entitlements(sessions, checkout.order_id) == []

    await pay(view, handle)  # the real callback, under the event id the forgery used
    assert (await handle.result()).status == OrderStatus.FULFILLED
    assert gateway_payment(sandbox, checkout.order_id)["refunded_amount"] == 0


async def test_a_checkout_started_by_hand_gets_no_order(
    started, workflow_env, task_queue, settings, sessions, sandbox
):
    """A CheckoutWorkflow started in Temporal by hand (the UI's Start Workflow, `temporal
    workflow start`): without the API's seal, or with a sealed input changed afterwards (a
    lower price), it fails before any order or gateway payment exists."""
    unsealed = new_checkout(amount=9900)
    honest = sealed(settings, new_checkout(amount=9900))
    cheaper = replace(honest, items=[replace(honest.items[0], unit_amount=1)])
    for forged in (unsealed, cheaper):
        handle = await workflow_env.client.start_workflow(
            CheckoutWorkflow.run,
            forged,
            id=checkout_workflow_id(forged.order_id),
            task_queue=task_queue,
        )
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
        assert failed.value.cause.type == "CheckoutNotSealed"
        assert await order_row(sessions, forged.order_id) is None
        assert gateway_payment(sandbox, forged.order_id) is None
    # The same checkout as the API seals it is created.
    view, handle = await started(new_checkout())
    assert view.status == OrderStatus.AWAITING_PAYMENT
    await handle.terminate("test over")
