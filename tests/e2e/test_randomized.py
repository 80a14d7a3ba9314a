"""A seeded, randomized run of the whole stack: many checkouts, random buyer behaviour, and
a gateway that drops, duplicates, delays and contradicts its callbacks, fails API calls and
loses answers after their effect. Afterwards, for every order, the money is right.

    KASSA_PROPERTY_SEED=123 KASSA_PROPERTY_CHECKOUTS=60 .venv/bin/pytest -s -k randomized

`test_a_flaky_gateway_run_ends_with_every_order_final` is the measured run of the support
issue: 15% of callbacks dropped, every one duplicated and contradicted, 3% of gateway calls
failing, and reconciliation and the ledger check running while the gateway still misbehaves.
80 checkouts by default (about a minute); the thousand of the measurement:

    KASSA_RANDOMIZED_CHECKOUTS=1000 .venv/bin/pytest -s -k flaky_gateway_run
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import uuid
from collections import Counter

import httpx
import pytest
from temporalio.service import RPCError

from gateways import alipay_protocol, build_gateways
from gateways.sandbox import order_of_sandbox_reference
from kassa.ids import checkout_workflow_id
from tests.e2e.test_purchase import checkout_body, post_checkout
from tests.support import eventually, reconcile
from tooling.ledger_check import check as ledger_check

SEED = int(os.environ.get("KASSA_PROPERTY_SEED", "20261123"))
CHECKOUTS = int(os.environ.get("KASSA_PROPERTY_CHECKOUTS", "24"))
BEHAVIOURS = [
    "pay",
    "decline",
    "decline_then_pay",  # a second attempt after the decline
    "abandon",
    "pay_late",  # the money arrives after the window closed
    "pay_twice",  # a second capture for the order
    "cancel",
    "pay_and_cancel",
    "pay_then_refund",
]
KEPT = {"fulfilled": "all", "partially_refunded": "rest", "refunded": "rest"}
# How the gateway misbehaves in both runs (the same knobs on every emulator).
FAULTS = {
    "seed": SEED,
    "drop_callbacks": 0.3,
    "duplicate_callbacks": 1,
    "delay_callbacks": 0.2,
    "reorder_callbacks": True,
    "api_errors": 0.1,
    "lost_answers": 0.1,
}


async def buyer(
    api: httpx.AsyncClient,
    gateway: httpx.AsyncClient,
    dice: random.Random,
    behaviour: str,
    temporal=None,
) -> str:
    """One buyer's checkout. `gateway` reaches the emulator's own endpoints, where money moves
    without the merchant asking (they answer 409 when the payment cannot be captured).
    `temporal`, for "terminate_then_pay": support terminates the checkout in the UI."""
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
        assert (checkout["status"], checkout["reason_code"]) == ("failed", "payment_failed"), (
            checkout
        )
        return order_id
    url = checkout["payment"]["payment_url"]
    await asyncio.sleep(dice.uniform(0, 1.5))
    async with httpx.AsyncClient() as browser:
        if behaviour == "terminate_then_pay":  # the order is left to reconciliation
            with contextlib.suppress(RPCError):  # it may have failed on its own meanwhile
                await temporal.get_workflow_handle(checkout_workflow_id(order_id)).terminate(
                    "support pressed Terminate"
                )
            await browser.post(url, data={"outcome": "succeeded"})
            return order_id
        if behaviour in ("pay", "pay_then_refund", "pay_twice"):
            await browser.post(url, data={"outcome": "succeeded"})
        elif behaviour in ("decline", "decline_then_pay"):
            await browser.post(url, data={"outcome": "declined"})
        if behaviour == "decline_then_pay":
            # Until the decline has reached the checkout, or the window closed.
            for _ in range(100):
                retried = await api.post(f"/v1/orders/{order_id}/retry")
                if retried.status_code != 409 or await _final(api, order_id):
                    break
                await asyncio.sleep(0.1)
            if retried.status_code == 200 and retried.json()["payment"]:
                url = retried.json()["payment"]["payment_url"]
                await browser.post(url, data={"outcome": "succeeded"})
        elif behaviour == "pay_twice":
            await gateway.post(f"/_emulator/payments/{url.rsplit('/', 1)[1]}/capture-again")
        elif behaviour == "cancel":
            await api.post(f"/v1/orders/{order_id}/cancel")
        elif behaviour == "pay_and_cancel":  # who wins does not matter; the money must be right
            await asyncio.gather(
                browser.post(url, data={"outcome": "succeeded"}),
                api.post(f"/v1/orders/{order_id}/cancel"),
            )
    final = await settled(api, order_id)
    if behaviour == "pay_late" and final == "expired":
        await gateway.post(f"/_emulator/payments/{url.rsplit('/', 1)[1]}/late-capture")
    if behaviour == "pay_then_refund" and final == "fulfilled":
        await ask_a_refund(api, order_id, dice.choice([None, 1000]))
    return order_id


async def ask_a_refund(api: httpx.AsyncClient, order_id: str, amount: int | None) -> None:
    """Refund `amount` (None: all of it) and wait until the gateway settled it."""
    refund = await api.post(
        f"/v1/orders/{order_id}/refunds",
        json={"amount": amount} if amount else {},
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    assert refund.status_code == 202, refund.text
    await eventually(lambda: _refund_done(api, refund.json()["refund_id"]), timeout=60)


async def _final(api: httpx.AsyncClient, order_id: str) -> str | None:
    status = (await api.get(f"/v1/orders/{order_id}")).json()["status"]
    return status if status not in ("created", "awaiting_payment", "paid") else None


async def settled(api: httpx.AsyncClient, order_id: str) -> str:
    return await eventually(lambda: _final(api, order_id), timeout=90, interval=0.2)


async def _refund_done(api, refund_id: str) -> bool:
    return (await api.get(f"/v1/refunds/{refund_id}")).json()["status"] != "pending"


async def test_randomized_checkouts_keep_the_money_right(stack, sandbox, sessions, settings):
    dice = random.Random(SEED)
    plan = [dice.choice(BEHAVIOURS) for _ in range(CHECKOUTS)]
    faults = FAULTS
    async with httpx.AsyncClient(base_url=settings.sandbox_url) as http:
        (await http.put("/_emulator/behaviour", json={"faults": faults})).raise_for_status()
        try:
            gate = asyncio.Semaphore(8)

            async def one(behaviour: str, n: int) -> str:
                async with gate, stack.http() as api:
                    dice = random.Random(SEED * 1000 + n)
                    return await buyer(api, http, dice, behaviour)

            order_ids = await asyncio.gather(*(one(b, n) for n, b in enumerate(plan)))
            injected = sandbox.behaviour.faults.counts.copy()
        finally:
            await http.put("/_emulator/behaviour", json={})

    # Captures whose callbacks were dropped are found by reconciliation, as in production.
    reconciled = await reconcile(stack)
    async with stack.http() as api:
        orders = [(await api.get(f"/v1/orders/{order_id}")).json() for order_id in order_ids]
    # Late and second captures are given back by refunds of their own, shortly after.
    try:
        await eventually(lambda: not money_wrong(orders, sandbox), timeout=60, interval=0.5)
    except AssertionError:
        pass  # the assertion below says which orders
    assert money_wrong(orders, sandbox) == []
    # Invariant 3: unless the buyer paid after the window on purpose, an order that ended
    # unpaid never had a capture (one refunded later would hide a close that came too late).
    for behaviour, order in zip(plan, orders, strict=True):
        if order["status"] in ("expired", "cancelled", "failed") and behaviour not in (
            "pay_late",
            "pay_twice",
        ):
            assert not [p for p in payments_of(order, sandbox) if p["status"] == "succeeded"]
    async with httpx.AsyncClient() as http:
        problems = await ledger_check(sessions, build_gateways(settings, http))
    assert problems == []
    outcomes = Counter(order["status"] for order in orders)
    print(
        f"\nrandomized run: seed {SEED}, {len(plan)} checkouts, behaviours "
        f"{dict(Counter(plan))}, outcomes {dict(outcomes)}, faults injected {injected}, "
        f"reconciliation found {len(reconciled.strays_found)} stray captures"
    )
    assert sum(injected.values()) > 0


CHECKOUTS_FLAKY = int(os.environ.get("KASSA_RANDOMIZED_CHECKOUTS", "80"))
FLAKY_FAULTS = {
    "seed": SEED,
    "drop_callbacks": 0.15,
    "duplicate_callbacks": 1,
    "reorder_callbacks": True,  # a contrary `payment.declined` after every success
    "api_errors": 0.03,
}
NOT_FINAL = ("created", "awaiting_payment", "paid", "on_hold")


# The suite's 300 s per test is for the default size; a thousand takes several minutes more.
@pytest.mark.timeout(max(300, CHECKOUTS_FLAKY * 3))
async def test_a_flaky_gateway_run_ends_with_every_order_final(
    stack, sandbox, sessions, settings, monkeypatch
):
    """The measured run of the support issue, small by default: every order ends final,
    every capture is kept by its order or refunded, and the ledger check passes, with
    reconciliation and the check running against the misbehaving gateway."""
    monkeypatch.setattr(settings, "reconcile_grace_seconds", 0)  # terminated ones: no waiting
    started = asyncio.get_running_loop().time()
    dice = random.Random(SEED + 2)
    plan = [dice.choice([*BEHAVIOURS, "terminate_then_pay"]) for _ in range(CHECKOUTS_FLAKY)]
    async with httpx.AsyncClient(base_url=settings.sandbox_url) as http:
        (await http.put("/_emulator/behaviour", json={"faults": FLAKY_FAULTS})).raise_for_status()
        try:
            gate = asyncio.Semaphore(16)

            async def one(behaviour: str, n: int) -> str:
                async with gate, stack.http() as api:
                    dice = random.Random(SEED * 1000 + 2000 + n)
                    return await buyer(api, http, dice, behaviour, stack.temporal)

            order_ids = await asyncio.gather(*(one(b, n) for n, b in enumerate(plan)))
            # Terminated checkouts' windows close (at most 6 s) before reconciliation ends them.
            await asyncio.sleep(6)
            reconciled = await reconcile(stack)
            async with stack.http() as api:
                orders = [(await api.get(f"/v1/orders/{o}")).json() for o in order_ids]
                await eventually(lambda: not money_wrong(orders, sandbox), timeout=120, interval=1)
                orders = [(await api.get(f"/v1/orders/{o}")).json() for o in order_ids]
            async with httpx.AsyncClient() as gateways_http:
                problems = await ledger_check(sessions, build_gateways(settings, gateways_http))
            injected = sandbox.behaviour.faults.counts.copy()
        finally:
            await http.put("/_emulator/behaviour", json={})

    assert [o["order_id"] for o in orders if o["status"] in NOT_FINAL] == []
    assert money_wrong(orders, sandbox) == []
    assert problems == []
    payments = [p for o in orders for p in payments_of(o, sandbox)]
    captured = sum(p["amount"] for p in payments if p["status"] == "succeeded")
    refunded = sum(p["refunded_amount"] for p in payments)
    kept = sum(o["amount"] - o["refunded_amount"] for o in orders if o["status"] in KEPT)
    assert captured - refunded == kept  # zero misplaced money
    print(
        f"\nflaky gateway run: seed {SEED}, {len(plan)} checkouts in "
        f"{asyncio.get_running_loop().time() - started:.0f} s, behaviours {dict(Counter(plan))}, "
        f"outcomes {dict(Counter(o['status'] for o in orders))}, faults injected {injected}; "
        f"captured {captured}, refunded {refunded}, kept {kept}, misplaced 0; reconciliation: "
        f"{reconciled.orders_checked} ended orders in {reconciled.batches} pages, "
        f"{len(reconciled.orders_closed)} abandoned orders ended, "
        f"{len(reconciled.strays_found)} stray captures given back; ledger check clean"
    )
    assert injected.get("api_errors", 0) > 0 and injected.get("dropped_callbacks", 0) > 0


def money_wrong(orders: list[dict], sandbox) -> list[tuple]:
    """Orders whose money at the gateway contradicts them: captures minus refunds must be
    what the order kept (nothing unless fulfilled or partly refunded), and at most one of the
    order's gateway payments (attempts, second captures) may keep money."""
    wrong = []
    for order in orders:
        payments = payments_of(order, sandbox)
        captured = sum(p["amount"] for p in payments if p["status"] == "succeeded")
        refunded = sum(p["refunded_amount"] for p in payments)
        keeping = [
            p for p in payments if p["status"] == "succeeded" and p["refunded_amount"] < p["amount"]
        ]
        kept = order["amount"] - order["refunded_amount"] if order["status"] in KEPT else 0
        if captured - refunded != kept or len(keeping) > (1 if kept else 0):
            wrong.append((order, payments))
    return wrong


