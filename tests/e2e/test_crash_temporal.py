"""SIGKILL the Temporal server while checkouts, cancels and refunds are in flight, start it
again on the same database file and port, and every order and refund still ends right,
once (invariant 6). Nothing restarts the API or the worker: their Temporal clients must
find the server again on their own.

    KASSA_CRASH_SEED=7 .venv/bin/pytest -s tests/e2e/test_crash_temporal.py
"""

from __future__ import annotations

import asyncio
import random
import uuid

from api.app import create_app as create_api
from kassa.settings import DEV_STOREFRONT_KEY
from tests.crashing import PATIENCE, SEED, TemporalServer, worker_process
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
from tests.support import eventually, free_port, serving

ENDINGS = ["refunded"] * 3 + ["partially_refunded"] * 3 + ["fulfilled", "failed"]
ENDINGS += ["cancelled"] * 2
# Begun while the server is down for longer than the clients retry (10 s by default).
LATE_ENDINGS = ["refunded", "partially_refunded", "fulfilled", "cancelled"]


async def test_killing_the_temporal_server_loses_and_doubles_nothing(
    settings, sandbox, sessions, tmp_path
):
    dice = random.Random(SEED)
    early, late = plan(dice, ENDINGS, spread=3.0), plan(dice, LATE_ENDINGS, spread=2.0)
    purchases = early + late
    # (seconds before the kill, seconds down): a short outage the clients' own retries
    # bridge, then one they do not, where the API answers 503 and the storefront retries.
    outages = [(dice.uniform(0, 1.0), dice.uniform(1.0, 3.0))]
    outages += [(dice.uniform(1.0, 2.0), dice.uniform(11.0, 13.0))]
    server = TemporalServer(tmp_path / "temporal.db", free_port(), tmp_path / "temporal.log")
    api_port = free_port()
    ours = settings.model_copy(
        update={
            "temporal_address": server.address,
            "task_queue": f"crash-temporal-{uuid.uuid4().hex[:6]}",
            "public_api_url": f"http://127.0.0.1:{api_port}",
            "storefront_webhook_url": None,
        }
    )
    worker = worker_process(ours, tmp_path / "worker.log")
    at_kills: list[tuple[int, int]] = []  # (checkouts, refunds) in flight at each kill
    long_outage = asyncio.Event()
    try:
        client = await server.start()
        worker.spawn()
        async with (
            refunds_settling_later(settings.sandbox_url),
            serving(create_api(ours), api_port) as api_url,  # its own Temporal client
        ):
            storefront = Storefront(api_url, DEV_STOREFRONT_KEY)

            async def crash():
                nonlocal client
                await eventually(
                    lambda: refund_waits_at_the_gateway(purchases, sandbox),
                    timeout=PATIENCE,
                    interval=0.05,
                )
                for wait, down in outages:
                    await asyncio.sleep(wait)
                    at_kills.append(await in_flight(purchases, sessions))
                    server.kill()
                    if down > 10:
                        long_outage.set()
                    await asyncio.sleep(down)  # buyers pay, the gateway settles refunds
                    client = await server.start()  # same file, same port

            async def begun_during_the_long_outage(p):
                await long_outage.wait()
                await purchase(p, storefront, sandbox, settings.sandbox_url)

            work = [
                crash(),
                *(purchase(p, storefront, sandbox, settings.sandbox_url) for p in early),
                *(begun_during_the_long_outage(p) for p in late),
            ]
            await run_to_the_end(storefront, work, purchases, sessions, worker)
        await check_ended_right(purchases, sessions, sandbox, client, ours.task_queue)
        worker.alive()  # it kept running through both outages
    finally:
        worker.stop()
        server.stop()

    (first_wait, first_down), (second_wait, second_down) = outages
    print(
        f"\nTemporal crash run: seed {SEED}, server killed {server.kills}×: "
        f"{first_wait:.2f}s after the first refund reached the gateway, down {first_down:.1f}s, "
        f"with {at_kills[0][0]} checkouts and {at_kills[0][1]} refunds in flight; "
        f"{second_wait:.2f}s after its restart, down {second_down:.1f}s, with "
        f"{at_kills[1][0]} checkouts and {at_kills[1][1]} refunds in flight and "
        f"{len(late)} checkouts begun while it was down; {summary(purchases)}, "
        f"all ended right once; storefront requests sent again: "
        f"{dict(storefront.retries) or 'none'}"
    )
    assert server.kills == 2
