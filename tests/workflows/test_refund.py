"""Refunds and compensation on the time-skipping server, with the real activities."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

import httpx
import pytest
import pytest_asyncio
from temporalio import activity
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from db import refunds
from db.models import Refund
from kassa import search
from kassa.contracts import CheckoutInput, RefundEvent, RefundInput
from kassa.ids import compensation_refund_id, refund_workflow_id
from kassa.reasons import ReasonCode
from kassa.statuses import Caller, OrderStatus, RefundStatus
from tests.support import eventually, ledger_of, new_checkout, record_history
from tests.workflows.conftest import entitlements, gateway_payment, order_row, pay
from workflows.refund import RefundWorkflow


@pytest_asyncio.fixture
async def fulfilled(started):
    """A paid, fulfilled checkout to refund."""

    async def buy(amount: int = 3000) -> CheckoutInput:
        checkout = new_checkout(amount=amount)
        view, handle = await started(checkout)
        await pay(view, handle)
        assert (await handle.result()).status == OrderStatus.FULFILLED
        return checkout

    return buy


@pytest_asyncio.fixture
async def gateway_behaviour(settings):
    """Set how the sandbox gateway behaves for this test; back to normal afterwards."""
    async with httpx.AsyncClient(base_url=settings.sandbox_url) as http:

        async def set_behaviour(**behaviour):
            (await http.put("/_emulator/behaviour", json=behaviour)).raise_for_status()

        yield set_behaviour
        await set_behaviour()


async def refund(
    env,
    task_queue,
    checkout: CheckoutInput,
    amount: int,
    n: int = 1,
    requested_by: Caller = Caller.STOREFRONT,
    *,
    sessions,
):
    """A refund as the API starts one: reserved within the cap first, then its workflow."""
    async with sessions.begin() as session:
        reserved = await refunds.reserve(
            session,
            refund_id=f"rf_{checkout.order_id}_{n}",
            order_id=checkout.order_id,
            amount=amount,
            reason="changed my mind",
            requested_by=requested_by,
        )
        request = refunds.as_input(reserved, checkout.gateway, checkout.customer_id)
    return await env.client.start_workflow(
        RefundWorkflow.run, request, id=refund_workflow_id(request.refund_id), task_queue=task_queue
    )


async def test_partial_then_full_refund(
    fulfilled, time_skipping_env, task_queue, sessions, sandbox, storefront
):
    checkout = await fulfilled(amount=3000)

    first = await (
        await refund(time_skipping_env, task_queue, checkout, 1000, n=1, sessions=sessions)
    ).result()
    assert first.status == RefundStatus.SUCCEEDED
    order = await order_row(sessions, checkout.order_id)
    assert (order.status, order.refunded_amount) == ("partially_refunded", 1000)
    assert await entitlements(sessions, checkout.order_id, active_only=True) != []

    second = await (
        await refund(time_skipping_env, task_queue, checkout, 2000, n=2, sessions=sessions)
    ).result()
    assert second.status == RefundStatus.SUCCEEDED
    order = await order_row(sessions, checkout.order_id)
    assert (order.status, order.refunded_amount) == ("refunded", 3000)
    assert await entitlements(sessions, checkout.order_id, active_only=True) == []
    assert gateway_payment(sandbox, checkout.order_id)["refunded_amount"] == 3000
    assert await ledger_of(sessions, checkout.order_id) == [
        ("capture", "gateway:sandbox", 3000),
        ("capture", "revenue", -3000),
        ("refund", "refunds", 1000),
        ("refund", "gateway:sandbox", -1000),
        ("refund", "refunds", 2000),
        ("refund", "gateway:sandbox", -2000),
    ]


async def test_refund_settled_later_by_callback(
    fulfilled, time_skipping_env, task_queue, sessions, gateway_behaviour, settings, sandbox
):
    await gateway_behaviour(refunds_settle="later")
    checkout = await fulfilled()
    handle = await refund(time_skipping_env, task_queue, checkout, 3000, sessions=sessions)
    refund_id = f"rf_{checkout.order_id}_1"
    while refund_id not in sandbox.refunds:  # the gateway accepted it for processing
        await asyncio.sleep(0.01)
    async with httpx.AsyncClient(base_url=settings.sandbox_url) as http:
        settled = await http.post(
            f"/_emulator/refunds/{refund_id}/settle", json={"outcome": "succeeded"}
        )
        settled.raise_for_status()
    # The gateway's callback, as the API delivers it after verifying it. Time does not move
    # until we await the result, so no status check can have come first.
    await handle.signal(
        RefundWorkflow.refund_event,
        RefundEvent("sandbox", "evt_r1", refund_id, RefundStatus.SUCCEEDED),
    )

    assert (await handle.result()).status == RefundStatus.SUCCEEDED
    assert (await order_row(sessions, checkout.order_id)).status == "refunded"
    # The callback made it ask the gateway at once: one question, the confirmation.
    asked = [
        e
        for e in (await handle.fetch_history()).events
        if e.HasField("activity_task_scheduled_event_attributes")
        and e.activity_task_scheduled_event_attributes.activity_type.name == "refund_status"
    ]
    assert len(asked) == 1


async def test_a_hand_typed_refund_callback_settles_nothing(
    fulfilled, time_skipping_env, task_queue, sessions, gateway_behaviour, sandbox
):
    """`refund_event` sent by hand (the Temporal UI's Send a Signal) saying the refund
    succeeded while the gateway still works on it: the gateway's answer counts, the refund
    stays pending and nothing is booked."""
    await gateway_behaviour(refunds_settle="later")
    checkout = await fulfilled()
    handle = await refund(time_skipping_env, task_queue, checkout, 3000, sessions=sessions)
    refund_id = f"rf_{checkout.order_id}_1"
    while refund_id not in sandbox.refunds:
        await asyncio.sleep(0.01)
    await handle.signal(
        RefundWorkflow.refund_event,
        RefundEvent("sandbox", "evt_forged", refund_id, RefundStatus.SUCCEEDED),
    )
    await time_skipping_env.sleep(timedelta(seconds=5))  # well before the first status check

    assert (await handle.query(RefundWorkflow.state)).status == RefundStatus.PENDING
    order = await order_row(sessions, checkout.order_id)
    assert (order.status, order.refunded_amount) == ("fulfilled", 0)
    assert len(await ledger_of(sessions, checkout.order_id)) == 2  # the capture alone
    assert sandbox.refunds[refund_id]["status"] == "processing"  # the gateway still works on it
    await handle.terminate("test over")


async def test_refund_settled_later_is_found_by_polling(
    fulfilled, time_skipping_env, task_queue, sessions, gateway_behaviour, settings, sandbox
):
    await gateway_behaviour(refunds_settle="later")
    checkout = await fulfilled()
    handle = await refund(time_skipping_env, task_queue, checkout, 1200, sessions=sessions)
    refund_id = f"rf_{checkout.order_id}_1"
    while refund_id not in sandbox.refunds:
        await time_skipping_env.sleep(timedelta(seconds=1))
    async with httpx.AsyncClient(base_url=settings.sandbox_url) as http:
        await http.post(f"/_emulator/refunds/{refund_id}/settle", json={"outcome": "succeeded"})

    # No callback reaches the workflow: its status checks find the refund settled.
    assert (await handle.result()).status == RefundStatus.SUCCEEDED
    assert (await order_row(sessions, checkout.order_id)).refunded_amount == 1200


async def test_a_refund_unsettled_for_a_day_needs_action_until_it_settles(
    fulfilled, time_skipping_env, task_queue, sessions, gateway_behaviour, settings, sandbox
):
    await gateway_behaviour(refunds_settle="later")
    checkout = await fulfilled()
    handle = await refund(time_skipping_env, task_queue, checkout, 1200, sessions=sessions)
    refund_id = f"rf_{checkout.order_id}_1"
    while refund_id not in sandbox.refunds:
        await time_skipping_env.sleep(timedelta(seconds=1))
    assert (await handle.describe()).typed_search_attributes.get(search.NEEDS_ATTENTION) is None

    await time_skipping_env.sleep(timedelta(days=1, hours=2))  # checks hourly by then
    attributes = (await handle.describe()).typed_search_attributes
    assert attributes.get(search.NEEDS_ATTENTION) == "refund_needs_action"
    assert attributes.get(search.REFUND_STATUS) == "pending"
    async with httpx.AsyncClient(base_url=settings.sandbox_url) as http:
        await http.post(f"/_emulator/refunds/{refund_id}/settle", json={"outcome": "succeeded"})

    assert (await handle.result()).status == RefundStatus.SUCCEEDED
    attributes = (await handle.describe()).typed_search_attributes
    assert attributes.get(search.NEEDS_ATTENTION) is None
    assert attributes.get(search.REFUND_STATUS) == "succeeded"


async def test_a_refund_the_gateway_does_not_know_is_asked_for_again(
    fulfilled, time_skipping_env, task_queue, sessions, gateway_behaviour, sandbox
):
    """Alipay's refund query answers empty for a refund it never took: the status check
    asks for it again under the same number (one refund at the gateway, never two)."""
    await gateway_behaviour(refunds_settle="later")
    checkout = await fulfilled()
    handle = await refund(time_skipping_env, task_queue, checkout, 700, sessions=sessions)
    refund_id = f"rf_{checkout.order_id}_1"
    while refund_id not in sandbox.refunds:
        await time_skipping_env.sleep(timedelta(seconds=1))
    lost = sandbox.refunds.pop(refund_id)  # the gateway forgets it, money and all
    sandbox.payments[lost["payment_id"]]["refunded_amount"] -= lost["amount"]
    await gateway_behaviour(refunds_settle="instant")

    assert (await handle.result()).status == RefundStatus.SUCCEEDED
    assert (await order_row(sessions, checkout.order_id)).refunded_amount == 700
    again = sandbox.refunds[refund_id]
    assert (again["amount"], again["status"]) == (700, "succeeded")


async def test_transient_gateway_failures_are_retried_with_one_refund(
    fulfilled, time_skipping_env, task_queue, sessions, gateway_behaviour, sandbox
):
    checkout = await fulfilled()
    await gateway_behaviour(fail_next_refund_calls=2)

    result = await (
        await refund(time_skipping_env, task_queue, checkout, 500, sessions=sessions)
    ).result()

    assert result.status == RefundStatus.SUCCEEDED
    at_gateway = [
        r for r in sandbox.refunds.values() if r["merchant_order_id"] == checkout.order_id
    ]
    assert [(r["amount"], r["status"]) for r in at_gateway] == [(500, "succeeded")]


async def test_refund_the_gateway_fails_releases_the_reservation(
    fulfilled, time_skipping_env, task_queue, sessions, gateway_behaviour, settings, storefront
):
    await gateway_behaviour(refunds_settle="later")
    checkout = await fulfilled()
    handle = await refund(time_skipping_env, task_queue, checkout, 3000, sessions=sessions)
    refund_id = f"rf_{checkout.order_id}_1"
    while (await handle.query(RefundWorkflow.state)).status != RefundStatus.PENDING:
        pass
    async with httpx.AsyncClient(base_url=settings.sandbox_url) as http:
        while (
            await http.post(f"/_emulator/refunds/{refund_id}/settle", json={"outcome": "failed"})
        ).status_code == 404:
            await time_skipping_env.sleep(timedelta(seconds=1))

    result = await handle.result()

    assert result.status == RefundStatus.FAILED
    assert "could not pay the refund out" in result.failure_reason
    assert result.failure_code == ReasonCode.REFUND_FAILED
    async with sessions() as session:
        row = await session.get(Refund, refund_id)
    assert (row.status, row.failure_code, row.failure_reason) == (
        "failed",
        "refund_failed",
        result.failure_reason,
    )
    # The storefront is told the code and its text, and the reason it gave itself.
    [webhook] = [w for w in storefront.for_order(checkout.order_id) if w["id"].startswith("evt_rf")]
    told = webhook["payload"]["data"]
    assert (told["failure_code"], told["failure_reason"], told["reason"]) == (
        "refund_failed",
        ReasonCode.REFUND_FAILED.text,
        "changed my mind",
    )
    order = await order_row(sessions, checkout.order_id)
    assert (order.status, order.refunded_amount) == ("fulfilled", 0)
    assert len(await ledger_of(sessions, checkout.order_id)) == 2  # the capture alone
    # Support finds it by its search attributes: whose, how much, and that it needs a human.
    attributes = (await handle.describe()).typed_search_attributes
    assert attributes.get(search.REFUND_STATUS) == "failed"
    assert attributes.get(search.NEEDS_ATTENTION) == "refund_failed"
    assert attributes.get(search.REFUND_KIND) == "requested"
    assert attributes.get(search.ORDER_ID) == checkout.order_id
    assert attributes.get(search.CUSTOMER_ID) == checkout.customer_id
    assert (attributes.get(search.AMOUNT_MINOR), attributes.get(search.CURRENCY)) == (3000, "CNY")
    assert attributes.get(search.PAYMENT_STATUS) is None


async def test_a_refund_started_outside_kassa_is_refused(
    fulfilled, time_skipping_env, task_queue, sessions, sandbox
):
    """A RefundWorkflow started by hand (the Temporal UI, `temporal workflow start`) with
    no reservation, or with another amount than the one reserved, moves no money."""
    checkout = await fulfilled(amount=1000)
    unreserved = RefundInput(
        "rf_by_hand", checkout.order_id, "sandbox", 1000, checkout.currency, "by hand"
    )
    handle = await refund(time_skipping_env, task_queue, checkout, 100, sessions=sessions)
    assert (await handle.result()).status == RefundStatus.SUCCEEDED
    reserved = (await handle.describe()).id
    tampered = replace(unreserved, refund_id=f"rf_{checkout.order_id}_1", amount=900)

    for forged, workflow_id in [(unreserved, "refund-rf_by_hand"), (tampered, reserved + "x")]:
        result = await time_skipping_env.client.execute_workflow(
            RefundWorkflow.run, forged, id=workflow_id, task_queue=task_queue
        )
        assert result.status == RefundStatus.FAILED
        assert "not reserved by Kassa" in result.failure_reason
        assert result.failure_code == ReasonCode.REFUND_REFUSED

    at_gateway = [
        r for r in sandbox.refunds.values() if r["merchant_order_id"] == checkout.order_id
    ]
    assert [r["amount"] for r in at_gateway] == [100]
    assert (await order_row(sessions, checkout.order_id)).refunded_amount == 100
    async with sessions() as session:
        assert await session.get(Refund, "rf_by_hand") is None


class TestCompensation:
    """Granting access fails for good after the buyer paid: what was done is undone in
    reverse, the buyer is refunded, and the order ends `refunded` saying why.

    On the dev server: the Java test server does not hand out the activity tasks of a child
    workflow here, and nothing in this story waits for time to pass."""

    @pytest.fixture
    def workflow_env(self, dev_env):
        return dev_env

    @pytest.fixture
    def replaced_activities(self):
        @activity.defn(name="grant_entitlements")
        async def grant_fails(checkout: CheckoutInput) -> None:
            raise ApplicationError(
                "catalogue says the SKU is withdrawn", type="SkuWithdrawn", non_retryable=True
            )

        return {"grant_entitlements": grant_fails}

    async def test_failed_grant_is_compensated(
        self, started, workflow_env, sessions, sandbox, storefront
    ):
        checkout = new_checkout(amount=4500)
        view, handle = await started(checkout)
        await pay(view, handle)

        result = await handle.result()

        assert result.status == OrderStatus.REFUNDED
        assert "catalogue says the SKU is withdrawn" in result.reason
        assert "revoke access" in result.reason and result.reason.endswith("refund the payment")
        order = await order_row(sessions, checkout.order_id)
        assert (order.status, order.refunded_amount) == ("refunded", 4500)
        assert "fulfilment failed" in order.status_reason
        assert order.reason_code == ReasonCode.FULFILMENT_FAILED_REFUNDED
        assert gateway_payment(sandbox, checkout.order_id)["refunded_amount"] == 4500
        async with sessions() as session:
            refund_row = await session.get(Refund, compensation_refund_id(checkout.order_id))
        assert (refund_row.status, refund_row.requested_by) == ("succeeded", "system")
        assert await entitlements(sessions, checkout.order_id, active_only=True) == []
        webhooks = storefront.for_order(checkout.order_id)
        assert [w["payload"]["type"] for w in webhooks] == ["refund.succeeded", "order.refunded"]
        # The storefront is told the code and its text, never what failed inside.
        refund_told, order_told = (w["payload"]["data"] for w in webhooks)
        assert refund_told["reason"] is None  # Kassa's own refund: its reason is support's
        assert order_told["reason_code"] == ReasonCode.FULFILMENT_FAILED_REFUNDED
        assert order_told["reason"] == ReasonCode.FULFILMENT_FAILED_REFUNDED.text
        assert "catalogue" not in str(webhooks)
        refund_handle = workflow_env.client.get_workflow_handle(
            refund_workflow_id(compensation_refund_id(checkout.order_id))
        )
        described = await refund_handle.describe()
        attributes = described.typed_search_attributes
        assert attributes.get(search.REFUND_KIND) == "compensation"
        assert attributes.get(search.CUSTOMER_ID) == checkout.customer_id
        assert (attributes.get(search.AMOUNT_MINOR), attributes.get(search.CURRENCY)) == (
            4500,
            "CNY",
        )
        assert attributes.get(search.NEEDS_ATTENTION) is None
        assert await described.static_summary() == (
            f"Refund (compensation) of 45.00 CNY on order {checkout.order_id}"
        )
        checkout_attributes = (await handle.describe()).typed_search_attributes
        assert checkout_attributes.get(search.PAYMENT_STATUS) == "refunded"
        assert checkout_attributes.get(search.NEEDS_ATTENTION) is None
        await record_history(handle, "checkout-compensated")

    async def test_a_failed_compensation_needs_attention(
        self, started, workflow_env, sandbox, gateway_behaviour, settings
    ):
        """The buyer's refund fails too: the checkout fails, loudly, and says so."""
        await gateway_behaviour(refunds_settle="later")
        checkout = new_checkout(amount=4500)
        view, handle = await started(checkout)
        await pay(view, handle)
        refund_id = compensation_refund_id(checkout.order_id)
        await eventually(lambda: refund_id in sandbox.refunds)
        async with httpx.AsyncClient(base_url=settings.sandbox_url) as http:
            settled = await http.post(
                f"/_emulator/refunds/{refund_id}/settle", json={"outcome": "failed"}
            )
            settled.raise_for_status()
        refund_handle = workflow_env.client.get_workflow_handle(refund_workflow_id(refund_id))
        # The gateway's callback, as the API relays it: the refund asks the gateway at once.
        await refund_handle.signal(
            "refund_event", RefundEvent("sandbox", f"evt_{refund_id}", refund_id, "failed")
        )

        with pytest.raises(WorkflowFailureError):
            await handle.result()
        shown = (await handle.describe()).typed_search_attributes
        assert shown.get(search.NEEDS_ATTENTION) == "compensation_failed"
        shown = (await refund_handle.describe()).typed_search_attributes
        assert shown.get(search.NEEDS_ATTENTION) == "refund_failed"
        assert shown.get(search.REFUND_KIND) == "compensation"


class TestDatabaseRefusals:
    """The database refuses a step's data for good (here a SKU longer than its column, which
    the API would have refused): the step fails at once, not retrying forever, and the
    checkout compensates. On the dev server, for the child refund (see TestCompensation)."""

    @pytest.fixture
    def workflow_env(self, dev_env):
        return dev_env

    async def test_a_refused_grant_is_compensated(self, started, sessions, sandbox):
        checkout = new_checkout(amount=4500)
        long_sku = replace(checkout.items[0], sku="s" * 200)
        checkout = replace(checkout, items=[long_sku])
        view, handle = await started(checkout)
        await pay(view, handle)

        result = await handle.result()

        assert result.status == OrderStatus.REFUNDED
        assert "fulfilment failed: value too long" in result.reason  # at the first attempt
        assert gateway_payment(sandbox, checkout.order_id)["refunded_amount"] == 4500


async def test_a_cancellation_in_temporal_does_not_stop_a_refund(
    fulfilled, time_skipping_env, task_queue, sessions, gateway_behaviour, settings, sandbox
):
    """The gateway was asked; support clicks Request Cancellation in the UI: the refund goes
    on, is settled and booked (a cancelled refund would leave it pending, its money out)."""
    await gateway_behaviour(refunds_settle="later")
    checkout = await fulfilled()
    handle = await refund(time_skipping_env, task_queue, checkout, 3000, sessions=sessions)
    refund_id = f"rf_{checkout.order_id}_1"
    while refund_id not in sandbox.refunds:  # the gateway accepted it for processing
        await asyncio.sleep(0.01)

    await handle.cancel()
    async with httpx.AsyncClient(base_url=settings.sandbox_url) as http:
        settled = await http.post(
            f"/_emulator/refunds/{refund_id}/settle", json={"outcome": "succeeded"}
        )
        settled.raise_for_status()

    assert (await handle.result()).status == RefundStatus.SUCCEEDED  # found by its checks
    assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
    async with sessions() as session:
        assert (await session.get(Refund, refund_id)).status == RefundStatus.SUCCEEDED
    order = await order_row(sessions, checkout.order_id)
    assert (order.status, order.refunded_amount) == ("refunded", 3000)
    assert gateway_payment(sandbox, checkout.order_id)["refunded_amount"] == 3000
