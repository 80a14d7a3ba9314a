"""The Alipay emulator and adapter beyond the conformance suite: Alipay's own wire behaviour
(raw signed calls), its notifies and faults, its keys, and fidelity to a real client SDK
(fzlee's python-alipay-sdk, a test-only oracle)."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlencode

import pytest
import pytest_asyncio

from gateways import alipay_protocol as protocol
from gateways.alipay import AlipayGateway
from gateways.base import GatewayError, NewRefund, PaymentWord
from gateways.emulators.alipay import ensure_keys
from kassa.contracts import RefundEvent
from kassa.errors import GatewayRejected, MalformedCallback
from tests.gateways.conftest import action, new_order_id
from tests.support import eventually


@pytest_asyncio.fixture
async def gw(alipay_harness):
    await alipay_harness.faults()
    yield alipay_harness
    await alipay_harness.faults()


async def raw(gw, method: str, biz: dict, key=None, **common) -> tuple[dict, bool]:
    """A call signed by hand (or with another `key`), and the verified answer."""
    keys = gw.adapter_keys
    params = {
        "app_id": keys.app_id,
        "method": method,
        "charset": "utf-8",
        "timestamp": protocol.format_time(datetime.now(UTC)),
        "version": "1.0",
        "biz_content": json.dumps(biz),
        **common,
    }
    signed = protocol.sign_request(params, key or keys.merchant_private)
    response = await gw.http.post(f"{gw.emulator_url}/gateway.do", data=signed)
    assert response.status_code == 200
    return protocol.open_response(method, response.content, keys.gateway_public)


@pytest.fixture(autouse=True)
def _keys(alipay_emulator, alipay_harness):
    alipay_harness.adapter_keys = alipay_emulator.state.keys


def notifies_of(gw, out_trade_no: str) -> list[dict]:
    return [n for n in gw.emulator_state.notifies if n["out_trade_no"] == out_trade_no]


# ---- the wire, raw ------------------------------------------------------------------------------


async def test_a_request_not_signed_by_the_merchant_is_refused_unsigned(gw):
    content, signed = await raw(
        gw, "alipay.trade.query", {"out_trade_no": "x"}, key=protocol.new_private_key()
    )
    assert (content["code"], content["sub_code"], signed) == (
        "40002",
        "isv.invalid-signature",
        False,
    )
    stranger = AlipayGateway(
        gw.http,
        gw.adapter._url,
        gw.adapter_keys.app_id,
        protocol.new_private_key(),
        gw.adapter_keys.gateway_public,
    )
    with pytest.raises(GatewayRejected, match=r"isv\.invalid-signature"):
        await stranger.get_payment("ord_1")


async def test_an_answer_that_does_not_verify_leaves_the_outcome_unknown(gw):
    wrong_key = AlipayGateway(
        gw.http,
        gw.adapter._url,
        gw.adapter_keys.app_id,
        gw.adapter_keys.merchant_private,
        protocol.new_private_key().public_key(),
    )
    with pytest.raises(GatewayError, match="does not verify"):
        await wrong_key.get_payment("ord_1")


async def test_a_qr_nobody_scanned_is_no_trade_and_dies_when_closed(gw):
    request = gw.new_payment()
    session = await gw.adapter.create_payment(request)
    no = request.merchant_order_id
    assert (await raw(gw, "alipay.trade.query", {"out_trade_no": no}))[0]["sub_code"] == (
        "ACQ.TRADE_NOT_EXIST"
    )
    content, signed = await raw(gw, "alipay.trade.close", {"out_trade_no": no})
    assert (content["sub_code"], signed) == ("ACQ.TRADE_NOT_EXIST", True)
    assert (await gw.buyer(action(session))).status_code == 409
    assert notifies_of(gw, no) == []


async def test_alipays_answers_to_close_refund_and_refund_query(gw):
    request, amount = gw.new_payment(amount=1000), "10.00"
    session = await gw.adapter.create_payment(request)
    no = request.merchant_order_id
    await gw.buyer(action(session))
    assert (await raw(gw, "alipay.trade.close", {"out_trade_no": no}))[0]["sub_code"] == (
        "ACQ.TRADE_STATUS_ERROR"
    )
    refund = {"out_trade_no": no, "refund_amount": "4.00", "out_request_no": "r1"}
    first, _ = await raw(gw, "alipay.trade.refund", refund)
    again, _ = await raw(gw, "alipay.trade.refund", refund)
    assert (first["fund_change"], again["fund_change"]) == ("Y", "N")
    assert first["refund_fee"] == again["refund_fee"] == "4.00"
    over = {**refund, "refund_amount": "6.01", "out_request_no": "r2"}
    assert (await raw(gw, "alipay.trade.refund", over))[0]["sub_code"] == (
        "ACQ.REASON_TRADE_REFUND_FEE_ERR"
    )
    unknown, _ = await raw(
        gw, "alipay.trade.fastpay.refund.query", {"out_trade_no": no, "out_request_no": "r9"}
    )
    assert unknown == {"code": "10000", "msg": "Success"}
    known, _ = await raw(
        gw, "alipay.trade.fastpay.refund.query", {"out_trade_no": no, "out_request_no": "r1"}
    )
    assert (known["refund_amount"], known["total_amount"]) == ("4.00", amount)


# ---- the buyer and the trade's life ------------------------------------------------------------


async def test_a_declined_payment_leaves_the_trade_waiting_and_tells_nobody(gw):
    request = gw.new_payment()
    session = await gw.adapter.create_payment(request)
    assert (await gw.buyer(action(session), "declined")).json()["status"] == "WAIT_BUYER_PAY"
    assert (await gw.adapter.get_payment(request.merchant_order_id)).outcome == "pending"
    await asyncio.sleep(0.1)
    assert notifies_of(gw, request.merchant_order_id) == []
    assert (await gw.buyer(action(session))).status_code == 200  # tries again, pays
    [event] = await eventually(lambda: gw.merchant.events_of(request.merchant_order_id))
    assert event.outcome == "succeeded"


async def test_a_scanned_trade_that_times_out_is_closed_and_notified(gw):
    request = gw.new_payment(expires_in=timedelta(seconds=1.2))
    session = await gw.adapter.create_payment(request)
    assert (await gw.buyer(action(session), "scanned")).json()["status"] == "WAIT_BUYER_PAY"
    [event] = await eventually(lambda: gw.merchant.events_of(request.merchant_order_id), timeout=5)
    assert (event.outcome, event.amount) == ("closed", request.amount)
    assert (await gw.adapter.get_payment(request.merchant_order_id)).outcome == "closed"


async def test_refund_notices_are_refund_events_even_when_they_close_the_trade(gw):
    request, session = gw.new_payment(amount=500), None
    session = await gw.adapter.create_payment(request)
    await gw.buyer(action(session))
    refund_no = f"rf_{uuid.uuid4().hex[:8]}"
    await gw.adapter.refund(NewRefund(refund_no, request.merchant_order_id, 500, "CNY", "all"))
    [refunded] = await eventually(
        lambda: [
            e for e in gw.merchant.events if isinstance(e, RefundEvent) and e.refund_id == refund_no
        ]
    )
    assert refunded.status == "succeeded"
    [notice] = [n for n in notifies_of(gw, request.merchant_order_id) if n["out_biz_no"]]
    assert notice["trade_status"] == "TRADE_CLOSED"  # fully refunded
    assert [e.outcome for e in gw.merchant.events_of(request.merchant_order_id)] == ["succeeded"]
    payment = await gw.adapter.get_payment(request.merchant_order_id)  # paid, then all refunded
    assert (payment.outcome, payment.refunded_amount) == ("succeeded", 500)


async def test_a_finished_trade_is_still_a_payment_that_succeeded(gw):
    request = gw.new_payment()
    session = await gw.adapter.create_payment(request)
    no = request.merchant_order_id
    await gw.buyer(action(session))
    await eventually(lambda: gw.merchant.events_of(no))
    finished = await gw.http.post(f"{gw.emulator_url}/_emulator/trades/{no}/finish")
    assert finished.status_code == 200
    events = await eventually(lambda: gw.merchant.events_of(no)[1:])
    assert [e.outcome for e in events] == ["succeeded"]
    assert (await gw.adapter.get_payment(request.merchant_order_id)).outcome == "succeeded"


async def test_the_pc_cashier_redirect_is_paid_like_a_qr_code(gw):
    request = gw.new_payment(return_url="http://127.0.0.1:9/back")
    url = gw.adapter.page_pay_url(request)
    opened = await gw.http.get(url)  # the buyer's browser: redirected to the cashier
    assert opened.status_code == 302 and "/qr/" in opened.headers["location"]
    assert (await gw.adapter.get_payment(request.merchant_order_id)).outcome == "pending"
    assert (await gw.buyer(url)).status_code == 200
    [event] = await eventually(lambda: gw.merchant.events_of(request.merchant_order_id))
    assert event.outcome == "succeeded"


async def test_with_the_pc_cashier_the_session_is_a_redirect(gw):
    page = AlipayGateway(
        gw.http,
        gw.adapter._url,
        gw.adapter._app_id,
        gw.adapter._private,
        gw.adapter._alipay,
        cashier="page",
    )
    request = gw.new_payment()
    session = await page.create_payment(request)
    assert (session.payment_id, session.qr_code) == (None, None)
    assert session.payment_url.startswith(gw.adapter._url)
    assert (await gw.buyer(session.payment_url)).status_code == 200
    [event] = await eventually(lambda: gw.merchant.events_of(request.merchant_order_id))
    assert (event.outcome, event.amount) == ("succeeded", request.amount)


async def test_only_cny_and_any_cart_title(gw):
    assert gw.adapter.currencies == frozenset({"CNY"})
    with pytest.raises(GatewayRejected, match="CNY"):
        await gw.adapter.create_payment(gw.new_payment(currency="USD"))
    titles = [
        f"Course {n}: " + "A very long title / with = & {braces} 课程 " * 10 for n in range(5)
    ]
    cart = gw.new_payment(description=", ".join(f"1 × {t}" for t in titles))
    await gw.adapter.create_payment(cart)
    assert len(gw.emulator_state.trades[cart.merchant_order_id]["subject"]) <= 256


# ---- notifies and faults -----------------------------------------------------------------------


async def test_duplicated_notifies_keep_their_notify_id_and_contrary_ones_get_their_own(gw):
    await gw.faults(duplicate_callbacks=1, reorder_callbacks=True)
    request, _ = await _paid(gw)
    no = request.merchant_order_id
    events = await eventually(
        lambda: len(gw.merchant.events_of(no)) >= 3 and gw.merchant.events_of(no)
    )
    first, duplicate, contrary = events
    assert first == duplicate
    assert (contrary.outcome, contrary.event_id != first.event_id) == ("closed", True)


async def test_a_dropped_notify_never_comes_but_the_query_knows(gw):
    await gw.faults(drop_callbacks=1.0)
    request, _ = await _paid(gw)
    await asyncio.sleep(0.2)
    assert gw.merchant.events_of(request.merchant_order_id) == []
    assert (await gw.adapter.get_payment(request.merchant_order_id)).outcome == "succeeded"


async def test_a_lost_precreate_answer_is_asked_again_for_the_same_qr(gw):
    request = gw.new_payment()
    await gw.faults(lose_next_answers=1)
    with pytest.raises(GatewayError):
        await gw.adapter.create_payment(request)
    session = await gw.adapter.create_payment(request)
    assert session.qr_code == gw.emulator_state.trades[request.merchant_order_id]["qr_code"]
    assert (session.payment_id, session.payment_url) == (None, None)


def test_the_reference_is_the_out_trade_no_hashed_when_too_long(gw):
    assert gw.adapter.reference("demo-1001", 2) == "demo_h1001_a2"
    order_id = new_order_id()
    assert gw.adapter.reference(order_id, 3) == protocol.out_trade_no(order_id, 3)
    long = gw.adapter.reference("o-" * 32, 1)  # 96 characters once escaped
    assert protocol.is_hashed(long) and protocol.OUT_TRADE_NO_PATTERN.match(long)
    with pytest.raises(GatewayRejected):  # not an order id Kassa makes
        gw.adapter.reference("ord/1", 1)


def test_the_callback_reply_is_exactly_success(gw):
    assert (gw.adapter.callback_reply.body, gw.adapter.callback_reply.media_type) == (
        "success",
        "text/plain",
    )


def test_a_verified_notify_that_makes_no_sense_is_malformed(gw):
    key = gw.adapter_keys.gateway_private
    hashed = gw.adapter.reference("o" * 64, 2)  # only the stored reference knows its order
    base = {
        "notify_type": "trade_status_sync",
        "notify_id": "n1",
        "app_id": gw.adapter_keys.app_id,
        "out_trade_no": hashed,
        "trade_no": "2024010122001400000000000001",
        "trade_status": "TRADE_SUCCESS",
        "total_amount": "1.00",
    }
    word = gw.adapter.parse_callback({}, urlencode(protocol.sign_notify(base, key)).encode())
    assert word == PaymentWord("n1", hashed, base["trade_no"], "succeeded", 100, "CNY")
    for params in (
        {**base, "out_trade_no": "ord-1.x"},  # not an out_trade_no the adapter makes
        {**base, "out_trade_no": "ok", "total_amount": "1.001"},
        {**base, "out_trade_no": "ok", "trade_status": "TRADE_WHATEVER"},
        {**base, "out_trade_no": "ok", "app_id": "2021000000000000"},
    ):
        body = urlencode(protocol.sign_notify(params, key)).encode()
        with pytest.raises(MalformedCallback):
            gw.adapter.parse_callback({}, body)
    waiting = {**base, "out_trade_no": "ok", "trade_status": "WAIT_BUYER_PAY"}
    assert (
        gw.adapter.parse_callback({}, urlencode(protocol.sign_notify(waiting, key)).encode())
        is None
    )


async def _paid(gw, amount: int = 4200):
    request = gw.new_payment(amount=amount)
    session = await gw.adapter.create_payment(request)
    assert (await gw.buyer(action(session))).status_code == 200
    return request, session


# ---- keys --------------------------------------------------------------------------------------


def test_keys_are_made_once_and_kept(tmp_path):
    directory = tmp_path / "keys" / "alipay"
    first = ensure_keys(directory)
    assert sorted(p.name for p in directory.iterdir()) == [
        "gateway_private.pem",
        "gateway_public.pem",
        "merchant_private.pem",
        "merchant_public.pem",
        "settings.json",
    ]
    assert (directory / "merchant_private.pem").stat().st_mode & 0o777 == 0o600
    again = ensure_keys(directory)
    assert again.app_id == first.app_id
    assert protocol.public_pem(again.gateway_public) == protocol.public_pem(first.gateway_public)


# ---- fidelity: fzlee's python-alipay-sdk as an oracle ------------------------------------------
# It is synchronous (urllib), so it runs in a thread while the emulator serves on this loop.
# Its quirks: the gateway URL is the private attribute `_gateway`; its `timestamp` is a naive
# `datetime.now()` (host-local time, not Beijing time: the emulator checks the format only);
# its response extractor counts braces without skipping strings (the emulator's answers keep
# braces out of string values: subjects are cleaned of them); it sends every parameter in
# the query string of a GET.


@pytest.fixture
def sdk(gw):
    from alipay import AliPay  # the oracle; never imported by Kassa's code

    client = AliPay(
        appid=gw.adapter_keys.app_id,
        app_notify_url=f"{gw.merchant_url}/alipay",
        app_private_key_string=gw.adapter_keys.pem("merchant_private"),
        alipay_public_key_string=gw.adapter_keys.pem("gateway_public"),
        sign_type="RSA2",
    )
    client._gateway = f"{gw.emulator_url}/gateway.do"
    return client


async def test_the_sdk_signs_requests_the_emulator_takes_and_verifies_its_answers(gw, sdk):
    no = f"sdk_{uuid.uuid4().hex[:10]}"
    created = await asyncio.to_thread(
        sdk.api_alipay_trade_precreate,
        subject="课程 Python 101",
        out_trade_no=no,
        total_amount="0.10",
    )
    assert (created["code"], created["out_trade_no"]) == ("10000", no)
    missing = await asyncio.to_thread(sdk.api_alipay_trade_query, out_trade_no="sdk_nobody")
    assert missing["sub_code"] == "ACQ.TRADE_NOT_EXIST"  # a business failure, signed
    await gw.buyer(created["qr_code"])
    queried = await asyncio.to_thread(sdk.api_alipay_trade_query, out_trade_no=no)
    assert (queried["trade_status"], queried["total_amount"]) == ("TRADE_SUCCESS", "0.10")
    closed = await asyncio.to_thread(sdk.api_alipay_trade_close, out_trade_no=no)
    assert closed["sub_code"] == "ACQ.TRADE_STATUS_ERROR"
    for _ in range(2):
        refunded = await asyncio.to_thread(
            sdk.api_alipay_trade_refund, refund_amount="0.04", out_trade_no=no, out_request_no="s1"
        )
    assert (refunded["fund_change"], refunded["refund_fee"]) == ("N", "0.04")
    found = await asyncio.to_thread(
        sdk.api_alipay_trade_fastpay_refund_query, out_request_no="s1", out_trade_no=no
    )
    assert found["refund_amount"] == "0.04"


async def test_the_sdk_verifies_the_emulators_notifies_and_refuses_a_tampered_one(gw, sdk):
    request, _ = await _paid(gw, amount=1234)
    no = request.merchant_order_id
    await eventually(lambda: gw.merchant.events_of(no))
    _, _, body = next(r for r in gw.merchant.received if r[0] == "alipay" and no.encode() in r[2])
    data = dict(parse_qsl(body.decode()))
    signature = data.pop("sign")
    assert data["total_amount"] == "12.34"
    assert sdk.verify(dict(data), signature)
    assert not sdk.verify({**data, "total_amount": "0.01"}, signature)


async def test_the_adapter_and_the_sdk_sign_alike(gw, sdk):
    """The adapter's request, as the SDK would have signed the same parameters."""
    params = gw.adapter._signed("alipay.trade.query", {"out_trade_no": "x"})
    content = protocol.sign_content(params, ("sign",)).decode()
    assert params["sign"] == sdk._sign(content)
