"""SIGKILL the worker at random moments while checkouts run, start it again, and every
checkout still ends right, with no duplicate gateway effects (invariant 6)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import uuid

from api.checkout_start import start_checkout
from kassa.contracts import OrderStatus
from kassa.models import Order
from tests.support import buyer_acts, eventually, new_checkout

SEED = int(os.environ.get("KASSA_CRASH_SEED", "6"))


def spawn_worker(env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def test_killing_the_worker_loses_and_doubles_nothing(
    stack, dev_env, settings, sandbox, sessions
):
    dice = random.Random(SEED)
    queue = f"crash-{uuid.uuid4().hex[:6]}"
    env = {
        **os.environ,
        "KASSA_DATABASE_URL": settings.database_url,
        "KASSA_TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "KASSA_TASK_QUEUE": queue,
        "KASSA_SANDBOX_URL": settings.sandbox_url,
        "KASSA_PUBLIC_API_URL": settings.public_api_url,
        "KASSA_STATUS_CHECK_FIRST_SECONDS": "1",
        "KASSA_STATUS_CHECK_MAX_SECONDS": "2",
    }
    worker = spawn_worker(env)
    kills = 0

    async def killer():
        nonlocal worker, kills
        for _ in range(3):
            await asyncio.sleep(dice.uniform(0.5, 2.0))
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            kills += 1
            await asyncio.sleep(dice.uniform(0.1, 1.0))
            worker = spawn_worker(env)

    async def purchase(n: int):
        checkout = new_checkout(amount=1000 + n)
        while True:  # a start that times out while the worker is dead is retried: same order
            try:
                view = await start_checkout(dev_env.client, checkout, queue, wait_seconds=15)
                break
            except TimeoutError:
                continue
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
        worker.send_signal(signal.SIGKILL)
        worker.wait()

    for (checkout, pays), order in zip(purchases, orders, strict=True):
        at_gateway = [
            p for p in sandbox.payments.values() if p["merchant_order_id"] == checkout.order_id
        ]
        assert len(at_gateway) == 1, at_gateway  # one payment, however often it was asked
        expected = ("fulfilled", "succeeded") if pays else ("failed", "declined")
        assert (order.status, at_gateway[0]["status"]) == expected
    print(
        f"\ncrash run: seed {SEED}, worker killed {kills} times, "
        f"{len(purchases)} checkouts all ended right"
    )
    assert kills == 3
