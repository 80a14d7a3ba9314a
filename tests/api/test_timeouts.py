"""When no worker answers in time, or the Temporal server cannot be reached, the API says
503 with Retry-After (never a 500, never a hang), and the same request again is safe."""

from __future__ import annotations

import uuid
from dataclasses import asdict

import httpx
from temporalio.client import Client
from temporalio.service import RetryConfig

from api.app import create_app
from db.models import Order
from kassa.settings import DEV_STOREFRONT_KEY, DEV_SUPPORT_KEY
from orchestration.client import start_checkout
from orchestration.seal import sealed
from orchestration.temporal import data_converter
from tests.crashing import TemporalServer
from tests.e2e.test_purchase import checkout_body
from tests.support import free_port, new_checkout, serving
from worker import running_worker


async def test_no_worker_means_503_and_a_safe_retry(dev_env, settings, sandbox):
    # A task queue no worker polls: the checkout is accepted by Temporal but nothing runs it.
    idle = settings.model_copy(
        update={"task_queue": f"idle-{uuid.uuid4().hex[:6]}", "checkout_start_timeout_seconds": 1.0}
    )
    async with serving(create_app(idle, temporal_client=dev_env.client), free_port()) as url:
        async with httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {DEV_STOREFRONT_KEY}"}
        ) as api:
            body = checkout_body()
            headers = {"Idempotency-Key": uuid.uuid4().hex}
            first = await api.post("/v1/checkouts", json=body, headers=headers)
            again = await api.post("/v1/checkouts", json=body, headers=headers)
            order_id = f"ord-{uuid.uuid4().hex[:8]}"
            await api.post(
                "/v1/checkouts",
                json={**body, "order_id": order_id},
                headers={"Idempotency-Key": uuid.uuid4().hex},
            )
            cancel = await api.post(f"/v1/orders/{order_id}/cancel")

    for response in (first, again):
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "2"
        assert response.json()["type"] == "urn:kassa:problem:checkout-pending"
    # No order row exists yet (the workflow writes it), so cancel cannot find the order.
    assert cancel.status_code == 404


async def test_cancel_without_a_worker_is_503_and_safe_to_repeat(dev_env, settings, sandbox):
    queue = f"cancel-{uuid.uuid4().hex[:6]}"
    checkout = new_checkout()
    async with running_worker(dev_env.client, settings, queue):
        await start_checkout(dev_env.client, sealed(settings, checkout), queue, wait_seconds=30)
    # The worker is gone: the cancel update cannot be answered in time.
    quick = settings.model_copy(update={"checkout_start_timeout_seconds": 1.0})
    async with serving(create_app(quick, temporal_client=dev_env.client), free_port()) as url:
        async with httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {DEV_STOREFRONT_KEY}"}
        ) as api:
            pending = await api.post(f"/v1/orders/{checkout.order_id}/cancel")
            async with running_worker(dev_env.client, settings, queue):
                done = await api.post(f"/v1/orders/{checkout.order_id}/cancel")

    assert pending.status_code == 503
    assert pending.json()["type"] == "urn:kassa:problem:cancel-pending"
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "cancelled"
    assert sandbox.payments[sandbox.by_order[checkout.order_id]]["status"] == "closed"


async def test_a_dead_temporal_server_means_503(settings, sandbox, sessions, tmp_path):
    server = TemporalServer(tmp_path / "temporal.db", free_port(), tmp_path / "temporal.log")
    await server.start()
    # The API's client was connected; then the server died. It gives up after a short retry.
    client = await Client.connect(
        server.address,
        data_converter=data_converter(settings),
        retry_config=RetryConfig(max_retries=1, max_elapsed_time_millis=500),
    )
    server.kill()
    held = new_checkout()  # an order whose checkout waits for support's review
    async with sessions.begin() as session:
        session.add(
            Order(
                order_id=held.order_id,
                customer_id=held.customer_id,
                status="on_hold",
                amount=held.amount,
                currency=held.currency,
                items=[asdict(item) for item in held.items],
                gateway=held.gateway,
            )
        )
    async with serving(create_app(settings, temporal_client=client), free_port()) as url:
        headers = {"Authorization": f"Bearer {DEV_STOREFRONT_KEY}"}
        async with httpx.AsyncClient(base_url=url, headers=headers) as api:
            checkout = await api.post(
                "/v1/checkouts",
                json=checkout_body(),
                headers={"Idempotency-Key": uuid.uuid4().hex},
            )
            cancel = await api.post(f"/v1/orders/{held.order_id}/cancel")
        headers = {"Authorization": f"Bearer {DEV_SUPPORT_KEY}"}
        async with httpx.AsyncClient(base_url=url, headers=headers) as support:
            review = await support.post(f"/v1/orders/{held.order_id}/review", json={"note": "x"})

    for answer in (checkout, cancel, review):
        assert answer.status_code == 503, answer.text
        assert answer.headers["Retry-After"] == "2"
        assert answer.json()["type"] == "urn:kassa:problem:temporal-unavailable"
