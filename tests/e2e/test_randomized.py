"""A seeded, randomized run of the whole stack: many checkouts, random buyer behaviour, and
a gateway that drops, duplicates, delays and contradicts its callbacks, fails API calls and
loses answers after their effect. Afterwards, for every order, the money is right.

    KASSA_PROPERTY_SEED=123 KASSA_PROPERTY_CHECKOUTS=60 .venv/bin/pytest -s -k randomized
"""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from collections import Counter

import httpx

from gateways import build_gateways
from kassa import ledger
from tests.e2e.test_purchase import checkout_body, post_checkout
from tests.support import eventually

SEED = int(os.environ.get("KASSA_PROPERTY_SEED", "20261123"))
CHECKOUTS = int(os.environ.get("KASSA_PROPERTY_CHECKOUTS", "24"))
BEHAVIOURS = ["pay", "decline", "abandon", "cancel", "pay_and_cancel", "pay_then_refund"]
KEPT = {"fulfilled": "all", "partially_refunded": "rest", "refunded": "rest"}


async def buyer(api: httpx.AsyncClient, dice: random.Random, behaviour: str) -> str:
    body = checkout_body(expires_in_seconds=dice.randint(3, 6))
    for _ in range(20):  # the gateway may fail to open the payment; retrying is safe
        created = await post_checkout(api, body, key=f"prop-{body['customer_id']}")
        if created.status_code == 201:
            break
        assert created.status_code == 503, created.text
    checkout = created.json()
    order_id = checkout["order_id"]
    if checkout["payment"] is None:
        # Opening failed for good: the gateway's errors outlasted a window of seconds.
        assert (checkout["status"], checkout["reason"][:26]) == (
            "failed",
            "could not open the payment",
        ), checkout
        return order_id
    url = checkout["payment"]["payment_url"]
    await asyncio.sleep(dice.uniform(0, 1.5))
    async with httpx.AsyncClient() as browser:
        if behaviour in ("pay", "pay_then_refund"):
            await browser.post(url, data={"outcome": "succeeded"})
        elif behaviour == "decline":
            await browser.post(url, data={"outcome": "declined"})
        elif behaviour == "cancel":
            await api.post(f"/v1/orders/{order_id}/cancel")
        elif behaviour == "pay_and_cancel":  # who wins does not matter; the money must be right
            await asyncio.gather(
                browser.post(url, data={"outcome": "succeeded"}),
                api.post(f"/v1/orders/{order_id}/cancel"),
            )
    final = await settled(api, order_id)
    if behaviour == "pay_then_refund" and final == "fulfilled":
        amount = dice.choice([None, 1000])
        refund = await api.post(
            f"/v1/orders/{order_id}/refunds",
            json={"amount": amount} if amount else {},
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
        assert refund.status_code == 202, refund.text
        await eventually(lambda: _refund_done(api, refund.json()["refund_id"]), timeout=60)
    return order_id


async def settled(api: httpx.AsyncClient, order_id: str) -> str:
    async def final():
        status = (await api.get(f"/v1/orders/{order_id}")).json()["status"]
        return status if status not in ("created", "awaiting_payment", "paid") else None

    return await eventually(final, timeout=90, interval=0.2)


async def _refund_done(api, refund_id: str) -> bool:
    return (await api.get(f"/v1/refunds/{refund_id}")).json()["status"] != "pending"


async def test_randomized_checkouts_keep_the_money_right(stack, sandbox, sessions, settings):
    dice = random.Random(SEED)
    plan = [dice.choice(BEHAVIOURS) for _ in range(CHECKOUTS)]
    faults = {
        "seed": SEED,
        "drop_callbacks": 0.3,
        "duplicate_callbacks": 1,
        "delay_callbacks": 0.2,
        "reorder_callbacks": True,
        "api_errors": 0.1,
        "lost_answers": 0.1,
    }
    async with httpx.AsyncClient(base_url=settings.sandbox_url) as http:
        (await http.put("/_emulator/behaviour", json={"faults": faults})).raise_for_status()
        try:
            gate = asyncio.Semaphore(8)

            async def one(behaviour: str, n: int) -> str:
                async with gate:
                    async with stack.http() as api:
                        return await buyer(api, random.Random(SEED * 1000 + n), behaviour)

            order_ids = await asyncio.gather(*(one(b, n) for n, b in enumerate(plan)))
            injected = sandbox.behaviour.faults.counts.copy()
        finally:
            await http.put("/_emulator/behaviour", json={})

    outcomes: Counter = Counter()
    async with stack.http() as api:
        for order_id in order_ids:
            order = (await api.get(f"/v1/orders/{order_id}")).json()
            outcomes[order["status"]] += 1
            payments = [p for p in sandbox.payments.values() if p["merchant_order_id"] == order_id]
            captured = sum(p["amount"] for p in payments if p["status"] == "succeeded")
            refunded = sum(p["refunded_amount"] for p in payments)
            kept = order["amount"] - order["refunded_amount"] if order["status"] in KEPT else 0
            assert captured - refunded == kept, (order, payments)
            if order["status"] in ("expired", "cancelled", "failed"):
                assert all(p["status"] != "succeeded" for p in payments), (order, payments)
    async with httpx.AsyncClient() as http:
        problems = await ledger.check(sessions, build_gateways(settings, http))
    assert problems == []
    print(
        f"\nrandomized run: seed {SEED}, {len(plan)} checkouts, behaviours "
        f"{dict(Counter(plan))}, outcomes {dict(outcomes)}, faults injected {injected}"
    )
    assert sum(injected.values()) > 0
