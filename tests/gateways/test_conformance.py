"""What every adapter must do, whatever its gateway's protocol: one suite, run against each
adapter and its emulator over real HTTP (the buyer acts through `POST /_emulator/buyer`)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import httpx
import pytest
import pytest_asyncio

from gateways.base import GatewayError, NewRefund
from kassa.contracts import PaymentEvent, RefundEvent
from kassa.errors import GatewayRejected, InvalidSignature
from kassa.statuses import RefundStatus
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
    assert (await gw.buyer(session.payment_url)).status_code == 200
    return request, session


def refund(request, session, refund_no: str, amount: int) -> NewRefund:
    return NewRefund(
        refund_no, request.merchant_order_id, amount, "CNY", "test", payment_id=session.payment_id
    )


async def test_creation_is_idempotent(gw):
    request = gw.new_payment()
    first = await gw.adapter.create_payment(request)
    assert first.gateway == gw.name and first.payment_id and first.payment_url
    assert await gw.adapter.create_payment(request) == first


async def test_before_the_buyer_acts_the_payment_is_pending_never_an_error(gw):
    request = gw.new_payment()
    await gw.adapter.create_payment(request)
    assert (await gw.adapter.get_payment(request.merchant_order_id)).outcome == "pending"
    assert await gw.adapter.list_payments(request.merchant_order_id) in (
        [],  # Alipay: a QR nobody scanned is no trade yet
        [await gw.adapter.get_payment(request.merchant_order_id)],
    )
    await gw.look((await gw.adapter.create_payment(request)).payment_url)  # opened, or scanned
    assert (await gw.adapter.get_payment(request.merchant_order_id)).outcome == "pending"


async def test_paid_the_query_and_the_callback_say_so(gw):
    request, session = await paid(gw, amount=1999)
    payment = await gw.adapter.get_payment(request.merchant_order_id)
    assert (payment.outcome, payment.amount, payment.currency) == ("succeeded", 1999, "CNY")
    assert payment.payment_id == session.payment_id
    assert [p.payment_id for p in await gw.adapter.list_payments(request.merchant_order_id)] == [
        session.payment_id
    ]
    [event] = await eventually(lambda: gw.merchant.events_of(session.payment_id))
    assert isinstance(event, PaymentEvent)
    assert (event.gateway, event.order_id, event.attempt) == (
        gw.name,
        request.merchant_order_id,
        1,
    )
    assert (event.outcome, event.amount, event.currency) == ("succeeded", 1999, "CNY")


async def test_a_retry_after_the_first_attempt_is_its_own_payment(gw):
    first = gw.new_payment()
    second = gw.new_payment(merchant_order_id=first.merchant_order_id + "~2")
    one = await gw.adapter.create_payment(first)
    two = await gw.adapter.create_payment(second)
    assert one.payment_id != two.payment_id
    await gw.buyer(two.payment_url)
    [event] = await eventually(lambda: gw.merchant.events_of(two.payment_id))
    assert (event.order_id, event.attempt) == (first.merchant_order_id, 2)
    assert (await gw.adapter.get_payment(first.merchant_order_id)).outcome == "pending"


async def test_closing_an_unpaid_payment_closes_it_for_good(gw):
    for looked in (False, True):  # Alipay: before and after the buyer scans
        request = gw.new_payment()
        session = await gw.adapter.create_payment(request)
        if looked:
            await gw.look(session.payment_url)
        assert await gw.adapter.close_payment(request.merchant_order_id) == "closed"
        assert await gw.adapter.close_payment(request.merchant_order_id) == "closed"  # again
        assert (await gw.buyer(session.payment_url)).status_code == 409
        assert (await gw.adapter.get_payment(request.merchant_order_id)).outcome != "succeeded"


async def test_closing_a_paid_payment_reports_it_paid(gw):
    request, _ = await paid(gw)
    assert await gw.adapter.close_payment(request.merchant_order_id) == "succeeded"
    assert (await gw.adapter.get_payment(request.merchant_order_id)).outcome == "succeeded"


async def test_a_payment_made_between_the_query_and_the_close_is_reported_paid(gw):
    request = gw.new_payment()
    await gw.adapter.create_payment(request)
    assert (await gw.adapter.get_payment(request.merchant_order_id)).outcome == "pending"
    await gw.faults(pay_before_close=1.0)
    assert await gw.adapter.close_payment(request.merchant_order_id) == "succeeded"


async def test_an_unpaid_payment_expires(gw):
    request = gw.new_payment(expires_in=timedelta(seconds=1.5))
    session = await gw.adapter.create_payment(request)
    await gw.look(session.payment_url)
    await asyncio.sleep(1.6)
    assert (await gw.buyer(session.payment_url)).status_code == 409
    assert (await gw.adapter.get_payment(request.merchant_order_id)).outcome == "closed"
    assert await gw.adapter.close_payment(request.merchant_order_id) == "closed"


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
    assert (await gw.adapter.get_refund(f"rf_{no}_1")).amount == 600
    assert await gw.refunded(session.payment_id) == 1000
    payment = await gw.adapter.get_payment(request.merchant_order_id)
    assert (payment.outcome, payment.refunded_amount) == ("succeeded", 1000)

    request, session = await paid(gw, amount=700)  # all of it in one refund
    full = await gw.adapter.refund(refund(request, session, f"rf_{no}_3", 700))
    assert full.status == RefundStatus.SUCCEEDED
    assert await gw.adapter.refund(refund(request, session, f"rf_{no}_3", 700)) == full
    assert await gw.refunded(session.payment_id) == 700

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
    with pytest.raises(GatewayRejected):  # the gateway does not know it
        await gw.adapter.get_refund(no)
    assert (await gw.adapter.refund(refund(request, session, no, 300))).status == "succeeded"
    assert (await gw.adapter.get_refund(no)).status == "succeeded"

    lost = f"rf_{uuid.uuid4().hex[:8]}"
    await gw.faults(lose_next_answers=1)  # refunded, but the answer is lost
    with pytest.raises(GatewayError):
        await gw.adapter.refund(refund(request, session, lost, 200))
    assert (await gw.adapter.refund(refund(request, session, lost, 200))).status == "succeeded"
    assert await gw.refunded(session.payment_id) == 500  # each once


async def test_an_unknown_order_is_not_found_or_pending_and_never_paid(gw):
    order = f"ord_never_{uuid.uuid4().hex[:8]}"
    try:
        payment = await gw.adapter.get_payment(order)
    except GatewayRejected:
        pass  # not found
    else:
        assert payment.outcome == "pending"
    assert await gw.adapter.list_payments(order) == []


async def test_tampered_and_unsigned_callbacks_are_refused(gw):
    _, session = await paid(gw, amount=3100)
    await eventually(lambda: gw.merchant.events_of(session.payment_id))
    _, raw_headers, body = next(
        r for r in gw.merchant.received if r[0] == gw.name and session.payment_id.encode() in r[2]
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
    assert gw.adapter.parse_callback(headers, body).payment_id == session.payment_id


async def test_a_callback_is_retried_with_the_same_id_until_the_exact_reply(gw):
    session = await gw.adapter.create_payment(gw.new_payment())
    gw.merchant.bad_replies[session.payment_id.encode()] = [gw.bad_reply, gw.bad_reply]
    await gw.buyer(session.payment_url)
    [event] = await eventually(lambda: gw.merchant.events_of(session.payment_id))

    async def delivered():  # recorded once the merchant's answer is read
        attempts = await gw.deliveries(event.event_id)
        return attempts if attempts and attempts[-1] in ("200", "success") else None

    attempts = await eventually(delivered)
    assert len(attempts) == 3
    assert attempts[-1] in ("200", "success")
    await asyncio.sleep(0.3)
    assert len(await gw.deliveries(event.event_id)) == 3  # and then no more
