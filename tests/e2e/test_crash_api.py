"""SIGKILL the API while the storefront sends checkout starts, cancels and refund requests,
start it again, and the storefront's retries (same Idempotency-Key) make exactly one order
per checkout key and one refund per refund key, with nothing half-written: every order has
its workflow and every workflow its order (invariant 6).

    KASSA_CRASH_SEED=7 .venv/bin/pytest -s tests/e2e/test_crash_api.py
"""

from __future__ import annotations

import asyncio
import random
import uuid

from kassa.settings import DEV_STOREFRONT_KEY
from tests.crashing import PATIENCE, SEED, ApiProcess
from tests.purchases import Storefront, check_ended_right, plan, purchase, run_to_the_end, summary
from tests.support import eventually, free_port
from worker import running_worker

ENDINGS = ["refunded"] * 4 + ["partially_refunded"] * 4 + ["fulfilled"] * 2
ENDINGS += ["failed", "cancelled"]
REQUESTS = 12 + 1 + 4 * 2 + 4  # checkouts, the cancel, refunds


async def test_killing_the_api_loses_and_doubles_nothing(
    dev_env, settings, sandbox, sessions, tmp_path
):
    dice = random.Random(SEED)
    purchases = plan(dice, ENDINGS, spread=3.0)
    # Each kill comes when the storefront has begun its n-th request, a moment later.
    kills = [
        (n, dice.uniform(0, 0.5), dice.uniform(0.2, 1.5))
        for n in sorted(dice.sample(range(1, REQUESTS - 3), 3))
    ]
    api_port = free_port()
    ours = settings.model_copy(
        update={
            "temporal_address": dev_env.client.service_client.config.target_host,
            "task_queue": f"crash-api-{uuid.uuid4().hex[:6]}",
            "public_api_url": f"http://127.0.0.1:{api_port}",
            "storefront_webhook_url": None,
        }
    )
    api = ApiProcess(ours, api_port, tmp_path / "api.log")
    cut: list[int] = []  # requests under way at each kill
    async with running_worker(dev_env.client, ours):
        storefront = Storefront(api.url, DEV_STOREFRONT_KEY)
        try:
            await api.start()

            async def crash():
                for n, wait, down in kills:
                    await eventually(
                        lambda n=n: storefront.begun >= n, timeout=PATIENCE, interval=0.01
                    )
                    await asyncio.sleep(wait)
                    cut.append(storefront.sending)
                    api.kill()
                    await asyncio.sleep(down)
                    await api.start()

            work = [crash(), *(purchase(p, storefront, sandbox) for p in purchases)]
            await run_to_the_end(storefront, work, purchases, sessions, api)
        finally:
            await storefront.aclose()  # again, if the API never started
            api.stop()
        await check_ended_right(purchases, sessions, sandbox, dev_env.client, ours.task_queue)

    assert storefront.begun == REQUESTS
    print(
        f"\nAPI crash run: seed {SEED}, API killed {api.kills}× at requests "
        f"{[n for n, _, _ in kills]} with {cut} requests under way; {summary(purchases)}, "
        f"one each; storefront requests sent again: {dict(storefront.retries) or 'none'}"
    )
    assert api.kills == 3
    assert storefront.retries, "no request was cut or refused: the kills proved nothing"
