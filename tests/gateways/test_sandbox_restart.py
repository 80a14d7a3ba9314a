"""The sandbox gateway keeps notifying across its own restarts, like a real gateway: a
callback not yet delivered waits in the outbox of its state file and goes out, exactly as
signed, once the gateway is back; one already delivered is not sent again."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateways.base import NewRefund
from gateways.emulators.faults import Faults
from gateways.emulators.sandbox import SandboxConfig, create_app
from gateways.sandbox import SandboxGateway
from kassa.statuses import PaymentOutcome
from tests.support import buyer_acts, eventually, free_port, new_payment, serving

API_KEY, SECRET = "sk_sandbox_restart", "whsec_sandbox_restart"


class Merchant:
    """A callback endpoint that answers `status` and keeps every delivery it got."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.deliveries: list[tuple[int, Headers, bytes]] = []  # (answered, headers, body)
        self.app = Starlette(routes=[Route("/callback", self.receive, methods=["POST"])])

    async def receive(self, request: Request) -> JSONResponse:
        self.deliveries.append((self.status, request.headers, await request.body()))
        return JSONResponse({}, status_code=self.status)

    def accepted(self) -> list[tuple[Headers, bytes]]:
        return [(headers, body) for answered, headers, body in self.deliveries if answered == 200]


def sandbox_app(state_file: Path, port: int, **config) -> FastAPI:
    return create_app(
        SandboxConfig(
            public_url=f"http://127.0.0.1:{port}",
            api_key=API_KEY,
            webhook_secret=SECRET,
            state_file=state_file,
            callback_max_attempts=config.pop("callback_max_attempts", 100),
            callback_first_backoff=0.05,
            callback_max_backoff=0.5,
            **config,
        )
    )


def outbox_in(state_file: Path) -> dict:
    return json.loads(state_file.read_text())["outbox"]


async def bought(adapter: SandboxGateway, notify_url: str) -> str:
    """The buyer pays a new order's payment; its reference (the adapter's, for attempt 1)."""
    reference = adapter.reference(f"ord_{uuid.uuid4().hex[:10]}", 1)
    request = new_payment(notify_url=notify_url, merchant_order_id=reference)
    session = await adapter.create_payment(request)
    await buyer_acts(session.payment_url, "succeeded")
    return reference


async def test_a_pending_callback_is_delivered_after_a_restart_as_signed(tmp_path):
    state_file, sandbox_port, merchant_port = tmp_path / "sandbox.json", free_port(), free_port()
    merchant = Merchant(status=500)
    async with serving(merchant.app, merchant_port), httpx.AsyncClient() as http:
        adapter = SandboxGateway(http, f"http://127.0.0.1:{sandbox_port}", API_KEY, [SECRET])
        async with serving(sandbox_app(state_file, sandbox_port), sandbox_port):
            reference = await bought(adapter, f"http://127.0.0.1:{merchant_port}/callback")
            await eventually(lambda: len(merchant.deliveries) >= 2)  # refused, and retried
        assert len(outbox_in(state_file)) == 1

        merchant.status = 200
        restarted = sandbox_app(state_file, sandbox_port)
        async with serving(restarted, sandbox_port):
            await eventually(lambda: not restarted.state.sandbox.outbox)

    [(headers, body)] = merchant.accepted()
    assert {body for _, _, body in merchant.deliveries} == {body}  # every attempt the same event
    event = adapter.parse_callback(headers, body)  # raises unless the signature verifies
    assert (event.merchant_order_id, event.outcome, event.amount) == (
        reference,
        PaymentOutcome.SUCCEEDED,
        4200,
    )
    assert outbox_in(state_file) == {}


async def test_a_delivered_callback_is_not_delivered_again_after_a_restart(tmp_path):
    state_file, sandbox_port, merchant_port = tmp_path / "sandbox.json", free_port(), free_port()
    merchant = Merchant(status=200)
    async with serving(merchant.app, merchant_port), httpx.AsyncClient() as http:
        adapter = SandboxGateway(http, f"http://127.0.0.1:{sandbox_port}", API_KEY, [SECRET])
        first = sandbox_app(state_file, sandbox_port)
        async with serving(first, sandbox_port):
            reference = await bought(adapter, f"http://127.0.0.1:{merchant_port}/callback")
            await eventually(lambda: not first.state.sandbox.outbox)

        restarted = sandbox_app(state_file, sandbox_port)
        assert restarted.state.sandbox.outbox == {}  # nothing to resume
        async with serving(restarted, sandbox_port):
            # A new callback, after which a redelivery would have shown up.
            await adapter.refund(NewRefund("rf_1", reference, 1000, "CNY", "restart test"))
            await eventually(lambda: len(merchant.accepted()) == 2)

    types = [json.loads(body)["type"] for _, body in merchant.accepted()]
    assert types == ["payment.succeeded", "refund.succeeded"]


async def test_duplicated_and_contrary_callbacks_keep_their_order_across_a_restart(tmp_path):
    state_file, sandbox_port, merchant_port = tmp_path / "sandbox.json", free_port(), free_port()
    merchant = Merchant(status=500)
    faults = Faults(duplicate_callbacks=1, reorder_callbacks=True)
    async with serving(merchant.app, merchant_port), httpx.AsyncClient() as http:
        adapter = SandboxGateway(http, f"http://127.0.0.1:{sandbox_port}", API_KEY, [SECRET])
        async with serving(sandbox_app(state_file, sandbox_port, faults=faults), sandbox_port):
            await bought(adapter, f"http://127.0.0.1:{merchant_port}/callback")
            await eventually(lambda: merchant.deliveries)

        merchant.status = 200
        restarted = sandbox_app(state_file, sandbox_port)  # no faults now: the outbox has them
        async with serving(restarted, sandbox_port):
            await eventually(lambda: not restarted.state.sandbox.outbox)

    events = [json.loads(body) for _, body in merchant.accepted()]
    assert [e["type"] for e in events] == ["payment.succeeded"] * 2 + ["payment.declined"]
    assert events[0]["id"] == events[1]["id"] != events[2]["id"]


async def test_an_abandoned_callback_leaves_the_outbox(tmp_path):
    state_file, sandbox_port = tmp_path / "sandbox.json", free_port()
    app = sandbox_app(state_file, sandbox_port, callback_max_attempts=2)
    async with serving(app, sandbox_port), httpx.AsyncClient() as http:
        adapter = SandboxGateway(http, f"http://127.0.0.1:{sandbox_port}", API_KEY, [SECRET])
        await bought(adapter, "http://127.0.0.1:9/nobody")  # nothing listens there
        await eventually(lambda: not app.state.sandbox.outbox)

    assert [c["attempt"] for c in app.state.sandbox.callbacks] == [1, 2]
    assert outbox_in(state_file) == {}