def payments_of(order: dict, sandbox) -> list[dict]:
    """Every gateway payment of the order: its attempts, and second captures."""
    return [
        p
        for p in sandbox.payments.values()
        if order_of_sandbox_reference(p["merchant_order_id"]) == order["order_id"]
    ]


# ---- Alipay ---------------------------------------------------------------------------------
# Alipay has no decline (a failed try leaves the trade waiting) and one trade per reference
# (no second capture under it), and it closes a trade itself at its deadline (no late
# capture): its buyers pay, fail a try and abandon, abandon, cancel, race a cancel, or pay
# and ask for a refund, against an Alipay whose notifies and calls misbehave.
ALIPAY_BEHAVIOURS = [
    "pay",
    "fail_then_abandon",
    "abandon",
    "cancel",
    "pay_and_cancel",
    "pay_then_refund",
]


async def alipay_buyer(
    api: httpx.AsyncClient, emulator: httpx.AsyncClient, dice: random.Random, behaviour: str
) -> str:
    body = checkout_body(gateway="alipay", currency="CNY", expires_in_seconds=dice.randint(3, 6))
    for _ in range(20):  # Alipay may fail to open the payment; retrying is safe
        created = await post_checkout(api, body, key=f"prop-ali-{body['customer_id']}")
        if created.status_code == 201:
            break
        assert created.status_code == 503, created.text
    checkout = created.json()
    order_id = checkout["order_id"]
    if checkout["payment"] is None:
        assert checkout["status"] == "failed", checkout
        return order_id
    qr = checkout["payment"]["action"]["qr"]
    await asyncio.sleep(dice.uniform(0, 1.5))

    async def scan_and(outcome: str):
        return await emulator.post("/_emulator/buyer", json={"payment": qr, "outcome": outcome})

    if behaviour in ("pay", "pay_then_refund"):
        await scan_and("succeeded")
    elif behaviour == "fail_then_abandon":
        await scan_and("declined")
    elif behaviour == "cancel":
        await api.post(f"/v1/orders/{order_id}/cancel")
    elif behaviour == "pay_and_cancel":
        await asyncio.gather(scan_and("succeeded"), api.post(f"/v1/orders/{order_id}/cancel"))
    final = await settled(api, order_id)
    if behaviour == "pay_then_refund" and final == "fulfilled":
        await ask_a_refund(api, order_id, dice.choice([None, 1000]))
    return order_id


