"""What every adapter must do, whatever its gateway's protocol: one suite, run against each
adapter and its emulator over real HTTP (the buyer acts through `POST /_emulator/buyer`)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import httpx
import pytest
import pytest_asyncio

from gateways.base import GatewayError, GatewayRefund, NewRefund, PaymentWord
from kassa.contracts import RefundEvent
from kassa.errors import GatewayRejected, InvalidSignature
from kassa.statuses import PaymentOutcome, RefundStatus
from tests.gateways.conftest import action, new_order_id
from tests.support import eventually


@pytest.fixture(params=["sandbox", "alipay"])
def gw(request):
    return request.getfixturevalue(f"{request.param}_harness")


@pytest_asyncio.fixture(autouse=True)
async def no_faults(gw):
    await gw.faults()
    yield
    await gw.faults()
    gw.merchant.bad_replies.clear()


async def paid(gw, amount: int = 4200):
    request = gw.new_payment(amount=amount)
    session = await gw.adapter.create_payment(request)
    assert (await gw.buyer(action(session))).status_code == 200
    return request, session


def refund(request, session, refund_no: str, amount: int) -> NewRefund:
    return NewRefund(
        refund_no, request.merchant_order_id, amount, "CNY", "test", payment_id=session.payment_id
    )


async def test_creation_is_idempotent(gw):
    request = gw.new_payment()
    first = await gw.adapter.create_payment(request)
    assert first.gateway == gw.name and action(first)
    if gw.name == "sandbox":  # a page to go to, and the gateway's id of the payment
        assert first.payment_id.startswith("pay_") and first.payment_url
        assert first.qr_code is None
    else:  # a QR code to scan; Alipay numbers the trade only once it is scanned
        assert (first.payment_id, first.payment_url) == (None, None) and first.qr_code
    assert await gw.adapter.create_payment(request) == first


async def test_the_reference_is_the_adapters_own_and_stable(gw):
    order_id = new_order_id()
    first, second = gw.adapter.reference(order_id, 1), gw.adapter.reference(order_id, 2)
    assert first == gw.adapter.reference(order_id, 1) and first != second
    assert gw.new_payment(order_id=order_id, attempt=2).merchant_order_id == second


async def test_before_the_buyer_acts_the_payment_is_not_paid_never_an_error(gw):
    request = gw.new_payment()
    await gw.adapter.create_payment(request)
    payment = await gw.adapter.get_payment(request.merchant_order_id)
    assert (payment.merchant_order_id, payment.outcome) == (
        request.merchant_order_id,
        gw.before_buyer,  # Alipay: a QR nobody scanned is no trade yet (NOT_FOUND)
    )
    assert await gw.adapter.list_payments(request.merchant_order_id) == (
        [] if gw.before_buyer == PaymentOutcome.NOT_FOUND else [payment]
    )
    await gw.look(action(await gw.adapter.create_payment(request)))  # opened, or scanned
    assert (await gw.adapter.get_payment(request.merchant_order_id)).outcome == "pending"


async def test_paid_the_query_and_the_callback_say_so(gw):
    order_id = new_order_id()
    request = gw.new_payment(amount=1999, order_id=order_id)
    session = await gw.adapter.create_payment(request)
    assert (await gw.buyer(action(session))).status_code == 200
    payment = await gw.adapter.get_payment(request.merchant_order_id)
    assert (payment.outcome, payment.amount, payment.currency) == ("succeeded", 1999, "CNY")
    assert payment.merchant_order_id == request.merchant_order_id
    captured = await gw.captured_id(request.merchant_order_id)  # Alipay: the trade_no
    assert captured and payment.payment_id == captured
    if session.payment_id is not None:  # the id given at creation stays the payment's
        assert payment.payment_id == session.payment_id
    assert [p.payment_id for p in await gw.adapter.list_payments(request.merchant_order_id)] == [
        captured
    ]
    [word] = await eventually(lambda: gw.merchant.events_of(request.merchant_order_id))
    assert isinstance(word, PaymentWord)
    assert word.merchant_order_id == gw.adapter.reference(order_id, 1)
    assert word.payment_id == captured
    assert (word.outcome, word.amount, word.currency) == ("succeeded", 1999, "CNY")


async def test_a_retry_after_the_first_attempt_is_its_own_payment(gw):
    order_id = new_order_id()
    first = gw.new_payment(order_id=order_id)
    second = gw.new_payment(order_id=order_id, attempt=2)
    assert first.merchant_order_id != second.merchant_order_id
    one = await gw.adapter.create_payment(first)
    two = await gw.adapter.create_payment(second)
    assert action(one) != action(two)
    if gw.name == "sandbox":
        assert one.payment_id != two.payment_id
    await gw.buyer(action(two))
    [word] = await eventually(lambda: gw.merchant.events_of(second.merchant_order_id))
    assert word.merchant_order_id == gw.adapter.reference(order_id, 2)
    assert (word.outcome, word.payment_id) == (
        "succeeded",
        await gw.captured_id(second.merchant_order_id),
    )
    assert (await gw.adapter.get_payment(first.merchant_order_id)).outcome == gw.before_buyer
    assert (await gw.adapter.get_payment(second.merchant_order_id)).outcome == "succeeded"


async def test_closing_an_unpaid_payment_closes_it_for_good(gw):
    for looked in (False, True):  # Alipay: before and after the buyer scans
        request = gw.new_payment()
        session = await gw.adapter.create_payment(request)
        if looked:
            await gw.look(action(session))
        closed = await gw.adapter.close_payment(request.merchant_order_id)
        assert (closed.merchant_order_id, closed.outcome) == (request.merchant_order_id, "closed")
        again = await gw.adapter.close_payment(request.merchant_order_id)
        assert again.outcome == "closed"
        assert (await gw.buyer(action(session))).status_code == 409
        assert (await gw.adapter.get_payment(request.merchant_order_id)).outcome != "succeeded"


async def test_closing_a_paid_payment_reports_it_paid(gw):
    request, _ = await paid(gw)
    closed = await gw.adapter.close_payment(request.merchant_order_id)
    assert (closed.outcome, closed.amount, closed.currency) == ("succeeded", 4200, "CNY")
    assert closed.payment_id == await gw.captured_id(request.merchant_order_id)
    assert (await gw.adapter.get_payment(request.merchant_order_id)).outcome == "succeeded"


async def test_a_payment_made_between_the_query_and_the_close_is_reported_paid(gw):
    request = gw.new_payment()
    await gw.adapter.create_payment(request)
    assert (await gw.adapter.get_payment(request.merchant_order_id)).outcome == gw.before_buyer
    await gw.faults(pay_before_close=1.0)
    closed = await gw.adapter.close_payment(request.merchant_order_id)
    assert (closed.outcome, closed.amount) == ("succeeded", request.amount)


async def test_an_unpaid_payment_expires(gw):
    request = gw.new_payment(expires_in=timedelta(seconds=1.5))
    session = await gw.adapter.create_payment(request)
    await gw.look(action(session))
    await asyncio.sleep(1.6)
    assert (await gw.buyer(action(session))).status_code == 409
    assert (await gw.adapter.get_payment(request.merchant_order_id)).outcome == "closed"
    assert (await gw.adapter.close_payment(request.merchant_order_id)).outcome == "closed"


async def test_refunds_full_and_partial_are_idempotent_on_their_number(gw):
    request, session = await paid(gw, amount=1000)
    no = uuid.uuid4().hex[:8]
    first = await gw.adapter.refund(refund(request, session, f"rf_{no}_1", 600))
    assert (first.status, first.amount) == (RefundStatus.SUCCEEDED, 600)
    assert await gw.adapter.refund(refund(request, session, f"rf_{no}_1", 600)) == first
    with pytest.raises(GatewayRejected):  # more than is left
        await gw.adapter.refund(refund(request, session, f"rf_{no}_2", 401))
    rest = await gw.adapter.refund(refund(request, session, f"rf_{no}_2", 400))
    assert rest.status == RefundStatus.SUCCEEDED
    asked = await gw.adapter.get_refund(f"rf_{no}_1", request.merchant_order_id)
    assert (asked.status, asked.amount) == (RefundStatus.SUCCEEDED, 600)
    assert await gw.refunded(request.merchant_order_id) == 1000
    payment = await gw.adapter.get_payment(request.merchant_order_id)
    assert (payment.outcome, payment.refunded_amount) == ("succeeded", 1000)

    request, session = await paid(gw, amount=700)  # all of it in one refund
    full = await gw.adapter.refund(refund(request, session, f"rf_{no}_3", 700))
    assert full.status == RefundStatus.SUCCEEDED
    assert await gw.adapter.refund(refund(request, session, f"rf_{no}_3", 700)) == full
    assert await gw.refunded(request.merchant_order_id) == 700

    refunds = await eventually(
        lambda: (
            {e.refund_id for e in gw.merchant.events if isinstance(e, RefundEvent)}
            >= {f"rf_{no}_1", f"rf_{no}_2", f"rf_{no}_3"}
        )
    )
    assert refunds


async def test_a_refund_the_gateway_never_got_is_requested_again_with_its_number(gw):
    request, session = await paid(gw, amount=900)
    no = f"rf_{uuid.uuid4().hex[:8]}"
    await gw.faults(fail_next_calls=1)  # the request fails, nothing refunded
    with pytest.raises(GatewayError):
        await gw.adapter.refund(refund(request, session, no, 300))
    unknown = await gw.adapter.get_refund(no, request.merchant_order_id)
    assert unknown == GatewayRefund(no, None)  # the gateway does not know it: never an error
    assert (await gw.adapter.refund(refund(request, session, no, 300))).status == "succeeded"
    asked = await gw.adapter.get_refund(no, request.merchant_order_id)
    assert (asked.status, asked.amount) == ("succeeded", 300)
    assert await gw.refunded(request.merchant_order_id) == 300  # created once

    lost = f"rf_{uuid.uuid4().hex[:8]}"
    await gw.faults(lose_next_answers=1)  # refunded, but the answer is lost
    with pytest.raises(GatewayError):
        await gw.adapter.refund(refund(request, session, lost, 200))
    assert (await gw.adapter.refund(refund(request, session, lost, 200))).status == "succeeded"
    assert await gw.refunded(request.merchant_order_id) == 500  # each once


async def test_an_unknown_order_is_not_found_never_an_error_and_never_paid(gw):
    reference = gw.adapter.reference(f"ord_never_{uuid.uuid4().hex[:8]}", 1)
    payment = await gw.adapter.get_payment(reference)
    assert (payment.merchant_order_id, payment.outcome) == (reference, "not_found")
    assert await gw.adapter.list_payments(reference) == []
    closed = await gw.adapter.close_payment(reference)  # nothing to close: an answer too
    assert closed.outcome in ("closed", "not_found")


async def test_tampered_and_unsigned_callbacks_are_refused(gw):
    request, _ = await paid(gw, amount=3100)
    reference = request.merchant_order_id
    await eventually(lambda: gw.merchant.events_of(reference))
    _, raw_headers, body = next(
        r for r in gw.merchant.received if r[0] == gw.name and reference.encode() in r[2]
    )
    headers = httpx.Headers(raw_headers)  # case-insensitive, as the API hands them over
    tampered = body.replace(b"31.00", b"0.01").replace(b"3100", b"1")
    assert tampered != body
    with pytest.raises(InvalidSignature):
        gw.adapter.parse_callback(headers, tampered)
    unsigned_headers = httpx.Headers(
        {k: v for k, v in raw_headers.items() if k.lower() != "sandbox-signature"}
    )
    unsigned_body = b"&".join(p for p in body.split(b"&") if not p.startswith(b"sign="))
    with pytest.raises(InvalidSignature):
        gw.adapter.parse_callback(unsigned_headers, unsigned_body)
    word = gw.adapter.parse_callback(headers, body)
    assert (word.merchant_order_id, word.payment_id, word.amount) == (
        reference,
        await gw.captured_id(reference),
        3100,
    )


async def test_a_callback_is_retried_with_the_same_id_until_the_exact_reply(gw):
    request = gw.new_payment()
    session = await gw.adapter.create_payment(request)
    gw.merchant.bad_replies[request.merchant_order_id.encode()] = [gw.bad_reply, gw.bad_reply]
    await gw.buyer(action(session))
    [event] = await eventually(lambda: gw.merchant.events_of(request.merchant_order_id))

    async def delivered():  # recorded once the merchant's answer is read
        attempts = await gw.deliveries(event.event_id)
        return attempts if attempts and attempts[-1] in ("200", "success") else None

    attempts = await eventually(delivered)
    assert len(attempts) == 3
    assert attempts[-1] in ("200", "success")
    await asyncio.sleep(0.3)
    assert len(await gw.deliveries(event.event_id)) == 3  # and then no more
