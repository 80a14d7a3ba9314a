"""Support's actions are audited: each cancel, decision on a held payment and refund by the
support key leaves exactly one row in the append-only `audit_log` (who, what, why, the
order's status before and after, the request id), read per order by support only. Over
real HTTP: the API, the Temporal dev server, the worker, PostgreSQL, the sandbox."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import func, select

from db.models import AuditEntry
from kassa.settings import DEV_SUPPORT_KEY
from tests.e2e.test_purchase import checkout_body, post_checkout, wait_for_status
from tests.e2e.test_refunds import bought, post_refund
from tests.support import buyer_acts, eventually

SUPPORT = "support:dev-support"  # the development support key's holder


async def audit_rows(sessions, order_id: str) -> int:
    async with sessions() as session:
        return await session.scalar(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.order_id == order_id)
        )


async def test_a_support_cancel_leaves_one_audit_row(stack, sandbox, sessions):
    async with stack.http() as api:
        order_id = (await post_checkout(api, checkout_body())).json()["order_id"]
        forbidden = await api.get(f"/v1/orders/{order_id}/audit")
    async with stack.http(DEV_SUPPORT_KEY) as support:
        no_reason = await support.post(f"/v1/orders/{order_id}/cancel")
        blank = await support.post(f"/v1/orders/{order_id}/cancel", json={"reason": " "})
        after_refusals = await audit_rows(sessions, order_id)
        cancel = {"json": {"reason": "duplicate order"}, "headers": {"X-Request-ID": "req-42"}}
        cancelled = await support.post(f"/v1/orders/{order_id}/cancel", **cancel)
        again = await support.post(f"/v1/orders/{order_id}/cancel", **cancel)
        log = (await support.get(f"/v1/orders/{order_id}/audit")).json()

    assert forbidden.status_code == 403
    assert forbidden.json()["type"] == "urn:kassa:problem:support-only"
    assert no_reason.status_code == 403
    assert (no_reason.json()["type"], no_reason.json()["field"]) == (
        "urn:kassa:problem:reason-required",
        "reason",
    )
    assert blank.status_code == 422 and blank.json()["field"] == "reason"
    assert after_refusals == 0
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["reason_code"] == "cancelled_by_support"
    assert again.status_code == 200  # the same cancel's answer again
    assert sandbox.payments[sandbox.by_order[order_id]]["status"] == "closed"
    [entry] = log["entries"]
    assert log["has_more"] is False
    assert {k: entry[k] for k in ("actor", "action", "order_id", "reason", "request_id")} == {
        "actor": SUPPORT,
        "action": "cancel",
        "order_id": order_id,
        "reason": "duplicate order",
        "request_id": "req-42",
    }
    assert (entry["before"], entry["after"]) == (
        {"status": "awaiting_payment"},
        {"status": "cancelled"},
    )


async def test_a_storefront_cancel_is_not_a_support_action(stack, sessions):
    async with stack.http() as api:
        order_id = (await post_checkout(api, checkout_body())).json()["order_id"]
        assert (await api.post(f"/v1/orders/{order_id}/cancel")).status_code == 200
    assert await audit_rows(sessions, order_id) == 0


async def test_a_support_refund_leaves_one_audit_row(stack, sessions):
    async with stack.http() as api:
        order_id = (await bought(api))["order_id"]
    async with stack.http(DEV_SUPPORT_KEY) as support:
        no_reason = await post_refund(support, order_id, {"amount": 100})
        key = uuid.uuid4().hex
        body = {"amount": 100, "reason": "course pulled"}
        refund = await post_refund(support, order_id, body, key)
        replay = await post_refund(support, order_id, body, key)
        log = (await support.get(f"/v1/orders/{order_id}/audit")).json()

    assert no_reason.status_code == 403 and no_reason.json()["field"] == "reason"
    assert refund.status_code == 202, refund.text
    assert replay.headers["Idempotent-Replayed"] == "true"
    [entry] = log["entries"]
    assert (entry["actor"], entry["action"], entry["reason"]) == (
        SUPPORT,
        "refund",
        "course pulled",
    )
    assert entry["request_id"].startswith("req_")  # none sent: generated
    assert entry["before"] == {"status": "fulfilled", "refunded_amount": 0}
    assert entry["after"] == {
        "status": "fulfilled",
        "refund_id": refund.json()["refund_id"],
        "amount": 100,
        "outside_window": False,
    }


async def test_a_review_leaves_one_audit_row(stack, sessions):
    async with stack.http() as api:
        order_id = (await post_checkout(api, checkout_body())).json()["order_id"]
        checkout = (await api.get(f"/v1/orders/{order_id}")).json()
        await buyer_acts(checkout["payment_url"], amount=100)  # another amount: held
        await wait_for_status(api, order_id, "on_hold")
    async with stack.http(DEV_SUPPORT_KEY) as support:
        decided = await support.post(
            f"/v1/orders/{order_id}/review",
            json={"note": "paid 1.00; refund it"},
            headers={"X-Request-ID": "ticket-7"},
        )
        log = (await support.get(f"/v1/orders/{order_id}/audit")).json()

    assert decided.status_code == 200, decided.text
    [entry] = log["entries"]
    assert (entry["actor"], entry["action"], entry["reason"], entry["request_id"]) == (
        SUPPORT,
        "review",
        "paid 1.00; refund it",
        "ticket-7",
    )
    assert (entry["before"], entry["after"]) == (
        {"status": "on_hold"},
        {"status": "failed", "decision": "refund"},
    )


async def test_a_bad_request_id_is_refused_naming_it(stack, sessions):
    async with stack.http() as api:
        order_id = (await post_checkout(api, checkout_body())).json()["order_id"]
    async with stack.http(DEV_SUPPORT_KEY) as support:
        bad = await support.post(
            f"/v1/orders/{order_id}/cancel",
            json={"reason": "duplicate"},
            headers={"X-Request-ID": "a b"},
        )
        missing = await support.get("/v1/orders/ord_missing/audit")
    assert bad.status_code == 422 and bad.json()["field"] == "X-Request-Id"
    assert missing.status_code == 404
    assert await audit_rows(sessions, order_id) == 0
    async with stack.http() as api:
        assert (await api.get(f"/v1/orders/{order_id}")).json()["status"] == "awaiting_payment"


async def test_the_longest_ids_fit_the_audit_log(stack, sessions):
    """An order id and a request id of the longest lengths allowed: the reconciliation is
    recorded (its audit key digests the request id), and the same request writes one row."""
    order_id = f"ord_{uuid.uuid4().hex}".ljust(64, "x")
    request_id = "ticket-" + "9" * 121  # 128 characters
    async with stack.http() as api:
        created = await post_checkout(api, checkout_body(order_id=order_id))
        assert created.status_code == 201, created.text
    url = f"/v1/orders/{order_id}/reconcile"
    headers = {"X-Request-ID": request_id}
    async with stack.http(DEV_SUPPORT_KEY) as support:
        first = await support.post(url, json={"reason": "checking"}, headers=headers)
        again = await support.post(url, json={"reason": "checking"}, headers=headers)
        log = (await support.get(f"/v1/orders/{order_id}/audit")).json()
        await support.post(f"/v1/orders/{order_id}/cancel", json={"reason": "test over"})

    assert (first.status_code, again.status_code) == (202, 202), first.text
    assert first.json()["workflow_id"] == again.json()["workflow_id"]
    [entry] = log["entries"]
    assert (entry["action"], entry["request_id"]) == ("reconcile", request_id)


async def test_support_redelivers_a_webhook_audited(stack, storefront, sessions):
    async with stack.http() as api:
        order_id = (await bought(api))["order_id"]
        forbidden = await api.post(
            f"/v1/orders/{order_id}/webhooks/redeliver", json={"reason": "lost"}
        )
    await eventually(lambda: len(storefront.for_order(order_id)) == 1)
    [first] = storefront.for_order(order_id)
    url = f"/v1/orders/{order_id}/webhooks/redeliver"
    async with stack.http(DEV_SUPPORT_KEY) as support:
        no_reason = await support.post(url, json={})
        unknown = await support.post(url, json={"reason": "lost", "event_id": "evt_nope"})
        sent = await support.post(
            url, json={"reason": "shop lost it"}, headers={"X-Request-ID": "ticket-9"}
        )
        await eventually(lambda: len(storefront.for_order(order_id)) == 2)
        again = await support.post(  # the same request, once sent: not sent again
            url, json={"reason": "shop lost it"}, headers={"X-Request-ID": "ticket-9"}
        )
        await asyncio.sleep(1)
        log = (await support.get(f"/v1/orders/{order_id}/audit")).json()

    assert forbidden.status_code == 403
    assert no_reason.status_code == 422 and no_reason.json()["field"] == "reason"
    assert unknown.status_code == 404 and unknown.json()["field"] == "event_id"
    assert sent.status_code == 202, sent.text
    assert again.status_code == 202
    assert sent.json()["event_id"] == first["id"] == f"evt_{order_id}_fulfilled"
    [_, redelivered] = storefront.for_order(order_id)
    assert (redelivered["id"], redelivered["payload"]) == (first["id"], first["payload"])
    [entry] = log["entries"]
    assert (entry["actor"], entry["action"], entry["reason"], entry["request_id"]) == (
        SUPPORT,
        "redeliver_webhook",
        "shop lost it",
        "ticket-9",
    )
    assert entry["after"] == {
        "status": "fulfilled",
        "event_id": first["id"],
        "type": "order.fulfilled",
    }
