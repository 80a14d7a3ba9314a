"""Resource limits over real HTTP: per-key and per-callback-sender rate limits (429 with
Retry-After and a problem), the most refunds one order may have (racing requests too), and
lists that come a page at a time. Each test serves an API of its own with low limits, on
the suite's Temporal dev server, worker and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import asynccontextmanager

import httpx
from sqlalchemy import func, select

from api.app import create_app
from db.models import IdempotencyKey, Refund
from gateways import sandbox_protocol
from kassa.settings import DEV_STOREFRONT_KEY, DEV_SUPPORT_KEY, ApiKey, key_hash
from tests.api.test_bad_input import count_rows
from tests.e2e.test_purchase import checkout_body
from tests.e2e.test_refunds import bought, post_refund, refund_settled
from tests.support import free_port, serving

SHOP_A, SHOP_B, SUPPORT = "sk_test_shop_a", "sk_test_shop_b", "sk_test_support"
KEYS = [
    ApiKey(holder="shop-a", role="storefront", sha256=key_hash(SHOP_A)),
    ApiKey(holder="shop-b", role="storefront", sha256=key_hash(SHOP_B)),
    ApiKey(holder="alice", role="support", sha256=key_hash(SUPPORT)),
]


@asynccontextmanager
async def api_with(stack, **settings):
    """An API of its own with these settings; yields a client maker by key."""
    ours = stack.settings.model_copy(update=settings)
    async with serving(create_app(ours, temporal_client=stack.temporal), free_port()) as url:

        def client(key: str | None = None) -> httpx.AsyncClient:
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            return httpx.AsyncClient(base_url=url, headers=headers, timeout=30)

        yield client


def is_rate_limited(response: httpx.Response, limit: str) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert 1 <= int(response.headers["retry-after"]) <= 60
    problem = response.json()
    assert (problem["type"], problem["status"]) == ("urn:kassa:problem:rate-limited", 429)
    assert problem["limit"] == limit


async def test_a_burst_over_a_keys_limit_is_429_with_retry_after(stack, sessions):
    limits = {"rate_limit_storefront": "3/minute", "rate_limit_support": "2/minute"}
    async with (
        api_with(stack, api_keys=KEYS, **limits) as client,
        client(SHOP_A) as shop_a,
        client(SHOP_B) as shop_b,
        client(SUPPORT) as support,
    ):
        burst = [await shop_a.get(f"/v1/orders/ord_{n}") for n in range(5)]
        key = uuid.uuid4().hex
        checkout = await shop_a.post(
            "/v1/checkouts", json=checkout_body(), headers={"Idempotency-Key": key}
        )
        other_shop = await shop_b.get("/v1/orders/ord_0")
        by_support = [await support.get("/v1/orders/ord_0") for _ in range(3)]

    assert [r.status_code for r in burst] == [404, 404, 404, 429, 429]
    is_rate_limited(burst[3], "3 per 1 minute")
    assert burst[3].json()["field"] == "Authorization"
    # Over the limit nothing happens: no idempotency key, no order.
    is_rate_limited(checkout, "3 per 1 minute")
    async with sessions() as session:
        assert await session.get(IdempotencyKey, ("storefront", key)) is None
    # Every key holder has a budget of its own, by its role.
    assert other_shop.status_code == 404
    assert [r.status_code for r in by_support] == [404, 404, 429]
    is_rate_limited(by_support[2], "2 per 1 minute")


async def test_callbacks_are_limited_per_gateway_and_sender(stack, sessions):
    body = b'{"id": "evt_1"}'
    forged = {sandbox_protocol.SIGNATURE_HEADER: "t=1,v1=00"}
    before = await count_rows(sessions)
    async with api_with(stack, rate_limit_callbacks="2/minute") as client, client() as gateway:
        answers = [await gateway.post("/v1/webhooks/sandbox", content=body, headers=forged)]
        answers += [await gateway.post("/v1/webhooks/sandbox", content=body, headers=forged)]
        answers += [await gateway.post("/v1/webhooks/sandbox", content=body, headers=forged)]
        alipay = await gateway.post("/v1/webhooks/alipay", data={"sign": "x"})

    assert [r.status_code for r in answers] == [401, 401, 429]
    assert await count_rows(sessions) == before
    is_rate_limited(answers[2], "2 per 1 minute")
    assert alipay.status_code == 401  # another gateway: another budget


async def test_an_order_has_at_most_so_many_refunds_even_when_they_race(stack, sessions):
    most = 3
    async with stack.http() as api:
        order_id = (await bought(api))["order_id"]
    async with (
        api_with(stack, max_refunds_per_order=most) as client,
        client(DEV_STOREFRONT_KEY) as api,
    ):
        keys = [uuid.uuid4().hex for _ in range(most + 3)]
        racing = await asyncio.gather(
            *(post_refund(api, order_id, {"amount": 100}, key=key) for key in keys)
        )
        accepted = [r for r in racing if r.status_code == 202]
        refused = [r for r in racing if r.status_code != 202]
        for refund in accepted:
            await refund_settled(api, refund.json()["refund_id"])
        late_key = uuid.uuid4().hex
        late = await post_refund(api, order_id, {"amount": 100}, key=late_key)
        order = (await api.get(f"/v1/orders/{order_id}")).json()

    assert len(accepted) == most and len(refused) == 3
    for answer in [*refused, late]:
        assert answer.status_code == 409, answer.text
        problem = answer.json()
        assert problem["type"] == "urn:kassa:problem:too-many-refunds"
        assert (problem["field"], problem["max_refunds"]) == ("order_id", most)
    # Nothing written for a refused one: no refund, no idempotency key.
    async with sessions() as session:
        rows = await session.scalar(
            select(func.count()).select_from(Refund).where(Refund.order_id == order_id)
        )
        assert rows == most
        kept = await session.scalars(
            select(IdempotencyKey.key).where(IdempotencyKey.key.in_([*keys, late_key]))
        )
        accepted_keys = [k for r, k in zip(racing, keys, strict=True) if r.status_code == 202]
        assert sorted(kept) == sorted(accepted_keys)
    assert (order["refunded_amount"], len(order["refunds"])) == (100 * most, most)
    assert order["refunds_has_more"] is False


async def test_the_ledger_comes_a_page_at_a_time(stack):
    async with stack.http() as api:
        order_id = (await bought(api))["order_id"]
        for _ in range(2):
            refund = await post_refund(api, order_id, {"amount": 100})
            await refund_settled(api, refund.json()["refund_id"])
    async with stack.http(DEV_SUPPORT_KEY) as support:
        url = f"/v1/orders/{order_id}/ledger"
        everything = (await support.get(url)).json()
        first = (await support.get(url, params={"limit": 2})).json()
        after = first["transactions"][-1]["key"]
        rest = (await support.get(url, params={"limit": 2, "starting_after": after})).json()
        unknown = await support.get(url, params={"starting_after": "no-such-key"})
        too_many = await support.get(url, params={"limit": 101})
        nul = await support.get(url, params={"starting_after": "capture:\u0000"})

    assert [t["kind"] for t in everything["transactions"]] == ["capture", "refund", "refund"]
    assert everything["has_more"] is False
    assert (len(first["transactions"]), first["has_more"]) == (2, True)
    assert first["transactions"] + rest["transactions"] == everything["transactions"]
    assert rest["has_more"] is False
    assert unknown.status_code == 404, unknown.text
    assert unknown.json()["type"] == "urn:kassa:problem:ledger-transaction-not-found"
    assert unknown.json()["field"] == "starting_after"
    for answer, field in [(too_many, "limit"), (nul, "starting_after")]:
        assert answer.status_code == 422, answer.text
        assert answer.json()["field"] == field


async def test_a_body_wrong_in_a_thousand_places_lists_the_first_fifty(stack, sessions):
    before = await count_rows(sessions)
    body = {**checkout_body(), **{f"unknown_{n}": n for n in range(1000)}}
    async with stack.http() as api:
        response = await api.post(
            "/v1/checkouts", json=body, headers={"Idempotency-Key": uuid.uuid4().hex}
        )
    assert response.status_code == 422
    problem = response.json()
    assert len(problem["errors"]) == 50 and problem["more_errors"] == 950
    assert await count_rows(sessions) == before
