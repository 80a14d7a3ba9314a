"""The sandbox gateway over real HTTP, driven through Kassa's adapter: what a real gateway
does, it does (idempotent creation, queries, close, expiry, refunds, signed callbacks
retried until the merchant answers 2xx)."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import datetime, timedelta

import httpx
import pytest
import pytest_asyncio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateways.base import CallbackReply, payments_of_order
from gateways.sandbox import SandboxGateway
from kassa.errors import GatewayRejected, InvalidSignature
from kassa.statuses import PaymentOutcome
from tests.support import buyer_acts, eventually, free_port, serving
from tests.support import new_payment as support_payment


class FlakyMerchant:
    """A callback endpoint that fails its first `failures` deliveries, then accepts."""

    def __init__(self, adapter: SandboxGateway, failures: int) -> None:
        self.adapter, self.failures = adapter, failures
        self.attempts = 0
        self.accepted = []
        self.app = Starlette(routes=[Route("/callback", self.receive, methods=["POST"])])

    async def receive(self, request: Request) -> Response:
        self.attempts += 1
        if self.attempts <= self.failures:
            return JSONResponse({"error": "try later"}, status_code=503)
        event = self.adapter.parse_callback(request.headers, await request.body())
        self.accepted.append(event)
        reply = self.adapter.callback_reply
        return Response(reply.body, media_type=reply.media_type)


def new_payment(
    adapter: SandboxGateway, order_id: str | None = None, attempt: int = 1, **overrides
):
    """The order's `attempt`-th payment (a new order's unless `order_id` is given), under the
    reference the adapter derives for it."""
    reference = adapter.reference(order_id or f"ord_{uuid.uuid4().hex[:10]}", attempt)
    return support_payment(merchant_order_id=reference, **overrides)


@pytest_asyncio.fixture
async def adapter(settings, sandbox):
    async with httpx.AsyncClient() as http:
        yield SandboxGateway(
            http,
            settings.sandbox_url,
            settings.sandbox_api_key.get_secret_value(),
            [s.get_secret_value() for s in settings.sandbox_webhook_secrets],
        )


async def test_the_reference_is_the_order_id_then_a_numbered_retry(adapter):
    assert (adapter.reference("ord_1", 1), adapter.reference("ord_1", 2)) == ("ord_1", "ord_1~2")
    assert adapter.currencies is None
    assert adapter.callback_reply == CallbackReply('{"received": true}', "application/json")


async def test_creation_is_idempotent_per_merchant_order_id(adapter, sandbox):
    order_id = f"ord_{uuid.uuid4().hex[:10]}"
    request = new_payment(adapter, order_id)
    first = await adapter.create_payment(request)
    again = await adapter.create_payment(request)
    assert first == again
    assert first.payment_id.startswith("pay_") and first.qr_code is None
    assert first.payment_url == sandbox.payments[first.payment_id]["payment_url"]
    assert (
        sum(p["merchant_order_id"] == request.merchant_order_id for p in sandbox.payments.values())
        == 1
    )
    with pytest.raises(GatewayRejected, match="merchant_order_id_reused"):
        await adapter.create_payment(new_payment(adapter, order_id, amount=1))


async def test_query_and_close_an_unpaid_payment(adapter):
    request = new_payment(adapter)
    await adapter.create_payment(request)
    assert (await adapter.get_payment(request.merchant_order_id)).outcome == "pending"
    assert (await adapter.close_payment(request.merchant_order_id)).outcome == PaymentOutcome.CLOSED
    assert (await adapter.get_payment(request.merchant_order_id)).outcome == "closed"


async def test_a_paid_payment_refuses_to_close_saying_it_is_paid(adapter):
    request = new_payment(adapter)
    session = await adapter.create_payment(request)
    await buyer_acts(session.payment_url, "succeeded")
    closed = await adapter.close_payment(request.merchant_order_id)
    assert (closed.outcome, closed.amount) == (PaymentOutcome.SUCCEEDED, request.amount)
    assert (await adapter.get_payment(request.merchant_order_id)).outcome == "succeeded"


async def test_an_unpaid_payment_expires_and_cannot_be_paid(adapter):
    request = new_payment(adapter, expires_in=timedelta(milliseconds=300))
    session = await adapter.create_payment(request)
    await asyncio.sleep(0.4)
    assert (await adapter.get_payment(request.merchant_order_id)).outcome == "closed"
    async with httpx.AsyncClient() as http:
        page = await http.post(session.payment_url, data={"outcome": "succeeded"})
    assert page.status_code == 409
    assert "Payment expired" in page.text


async def test_refunds_are_idempotent_and_capped(adapter, settings, sandbox):
    request = new_payment(adapter, amount=1000)
    session = await adapter.create_payment(request)
    await buyer_acts(session.payment_url, "succeeded")
    async with httpx.AsyncClient(
        base_url=settings.sandbox_url,
        headers={"Authorization": f"Bearer {settings.sandbox_api_key.get_secret_value()}"},
    ) as http:
        refund = {"payment_id": session.payment_id, "refund_request_no": "r1", "amount": 600}
        assert (await http.post("/v1/refunds", json=refund)).status_code == 201
        assert (await http.post("/v1/refunds", json=refund)).status_code == 200  # a retry
        too_much = {**refund, "refund_request_no": "r2", "amount": 401}
        assert (await http.post("/v1/refunds", json=too_much)).json()["code"] == (
            "refund_exceeds_payment"
        )
    assert sandbox.payments[session.payment_id]["refunded_amount"] == 600


async def test_callbacks_are_signed_and_retried_until_the_merchant_accepts(adapter, sandbox):
    merchant = FlakyMerchant(adapter, failures=2)
    port = free_port()
    async with serving(merchant.app, port):
        request = new_payment(adapter, notify_url=f"http://127.0.0.1:{port}/callback")
        session = await adapter.create_payment(request)
        await buyer_acts(session.payment_url, "succeeded")
        [event] = await eventually(lambda: merchant.accepted)

    assert merchant.attempts == 3
    assert (event.merchant_order_id, event.payment_id, event.outcome, event.amount) == (
        request.merchant_order_id,
        session.payment_id,
        PaymentOutcome.SUCCEEDED,
        4200,
    )
    attempts = [c for c in sandbox.callbacks if c["event_id"] == event.event_id]
    assert [c["status_code"] for c in attempts] == [503, 503, 200]


async def test_naive_or_past_expiry_is_refused(adapter):
    with pytest.raises(GatewayRejected, match="expires_at_in_past"):
        await adapter.create_payment(new_payment(adapter, expires_in=timedelta(seconds=-1)))
    with pytest.raises(GatewayRejected):  # no time zone: refused, not guessed
        await adapter.create_payment(replace(new_payment(adapter), expires_at=datetime(2030, 1, 1)))


def test_the_adapter_refuses_a_callback_it_cannot_verify(adapter):
    with pytest.raises(InvalidSignature):
        adapter.parse_callback({"Sandbox-Signature": "t=1,v1=00"}, b"{}")


async def test_a_second_capture_under_one_reference_is_listed_with_its_attempt(adapter, settings):
    order_id = f"ord_{uuid.uuid4().hex[:10]}"
    first, retry = new_payment(adapter, order_id), new_payment(adapter, order_id, attempt=2)
    one = await adapter.create_payment(first)
    two = await adapter.create_payment(retry)
    await buyer_acts(one.payment_url, "succeeded")
    async with httpx.AsyncClient() as http:
        again = await http.post(
            f"{settings.sandbox_url}/_emulator/payments/{one.payment_id}/capture-again"
        )
    assert again.status_code == 200
    second_capture = again.json()["id"]
    listed = await payments_of_order(
        adapter, [(1, first.merchant_order_id), (2, retry.merchant_order_id)]
    )
    assert sorted((attempt, p.payment_id, p.outcome) for attempt, p in listed) == sorted(
        [
            (1, one.payment_id, PaymentOutcome.SUCCEEDED),
            (1, second_capture, PaymentOutcome.SUCCEEDED),
            (2, two.payment_id, PaymentOutcome.PENDING),
        ]
    )
    assert (await adapter.get_payment(first.merchant_order_id)).payment_id == one.payment_id


async def test_a_long_cart_description_is_shortened_not_refused(adapter, sandbox):
    """Five items with 50-character titles: over the sandbox's 256 characters."""
    titles = ", ".join(f"1 × {'Course title that goes on and on ' * 2}{n}"[:60] for n in range(5))
    description = titles + ", and a few more words to be sure it is long enough to be cut"
    assert len(description) > 256
    session = await adapter.create_payment(new_payment(adapter, description=description))
    stored = sandbox.payments[session.payment_id]["description"]
    assert len(stored) == 256 and stored.endswith("…")


async def test_the_emulator_counts_calls_by_route_and_what_closes_did(adapter, settings):
    async def counted() -> dict:
        async with httpx.AsyncClient() as http:
            return (await http.get(f"{settings.sandbox_url}/_emulator/calls")).json()

    before = await counted()
    unpaid, paid = new_payment(adapter), new_payment(adapter)
    await adapter.create_payment(unpaid)
    await buyer_acts((await adapter.create_payment(paid)).payment_url, "succeeded")
    for reference in (unpaid.merchant_order_id, unpaid.merchant_order_id, paid.merchant_order_id):
        await adapter.close_payment(reference)
    after = await counted()

    def delta(kind: str, key: str) -> int:
        return after[kind].get(key, 0) - before[kind].get(key, 0)

    assert delta("calls", "POST /v1/payments") == 2
    assert delta("calls", "POST /v1/payments/by-order/{merchant_order_id}/close") == 3
    assert delta("calls", "GET /pay/{payment_id}") == 1
    assert delta("outcomes", "close: closed a pending payment") == 1
    assert delta("outcomes", "close: was closed") == 1
    assert delta("outcomes", "close: already paid") == 1
