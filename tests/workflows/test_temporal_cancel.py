"""A cancellation in Temporal (the UI's "Request Cancellation", `temporal workflow cancel`)
is a cancel request, not an interruption: a waiting checkout closes its gateway payment
first and ends cancelled (or paid, if the buyer was faster); a paid one is fulfilled all the
same; a held one waits for support. Updates typed by hand without an actor are refused.
On the time-skipping server, with the real activities."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
import pytest_asyncio
from sqlalchemy import select
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus, WorkflowUpdateFailedError

from activities.ledger import LedgerActivities
from db import audit
from db.models import Invoice
from kassa.contracts import CancelRequest, CheckoutInput, ReviewDecision
from kassa.ids import checkout_workflow_id
from kassa.statuses import OrderStatus, PaymentOutcome
from orchestration.seal import sealed
from tests.support import buyer_acts, new_checkout
from tests.workflows.conftest import (
    entitlements,
    gateway_event,
    gateway_payment,
    order_row,
    pay,
)
from workflows.checkout import CheckoutWorkflow


async def ended_as(handle) -> WorkflowExecutionStatus:
    return (await handle.describe()).status


async def audited(sessions, order_id: str) -> list[tuple]:
    async with sessions() as session:
        rows = await audit.of_order(session, order_id, 10)
    return [(r.actor, r.action, r.reason, r.before, r.after) for r in rows]


async def test_a_cancellation_of_a_waiting_checkout_closes_the_payment_first(
    started, sessions, sandbox, storefront
):
    checkout = new_checkout()
    view, handle = await started(checkout)

    await handle.cancel(reason="buyer phoned\u202e support\n")  # typed in the UI
    result = await handle.result()

    assert result.status == OrderStatus.CANCELLED
    assert result.reason_code == "cancelled_by_support"
    assert await ended_as(handle) == WorkflowExecutionStatus.COMPLETED  # ended as it says
    order = await order_row(sessions, checkout.order_id)
    assert (order.status, order.reason_code) == ("cancelled", "cancelled_by_support")
    assert order.status_reason == "cancelled in Temporal: buyer phoned support"
    assert gateway_payment(sandbox, checkout.order_id)["status"] == "closed"
    assert [w["payload"]["type"] for w in storefront.for_order(checkout.order_id)] == [
        "order.cancelled"
    ]
    assert await audited(sessions, checkout.order_id) == [
        (
            "temporal",
            "cancel",
            "cancelled in Temporal: buyer phoned support",
            {"status": "awaiting_payment"},
            {"status": "cancelled"},
        )
    ]


async def test_a_cancellation_while_a_retry_is_offered_closes_the_declined_payment(
    started, sessions, sandbox
):
    checkout = new_checkout(max_payment_attempts=3)
    view, handle = await started(checkout)
    await buyer_acts(view.payment.payment_url, "declined")
    await handle.signal(
        CheckoutWorkflow.payment_event, gateway_event(view, PaymentOutcome.DECLINED)
    )
    while not (await handle.query(CheckoutWorkflow.state)).can_retry:
        await asyncio.sleep(0.05)

    await handle.cancel()

    assert (await handle.result()).status == OrderStatus.CANCELLED
    assert (await order_row(sessions, checkout.order_id)).status == "cancelled"
    assert gateway_payment(sandbox, checkout.order_id)["status"] in ("closed", "declined")


async def test_a_cancellation_after_the_buyer_paid_at_the_gateway_fulfils(
    started, sessions, sandbox
):
    """The callback never came; the cancellation's close finds the capture: it counts."""
    checkout = new_checkout()
    view, handle = await started(checkout)
    await buyer_acts(view.payment.payment_url, "succeeded")  # no callback reaches the workflow

    await handle.cancel()
    result = await handle.result()

    assert result.status == OrderStatus.FULFILLED
    order = await order_row(sessions, checkout.order_id)
    assert (order.status, order.reason_code) == ("fulfilled", None)
    assert await entitlements(sessions, checkout.order_id) == [
        (checkout.customer_id, "course-python-101")
    ]
    payment = gateway_payment(sandbox, checkout.order_id)
    assert (payment["status"], payment["refunded_amount"]) == ("succeeded", 0)


async def test_a_cancellation_of_a_held_payment_changes_nothing(started, sessions, sandbox):
    checkout = new_checkout()
    view, handle = await started(checkout)
    await buyer_acts(view.payment.payment_url, amount=100)  # another amount, no callback
    held = await handle.execute_update(
        CheckoutWorkflow.cancel, CancelRequest("changed mind", "storefront:shop")
    )
    assert held.status == OrderStatus.ON_HOLD

    await handle.cancel()
    await asyncio.sleep(0.5)  # the cancellation reaches the workflow

    assert (await handle.query(CheckoutWorkflow.state)).status == OrderStatus.ON_HOLD
    assert await ended_as(handle) == WorkflowExecutionStatus.RUNNING
    assert (await order_row(sessions, checkout.order_id)).status == "on_hold"
    await handle.terminate("test finished: support's refund runs on the dev server elsewhere")


