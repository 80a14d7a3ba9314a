"""SIGKILL the worker at random moments while checkouts run, and again while refunds wait
for the gateway, start it again, and every checkout and refund still ends right, with no
duplicate gateway effects (invariant 6).

    KASSA_CRASH_SEED=7 .venv/bin/pytest -s tests/e2e/test_crash.py
"""

from __future__ import annotations

import asyncio
import random
import sys
import uuid

from api.app import create_app as create_api
from db.models import Order
from kassa.contracts import CheckoutView
from kassa.ids import checkout_workflow_id
from kassa.settings import DEV_STOREFRONT_KEY
from kassa.statuses import OrderStatus
from orchestration.client import start_checkout
from orchestration.seal import sealed
from tests.crashing import PATIENCE, SEED, Process, process_env, worker_process
from tests.e2e.test_refunds import post_refund, refund_settled
from tests.purchases import (
    Storefront,
    check_ended_right,
    in_flight,
    plan,
    purchase,
    refund_waits_at_the_gateway,
    refunds_settling_later,
    run_to_the_end,
    summary,
)
from tests.support import buyer_acts, eventually, free_port, ledger_of, new_checkout, serving


async def test_killing_the_worker_loses_and_doubles_nothing(
    stack, dev_env, settings, sandbox, sessions, tmp_path
):
    dice = random.Random(SEED)
    queue = f"crash-{uuid.uuid4().hex[:6]}"
    ours = settings.model_copy(
        update={
            "temporal_address": dev_env.client.service_client.config.target_host,
            "task_queue": queue,
        }
    )
    worker = worker_process(ours, tmp_path / "worker.log")
    worker.spawn()

    async def killer():
        for _ in range(3):
            await asyncio.sleep(dice.uniform(0.5, 2.0))
            worker.kill()
            await asyncio.sleep(dice.uniform(0.1, 1.0))
            worker.spawn()

    async def purchase(n: int):
        checkout = new_checkout(amount=1000 + n)
        for _ in range(8):  # a start that times out while the worker is dead is retried
            try:
                view = await start_checkout(
                    dev_env.client, sealed(ours, checkout), queue, wait_seconds=15
                )
                break
            except TimeoutError:
                continue
        else:  # two minutes without a payment page: fail with the facts, not the test timeout
            raise AssertionError(f"no payment page for {checkout.order_id} after 8 tries")
        pays = n % 4 != 0
        await asyncio.sleep(dice.uniform(0, 2.0))
        await buyer_acts(view.payment.payment_url, "succeeded" if pays else "declined")
        return checkout, pays

    try:
        purchases, _ = await asyncio.gather(
            asyncio.gather(*(purchase(n) for n in range(12))), killer()
        )

        async def all_settled():
            async with sessions() as session:
                rows = [await session.get(Order, c.order_id) for c, _ in purchases]
                session.expunge_all()
            return rows if all(OrderStatus(r.status).is_final for r in rows) else None

        orders = await eventually(all_settled, timeout=120, interval=0.5)
    finally:
        worker.stop()

    for (checkout, pays), order in zip(purchases, orders, strict=True):
        at_gateway = [
            p for p in sandbox.payments.values() if p["merchant_order_id"] == checkout.order_id
        ]
        assert len(at_gateway) == 1, at_gateway  # one payment, however often it was asked
        expected = ("fulfilled", "succeeded") if pays else ("failed", "declined")
        assert (order.status, at_gateway[0]["status"]) == expected
        # The workflow completed too: a step it ran again after a kill did not fail it.
        handle = dev_env.client.get_workflow_handle(
            checkout_workflow_id(checkout.order_id), result_type=CheckoutView
        )
        assert (await handle.result()).status == order.status
    print(
        f"\ncrash run: seed {SEED}, worker killed {worker.kills} times, "
        f"{len(purchases)} checkouts all ended right"
    )
    assert worker.kills == 3


