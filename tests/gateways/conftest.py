"""Emulators of their own for the gateway tests (so faults set here touch no other test), each
over real HTTP on loopback, a merchant that receives their callbacks, and one harness per
gateway that drives the same scenarios through each adapter."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import pytest_asyncio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateways.alipay import AlipayGateway
from gateways.base import NewPayment, PaymentWord
from gateways.emulators.alipay import AlipayConfig
from gateways.emulators.alipay import create_app as create_alipay
from gateways.emulators.sandbox import SandboxConfig
from gateways.emulators.sandbox import create_app as create_sandbox
from gateways.sandbox import SandboxGateway
from kassa.contracts import PaymentSession
from kassa.errors import KassaError
from kassa.statuses import PaymentOutcome
from tests.support import free_port, serving

SANDBOX_KEY, SANDBOX_SECRET = "sandbox_sk_gw_tests", "sandbox_whsec_gw_tests"
TIME_FACTOR = 0.001  # Alipay's notify schedule, compressed: 4m -> 0.24 s, 10m -> 0.6 s


@dataclass
class Merchant:
    """Kassa's callback endpoint for every gateway: verifies with the adapter, keeps what it
    received, and answers what the adapter says its gateway needs (`callback_reply`); but a
    callback whose body holds a key of `bad_replies` (a merchant reference) gets that key's
    bad replies first (to be retried)."""

    adapters: dict = field(default_factory=dict)
    received: list[tuple[str, dict, bytes]] = field(default_factory=list)  # gateway, headers
    events: list = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    bad_replies: dict[bytes, list[Response]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.app = Starlette(routes=[Route("/{gateway}", self.receive, methods=["POST"])])

    async def receive(self, request: Request) -> Response:
        gateway = request.path_params["gateway"]
        body = await request.body()
        self.received.append((gateway, dict(request.headers), body))
        for marker, replies in self.bad_replies.items():
            if marker in body and replies:
                return replies.pop(0)
        try:
            event = self.adapters[gateway].parse_callback(request.headers, body)
        except KassaError as exc:
            self.refused.append(type(exc).__name__)
            return JSONResponse(exc.problem(), status_code=exc.status)
        self.events.append(event)
        reply = self.adapters[gateway].callback_reply
        return Response(reply.body, media_type=reply.media_type)

    def events_of(self, reference: str) -> list[PaymentWord]:
        """What the callbacks said about the payment opened under `reference`."""
        words = [e for e in self.events if isinstance(e, PaymentWord)]
        return [w for w in words if w.merchant_order_id == reference]


def new_order_id() -> str:
    """An order id with the characters Alipay's references must escape."""
    return f"ord-{uuid.uuid4().hex[:10]}.x:1"


def action(session: PaymentSession) -> str:
    """What the buyer acts on: the page to go to, or the QR code to scan."""
    acted_on = session.payment_url or session.qr_code
    assert acted_on, f"a session with nothing for the buyer: {session}"
    return acted_on