async def test_randomized_alipay_checkouts_keep_the_money_right(stack, alipay, sessions, settings):
    dice = random.Random(SEED + 1)
    plan = [dice.choice(ALIPAY_BEHAVIOURS) for _ in range(max(CHECKOUTS // 2, 6))]
    faults = FAULTS
    base = settings.alipay_gateway_url.removesuffix("/gateway.do")
    async with httpx.AsyncClient(base_url=base) as emulator:
        (await emulator.put("/_emulator/faults", json=faults)).raise_for_status()
        try:
            gate = asyncio.Semaphore(6)

            async def one(behaviour: str, n: int) -> str:
                async with gate, stack.http() as api:
                    dice = random.Random(SEED * 1000 + 500 + n)
                    return await alipay_buyer(api, emulator, dice, behaviour)

            order_ids = await asyncio.gather(*(one(b, n) for n, b in enumerate(plan)))
            injected = (await emulator.get("/_emulator/faults")).json()["injected"]
        finally:
            await emulator.put("/_emulator/faults", json={})

    reconciled = await reconcile(stack)
    async with stack.http() as api:
        orders = [(await api.get(f"/v1/orders/{order_id}")).json() for order_id in order_ids]
    trades = alipay.state.alipay.trades
    wrong = []
    for order in orders:
        trade = trades.get(alipay_protocol.out_trade_no(order["order_id"], 1))
        paid = trade is not None and trade["gmt_payment"] is not None
        held = (trade["amount"] - trade["refund_fee"]) if paid else 0
        kept = order["amount"] - order["refunded_amount"] if order["status"] in KEPT else 0
        if held != kept:
            wrong.append((order["order_id"], order["status"], held, kept))
    assert wrong == []
    async with httpx.AsyncClient() as http:
        problems = await ledger_check(sessions, build_gateways(settings, http))
    assert problems == []
    print(
        f"\nrandomized Alipay run: seed {SEED}, {len(plan)} checkouts, behaviours "
        f"{dict(Counter(plan))}, outcomes {dict(Counter(o['status'] for o in orders))}, "
        f"faults injected {injected}, reconciliation found {len(reconciled.strays_found)} strays"
    )
    assert sum(injected.values()) > 0
