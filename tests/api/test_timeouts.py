"""When no worker answers in time the API says 503 with Retry-After (never a 500, never a
hang), and the same request again is safe."""

from __future__ import annotations

import uuid

import httpx

from api.app import create_app
from tests.e2e.test_purchase import checkout_body
from tests.support import free_port, serving


async def test_no_worker_means_503_and_a_safe_retry(dev_env, settings, sandbox):
    # A task queue no worker polls: the checkout is accepted by Temporal but nothing runs it.
    idle = settings.model_copy(
        update={"task_queue": f"idle-{uuid.uuid4().hex[:6]}", "checkout_start_timeout_seconds": 1.0}
    )
    async with serving(create_app(idle, temporal_client=dev_env.client), free_port()) as url:
        async with httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {settings.storefront_api_key}"}
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
