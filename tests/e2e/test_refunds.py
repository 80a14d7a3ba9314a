"""Refunds over HTTP against the dev server: the storefront contract, racing requests, the
refund window, access kept by another purchase, and the ledger support reads."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from sqlalchemy import select, update

from db import refunds
from db.models import Entitlement, Order, Refund
from kassa.settings import DEV_SUPPORT_KEY
from kassa.statuses import Caller
from tests.e2e.test_purchase import checkout_body, post_checkout, wait_for_status
from tests.support import buyer_acts, eventually, reconcile


async def bought(api, **overrides) -> dict:
    """A fulfilled order."""
    checkout = (await post_checkout(api, checkout_body(**overrides))).json()
    await buyer_acts(checkout["payment"]["payment_url"])
    return await wait_for_status(api, checkout["order_id"], "fulfilled")


async def post_refund(api, order_id: str, body: dict | None = None, key: str | None = None):
    return await api.post(
        f"/v1/orders/{order_id}/refunds",
        json=body or {},
        headers={"Idempotency-Key": key or uuid.uuid4().hex},
    )


async def refund_settled(api, refund_id: str) -> dict:
    async def settled():
        refund = (await api.get(f"/v1/refunds/{refund_id}")).json()
        return refund if refund["status"] != "pending" else None

    return await eventually(settled)


async def test_partial_then_full_refund_over_http(stack, sandbox, sessions):
    async with stack.http() as api:
        order = await bought(api)  # 297.00 CNY
        order_id = order["order_id"]

        partial = await post_refund(api, order_id, {"amount": 9700, "reason": "one e-book"})
        assert partial.status_code == 202, partial.text
        assert partial.json()["status"] == "pending"
        assert (await refund_settled(api, partial.json()["refund_id"]))["status"] == "succeeded"
        order = (await api.get(f"/v1/orders/{order_id}")).json()
        assert (order["status"], order["refunded_amount"]) == ("partially_refunded", 9700)

        rest = await post_refund(api, order_id)  # no amount: everything not yet refunded
        assert rest.json()["amount"] == 20000
        await refund_settled(api, rest.json()["refund_id"])
        order = await wait_for_status(api, order_id, "refunded")

    assert order["refunded_amount"] == 29700
    assert [(r["amount"], r["status"]) for r in order["refunds"]] == [
        (9700, "succeeded"),
        (20000, "succeeded"),
    ]
    assert sandbox.payments[sandbox.by_order[order_id]]["refunded_amount"] == 29700
    async with sessions() as session:
        active = await session.scalars(
            select(Entitlement).where(
                Entitlement.order_id == order_id, Entitlement.revoked_at.is_(None)
            )
        )
        assert list(active) == []


async def test_support_reads_the_ledger(stack):
    async with stack.http() as api:
        order = await bought(api)
        refund = await post_refund(api, order["order_id"], {"amount": 700})
        await refund_settled(api, refund.json()["refund_id"])
    async with stack.http(DEV_SUPPORT_KEY) as support:
        page = (await support.get(f"/v1/orders/{order['order_id']}/ledger")).json()
    async with stack.http() as storefront:
        refused = await storefront.get(f"/v1/orders/{order['order_id']}/ledger")

    ledger = page["transactions"]
    assert page["has_more"] is False
    assert [t["kind"] for t in ledger] == ["capture", "refund"]
    assert [(e["account"], e["amount"]) for e in ledger[0]["entries"]] == [
        ("gateway:sandbox", 29700),
        ("revenue", -29700),
    ]
    assert [(e["account"], e["amount"]) for e in ledger[1]["entries"]] == [
        ("refunds", 700),
        ("gateway:sandbox", -700),
    ]
    assert all(sum(e["amount"] for e in t["entries"]) == 0 for t in ledger)
    assert refused.status_code == 403


async def test_racing_refunds_never_exceed_the_capture(stack, sandbox):
    async with stack.http() as api:
        order = await bought(api)  # 29700
        order_id = order["order_id"]
        answers = await asyncio.gather(
            *(post_refund(api, order_id, {"amount": 10000}) for _ in range(8))
        )
        accepted = [a.json() for a in answers if a.status_code == 202]
        refused = [a for a in answers if a.status_code != 202]
        for refund in accepted:
            await refund_settled(api, refund["refund_id"])
        order = (await api.get(f"/v1/orders/{order_id}")).json()

    assert len(accepted) == 2  # 2 × 10000 fit in 29700; a third would not
    assert {a.status_code for a in refused} == {422}
    assert all(a.json()["field"] == "amount" for a in refused)
    assert order["refunded_amount"] == 20000
    assert sandbox.payments[sandbox.by_order[order_id]]["refunded_amount"] == 20000


async def test_refund_request_is_idempotent(stack):
    async with stack.http() as api:
        order = await bought(api)
        key = uuid.uuid4().hex
        first = await post_refund(api, order["order_id"], {"amount": 100}, key)
        again = await post_refund(api, order["order_id"], {"amount": 100}, key)
        other = await post_refund(api, order["order_id"], {"amount": 200}, key)
        await refund_settled(api, first.json()["refund_id"])
        order = (await api.get(f"/v1/orders/{order['order_id']}")).json()

    assert first.status_code == again.status_code == 202
    assert again.json()["refund_id"] == first.json()["refund_id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert other.status_code == 422 and other.json()["field"] == "Idempotency-Key"
    assert order["refunded_amount"] == 100


async def test_bad_refunds_are_refused_and_change_nothing(stack):
    async with stack.http() as api:
        unpaid = (await post_checkout(api, checkout_body())).json()
        order = await bought(api)
        cases = {
            "unpaid": await post_refund(api, unpaid["order_id"], {"amount": 100}),
            "too much": await post_refund(api, order["order_id"], {"amount": 29701}),
            "zero": await post_refund(api, order["order_id"], {"amount": 0}),
            "negative": await post_refund(api, order["order_id"], {"amount": -5}),
            "float": await post_refund(api, order["order_id"], {"amount": 1.5}),
            "unknown order": await post_refund(api, "ord_nope", {"amount": 1}),
        }
        no_key = await api.post(f"/v1/orders/{order['order_id']}/refunds", json={})
        after = (await api.get(f"/v1/orders/{order['order_id']}")).json()

    assert {name: r.status_code for name, r in cases.items()} == {
        "unpaid": 409,
        "too much": 422,
        "zero": 422,
        "negative": 422,
        "float": 422,
        "unknown order": 404,
    }
    assert cases["too much"].json()["field"] == "amount"
    assert cases["zero"].json()["field"] == "amount"
    assert cases["unpaid"].json()["field"] == "order_id"
    assert no_key.status_code == 400
    assert (after["refunded_amount"], after["refunds"]) == (0, [])


async def test_the_refund_window_binds_the_storefront_not_support(stack, sessions):
    async with stack.http() as api:
        order = await bought(api)
    async with sessions.begin() as session:  # the purchase was eight days ago
        await session.execute(
            update(Order)
            .where(Order.order_id == order["order_id"])
            .values(paid_at=Order.paid_at - timedelta(days=8))
        )
    async with stack.http() as api:
        late = await post_refund(api, order["order_id"])
    async with stack.http(DEV_SUPPORT_KEY) as support:
        by_support = await post_refund(support, order["order_id"], {"reason": "goodwill"})
        await refund_settled(support, by_support.json()["refund_id"])
        [audited] = (await support.get(f"/v1/orders/{order['order_id']}/audit")).json()["entries"]

    assert late.status_code == 403
    assert late.json()["type"] == "urn:kassa:problem:refund-window-closed"
    assert by_support.status_code == 202
    assert by_support.json()["requested_by"] == "support"
    assert (audited["action"], audited["reason"], audited["after"]["outside_window"]) == (
        "refund",
        "goodwill",
        True,
    )
    assert audited["after"]["amount"] == order["amount"]  # everything, by default


async def test_access_survives_refunding_one_of_two_purchases(stack, sessions):
    customer = f"cus_{uuid.uuid4().hex[:8]}"
    async with stack.http() as api:
        first = await bought(api, customer_id=customer)
        await bought(api, customer_id=customer)
        refund = await post_refund(api, first["order_id"])
        await refund_settled(api, refund.json()["refund_id"])
    async with sessions() as session:
        active = await session.scalars(
            select(Entitlement.sku).where(
                Entitlement.customer_id == customer, Entitlement.revoked_at.is_(None)
            )
        )
        assert sorted(active) == ["course-python-101", "ebook-sql"]


async def test_a_reservation_whose_workflow_never_started_is_resumed(stack, sandbox, sessions):
    """The API reserved a refund and died before starting its workflow, and the client never
    retried: reconciliation finds the old pending reservation and starts it, once."""
    async with stack.http() as api:
        order = await bought(api)
    order_id = order["order_id"]
    async with sessions.begin() as session:  # what the API commits before it starts the workflow
        refund = await refunds.reserve(
            session,
            refund_id=f"rf_orphan_{uuid.uuid4().hex[:8]}",
            order_id=order_id,
            amount=700,
            reason="the API died after this",
            requested_by=Caller.STOREFRONT,
        )
        refund_id = refund.refund_id
        await session.execute(  # and then nothing happened for ten minutes
            update(Refund)
            .where(Refund.refund_id == refund_id)
            .values(created_at=Refund.created_at - timedelta(minutes=10))
        )

    report = await reconcile(stack)
    again = await reconcile(stack)
    async with stack.http() as api:
        settled = await refund_settled(api, refund_id)
        after = (await api.get(f"/v1/orders/{order_id}")).json()

    assert refund_id in report.refunds_resumed and refund_id not in again.refunds_resumed
    assert settled["status"] == "succeeded"
    assert [
        r["amount"] for r in sandbox.refunds.values() if r["refund_request_no"] == refund_id
    ] == [700]
    assert (after["status"], after["refunded_amount"]) == ("partially_refunded", 700)


async def test_support_refunds_an_order_its_checkout_left_paid(stack, sessions):
    """A checkout whose compensating refund failed for good ends with the order `paid` and
    the buyer's money still captured (CompensationFailed). Once that checkout no longer
    runs, support can refund the order; the storefront cannot, and while a checkout runs
    nobody can (the refund would race its fulfilment)."""
    async with stack.http() as api:
        done = await bought(api)
        running = (await post_checkout(api, checkout_body())).json()
    for order_id in (done["order_id"], running["order_id"]):  # what such a checkout leaves
        async with sessions.begin() as session:
            await session.execute(
                update(Order).where(Order.order_id == order_id).values(status="paid")
            )
    async with stack.http() as api:
        storefront_asks = await post_refund(api, done["order_id"])
    async with stack.http(DEV_SUPPORT_KEY) as support:
        while_running = await post_refund(support, running["order_id"], {"reason": "stuck"})
        refund = await post_refund(support, done["order_id"], {"reason": "stuck"})
        settled = await refund_settled(support, refund.json()["refund_id"])
        after = (await support.get(f"/v1/orders/{done['order_id']}")).json()
    async with sessions.begin() as session:  # let the running checkout end normally
        await session.execute(
            update(Order)
            .where(Order.order_id == running["order_id"])
            .values(status="awaiting_payment")
        )
    async with stack.http() as api:
        assert (await api.post(f"/v1/orders/{running['order_id']}/cancel")).status_code == 200

    assert storefront_asks.status_code == 409
    assert while_running.status_code == 409
    assert while_running.json()["type"] == "urn:kassa:problem:order-not-refundable"
    assert refund.status_code == 202, refund.text
    assert settled["status"] == "succeeded"
    assert (after["status"], after["refunded_amount"]) == ("refunded", done["amount"])


async def test_the_ledger_check_rides_out_a_flaky_gateway(stack, sandbox, sessions, settings):
    """Transient gateway errors are retried with backoff: the check goes on and is clean."""
    import httpx

    from gateways import build_gateways
    from tooling.ledger_check import check as ledger_check

    async with stack.http() as api:
        await bought(api)
    async with httpx.AsyncClient(base_url=settings.sandbox_url) as http:
        faults = {"fail_next_calls": 4}  # four 500s in a row: one call retried four times
        await http.put("/_emulator/behaviour", json={"faults": faults})
        try:
            async with httpx.AsyncClient() as gateways_http:
                problems = await ledger_check(sessions, build_gateways(settings, gateways_http))
            injected = sandbox.behaviour.faults.counts.copy()
        finally:
            await http.put("/_emulator/behaviour", json={})

    assert problems == []
    assert injected.get("api_errors") == 4