class TestDuringFulfilment:
    """The ledger step (a local activity) holds until the cancellation has reached the
    workflow: with a short workflow task timeout the worker heartbeats the task while the
    step runs, and the next task brings the cancellation in mid-step."""

    @pytest_asyncio.fixture
    async def gate(self):
        return asyncio.Event(), asyncio.Event()  # the step started; the test let it go

    @pytest.fixture
    def replaced_activities(self, gate, sessions):
        started_step, go = gate
        real = LedgerActivities(sessions)

        @activity.defn(name="book_capture")
        async def book_capture(checkout: CheckoutInput) -> None:
            started_step.set()
            await go.wait()
            await real.book_capture(checkout)

        return {"book_capture": book_capture}

    async def test_a_cancellation_during_fulfilment_still_fulfils(
        self, gate, started, workflow_env, task_queue, sessions, sandbox, settings
    ):
        started_step, go = gate
        checkout = new_checkout()
        handle = await workflow_env.client.start_workflow(
            CheckoutWorkflow.run,
            sealed(settings, checkout),
            id=checkout_workflow_id(checkout.order_id),
            task_queue=task_queue,
            task_timeout=timedelta(seconds=2),
        )
        view = await handle.execute_update(CheckoutWorkflow.payment_session)
        await pay(view, handle)
        await asyncio.wait_for(started_step.wait(), 30)

        await handle.cancel()
        await asyncio.sleep(3)  # the task heartbeat (at 80% of 2 s) delivers it mid-step
        go.set()
        result = await handle.result()

        assert result.status == OrderStatus.FULFILLED
        assert await ended_as(handle) == WorkflowExecutionStatus.COMPLETED
        events = [e.event_type for e in (await handle.fetch_history()).events]
        assert EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED in events
        order = await order_row(sessions, checkout.order_id)
        assert (order.status, order.refunded_amount) == ("fulfilled", 0)
        assert await entitlements(sessions, checkout.order_id, active_only=True) == [
            (checkout.customer_id, "course-python-101")
        ]
        async with sessions() as session:
            invoice = await session.scalar(
                select(Invoice).where(Invoice.order_id == checkout.order_id)
            )
        assert invoice.status == "issued"
        payment = gateway_payment(sandbox, checkout.order_id)
        assert (payment["status"], payment["refunded_amount"]) == ("succeeded", 0)
        [(actor, action, reason, before, after)] = await audited(sessions, checkout.order_id)
        assert (actor, action, before, after) == (
            "temporal",
            "cancel",
            {"status": "paid"},
            {"status": "fulfilled"},
        )
        assert reason == "cancellation in Temporal changed nothing: the order is already paid"


@pytest.mark.parametrize("who", ["", "storefront", "support", "support:", "anyone at all"])
async def test_a_cancel_update_without_an_actor_is_refused(started, sessions, sandbox, who):
    checkout = new_checkout()
    view, handle = await started(checkout)

    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(CheckoutWorkflow.cancel, CancelRequest("typed in the UI", who))

    assert refused.value.cause.type == "ActorRequired"
    assert (await handle.query(CheckoutWorkflow.state)).status == OrderStatus.AWAITING_PAYMENT
    accepted = [  # nothing was written to the history (only the start's payment_session)
        e.workflow_execution_update_accepted_event_attributes.accepted_request.input.name
        for e in (await handle.fetch_history()).events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    ]
    assert accepted == ["payment_session"]
    assert gateway_payment(sandbox, checkout.order_id)["status"] == "pending"
    await handle.terminate("test finished")


async def test_supports_cancel_and_review_need_a_reason_and_a_support_actor(started, sandbox):
    checkout = new_checkout()
    view, handle = await started(checkout)
    await buyer_acts(view.payment.payment_url, amount=100)  # held once the close finds it
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(CheckoutWorkflow.cancel, CancelRequest(" ", "support:alice"))
    assert refused.value.cause.type == "ReasonRequired"
    held = await handle.execute_update(
        CheckoutWorkflow.cancel, CancelRequest("duplicate", "support:alice")
    )
    assert held.status == OrderStatus.ON_HOLD

    for decision, refusal in [
        (ReviewDecision("refund it"), "ActorRequired"),  # typed in the UI: no decided_by
        (ReviewDecision("refund it", "storefront:shop"), "ActorRequired"),
        (ReviewDecision("", "support:alice"), "ReasonRequired"),
    ]:
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(CheckoutWorkflow.review, decision)
        assert refused.value.cause.type == refusal
    assert (await handle.query(CheckoutWorkflow.state)).status == OrderStatus.ON_HOLD
    await handle.terminate("test finished")
