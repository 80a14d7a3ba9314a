"""Money the order does not keep goes back by itself: a payment captured after the order
expired, and a second payment for an order already paid (the hard-cases issue)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from temporalio.service import RPCError

from db import orders
from db.models import StrayCapture
from gateways.sandbox import sandbox_reference
from kassa import search
from kassa.contracts import ReconcileInput
from kassa.ids import checkout_workflow_id, refund_workflow_id, stray_refund_id
from kassa.settings import DEV_SUPPORT_KEY
from tests.e2e.test_purchase import checkout_body, declined, post_checkout, wait_for_status
from tests.e2e.test_refunds import bought
from tests.support import buyer_acts, eventually, ledger_of, reconcile


async def stray_of(sessions, payment_id: str) -> StrayCapture | None:
    async with sessions() as session:
        return await session.get(StrayCapture, payment_id)


async def test_a_payment_after_expiry_is_refunded(stack, sandbox, sessions, settings):
    async with stack.http() as api:
        checkout = (await post_checkout(api, checkout_body(expires_in_seconds=2))).json()
        order = await wait_for_status(api, checkout["order_id"], "expired")
    payment_id = checkout["payment"]["payment_url"].rsplit("/", 1)[1]
    async with httpx.AsyncClient(base_url=settings.sandbox_url) as http:
        # The buyer's money arrives anyway, and the gateway says so twice.
        await http.put("/_emulator/behaviour", json={"faults": {"duplicate_callbacks": 1}})
        try:
            (await http.post(f"/_emulator/payments/{payment_id}/late-capture")).raise_for_status()
            stray = await eventually(lambda: _refunded(sessions, payment_id), timeout=30)
        finally:
            await http.put("/_emulator/behaviour", json={})

    assert (stray.kind, stray.amount, stray.status) == ("late_payment", 29700, "succeeded")
    payment = sandbox.payments[payment_id]
    assert (payment["status"], payment["refunded_amount"]) == ("succeeded", 29700)
    assert len([r for r in sandbox.refunds.values() if r["payment_id"] == payment_id]) == 1
    async with stack.http() as api:
        shown = (await api.get(f"/v1/orders/{order['order_id']}")).json()
    assert shown["status"] == "expired"
    assert await ledger_of(sessions, order["order_id"]) == [
        ("stray_capture", "gateway:sandbox", 29700),
        ("stray_capture", "unallocated", -29700),
        ("stray_refund", "unallocated", 29700),
        ("stray_refund", "gateway:sandbox", -29700),
    ]
    described = await stack.temporal.get_workflow_handle(
        refund_workflow_id(stray_refund_id(payment_id))
    ).describe()
    # Support lists stray refunds by their kind; PaymentStatus is the checkouts' alone.
    attributes = described.typed_search_attributes
    assert attributes.get(search.REFUND_KIND) == "late_payment"
    assert attributes.get(search.PAYMENT_STATUS) is None
    assert attributes.get(search.ORDER_ID) == order["order_id"]
    assert attributes.get(search.CUSTOMER_ID) == shown["customer_id"]
    assert (attributes.get(search.AMOUNT_MINOR), attributes.get(search.CURRENCY)) == (29700, "CNY")
    assert attributes.get(search.NEEDS_ATTENTION) is None
    assert await described.static_summary() == (
        f"Refund (late_payment) of 297.00 CNY on order {shown['order_id']}: payment {payment_id}"
    )


async def test_a_second_payment_is_refunded_and_the_first_kept(stack, sandbox, sessions, settings):
    async with stack.http() as api:
        order = await bought(api)
    first = sandbox.by_order[order["order_id"]]
    async with httpx.AsyncClient(base_url=settings.sandbox_url) as http:
        second = (await http.post(f"/_emulator/payments/{first}/capture-again")).json()["id"]
    stray = await eventually(lambda: _refunded(sessions, second), timeout=30)

    assert (stray.kind, stray.amount) == ("double_payment", 29700)
    assert sandbox.payments[second]["refunded_amount"] == 29700
    assert sandbox.payments[first]["refunded_amount"] == 0
    async with stack.http() as api:
        kept = (await api.get(f"/v1/orders/{order['order_id']}")).json()
    assert (kept["status"], kept["refunded_amount"]) == ("fulfilled", 0)


async def _refunded(sessions, payment_id: str) -> StrayCapture | None:
    stray = await stray_of(sessions, payment_id)
    return stray if stray is not None and stray.status != "pending" else None


async def test_a_payment_of_another_amount_is_held_until_support_refunds_it(
    stack, sandbox, sessions
):
    async with stack.http() as api:
        checkout = (await post_checkout(api, checkout_body())).json()
        order_id = checkout["order_id"]
        await buyer_acts(checkout["payment"]["payment_url"], amount=100)  # 1.00 of 297.00
        held = await wait_for_status(api, order_id, "on_hold")
        refused = await api.post(f"/v1/orders/{order_id}/review", json={"note": "refund"})
        cancel = await api.post(f"/v1/orders/{order_id}/cancel")
    async with stack.http(DEV_SUPPORT_KEY) as support:
        decided = await support.post(
            f"/v1/orders/{order_id}/review", json={"note": "buyer paid 1.00; refund and ask again"}
        )

    assert held["reason_code"] == "amount_mismatch" and held["refunded_amount"] == 0
    assert "100" not in held["reason"]  # the storefront is told no amounts
    assert refused.status_code == 403  # the storefront cannot decide
    assert cancel.status_code == 409
    assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "failed"
    assert decided.json()["reason_code"] == "refunded_on_review"
    assert "paid 1.00 CNY instead of" in decided.json()["reason_detail"]  # support is told it all
    assert "refunded on support's decision" in decided.json()["reason_detail"]
    payment_id = sandbox.by_order[order_id]
    assert sandbox.payments[payment_id]["refunded_amount"] == 100
    stray = await stray_of(sessions, payment_id)
    assert (stray.kind, stray.amount, stray.status) == ("amount_mismatch", 100, "succeeded")


async def test_a_capture_of_a_declined_attempt_is_refunded_and_the_retry_kept(
    stack, sandbox, sessions, settings
):
    """Two of the order's payments end captured: the order keeps its current attempt's, the
    other is a double payment and goes back (at most one attempt is kept)."""
    async with stack.http() as api:
        first = (await post_checkout(api, checkout_body())).json()
        order_id = first["order_id"]
        await declined(api, first)
        second = (await api.post(f"/v1/orders/{order_id}/retry")).json()
        declined_id = first["payment"]["payment_url"].rsplit("/", 1)[1]
        async with httpx.AsyncClient(base_url=settings.sandbox_url) as http:
            extra = (await http.post(f"/_emulator/payments/{declined_id}/capture-again")).json()
        await buyer_acts(second["payment"]["payment_url"])
        order = await wait_for_status(api, order_id, "fulfilled")
    stray = await eventually(lambda: _refunded(sessions, extra["id"]), timeout=30)

    assert (stray.kind, stray.amount, stray.status) == ("double_payment", 29700, "succeeded")
    kept = sandbox.payments[sandbox.by_order[sandbox_reference(order_id, 2)]]
    assert (kept["status"], kept["refunded_amount"]) == ("succeeded", 0)
    assert sandbox.payments[extra["id"]]["refunded_amount"] == 29700
    assert (order["refunded_amount"], order["payment_attempts"]) == (0, 2)


async def test_reconciliation_finds_a_capture_whose_callback_never_came(
    stack, sandbox, sessions, settings
):
    async with stack.http() as api:
        order = await bought(api)
    first = sandbox.by_order[order["order_id"]]
    async with httpx.AsyncClient(base_url=settings.sandbox_url) as http:
        await http.put("/_emulator/behaviour", json={"faults": {"drop_callbacks": 1.0}})
        try:
            second = (await http.post(f"/_emulator/payments/{first}/capture-again")).json()["id"]
        finally:
            await http.put("/_emulator/behaviour", json={})
    assert await stray_of(sessions, second) is None  # nobody told Kassa

    found = await reconcile(stack)
    again = await reconcile(stack)
    stray = await eventually(lambda: _refunded(sessions, second), timeout=30)

    assert second in found.strays_found and second not in again.strays_found
    assert (stray.kind, stray.amount, stray.status) == ("double_payment", 29700, "succeeded")
    assert [r["amount"] for r in sandbox.refunds.values() if r["payment_id"] == second] == [29700]
    assert sandbox.payments[first]["refunded_amount"] == 0


async def test_a_payment_after_its_checkout_was_terminated_is_given_back(
    stack, sandbox, sessions, settings, monkeypatch, storefront
):
    """Support terminates two checkouts in the Temporal UI: their orders stay awaiting
    payment with their gateway payments open, and one buyer pays anyway (nobody listens).
    Reconciliation ends both orders, closes the open payment and gives the money back."""
    monkeypatch.setattr(settings, "reconcile_grace_seconds", 0)  # no waiting in a test
    async with stack.http() as api:
        paid = (await post_checkout(api, checkout_body(expires_in_seconds=2))).json()
        left = (await post_checkout(api, checkout_body(expires_in_seconds=2))).json()
        for checkout in (paid, left):
            handle = stack.temporal.get_workflow_handle(checkout_workflow_id(checkout["order_id"]))
            await handle.terminate("support pressed Terminate")
        await buyer_acts(paid["payment"]["payment_url"])
        paid_id = paid["payment"]["payment_url"].rsplit("/", 1)[1]
        left_id = left["payment"]["payment_url"].rsplit("/", 1)[1]
        assert sandbox.payments[paid_id]["status"] == "succeeded"
        stuck = (await api.get(f"/v1/orders/{paid['order_id']}")).json()
        assert stuck["status"] == "awaiting_payment"  # the callback found no checkout
        window = datetime.fromisoformat(left["payment"]["expires_at"])
        await asyncio.sleep(max(0.0, (window - datetime.now(UTC)).total_seconds()) + 0.5)

        found = await reconcile(stack)
        again = await reconcile(stack)
        stray = await eventually(lambda: _refunded(sessions, paid_id), timeout=30)
        ended = [(await api.get(f"/v1/orders/{c['order_id']}")).json() for c in (paid, left)]

    assert {paid["order_id"], left["order_id"]} <= set(found.orders_closed)
    assert paid_id in found.strays_found
    assert paid["order_id"] not in again.orders_closed and paid_id not in again.strays_found
    assert [(o["status"], o["reason_code"]) for o in ended] == [("expired", "expired")] * 2
    assert (stray.kind, stray.amount, stray.status) == ("late_payment", 29700, "succeeded")
    assert sandbox.payments[paid_id]["refunded_amount"] == 29700
    assert sandbox.payments[left_id]["status"] in ("closed", "expired")  # no longer payable
    for checkout in (paid, left):  # the storefront is told, once
        told = [w["payload"]["type"] for w in storefront.for_order(checkout["order_id"])]
        assert told.count("order.expired") == 1, told
    assert await ledger_of(sessions, paid["order_id"]) == [
        ("stray_capture", "gateway:sandbox", 29700),
        ("stray_capture", "unallocated", -29700),
        ("stray_refund", "unallocated", 29700),
        ("stray_refund", "gateway:sandbox", -29700),
    ]


async def test_support_reconciles_one_terminated_checkout_at_once(stack, sandbox, sessions):
    """Support terminated a checkout whose window is still open: `POST .../reconcile` (a
    reason required, the support key only) closes its payment and ends the order now, and
    leaves one audit row; it changes nothing for an order whose checkout runs."""
    async with stack.http() as api:
        stopped = (await post_checkout(api, checkout_body())).json()
        running = (await post_checkout(api, checkout_body())).json()
        handle = stack.temporal.get_workflow_handle(checkout_workflow_id(stopped["order_id"]))
        await handle.terminate("support pressed Terminate")
        refused = await api.post(
            f"/v1/orders/{stopped['order_id']}/reconcile", json={"reason": "stuck"}
        )
    async with stack.http(DEV_SUPPORT_KEY) as support:
        no_reason = await support.post(f"/v1/orders/{stopped['order_id']}/reconcile", json={})
        results = []
        for checkout in (stopped, running):
            started = await support.post(
                f"/v1/orders/{checkout['order_id']}/reconcile",
                json={"reason": "terminated by mistake; close it"},
            )
            assert started.status_code == 202, started.text
            run = stack.temporal.get_workflow_handle(started.json()["workflow_id"])
            results.append(await run.result())
        ended = (await support.get(f"/v1/orders/{stopped['order_id']}")).json()
        still = (await support.get(f"/v1/orders/{running['order_id']}")).json()
        audit = (await support.get(f"/v1/orders/{stopped['order_id']}/audit")).json()

    assert refused.status_code == 403 and no_reason.status_code == 422
    assert results[0]["orders_closed"] == [stopped["order_id"]]
    assert results[1]["orders_closed"] == []
    assert ended["status"] == "expired" and still["status"] == "awaiting_payment"
    stopped_payment = stopped["payment"]["payment_url"].rsplit("/", 1)[1]
    running_payment = running["payment"]["payment_url"].rsplit("/", 1)[1]
    assert sandbox.payments[stopped_payment]["status"] == "closed"
    assert sandbox.payments[running_payment]["status"] == "pending"
    [entry] = audit["entries"]
    assert (entry["action"], entry["actor"], entry["reason"]) == (
        "reconcile",
        "support:dev-support",
        "terminated by mistake; close it",
    )


async def test_a_pass_goes_page_by_page_and_continues_as_new(stack, sessions):
    """Pages of two orders, two pages a run: a pass over a few orders runs several pages
    and continues as new, and its report adds them all up."""
    from temporalio.client import WorkflowExecutionStatus

    from kassa.contracts import ReconcileProgress
    from workflows.reconcile import ReconcileWorkflow

    async with stack.http() as api:
        for _ in range(3):
            await bought(api)
    since = datetime.now(UTC) - timedelta(hours=1)
    async with sessions() as session:
        ended = len(await orders.ended_since(session, since))
    handle = await stack.temporal.start_workflow(
        ReconcileWorkflow.run,
        ReconcileInput(1, ReconcileProgress(since=since, page=2, pages_per_run=2)),
        id=f"reconcile-test-{uuid.uuid4().hex[:8]}",
        task_queue=stack.settings.task_queue,
    )
    report = await handle.result()
    first = stack.temporal.get_workflow_handle(handle.id, run_id=handle.first_execution_run_id)
    progress = await stack.temporal.get_workflow_handle(handle.id).query(ReconcileWorkflow.progress)

    assert report.orders_checked >= ended >= 3
    assert report.batches >= ended // 2 + 1  # at least one (empty) page of abandoned orders
    assert (await first.describe()).status == WorkflowExecutionStatus.CONTINUED_AS_NEW
    assert (progress.phase, progress.batches) == ("done", report.batches)


async def test_a_pass_that_fails_for_good_says_where(stack, sandbox, settings):
    """A gateway down for good: the pass fails (support sees a failed ReconcileWorkflow)
    with a message that says what it was doing and that the next pass starts over."""
    from temporalio.client import WorkflowFailureError

    from kassa.contracts import ReconcileProgress
    from workflows.reconcile import ReconcileWorkflow

    async with stack.http() as api:
        await bought(api)  # at least one ended order to compare
    async with httpx.AsyncClient(base_url=settings.sandbox_url) as http:
        await http.put("/_emulator/behaviour", json={"faults": {"api_errors": 1.0}})
        try:
            with pytest.raises(WorkflowFailureError) as failed:
                await stack.temporal.execute_workflow(
                    ReconcileWorkflow.run,
                    ReconcileInput(
                        1,
                        ReconcileProgress(
                            since=datetime.now(UTC) - timedelta(hours=1), page_attempts=2
                        ),
                    ),
                    id=f"reconcile-test-{uuid.uuid4().hex[:8]}",
                    task_queue=stack.settings.task_queue,
                )
        finally:
            await http.put("/_emulator/behaviour", json={})

    cause = failed.value.cause
    assert cause.type == "ReconcileFailed"
    assert "failed for good on the ended orders after the first" in cause.message
    assert "HTTP 500" in cause.message and "next scheduled pass starts over" in cause.message


async def test_the_reconcile_schedule_is_created_once(dev_env, settings):
    from orchestration.temporal import RECONCILE_SCHEDULE, ensure_reconcile_schedule

    handle = dev_env.client.get_schedule_handle(RECONCILE_SCHEDULE)
    with contextlib.suppress(RPCError):  # a worker of another test made one on this server
        await handle.delete()
    await ensure_reconcile_schedule(dev_env.client, settings)
    await ensure_reconcile_schedule(dev_env.client, settings)  # a worker again: left alone
    schedule = (await handle.describe()).schedule
    await handle.delete()

    assert schedule.spec.intervals[0].every == timedelta(minutes=settings.reconcile_every_minutes)
    assert schedule.action.workflow == "ReconcileWorkflow"
    # Its input is named (the UI shows {"lookback_hours": 72}), not a bare number.
    [request] = await dev_env.client.data_converter.decode(schedule.action.args, [ReconcileInput])
    assert request == ReconcileInput(lookback_hours=settings.reconcile_lookback_hours)
    assert schedule.action.task_queue == settings.task_queue


async def test_support_accepts_an_overpayment_and_the_excess_goes_back(
    stack, sandbox, sessions, storefront
):
    async with stack.http() as api:
        checkout = (await post_checkout(api, checkout_body())).json()
        order_id = checkout["order_id"]
        await buyer_acts(checkout["payment"]["payment_url"], amount=30000)  # 300.00 of 297.00
        await wait_for_status(api, order_id, "on_hold")
    async with stack.http(DEV_SUPPORT_KEY) as support:
        decided = await support.post(
            f"/v1/orders/{order_id}/review",
            json={"note": "buyer tipped 3.00; keep the order", "decision": "accept"},
        )
    payment_id = sandbox.by_order[order_id]
    excess = await eventually(lambda: _refunded(sessions, payment_id), timeout=30)

    assert decided.status_code == 200, decided.text
    order = decided.json()
    assert (order["status"], order["amount"], order["refunded_amount"]) == ("fulfilled", 29700, 0)
    assert order["reason_code"] == "accepted_on_review"
    assert "accepted on support's decision, 3.00 CNY refunded" in order["reason_detail"]
    assert (excess.kind, excess.amount, excess.status) == ("overpayment", 300, "succeeded")
    assert (
        sandbox.payments[payment_id]["amount"],
        sandbox.payments[payment_id]["refunded_amount"],
    ) == (30000, 300)
    await eventually(
        lambda: "order.fulfilled" in [w["payload"]["type"] for w in storefront.for_order(order_id)]
    )


async def test_an_underpayment_cannot_be_accepted(stack, sandbox):
    async with stack.http() as api:
        checkout = (await post_checkout(api, checkout_body())).json()
        order_id = checkout["order_id"]
        await buyer_acts(checkout["payment"]["payment_url"], amount=100)
        await wait_for_status(api, order_id, "on_hold")
    async with stack.http(DEV_SUPPORT_KEY) as support:
        refused = await support.post(
            f"/v1/orders/{order_id}/review", json={"note": "keep it", "decision": "accept"}
        )
        refunded = await support.post(f"/v1/orders/{order_id}/review", json={"note": "refund"})

    assert refused.status_code == 409
    assert (refused.json()["type"], refused.json()["field"]) == (
        "urn:kassa:problem:cannot-accept",
        "decision",
    )
    assert refunded.json()["status"] == "failed"  # the refused decision changed nothing
    assert sandbox.payments[sandbox.by_order[order_id]]["refunded_amount"] == 100
