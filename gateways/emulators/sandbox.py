"""The sandbox gateway: a small payment gateway of our own, served over HTTP.

It behaves like a real one: payments are created idempotently per merchant order id, the
buyer pays (or declines) on an HTML page, the merchant gets a signed callback retried with
backoff until it answers 2xx, and the merchant can query, close and refund. Unpaid payments
expire. State survives restarts when `state_file` is set (the dev stack sets it).

Run it alone: `python -m gateways.emulators.sandbox` (port from KASSA_SANDBOX_PORT).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import secrets
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

import httpx
import jinja2
import structlog
from fastapi import Depends, FastAPI, Form, Header, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import AwareDatetime, BaseModel, Field

from gateways import sandbox_protocol
from gateways.emulators.faults import Faults
from kassa.money import format_amount

log = structlog.get_logger("sandbox")


@dataclass
class SandboxConfig:
    public_url: str  # where buyers reach the payment pages
    api_key: str
    webhook_secret: str
    state_file: Path | None = None
    callback_max_attempts: int = 20  # about 15 minutes of retries with the backoff below
    callback_first_backoff: float = 0.2
    callback_max_backoff: float = 60.0
    faults: Faults | None = None  # misbehaviour from the start (KASSA_SANDBOX_FAULTS)


@dataclass
class SandboxBehaviour:
    """Knobs for tests and demos (PUT /_emulator/behaviour)."""

    refunds_settle: Literal["instant", "later"] = "instant"  # later: POST .../settle
    fail_next_refund_calls: int = 0  # answer 500, with no effect
    faults: Faults = field(default_factory=Faults)


@dataclass
class SandboxState:
    """Everything the gateway knows; tests read it to see what the gateway saw."""

    payments: dict[str, dict] = field(default_factory=dict)
    by_order: dict[str, str] = field(default_factory=dict)
    refunds: dict[str, dict] = field(default_factory=dict)
    callbacks: list[dict] = field(default_factory=list)  # one row per delivery attempt
    behaviour: SandboxBehaviour = field(default_factory=SandboxBehaviour)

    def save(self, path: Path | None) -> None:
        if path is None:
            return
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"payments": self.payments, "refunds": self.refunds}))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path | None) -> SandboxState:
        state = cls()
        if path is not None and path.exists():
            data = json.loads(path.read_text())
            state.payments, state.refunds = data["payments"], data["refunds"]
            for payment in state.payments.values():  # the first payment of an order is its own
                state.by_order.setdefault(payment["merchant_order_id"], payment["id"])
        return state


class PaymentIn(BaseModel):
    merchant_order_id: str = Field(min_length=1, max_length=64)
    amount: int = Field(gt=0, le=10**15)
    currency: str = Field(pattern="^[A-Z]{3}$")
    description: str = Field(max_length=256)
    expires_at: AwareDatetime
    notify_url: str
    return_url: str | None = None


class RefundIn(BaseModel):
    payment_id: str
    refund_request_no: str = Field(min_length=1, max_length=64)
    amount: int = Field(gt=0)
    reason: str = ""


class SettleIn(BaseModel):
    outcome: Literal["succeeded", "failed"]


class FaultsIn(BaseModel):
    seed: int = 0
    drop_callbacks: float = Field(0.0, ge=0, le=1)
    duplicate_callbacks: int = Field(0, ge=0, le=10)
    delay_callbacks: float = Field(0.0, ge=0, le=60)
    reorder_callbacks: bool = False
    api_errors: float = Field(0.0, ge=0, le=1)
    lost_answers: float = Field(0.0, ge=0, le=1)
    slow_seconds: float = Field(0.0, ge=0, le=30)
    lose_next_answers: int = Field(0, ge=0, le=100)


class BehaviourIn(BaseModel):
    refunds_settle: Literal["instant", "later"] = "instant"
    fail_next_refund_calls: int = Field(0, ge=0)
    faults: FaultsIn = FaultsIn()


_PAGE = jinja2.Environment(autoescape=True).from_string(
    """<!doctype html>
<html><head><meta charset="utf-8"><title>Sandbox checkout</title>
<style>body{font-family:sans-serif;max-width:28rem;margin:3rem auto}
.amount{font-size:2rem;margin:1rem 0}button{font-size:1.1rem;margin-right:.5rem}</style></head>
<body>
<h1>Sandbox gateway</h1>
<p>{{ p.description }}</p>
<p>Order <code>{{ p.merchant_order_id }}</code></p>
<div class="amount" id="amount">{{ amount }}</div>
{% if p.status == "pending" %}
<form method="post">
  <button name="outcome" value="succeeded" id="pay">Pay</button>
  <button name="outcome" value="declined" id="decline">Decline</button>