async def test_killing_the_worker_while_refunds_settle_loses_and_doubles_nothing(
    dev_env, settings, sandbox, sessions, tmp_path
):
    dice = random.Random(SEED)
    purchases = plan(dice, ["refunded"] * 4 + ["partially_refunded"] * 4, spread=2.0)
    kills = [(dice.uniform(0.3, 2.0), dice.uniform(0.1, 1.0)) for _ in range(3)]
    api_port = free_port()
    ours = settings.model_copy(
        update={
            "temporal_address": dev_env.client.service_client.config.target_host,
            "task_queue": f"crash-refunds-{uuid.uuid4().hex[:6]}",
            "public_api_url": f"http://127.0.0.1:{api_port}",  # the gateway's callbacks
            "storefront_webhook_url": None,
        }
    )
    worker = worker_process(ours, tmp_path / "worker.log")
    pending_at_kills: list[int] = []
    try:
        worker.spawn()
        async with (
            refunds_settling_later(settings.sandbox_url),
            serving(create_api(ours, temporal_client=dev_env.client), api_port) as api_url,
        ):
            storefront = Storefront(api_url, DEV_STOREFRONT_KEY)

            async def crash():
                await eventually(
                    lambda: refund_waits_at_the_gateway(purchases, sandbox),
                    timeout=PATIENCE,
                    interval=0.05,
                )
                for wait, down in kills:
                    await asyncio.sleep(wait)
                    pending_at_kills.append((await in_flight(purchases, sessions))[1])
                    worker.kill()
                    await asyncio.sleep(down)  # the gateway settles, its callbacks arrive
                    worker.spawn()

            work = [
                crash(),
                *(purchase(p, storefront, sandbox, settings.sandbox_url) for p in purchases),
            ]
            await run_to_the_end(storefront, work, purchases, sessions, worker)
        await check_ended_right(purchases, sessions, sandbox, dev_env.client, ours.task_queue)
    finally:
        worker.stop()

    print(
        f"\nrefund crash run: seed {SEED}, worker killed {worker.kills} times with "
        f"{pending_at_kills} refunds pending; {summary(purchases)}, each refunded once"
    )
    assert worker.kills == 3
    assert any(pending_at_kills), "no refund was pending at a kill: the kills proved nothing"


async def test_a_checkout_task_lost_after_its_steps_committed_ends_right(
    stack, dev_env, settings, sandbox, sessions, tmp_path
):
    """The worker dies right after the local activities of the checkout's paid-to-fulfilled
    task committed: the order is fulfilled, the task never completed. The storefront
    refunds part of it meanwhile. The next worker runs that task again, its local
    activities included: each is a no-op now, and the checkout completes."""
    ours = settings.model_copy(
        update={
            "temporal_address": dev_env.client.service_client.config.target_host,
            "task_queue": f"lost-task-{uuid.uuid4().hex[:6]}",
        }
    )
    dying = Process(
        "dying worker",
        [sys.executable, "-m", "tests.dying_worker"],
        tmp_path / "dying-worker.log",
        process_env(ours),
    )
    worker = worker_process(ours, tmp_path / "worker.log")
    checkout = new_checkout(amount=3000)
    try:
        dying.spawn()
        view = await start_checkout(
            dev_env.client, sealed(ours, checkout), ours.task_queue, wait_seconds=30
        )
        await buyer_acts(view.payment.payment_url)
        await eventually(lambda: dying.proc.poll() is not None, timeout=PATIENCE)
        async with stack.http() as api:
            refund = await post_refund(api, checkout.order_id, {"amount": 100})
            assert refund.status_code == 202, refund.text
            await refund_settled(api, refund.json()["refund_id"])
        worker.spawn()
        handle = dev_env.client.get_workflow_handle(view.workflow_id, result_type=CheckoutView)
        result = await handle.result()
    finally:
        dying.stop()
        worker.stop()

    assert result.status == OrderStatus.FULFILLED
    async with sessions() as session:
        order = await session.get(Order, checkout.order_id)
    assert (order.status, order.refunded_amount) == ("partially_refunded", 100)
    assert await ledger_of(sessions, checkout.order_id) == [
        ("capture", "gateway:sandbox", 3000),
        ("capture", "revenue", -3000),
        ("refund", "refunds", 100),
        ("refund", "gateway:sandbox", -100),
    ]
