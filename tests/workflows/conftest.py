"""Workflow tests run on the time-skipping server with the real activities (a real
PostgreSQL and the sandbox gateway over HTTP)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import pytest_asyncio
from sqlalchemy import select

from db.models import Entitlement, Order
from kassa.contracts import CheckoutInput, CheckoutView, PaymentEvent
from kassa.ids import checkout_workflow_id
from kassa.statuses import PaymentOutcome
from orchestration.client import start_checkout
from orchestration.seal import sealed
from tests.support import buyer_acts
from worker import running_worker
from workflows.checkout import CheckoutWorkflow


@pytest_asyncio.fixture
async def task_queue() -> str:
    return f"wf-{uuid.uuid4().hex[:8]}"


@pytest_asyncio.fixture
async def faults(settings):
    """Make the sandbox gateway misbehave for this test; well-behaved again afterwards."""
    async with httpx.AsyncClient(base_url=settings.sandbox_url) as http:

        async def set_faults(**faults):
            (await http.put("/_emulator/behaviour", json={"faults": faults})).raise_for_status()

        yield set_faults
        await set_faults()


@pytest_asyncio.fixture
async def replaced_activities() -> dict:
    """Override in a test module to run the worker with some activities swapped by name."""
    return {}


@pytest_asyncio.fixture
async def workflow_env(time_skipping_env):
    """The Temporal server a test's workflows run on; a test may choose the dev server."""
    return time_skipping_env


@pytest_asyncio.fixture
async def started(
    workflow_env, settings, sandbox, storefront, sessions, task_queue, replaced_activities
):
    """Start checkouts on a worker of this test's own. The gateway's callbacks go nowhere:
    these tests deliver them as signals themselves (the API of the end-to-end tests talks to
    another Temporal server and must not see these orders)."""
    client = workflow_env.client
    isolated = settings.model_copy(update={"public_api_url": "http://127.0.0.1:9"})
    async with running_worker(client, isolated, task_queue, replaced_activities):

        async def start(checkout: CheckoutInput):
            view = await start_checkout(
                client, sealed(settings, checkout), task_queue, wait_seconds=30
            )
            handle = client.get_workflow_handle_for(
                CheckoutWorkflow.run, checkout_workflow_id(checkout.order_id)
            )
            return view, handle

        yield start


async def pay(view: CheckoutView, handle) -> None:
    """The buyer pays on the gateway's page; the verified callback reaches the workflow."""
    await buyer_acts(view.payment.payment_url, "succeeded")
    await handle.signal(
        CheckoutWorkflow.payment_event, gateway_event(view, PaymentOutcome.SUCCEEDED)
    )


async def pass_the_payment_window(env) -> None:
    """Skip the 15 minutes explicitly: after an update-with-start the Java test server does
    not skip time on its own while we await the result (sdk-java#1903)."""
    await env.sleep(timedelta(minutes=15, seconds=1))


def gateway_event(view: CheckoutView, outcome: PaymentOutcome, n: int = 1) -> PaymentEvent:
    """What the API signals after verifying the gateway's callback."""
    return PaymentEvent(
        "sandbox",
        f"evt_{view.order_id}_{view.payment.attempt}_{n}",  # a gateway event id per payment
        view.order_id,
        view.payment.payment_id,
        outcome,
        view.amount,
        view.currency,
        view.payment.attempt,
    )


async def order_row(sessions, order_id: str) -> Order:
    async with sessions() as session:
        return await session.get(Order, order_id)


async def entitlements(sessions, order_id: str, active_only: bool = False) -> list[tuple]:
    async with sessions() as session:
        query = select(Entitlement.customer_id, Entitlement.sku).where(
            Entitlement.order_id == order_id
        )
        if active_only:
            query = query.where(Entitlement.revoked_at.is_(None))
        return [tuple(row) for row in await session.execute(query)]


def gateway_payment(sandbox, order_id: str) -> dict | None:
    payment_id = sandbox.by_order.get(order_id)
    return sandbox.payments.get(payment_id)
