"""Alipay end to end over HTTP: the storefront starts a checkout with `"gateway": "alipay"`,
the buyer scans the QR code and pays on the Alipay emulator, Alipay's signed form notify
reaches the API, and the order is fulfilled; refunds, the close-versus-paid race and a
forged notify, all through the public API and Alipay's wire protocol."""

from __future__ import annotations

import uuid

import httpx

from gateways import alipay_protocol
from tests.e2e.test_purchase import checkout_body
from tests.support import eventually


async def start(api, **change) -> dict:
    body = {**checkout_body(), "gateway": "alipay", "currency": "CNY", **change}
    response = await api.post(
        "/v1/checkouts", json=body, headers={"Idempotency-Key": uuid.uuid4().hex}
    )
    assert response.status_code == 201, response.text
    return response.json()


async def order(api, order_id: str) -> dict:
    return (await api.get(f"/v1/orders/{order_id}")).json()


async def buyer(settings, qr: str, outcome: str = "succeeded") -> httpx.Response:
    base = settings.alipay_gateway_url.removesuffix("/gateway.do")
    async with httpx.AsyncClient(base_url=base) as http:
        return await http.post("/_emulator/buyer", json={"payment": qr, "outcome": outcome})


def trade(alipay, order_id: str, attempt: int = 1) -> dict:
    return alipay.state.alipay.trades[alipay_protocol.out_trade_no(order_id, attempt)]


async def test_a_qr_payment_is_fulfilled_and_alipay_reads_success(stack, alipay, settings):
    async with stack.http() as api:
        started = await start(api)
        payment = started["payment"]
        assert payment["action"]["kind"] == "qr" and payment["action"]["qr"]
        assert payment["payment_url"] is None  # nothing to redirect to: a code to scan

        assert (await buyer(settings, payment["action"]["qr"])).status_code == 200
        done = await eventually(
            lambda: _status_is(api, started["order_id"], "fulfilled"), timeout=30
        )

    paid = trade(alipay, started["order_id"])
    assert paid["status"] == "TRADE_SUCCESS"
    assert done["payment_attempts"] == 1 and done["amount"] == started["amount"]
    notifies = [
        n for n in alipay.state.alipay.notifies if n["out_trade_no"] == paid["out_trade_no"]
    ]
    assert notifies and notifies[0]["reply"] == "success"  # the exact body Alipay needs


async def test_a_partial_refund_goes_back_through_alipay(stack, alipay, settings):
    async with stack.http() as api:
        started = await start(api)
        await buyer(settings, started["payment"]["action"]["qr"])
        order_id = started["order_id"]
        await eventually(lambda: _status_is(api, order_id, "fulfilled"), timeout=30)

        response = await api.post(
            f"/v1/orders/{order_id}/refunds",
            json={"amount": 300, "reason": "one chapter missing"},
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
        assert response.status_code == 202, response.text
        refund_id = response.json()["refund_id"]
        refunded = await eventually(lambda: _refund_is(api, refund_id, "succeeded"), timeout=30)
        after = await order(api, order_id)

    assert refunded["amount"] == 300
    assert (after["status"], after["refunded_amount"]) == ("partially_refunded", 300)
    at_alipay = trade(alipay, order_id)["refunds"][refund_id]
    assert alipay_protocol.from_yuan(at_alipay["refund_amount"]) == 300


async def test_a_cancel_racing_the_buyer_ends_paid(stack, alipay, settings):
    """The buyer pays just before the cancel's close reaches Alipay: the close answers
    TRADE_STATUS_ERROR, the adapter asks, and the order is paid, never cancelled."""
    base = settings.alipay_gateway_url.removesuffix("/gateway.do")
    async with stack.http() as api, httpx.AsyncClient(base_url=base) as emulator:
        started = await start(api)
        order_id = started["order_id"]
        await buyer(settings, started["payment"]["action"]["qr"], "scanned")
        await emulator.put("/_emulator/faults", json={"pay_before_close": 1.0})
        try:
            cancelled = await api.post(f"/v1/orders/{order_id}/cancel")
        finally:
            await emulator.put("/_emulator/faults", json={})
        assert cancelled.status_code == 409, cancelled.text
        done = await eventually(lambda: _status_is(api, order_id, "fulfilled"), timeout=30)

    assert trade(alipay, order_id)["status"] == "TRADE_SUCCESS"
    assert done["refunded_amount"] == 0


async def test_a_forged_notify_is_refused_and_changes_nothing(stack, alipay, settings):
    async with stack.http() as api:
        started = await start(api)
        order_id = started["order_id"]
        forged = {
            "notify_type": "trade_status_sync",
            "notify_id": "forged-1",
            "app_id": alipay.state.keys.app_id,
            "out_trade_no": alipay_protocol.out_trade_no(order_id, 1),
            "trade_no": "2026113022001400000000000001",
            "trade_status": "TRADE_SUCCESS",
            "total_amount": "99.00",
            "sign_type": "RSA2",
            "sign": "bm90IGEgc2lnbmF0dXJl",
        }
        answer = await api.post("/v1/webhooks/alipay", data=forged)
        after = await order(api, order_id)

    assert answer.status_code == 401
    assert answer.json()["type"] == "urn:kassa:problem:invalid-signature"
    assert after["status"] == "awaiting_payment"
    assert trade(alipay, order_id)["status"] in ("NOT_SCANNED", "WAIT_BUYER_PAY")


async def test_alipay_takes_cny_only(stack, alipay):
    async with stack.http() as api:
        response = await api.post(
            "/v1/checkouts",
            json={**checkout_body(), "gateway": "alipay", "currency": "USD"},
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
    assert response.status_code == 422
    assert response.json()["field"] == "currency"


async def _status_is(api, order_id: str, status: str) -> dict | None:
    found = await order(api, order_id)
    return found if found["status"] == status else None


async def _refund_is(api, refund_id: str, status: str) -> dict | None:
    found = (await api.get(f"/v1/refunds/{refund_id}")).json()
    return found if found["status"] == status else None
