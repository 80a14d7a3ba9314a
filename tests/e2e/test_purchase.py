"""A purchase end to end over real HTTP: the storefront starts a checkout through the API,
the buyer pays on the sandbox gateway's page, the gateway's signed callback reaches the API,
the workflow on the Temporal dev server fulfils the order, the storefront gets its webhook."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import httpx
from sqlalchemy import func, select
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import WorkflowExecutionStatus

from api.app import create_app
from db.models import Entitlement, IdempotencyKey, Order
from gateways.sandbox import order_of_sandbox_reference
from kassa import search
from tests.conftest import Stack
from tests.support import buyer_acts, eventually, free_port, record_history, serving
from workflows.checkout import CheckoutWorkflow


def checkout_body(**overrides) -> dict:
    return {
        "customer_id": f"cus_{uuid.uuid4().hex[:8]}",
        "items": [
            {
                "sku": "course-python-101",
                "title": "Python 101",
                "unit_amount": 19900,
                "quantity": 1,
            },
            {"sku": "ebook-sql", "title": "SQL, the e-book", "unit_amount": 4900, "quantity": 2},
        ],
        "currency": "CNY",
        "gateway": "sandbox",
        **overrides,
    }


async def post_checkout(api: httpx.AsyncClient, body: dict, key: str | None = None):
    return await api.post(
        "/v1/checkouts", json=body, headers={"Idempotency-Key": key or uuid.uuid4().hex}
    )


async def wait_for_status(api: httpx.AsyncClient, order_id: str, status: str) -> dict:
    async def reached():
        order = (await api.get(f"/v1/orders/{order_id}")).json()
        return order if order["status"] == status else None

    return await eventually(reached)


async def test_purchase_is_paid_on_the_gateway_page_and_fulfilled(
    stack, sessions, sandbox, storefront
):
    async with stack.http() as api:
        created = await post_checkout(api, checkout_body())
        assert created.status_code == 201, created.text
        checkout = created.json()
        order_id = checkout["order_id"]
        assert checkout["status"] == "awaiting_payment"
        assert (checkout["amount"], checkout["currency"]) == (29700, "CNY")
        assert checkout["workflow_id"] == f"checkout-{order_id}"
        assert checkout["payment"]["gateway"] == "sandbox"

        # The buyer opens the page, sees the amount, and presses Pay.
        page = await httpx.AsyncClient().get(checkout["payment"]["payment_url"])
        assert "297.00 CNY" in page.text
        paid = await buyer_acts(checkout["payment"]["payment_url"], "succeeded")
        assert "Payment succeeded" in paid.text

        order = await wait_for_status(api, order_id, "fulfilled")

    assert order["amount"] == 29700 and order["refunded_amount"] == 0
    async with sessions() as session:
        granted = await session.scalars(
            select(Entitlement.sku).where(Entitlement.order_id == order_id)
        )
        assert sorted(granted) == ["course-python-101", "ebook-sql"]
    # What the gateway saw: one payment for this order, paid, and a callback the API took.
    payments = [p for p in sandbox.payments.values() if p["merchant_order_id"] == order_id]
    assert [(p["status"], p["amount"]) for p in payments] == [("succeeded", 29700)]
    accepted = [c for c in sandbox.callbacks if c["order_id"] == order_id]
    assert accepted[-1]["status_code"] == 200
    # The storefront's webhook arrived signed (the receiver verified it) with a stable id.
    webhooks = await eventually(lambda: storefront.for_order(order_id))
    assert [w["payload"]["type"] for w in webhooks] == ["order.fulfilled"]
    assert webhooks[0]["id"] == f"evt_{order_id}_fulfilled"
    # Support finds it in Temporal by its search attributes, with a summary naming the order.
    handle = stack.temporal.get_workflow_handle(f"checkout-{order_id}")
    await eventually(lambda: _completed(handle))
    described = await handle.describe()
    assert described.typed_search_attributes.get(search.ORDER_ID) == order_id
    assert described.typed_search_attributes.get(search.PAYMENT_STATUS) == "fulfilled"
    assert described.typed_search_attributes.get(search.AMOUNT_MINOR) == 29700
    assert described.typed_search_attributes.get(search.CURRENCY) == "CNY"
    assert described.typed_search_attributes.get(search.PAYMENT_EXPIRES_AT) is not None
    assert described.typed_search_attributes.get(search.NEEDS_ATTENTION) is None
    assert order_id in (await described.static_summary())
    await record_history(handle, "checkout-fulfilled")


async def test_the_same_idempotency_key_returns_the_same_checkout(stack, sessions, sandbox):
    body = checkout_body()
    key = uuid.uuid4().hex
    async with stack.http() as api:
        first = await post_checkout(api, body, key)
        again = await post_checkout(api, body, key)
        other_body = await post_checkout(api, {**body, "currency": "USD"}, key)

    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert other_body.status_code == 422
    assert other_body.headers["content-type"] == "application/problem+json"
    assert other_body.json()["field"] == "Idempotency-Key"
    order_id = first.json()["order_id"]
    async with sessions() as session:
        assert (
            await session.scalar(
                select(func.count())
                .select_from(Order)
                .where(Order.customer_id == body["customer_id"])
            )
            == 1
        )
        assert (
            await session.scalar(
                select(func.count()).select_from(IdempotencyKey).where(IdempotencyKey.key == key)
            )
            == 1
        )
    assert sum(p["merchant_order_id"] == order_id for p in sandbox.payments.values()) == 1


async def test_a_storefront_order_id_started_twice_is_one_checkout(stack):
    order_id = f"shop-{uuid.uuid4().hex[:10]}"
    body = checkout_body(order_id=order_id)
    async with stack.http() as api:
        first = await post_checkout(api, body)
        second = await post_checkout(api, body)  # another key, same order: the same checkout
        conflicting = await post_checkout(api, {**body, "currency": "USD"})
        # Same total, other things bought: still another order, never the same checkout.
        items = [{**body["items"][0], "sku": "course-rust-101"}, body["items"][1]]
        other_items = await post_checkout(api, {**body, "items": items})

    assert first.status_code == second.status_code == 201
    assert second.json()["payment"] == first.json()["payment"]
    for refused in (conflicting, other_items):
        assert refused.status_code == 409
        assert refused.json()["field"] == "order_id"


async def test_cancel_closes_the_payment_and_refuses_a_paid_order(stack, sandbox):
    async with stack.http() as api:
        unpaid = (await post_checkout(api, checkout_body())).json()
        cancelled = await api.post(
            f"/v1/orders/{unpaid['order_id']}/cancel", json={"reason": "changed my mind"}
        )
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "cancelled"
        assert cancelled.json()["reason_code"] == "cancelled_by_storefront"
        payment = sandbox.payments[sandbox.by_order[unpaid["order_id"]]]
        assert payment["status"] == "closed"

        paid = (await post_checkout(api, checkout_body())).json()
        await buyer_acts(paid["payment"]["payment_url"], "succeeded")
        await wait_for_status(api, paid["order_id"], "fulfilled")
        refused = await api.post(f"/v1/orders/{paid['order_id']}/cancel")
        assert refused.status_code == 409
        assert refused.headers["content-type"] == "application/problem+json"
        assert (await api.get(f"/v1/orders/{paid['order_id']}")).json()["status"] == "fulfilled"


async def test_a_buyer_back_from_the_page_gets_a_lost_callback_found(stack, sandbox, settings):
    """The gateway's callback never comes and the checkout's own early check is an hour
    away: the storefront's check-payment (the buyer is back and says they paid) has the
    checkout ask the gateway now, and the order is fulfilled within seconds."""
    # An API whose checkouts ask on their own only after an hour (the suite's ask at once).
    patient = stack.settings.model_copy(update={"status_check_first_seconds": 3600})
    async with (
        serving(create_app(patient, temporal_client=stack.temporal), free_port()) as url,
        httpx.AsyncClient(base_url=settings.sandbox_url) as gateway,
    ):
        await gateway.put("/_emulator/behaviour", json={"faults": {"drop_callbacks": 1.0}})
        try:
            async with Stack(url, stack.temporal, patient).http() as api:
                checkout = (await post_checkout(api, checkout_body())).json()
                order_id = checkout["order_id"]
                await buyer_acts(checkout["payment"]["payment_url"], "succeeded")
                assert sandbox.behaviour.faults.counts["dropped_callbacks"] == 1
                assert (await api.get(f"/v1/orders/{order_id}")).json()["status"] == (
                    "awaiting_payment"
                )

                asked = await api.post(f"/v1/orders/{order_id}/check-payment")

                assert asked.status_code == 202, asked.text
                assert asked.json()["order_id"] == order_id
                await wait_for_status(api, order_id, "fulfilled")
                # Asked again once it is over: the order as it is, nothing asked.
                again = await api.post(f"/v1/orders/{order_id}/check-payment")
                assert (again.status_code, again.json()["status"]) == (202, "fulfilled")
                missing = await api.post("/v1/orders/ord_nobody/check-payment")
                assert missing.status_code == 404
        finally:
            await gateway.put("/_emulator/behaviour", json={})


async def declined(api: httpx.AsyncClient, checkout: dict) -> dict:
    """The buyer declines on the page; the order waits for them to try again."""
    await buyer_acts(checkout["payment"]["payment_url"], "declined")

    async def offered():
        order = (await api.get(f"/v1/orders/{checkout['order_id']}")).json()
        return order if order["reason_code"] == "declined_may_retry" else None

    return await eventually(offered)


async def test_declined_then_paid_on_a_second_attempt(stack, sandbox, storefront):
    async with stack.http() as api:
        first = (await post_checkout(api, checkout_body())).json()
        order_id = first["order_id"]
        early = await api.post(f"/v1/orders/{order_id}/retry")
        waiting = await declined(api, first)
        retried = await api.post(f"/v1/orders/{order_id}/retry")
        again = await api.post(f"/v1/orders/{order_id}/retry")  # the new payment is open
        assert retried.status_code == 200, retried.text
        second = retried.json()
        await buyer_acts(second["payment"]["payment_url"])
        order = await wait_for_status(api, order_id, "fulfilled")

    assert early.status_code == 409 and early.json()["type"].endswith(":retry-not-allowed")
    assert (waiting["status"], waiting["payment_attempts"]) == ("awaiting_payment", 1)
    assert second["payment"]["attempt"] == 2 and second["status"] == "awaiting_payment"
    assert second["payment"]["payment_url"] != first["payment"]["payment_url"]
    assert again.status_code == 409 and "not declined" in again.json()["detail"]
    assert (order["payment_attempts"], order["payment_url"]) == (
        2,
        second["payment"]["payment_url"],
    )
    at_gateway = [
        p
        for p in sandbox.payments.values()
        if order_of_sandbox_reference(p["merchant_order_id"]) == order_id
    ]
    assert sorted(p["status"] for p in at_gateway) == ["declined", "succeeded"]

    # The order row says fulfilled a moment before its webhook arrives.
    def events():
        told = [e["payload"]["type"] for e in storefront.for_order(order_id)]
        return told if told and told[-1] == "order.fulfilled" else None

    assert (await eventually(events))[0] == "order.payment_declined"


async def test_the_order_says_can_retry_while_the_checkout_does(stack):
    """GET /v1/orders/{id} says `can_retry` when POST /v1/checkouts' and the workflow's own
    view would: after a decline, not before, not once the next payment is open."""
    async with stack.http() as api:
        first = (await post_checkout(api, checkout_body())).json()
        order_id = first["order_id"]
        before = (await api.get(f"/v1/orders/{order_id}")).json()
        waiting = await declined(api, first)
        handle = stack.temporal.get_workflow_handle_for(CheckoutWorkflow.run, first["workflow_id"])
        workflow_says = (await handle.query(CheckoutWorkflow.state)).can_retry
        retried = (await api.post(f"/v1/orders/{order_id}/retry")).json()
        after = (await api.get(f"/v1/orders/{order_id}")).json()
        cancelled = (await api.post(f"/v1/orders/{order_id}/cancel")).json()

    assert (first["can_retry"], before["can_retry"]) == (False, False)
    assert (waiting["can_retry"], workflow_says) == (True, True)
    assert (retried["can_retry"], after["can_retry"]) == (False, False)
    assert after["payment_attempts"] == 2
    assert (cancelled["status"], cancelled["can_retry"]) == ("cancelled", False)


async def test_a_decline_nobody_retries_fails_when_the_window_closes(stack):
    async with stack.http() as api:
        checkout = (await post_checkout(api, checkout_body(expires_in_seconds=3))).json()
        await declined(api, checkout)
        order = await wait_for_status(api, checkout["order_id"], "failed")
        late = await api.post(f"/v1/orders/{checkout['order_id']}/retry")
    assert order["reason_code"] == "declined" and not order["can_retry"]
    assert late.status_code == 409


async def test_the_workflow_can_be_queried_for_its_state(stack):
    async with stack.http() as api:
        checkout = (await post_checkout(api, checkout_body())).json()
    handle = stack.temporal.get_workflow_handle_for(CheckoutWorkflow.run, checkout["workflow_id"])
    state = await handle.query(CheckoutWorkflow.state)
    assert state.status == "awaiting_payment"
    assert state.payment.payment_url == checkout["payment"]["payment_url"]
    # What the Temporal UI shows support as the workflow's current details.
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    details = metadata.current_details
    assert details.startswith("Waiting for the buyer to pay 297.00 CNY at sandbox since ")
    assert "the payment window closes at" in details
    # The deadline is a search attribute and a timer of its own, named in the UI.
    described = await handle.describe()
    expires_at = datetime.fromisoformat(checkout["payment"]["expires_at"])
    shown = described.typed_search_attributes.get(search.PAYMENT_EXPIRES_AT)
    assert abs(shown - expires_at) < timedelta(seconds=1)
    assert described.typed_search_attributes.get(search.PAYMENT_STATUS) == "awaiting_payment"
    assert "payment window closes" in await timer_summaries(stack.temporal, handle)
    await handle.terminate("test finished")


async def timer_summaries(client, handle) -> list[str]:
    """The summaries of the workflow's timers, as the UI shows them."""
    summaries = []
    async for event in handle.fetch_history_events():
        if event.HasField("timer_started_event_attributes") and event.HasField("user_metadata"):
            [text] = await client.data_converter.decode([event.user_metadata.summary], [str])
            summaries.append(text)
    return summaries


async def _completed(handle) -> bool:
    return (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