</form>
<p>Expires at {{ p.expires_at }}</p>
{% else %}
<p id="status">Payment {{ p.status }}.</p>
{% if p.return_url %}<p><a href="{{ p.return_url }}">Back to the shop</a></p>{% endif %}
{% endif %}
</body></html>"""
)


def create_app(config: SandboxConfig) -> FastAPI:
    state = SandboxState.load(config.state_file)
    if config.faults is not None:
        state.behaviour.faults = config.faults
    deliveries: set[asyncio.Task] = set()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async with httpx.AsyncClient(timeout=10) as http:
            app.state.http = http
            yield
            for task in deliveries:
                task.cancel()

    app = FastAPI(title="Kassa sandbox gateway", lifespan=lifespan)
    app.state.sandbox = state

    def authorized(authorization: Annotated[str | None, Header()] = None) -> None:
        expected = f"Bearer {config.api_key}".encode()
        if not hmac.compare_digest((authorization or "").encode(), expected):
            raise HTTPException(401, detail={"code": "unauthorized"})

    def error(http_status: int, code: str, **extra) -> JSONResponse:
        return JSONResponse({"code": code, **extra}, status_code=http_status)

    def current(payment: dict) -> dict:
        """Unpaid payments past their expiry are expired, whoever looks first."""
        if payment["status"] == "pending" and _now() >= datetime.fromisoformat(
            payment["expires_at"]
        ):
            payment["status"] = "expired"
            state.save(config.state_file)
        return payment

    def lookup(payment_id: str | None = None, order_id: str | None = None) -> dict:
        if order_id is not None:
            payment_id = state.by_order.get(order_id)
        if payment_id not in state.payments:
            raise HTTPException(404, detail={"code": "payment_not_found"})
        return current(state.payments[payment_id])

    def emit(event_type: str, data: dict, notify_url: str) -> None:
        """Send a signed callback, misbehaving as the faults say."""
        faults = state.behaviour.faults
        event = {
            "id": "evt_" + secrets.token_hex(12),
            "type": event_type,
            "created": int(_now().timestamp()),
            "data": json.loads(json.dumps(data)),  # as it is now, not as it will be
        }
        if faults.roll("dropped_callbacks", faults.drop_callbacks):
            state.callbacks.append(
                {
                    "event_id": event["id"],
                    "type": event_type,
                    "attempt": 0,
                    "status_code": "dropped",
                    "order_id": data.get("merchant_order_id"),
                }
            )
            return
        events = [event] * (1 + faults.duplicate_callbacks)
        if faults.duplicate_callbacks:
            faults.count("duplicated_callbacks", faults.duplicate_callbacks)
        if faults.reorder_callbacks and event_type == "payment.succeeded":
            faults.count("reordered_callbacks")
            events.append(
                {
                    **event,
                    "id": "evt_" + secrets.token_hex(12),
                    "type": "payment.declined",
                    "data": {**event["data"], "status": "declined"},
                }
            )
        task = asyncio.create_task(deliver_in_order(events, notify_url, faults.delay_callbacks))
        deliveries.add(task)
        task.add_done_callback(deliveries.discard)

    async def deliver_in_order(events: list[dict], url: str, delay: float) -> None:
        await asyncio.sleep(delay)
        for event in events:
            await deliver(app, event, url)

    async def api_fault() -> JSONResponse | None:
        """Before an API call's effect: maybe slow, maybe a 500 with no effect."""
        faults = state.behaviour.faults
        if faults.slow_seconds:
            await asyncio.sleep(faults.slow_seconds)
        if faults.roll("api_errors", faults.api_errors):
            return error(500, "internal_error")
        return None

    def answer(body: dict, status_code: int = 200) -> JSONResponse:
        """After an API call's effect: maybe the answer is lost (the caller sees a 504)."""
        faults = state.behaviour.faults
        if faults.answer_lost():
            return error(504, "upstream_timeout")
        return JSONResponse(body, status_code=status_code)

    async def deliver(app: FastAPI, event: dict, url: str) -> None:
        body = json.dumps(event).encode()
        backoff = config.callback_first_backoff
        for attempt in range(1, config.callback_max_attempts + 1):
            headers = {
                "Content-Type": "application/json",
                sandbox_protocol.SIGNATURE_HEADER: sandbox_protocol.sign(
                    config.webhook_secret, body
                ),
            }
            try:
                response = await app.state.http.post(url, content=body, headers=headers)
                status = response.status_code
            except httpx.HTTPError as exc:
                status = None
                log.warning("callback failed", event_id=event["id"], error=repr(exc))
            state.callbacks.append(
                {
                    "event_id": event["id"],
                    "type": event["type"],
                    "attempt": attempt,
                    "status_code": status,
                    "order_id": event["data"].get("merchant_order_id"),
                }
            )
            if status is not None and 200 <= status < 300:
                return
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, config.callback_max_backoff)
        log.error("callback abandoned", event_id=event["id"], url=url)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, dict) else {"code": str(exc.detail)}
        return JSONResponse(detail, status_code=exc.status_code)

    @app.post("/v1/payments", status_code=201, dependencies=[Depends(authorized)])
    async def create_payment(body: PaymentIn):
        if (failure := await api_fault()) is not None:
            return failure
        existing = state.by_order.get(body.merchant_order_id)
        if existing is not None:
            payment = current(state.payments[existing])
            if (payment["amount"], payment["currency"]) != (body.amount, body.currency):
                return error(409, "merchant_order_id_reused", payment_id=existing)
            return answer(payment)
        if body.expires_at <= _now():
            return error(400, "expires_at_in_past")
        payment_id = "pay_" + secrets.token_hex(12)
        payment = {
            "id": payment_id,
            **body.model_dump(mode="json"),
            "status": "pending",
            "payment_url": f"{config.public_url.rstrip('/')}/pay/{payment_id}",
            "refunded_amount": 0,
            "created_at": _now().isoformat(),
        }
        state.payments[payment_id] = payment
        state.by_order[body.merchant_order_id] = payment_id
        state.save(config.state_file)
        return answer(payment, 201)

    @app.get("/v1/payments/by-order/{merchant_order_id}", dependencies=[Depends(authorized)])
    async def get_payment_by_order(merchant_order_id: str):
        if (failure := await api_fault()) is not None:
            return failure
        return answer(lookup(order_id=merchant_order_id))

    @app.get("/v1/payments", dependencies=[Depends(authorized)])
    async def list_payments(merchant_order_id: str):
        """Every capture attempt for a merchant order, the extra ones included."""
        if (failure := await api_fault()) is not None:
            return failure
        found = [
            current(p)
            for p in state.payments.values()
            if p["merchant_order_id"] == merchant_order_id
        ]
        return answer({"payments": found})

    @app.get("/v1/payments/{payment_id}", dependencies=[Depends(authorized)])
    async def get_payment(payment_id: str):
        return lookup(payment_id)

    @app.post("/v1/payments/by-order/{merchant_order_id}/close", dependencies=[Depends(authorized)])
    async def close_payment(merchant_order_id: str):
        if (failure := await api_fault()) is not None:
            return failure
        payment = lookup(order_id=merchant_order_id)
        if payment["status"] == "succeeded":
            return error(409, "payment_already_paid", status="succeeded", id=payment["id"])
        if payment["status"] == "pending":
            payment["status"] = "closed"
            state.save(config.state_file)
        return answer(payment)

    @app.post("/v1/refunds", status_code=201, dependencies=[Depends(authorized)])
    async def create_refund(body: RefundIn):
        if (failure := await api_fault()) is not None:
            return failure
        if state.behaviour.fail_next_refund_calls > 0:
            state.behaviour.fail_next_refund_calls -= 1
            return error(500, "internal_error")
        if body.refund_request_no in state.refunds:
            refund = state.refunds[body.refund_request_no]
            if (refund["payment_id"], refund["amount"]) != (body.payment_id, body.amount):
                return error(409, "refund_request_no_reused")
            return JSONResponse(refund, status_code=200)
        payment = lookup(body.payment_id)
        if payment["status"] != "succeeded":
            return error(409, "payment_not_paid", status=payment["status"])
        if payment["refunded_amount"] + body.amount > payment["amount"]:
            return error(409, "refund_exceeds_payment")
        payment["refunded_amount"] += body.amount  # processing refunds count against the cap
        refund = {
            **body.model_dump(),
            "status": "processing",
            "currency": payment["currency"],
            "merchant_order_id": payment["merchant_order_id"],
            "created_at": _now().isoformat(),
        }
        state.refunds[body.refund_request_no] = refund
        if state.behaviour.refunds_settle == "instant":
            settle(refund, "succeeded")
        state.save(config.state_file)
        return answer(refund, 201)

    def settle(refund: dict, outcome: str) -> None:
        refund["status"] = outcome
        payment = state.payments[refund["payment_id"]]
        if outcome == "failed":
            payment["refunded_amount"] -= refund["amount"]
        state.save(config.state_file)
        emit(f"refund.{outcome}", refund, payment["notify_url"])

    @app.post("/_emulator/refunds/{refund_request_no}/settle")
    async def settle_refund(refund_request_no: str, body: SettleIn):
        """The gateway finishes a refund it had accepted for processing."""
        refund = state.refunds.get(refund_request_no)
        if refund is None:
            raise HTTPException(404, detail={"code": "refund_not_found"})
        if refund["status"] != "processing":
            return error(409, "refund_already_settled", status=refund["status"])
        settle(refund, body.outcome)
        return refund

    @app.post("/_emulator/payments/{payment_id}/late-capture")
    async def late_capture(payment_id: str):
        """The buyer's money is captured although the payment was closed or had expired
        (the buyer paid while the merchant's close was on its way)."""
        payment = lookup(payment_id)
        if payment["status"] not in ("closed", "expired"):
            return error(409, "payment_not_closed", status=payment["status"])
        payment["status"] = "succeeded"
        state.save(config.state_file)
        emit("payment.succeeded", payment, payment["notify_url"])
        return payment

    @app.post("/_emulator/payments/{payment_id}/capture-again")
    async def capture_again(payment_id: str):
        """The buyer pays the same order a second time (another device, another channel)."""
        first = lookup(payment_id)
        second_id = "pay_" + secrets.token_hex(12)
        second = {
            **first,
            "id": second_id,
            "status": "succeeded",
            "refunded_amount": 0,
            "payment_url": f"{config.public_url.rstrip('/')}/pay/{second_id}",
            "created_at": _now().isoformat(),
        }
        state.payments[second_id] = second
        state.save(config.state_file)
        emit("payment.succeeded", second, second["notify_url"])
        return second

    @app.get("/_emulator/faults")
    async def injected():
        """The faults in force and how many of each were injected."""
        faults = state.behaviour.faults
        return {"settings": faults.settings(), "injected": faults.counts}

    @app.put("/_emulator/behaviour")
    async def set_behaviour(body: BehaviourIn):
        state.behaviour = SandboxBehaviour(
            refunds_settle=body.refunds_settle,
            fail_next_refund_calls=body.fail_next_refund_calls,
            faults=Faults(**body.faults.model_dump()),
        )
        return body

    @app.get("/v1/refunds/{refund_request_no}", dependencies=[Depends(authorized)])
    async def get_refund(refund_request_no: str):
        if refund_request_no not in state.refunds:
            raise HTTPException(404, detail={"code": "refund_not_found"})
        return state.refunds[refund_request_no]

    @app.get("/pay/{payment_id}", response_class=HTMLResponse)
    async def payment_page(payment_id: str):
        return _render(lookup(payment_id))

    @app.post("/pay/{payment_id}", response_class=HTMLResponse)
    async def buyer_acts(
        payment_id: str,
        outcome: Annotated[Literal["succeeded", "declined"], Form()],
        amount: Annotated[int | None, Form(gt=0, le=10**15)] = None,
    ):
        """The buyer presses Pay or Decline. Like a bank transfer or an editable QR code, a
        buyer can pay another `amount` than asked (the field is not on the page)."""
        payment = lookup(payment_id)
        if payment["status"] != "pending":
            return _render(payment, status_code=409)
        payment["status"] = outcome
        if amount is not None and outcome == "succeeded":
            payment["amount"] = amount
        state.save(config.state_file)
        emit(f"payment.{outcome}", payment, payment["notify_url"])
        return _render(payment)

    @app.get("/_emulator/state")
    async def inspect():
        """What the gateway saw: payments, refunds and every callback attempt."""
        return {"payments": state.payments, "refunds": state.refunds, "callbacks": state.callbacks}

    return app


def _render(payment: dict, status_code: int = 200) -> HTMLResponse:
    amount = format_amount(payment["amount"], payment["currency"])
    return HTMLResponse(_PAGE.render(p=payment, amount=amount), status_code=status_code)


def _now() -> datetime:
    return datetime.now(UTC)


def app_from_settings() -> FastAPI:
    """The emulator as the dev stack runs it, configured by Kassa's settings."""
    from kassa.settings import get_settings

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return create_app(
        SandboxConfig(
            public_url=settings.sandbox_url,
            api_key=settings.sandbox_api_key,
            webhook_secret=settings.sandbox_webhook_secrets[0],
            state_file=settings.data_dir / "sandbox.json",
            faults=Faults(**settings.sandbox_faults),
        )
    )


if __name__ == "__main__":
    import uvicorn

    from kassa.settings import get_settings

    uvicorn.run(
        app_from_settings(), host="127.0.0.1", port=get_settings().sandbox_port, log_level="warning"
    )
