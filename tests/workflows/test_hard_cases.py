"""Gateways that misbehave (the hard-cases issue), on the time-skipping server."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from kassa.contracts import CancelRequest, PaymentEvent
from kassa.ids import checkout_workflow_id, refund_workflow_id, stray_refund_id
from kassa.statuses import OrderStatus, PaymentOutcome
from tests.history_events import activity_types, local_activity_types
from tests.support import buyer_acts, eventually, new_checkout
from tests.workflows.conftest import order_row, pay
from workflows.checkout import CheckoutWorkflow


async def test_callback_before_the_payment_call_returned_and_a_lost_answer(
    started, workflow_env, sandbox, sessions, faults
):
    """The gateway opens the payment but its answer is lost; while the activity retries,
    the buyer pays and the callback arrives. Nothing is lost, nothing is doubled."""
    await faults(lose_next_answers=1)
    checkout = new_checkout()
    starting = asyncio.create_task(started(checkout))
    while checkout.order_id not in sandbox.by_order:  # the first call took effect
        await asyncio.sleep(0.01)
    payment = sandbox.payments[sandbox.by_order[checkout.order_id]]
    await buyer_acts(payment["payment_url"])
    handle = workflow_env.client.get_workflow_handle_for(
        CheckoutWorkflow.run, checkout_workflow_id(checkout.order_id)
    )
    await handle.signal(
        CheckoutWorkflow.payment_event,
        PaymentEvent(
            "sandbox",
            "evt_early",
            checkout.order_id,
            payment["id"],
            PaymentOutcome.SUCCEEDED,
            checkout.amount,
            checkout.currency,
        ),
    )

    view, _ = await starting
    result = await handle.result()

    assert result.status == OrderStatus.FULFILLED
    assert view.payment.payment_id == payment["id"]  # the retry got the same payment
    assert [
        p["id"] for p in sandbox.payments.values() if p["merchant_order_id"] == checkout.order_id
    ] == [payment["id"]]
    assert sandbox.behaviour.faults.counts == {"lost_answers": 1}
    assert (await order_row(sessions, checkout.order_id)).status == "fulfilled"


async def test_a_lost_callback_is_found_by_asking_the_gateway(started, sessions, faults, sandbox):
    await faults(drop_callbacks=1.0)
    # The first check after a second: time does not skip while the test server is locked
    # after an update-with-start (sdk-java#1903), so the default 15 s would pass for real.
    checkout = new_checkout(status_check_first_seconds=1, status_check_max_seconds=2)
    view, handle = await started(checkout)
    await buyer_acts(view.payment.payment_url)  # its callback is dropped: no signal comes

    result = await handle.result()

    assert result.status == OrderStatus.FULFILLED
    assert sandbox.behaviour.faults.counts["dropped_callbacks"] == 1
    history = (await handle.fetch_history()).to_json()
    assert "payment_status" in history and "close_payment" not in history


async def test_a_lost_callback_is_found_when_asked_to_check(started, faults, sandbox):
    """The checkout asks on its own only once, later than this buyer pays: the storefront's
    check-payment (the buyer is back and says they paid) makes it ask the gateway now."""
    await faults(drop_callbacks=1.0)
    checkout = new_checkout(status_check_first_seconds=3600)
    view, handle = await started(checkout)
    await handle.signal(CheckoutWorkflow.check_payment)  # not paid yet: nothing changes

    async def asked() -> int:
        return local_activity_types(await handle.fetch_history()).count("payment_status")

    await eventually(lambda: asked())
    await buyer_acts(view.payment.payment_url)  # its callback is dropped: no signal comes
    assert (await handle.query(CheckoutWorkflow.state)).status == OrderStatus.AWAITING_PAYMENT

    await handle.signal(CheckoutWorkflow.check_payment)

    result = await handle.result()
    assert result.status == OrderStatus.FULFILLED
    assert sandbox.behaviour.faults.counts["dropped_callbacks"] == 1
    assert await asked() == 2  # each check_payment asked once
    assert "close_payment" not in activity_types(await handle.fetch_history())


async def test_another_amount_found_only_by_the_close_is_held(started, sessions, sandbox):
    """The buyer paid 1.00 instead of the order's amount and the callback never came; the
    cancel's close finds the capture: the order is held for support, not paid."""
    checkout = new_checkout()
    view, handle = await started(checkout)
    await buyer_acts(view.payment.payment_url, amount=100)  # no callback reaches the workflow

    answer = await handle.execute_update(
        CheckoutWorkflow.cancel, CancelRequest("changed mind", "storefront:shop")
    )

    assert answer.status == OrderStatus.ON_HOLD
    order = await order_row(sessions, checkout.order_id)
    assert order.status == "on_hold" and order.status_reason.startswith(
        "paid 1.00 CNY instead of 99.00 CNY"
    )
    assert order.paid_at is None
    await handle.terminate("test finished: support's refund runs on the dev server elsewhere")


class TestStraysDuringTheCheckout:
    """On the dev server: the Java test server does not hand out the activity tasks of the
    child refund workflow (see tests/workflows/test_refund.py::TestCompensation)."""

    @pytest.fixture
    def workflow_env(self, dev_env):
        return dev_env

    async def test_a_second_capture_gets_its_own_refund(
        self, started, workflow_env, sandbox, settings
    ):
        """The buyer pays twice (two gateway payments); the checkout keeps its own and, when
        it ends, starts the refund of the other (a child that outlives it, id from the
        payment), which gives it back in full."""
        checkout = new_checkout()
        view, handle = await started(checkout)
        async with httpx.AsyncClient(base_url=settings.sandbox_url) as http:
            extra = (
                await http.post(f"/_emulator/payments/{view.payment.payment_id}/capture-again")
            ).json()
        second = PaymentEvent(
            "sandbox",
            "evt_second",
            checkout.order_id,
            extra["id"],
            PaymentOutcome.SUCCEEDED,
            checkout.amount,
            checkout.currency,
        )
        await handle.signal(CheckoutWorkflow.payment_event, second)
        await pay(view, handle)

        assert (await handle.result()).status == OrderStatus.FULFILLED
        refund = workflow_env.client.get_workflow_handle(
            refund_workflow_id(stray_refund_id(extra["id"]))
        )
        assert (await refund.result())["status"] == "succeeded"
        assert (await refund.describe()).parent_id == handle.id
        assert sandbox.payments[extra["id"]]["refunded_amount"] == checkout.amount
        assert sandbox.payments[view.payment.payment_id]["refunded_amount"] == 0