@dataclass
class Harness:
    """One gateway as the conformance suite drives it."""

    name: str
    adapter: SandboxGateway | AlipayGateway
    emulator_url: str
    emulator_state: object
    merchant: Merchant
    merchant_url: str
    http: httpx.AsyncClient
    bad_reply: Response  # an answer the gateway does not take for an acknowledgement
    before_buyer: PaymentOutcome  # what the query says before the buyer opens or scans

    def new_payment(
        self,
        amount: int = 4200,
        expires_in: timedelta = timedelta(minutes=15),
        order_id: str | None = None,
        attempt: int = 1,
        **overrides,
    ) -> NewPayment:
        """The order's `attempt`-th payment (a new order unless `order_id` is given), under
        the reference the adapter derives for it."""
        return NewPayment(
            merchant_order_id=self.adapter.reference(order_id or new_order_id(), attempt),
            amount=amount,
            currency=overrides.pop("currency", "CNY"),
            description=overrides.pop("description", "1 × Python 101"),
            expires_at=datetime.now(UTC) + expires_in,
            notify_url=f"{self.merchant_url}/{self.name}",
            **overrides,
        )

    async def buyer(self, payment: str, outcome: str = "succeeded") -> httpx.Response:
        """POST /_emulator/buyer: the same control on every emulator."""
        return await self.http.post(
            f"{self.emulator_url}/_emulator/buyer", json={"payment": payment, "outcome": outcome}
        )

    async def look(self, payment: str) -> httpx.Response:
        """The buyer opens the page (for Alipay: scans the QR code)."""
        return await self.http.get(payment)

    async def faults(self, **faults) -> None:
        if self.name == "sandbox":
            response = await self.http.put(
                f"{self.emulator_url}/_emulator/behaviour", json={"faults": faults}
            )
        else:
            response = await self.http.put(f"{self.emulator_url}/_emulator/faults", json=faults)
        response.raise_for_status()

    async def state(self) -> dict:
        return (await self.http.get(f"{self.emulator_url}/_emulator/state")).json()

    async def _payment_state(self, reference: str) -> dict:
        """The gateway's own record of the one payment opened under `reference`."""
        state = await self.state()
        if self.name == "sandbox":
            [payment] = [
                p for p in state["payments"].values() if p["merchant_order_id"] == reference
            ]
            return payment
        return state["trades"][reference]

    async def refunded(self, reference: str) -> int:
        """What the gateway itself says it gave back for the payment."""
        payment = await self._payment_state(reference)
        return payment["refunded_amount" if self.name == "sandbox" else "refund_fee"]

    async def captured_id(self, reference: str) -> str | None:
        """The gateway's own id of the payment (Alipay: the trade_no, once scanned)."""
        payment = await self._payment_state(reference)
        return payment["id" if self.name == "sandbox" else "trade_no"]

    async def deliveries(self, event_id: str) -> list[str]:
        """Every delivery attempt of a callback: what the merchant answered, in order."""
        state = await self.state()
        if self.name == "sandbox":
            return [str(c["status_code"]) for c in state["callbacks"] if c["event_id"] == event_id]
        return [n["reply"] for n in state["notifies"] if n["notify_id"] == event_id]


@pytest_asyncio.fixture(scope="session")
async def merchant():
    merchant = Merchant()
    port = free_port()
    async with serving(merchant.app, port) as url:
        merchant.url = url
        yield merchant


@pytest_asyncio.fixture(scope="session")
async def gateway_http():
    async with httpx.AsyncClient(timeout=10) as http:
        yield http


@pytest_asyncio.fixture(scope="session")
async def alipay_emulator(tmp_path_factory):
    """The Alipay emulator on a free port, its keys in a temporary directory."""
    port = free_port()
    app = create_alipay(
        AlipayConfig(
            public_url=f"http://127.0.0.1:{port}",
            keys_dir=tmp_path_factory.mktemp("alipay") / "keys",
            time_factor=TIME_FACTOR,
            tick=0.02,
        )
    )
    async with serving(app, port) as url:
        app.state.url = url
        yield app


@pytest_asyncio.fixture(scope="session")
async def sandbox_emulator():
    port = free_port()
    app = create_sandbox(
        SandboxConfig(
            public_url=f"http://127.0.0.1:{port}",
            api_key=SANDBOX_KEY,
            webhook_secret=SANDBOX_SECRET,
            callback_max_attempts=6,
            callback_first_backoff=0.05,
        )
    )
    async with serving(app, port) as url:
        app.state.url = url
        yield app


@pytest_asyncio.fixture(scope="session")
async def alipay_harness(alipay_emulator, merchant, gateway_http) -> Harness:
    keys = alipay_emulator.state.keys
    adapter = AlipayGateway(
        gateway_http,
        f"{alipay_emulator.state.url}/gateway.do",
        keys.app_id,
        keys.merchant_private,
        keys.gateway_public,
    )
    merchant.adapters["alipay"] = adapter
    return Harness(
        "alipay",
        adapter,
        alipay_emulator.state.url,
        alipay_emulator.state.alipay,
        merchant,
        merchant.url,
        gateway_http,
        Response(b"fail", media_type="text/plain"),
        PaymentOutcome.NOT_FOUND,  # a QR nobody scanned is no trade yet
    )


@pytest_asyncio.fixture(scope="session")
async def sandbox_harness(sandbox_emulator, merchant, gateway_http) -> Harness:
    adapter = SandboxGateway(
        gateway_http, sandbox_emulator.state.url, SANDBOX_KEY, [SANDBOX_SECRET]
    )
    merchant.adapters["sandbox"] = adapter
    return Harness(
        "sandbox",
        adapter,
        sandbox_emulator.state.url,
        sandbox_emulator.state.sandbox,
        merchant,
        merchant.url,
        gateway_http,
        JSONResponse({"error": "try later"}, status_code=503),
        PaymentOutcome.PENDING,
    )
