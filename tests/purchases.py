"""A storefront's batch of purchases for the crash tests, planned from a seed: checkouts
paid, declined or cancelled, refunds asked for and settled by the gateway, every failed
request sent again with its Idempotency-Key; then the check that every order and every
refund ended right, once, in the database, at the gateway, in the ledger and in Temporal."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from random import Random

import httpx
from sqlalchemy import func, select
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError

from db.models import IdempotencyKey, Order, Refund
from kassa.statuses import OrderStatus, RefundStatus
from tests.crashing import PATIENCE
from tests.support import buyer_acts, eventually, ledger_of

# ---- the storefront -------------------------------------------------------------------------


class Storefront:
    """The storefront's side of the API: every POST carries its Idempotency-Key and is sent
    again with the same key after a lost connection or a 5xx, until it gets an answer."""

    def __init__(self, api_url: str, api_key: str):
        self.http = httpx.AsyncClient(
            base_url=api_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=30
        )
        self.retries: Counter[str] = Counter()  # why a request was sent again
        self.begun = 0  # requests begun (not counting their retries)
        self.sending = 0  # requests waiting for an answer now

    async def post(self, path: str, body: dict, key: str, expect: int) -> dict:
        async def once():
            self.sending += 1
            try:
                answer = await self.http.post(path, json=body, headers={"Idempotency-Key": key})
            except httpx.TransportError as err:
                self.retries[type(err).__name__] += 1
                return None
            finally:
                self.sending -= 1
            if answer.status_code >= 500:
                self.retries[f"{answer.status_code} {answer.json().get('type', '')}"] += 1
                return None
            return answer

        self.begun += 1
        answer = await eventually(once, timeout=PATIENCE, interval=0.25)
        assert answer.status_code == expect, f"POST {path}: {answer.status_code} {answer.text}"
        return answer.json()

    async def order(self, order_id: str) -> dict | None:
        """The order as the API shows it; None while the API cannot answer."""
        try:
            answer = await self.http.get(f"/v1/orders/{order_id}")
        except httpx.TransportError:
            return None
        return answer.json() if answer.status_code == 200 else None

    async def aclose(self) -> None:
        await self.http.aclose()


@asynccontextmanager
async def refunds_settling_later(sandbox_url: str):
    """The sandbox accepts refunds as processing; the test settles each one later."""
    async with httpx.AsyncClient(base_url=sandbox_url) as http:
        behaviour = {"refunds_settle": "later"}
        (await http.put("/_emulator/behaviour", json=behaviour)).raise_for_status()
        try:
            yield
        finally:
            await http.put("/_emulator/behaviour", json={})


# ---- purchases ------------------------------------------------------------------------------

# How a purchase ends, and the refunds the storefront asks for (None: all that is left).
REFUNDS = {
    "fulfilled": [],
    "partially_refunded": [700],
    "refunded": [700, None],
    "failed": [],
    "cancelled": [],
}
# A decline leaves the buyer the rest of the window to try again: keep it short, but long
# enough for the buyer to reach the page through the crashes.
DECLINED_WINDOW = 10


@dataclass
class Purchase:
    """One storefront purchase, planned from the seed before anything runs."""

    n: int
    ending: str
    start_after: float  # seconds after the batch starts
    act_after: float  # seconds between the payment page and the buyer (or a cancel)
    settle_after: list[float]  # per refund: seconds the gateway takes to settle it
    amount: int = 0
    key: str = ""
    refund_keys: list[str] = field(default_factory=list)
    begun: bool = False
    order_id: str | None = None
    refunds: dict[str, int] = field(default_factory=dict)  # refund id -> amount

    def __post_init__(self) -> None:
        self.amount = 2000 + self.n
        self.key = f"crash-{uuid.uuid4().hex}"
        self.refund_keys = [f"{self.key}-refund-{i}" for i in range(len(REFUNDS[self.ending]))]

    @property
    def customer_id(self) -> str:
        return f"cus_crash_{self.key[-10:]}"

    @property
    def paid(self) -> bool:
        return self.ending not in ("failed", "cancelled")


def plan(dice: Random, endings: list[str], spread: float) -> list[Purchase]:
    endings = list(endings)
    dice.shuffle(endings)
    return [
        Purchase(
            n,
            ending,
            start_after=dice.uniform(0, spread),
            act_after=dice.uniform(0, 1.0),
            settle_after=[dice.uniform(0.2, 3.0) for _ in REFUNDS[ending]],
        )
        for n, ending in enumerate(endings)
    ]


async def purchase(
    p: Purchase, storefront: Storefront, sandbox, settle_at: str | None = None
) -> None:
    """Start the checkout, pay (or decline, or cancel), then ask for the planned refunds;
    with `settle_at` (the sandbox's URL, refunds settling later) settle each after its
    delay."""
    await asyncio.sleep(p.start_after)
    p.begun = True
    body = {
        "customer_id": p.customer_id,
        "items": [
            {"sku": "course-crash-101", "title": "Crash", "unit_amount": p.amount, "quantity": 1}
        ],
        "currency": "CNY",
        "gateway": "sandbox",
    }
    if p.ending == "failed":  # declined, and no retry: it fails when its window closes
        body["expires_in_seconds"] = DECLINED_WINDOW
    checkout = await storefront.post("/v1/checkouts", body, p.key, expect=201)
    p.order_id = checkout["order_id"]
    await asyncio.sleep(p.act_after)
    if p.ending == "cancelled":
        cancel = {"reason": "changed my mind"}
        path = f"/v1/orders/{p.order_id}/cancel"
        await storefront.post(path, cancel, f"{p.key}-cancel", expect=200)
        return
    outcome = "declined" if p.ending == "failed" else "succeeded"
    await buyer_acts(checkout["payment"]["payment_url"], outcome)
    if not REFUNDS[p.ending]:
        return

    async def fulfilled():
        order = await storefront.order(p.order_id)
        return order is not None and order["status"] == "fulfilled"

    await eventually(fulfilled, timeout=PATIENCE, interval=0.25)
    for amount, key in zip(REFUNDS[p.ending], p.refund_keys, strict=True):
        path = f"/v1/orders/{p.order_id}/refunds"
        refund = await storefront.post(path, {"amount": amount} if amount else {}, key, 202)
        p.refunds[refund["refund_id"]] = refund["amount"]
    if settle_at:
        await asyncio.gather(
            *(
                settle(sandbox, settle_at, refund_id, delay)
                for refund_id, delay in zip(p.refunds, p.settle_after, strict=True)
            )
        )


async def settle(sandbox, sandbox_url: str, refund_id: str, delay: float) -> None:
    """The gateway settles the refund `delay` seconds after it was asked for it."""
    await eventually(lambda: refund_id in sandbox.refunds, timeout=PATIENCE, interval=0.1)
    await asyncio.sleep(delay)
    url = f"{sandbox_url}/_emulator/refunds/{refund_id}/settle"
    async with httpx.AsyncClient() as http:
        settled = await http.post(url, json={"outcome": "succeeded"})
    assert settled.status_code == 200, settled.text


def refund_waits_at_the_gateway(purchases: list[Purchase], sandbox) -> bool:
    """Whether the gateway holds a refund of these purchases that it has not settled yet."""
    order_ids = {p.order_id for p in purchases}
    return any(
        r["status"] == "processing" and r["merchant_order_id"] in order_ids
        for r in sandbox.refunds.values()
    )


async def in_flight(purchases: list[Purchase], sessions) -> tuple[int, int]:
    """Checkouts begun and not ended, and refunds not settled, as the database sees them."""
    ids = [p.order_id for p in purchases if p.order_id]
    async with sessions() as session:
        statuses = list(await session.scalars(select(Order.status).where(Order.order_id.in_(ids))))
        pending = await session.scalar(
            select(func.count())
            .select_from(Refund)
            .where(Refund.order_id.in_(ids), Refund.status == RefundStatus.PENDING)
        )
    starting = sum(p.begun and not p.order_id for p in purchases)
    return starting + sum(not OrderStatus(s).is_final for s in statuses), pending


# ---- the checks -----------------------------------------------------------------------------


async def run_to_the_end(storefront, work, purchases: list[Purchase], sessions, survivor) -> None:
    """Run the crashes and the purchases together (`work`), then wait until every purchase
    has ended, checking that `survivor` (the process not killed) is still alive."""
    try:
        await asyncio.gather(*work)

        async def ended():
            survivor.alive()
            return await all_ended(purchases, sessions)

        await eventually(ended, timeout=PATIENCE, interval=0.5)
    finally:
        await storefront.aclose()


async def all_ended(purchases: list[Purchase], sessions) -> bool:
    """Every order final and no refund of theirs pending (not: ended right; that is checked
    afterwards, so a wrong ending fails with the facts instead of a timeout)."""
    ids = [p.order_id for p in purchases]
    async with sessions() as session:
        statuses = await session.scalars(select(Order.status).where(Order.order_id.in_(ids)))
        pending = await session.scalar(
            select(Refund.refund_id)
            .where(Refund.order_id.in_(ids), Refund.status == RefundStatus.PENDING)
            .limit(1)
        )
    statuses = list(statuses)
    return (
        len(statuses) == len(ids)
        and all(OrderStatus(s).is_final for s in statuses)
        and (pending is None)
    )


async def check_ended_right(
    purchases: list[Purchase], sessions, sandbox, temporal: Client, task_queue: str
) -> None:
    """Each order ended as planned with one gateway payment; each refund succeeded once, in
    the database, at the gateway and in the ledger; each idempotency key made one thing;
    and the workflows on the task queue are exactly those of these orders and refunds, all
    completed: no order without its workflow, no workflow without its order."""
    for p in purchases:
        async with sessions() as session:
            order = await session.get(Order, p.order_id)
            refunds = list(
                await session.scalars(select(Refund).where(Refund.order_id == p.order_id))
            )
            keys = list(
                await session.scalars(
                    select(IdempotencyKey).where(IdempotencyKey.key.in_([p.key, *p.refund_keys]))
                )
            )
            orders_of_the_buyer = await session.scalar(
                select(func.count()).select_from(Order).where(Order.customer_id == p.customer_id)
            )
        refunded = sum(p.refunds.values())
        assert (order.status, order.refunded_amount) == (p.ending, refunded), (p, order.status)
        at_gateway = [x for x in sandbox.payments.values() if x["merchant_order_id"] == p.order_id]
        expected = {"failed": "declined", "cancelled": "closed"}.get(p.ending, "succeeded")
        assert [(x["status"], x["refunded_amount"]) for x in at_gateway] == [(expected, refunded)]
        assert {r.refund_id: (r.amount, r.status) for r in refunds} == {
            rid: (amount, "succeeded") for rid, amount in p.refunds.items()
        }
        gateway_refunds = {
            no: (r["amount"], r["status"])
            for no, r in sandbox.refunds.items()
            if r["merchant_order_id"] == p.order_id
        }
        assert gateway_refunds == {rid: (a, "succeeded") for rid, a in p.refunds.items()}
        if p.ending == "refunded":
            assert refunded == p.amount
        books = await ledger_of(sessions, p.order_id)
        assert sum(a for kind, account, a in books if kind == "capture" and a > 0) == (
            p.amount if p.paid else 0
        ), books
        assert sum(a for kind, account, a in books if account == "refunds") == refunded, books
        assert orders_of_the_buyer == 1
        assert {(k.key, k.order_id, k.refund_id) for k in keys} == {
            (p.key, p.order_id, None),
            *((key, p.order_id, rid) for key, rid in zip(p.refund_keys, p.refunds, strict=True)),
        }

    expected = {f"checkout-{p.order_id}" for p in purchases} | {
        f"refund-{rid}" for p in purchases for rid in p.refunds
    }
    found: dict[str, WorkflowExecutionStatus] = {}

    async def workflows_completed():
        found.clear()
        async for wf in temporal.list_workflows(f'TaskQueue = "{task_queue}"'):
            found[wf.id] = wf.status
        failed = [i for i, s in found.items() if s == WorkflowExecutionStatus.FAILED]
        assert not failed, f"workflows failed: {await _failures(temporal, failed)}"
        return set(found) == expected and all(
            s == WorkflowExecutionStatus.COMPLETED for s in found.values()
        )

    try:
        await eventually(workflows_completed, timeout=PATIENCE, interval=0.5)
    except AssertionError as err:
        missing, extra = expected - set(found), set(found) - expected
        raise AssertionError(f"workflows missing {missing}, extra {extra}: {found}") from err


async def _failures(temporal: Client, workflow_ids: list[str]) -> dict[str, str]:
    failures = {}
    for workflow_id in workflow_ids:
        try:
            await temporal.get_workflow_handle(workflow_id).result()
        except WorkflowFailureError as failure:
            failures[workflow_id] = repr(failure.cause)
    return failures


def summary(purchases: list[Purchase]) -> str:
    endings = Counter(p.ending for p in purchases)
    refunds = sum(len(p.refunds) for p in purchases)
    return (
        f"{len(purchases)} checkouts ({', '.join(f'{n} {e}' for e, n in sorted(endings.items()))})"
        f", {refunds} refunds"
    )
