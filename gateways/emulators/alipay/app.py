"""The emulated Alipay's app: /gateway.do for the merchant, the buyer's page, and the
emulator's controls (/_emulator)."""

from __future__ import annotations

import asyncio
import os
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import parse_qsl, urlsplit

import httpx
import jinja2
from fastapi import APIRouter, FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field

from gateways.emulators import refuse_outside_development
from gateways.emulators.alipay.api import Gateway, Refused, gateway_routes
from gateways.emulators.alipay.keys import ensure_keys
from gateways.emulators.alipay.notifier import Notifier
from gateways.emulators.alipay.state import (
    PAID,
    TRADE_FINISHED,
    AlipayConfig,
    AlipayState,
)
from gateways.emulators.faults import Faults, FaultsIn

DEFAULT_PORT = 8002


def create_app(config: AlipayConfig) -> FastAPI:
    refuse_outside_development()
    keys = ensure_keys(config.keys_dir)
    state = AlipayState(faults=config.faults or Faults())
    notifier = Notifier(config, state, keys)
    gateway = Gateway(config, state, keys, notifier)

    async def expire_forever() -> None:
        while True:
            gateway.expire_due()
            await asyncio.sleep(config.tick)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async with httpx.AsyncClient() as http:
            notifier.start(http)
            ticker = asyncio.create_task(expire_forever())
            yield
            ticker.cancel()
            with suppress(asyncio.CancelledError):
                await ticker
            await notifier.stop()

    app = FastAPI(title="Kassa's Alipay emulator", lifespan=lifespan)
    app.state.alipay = state
    app.state.keys = keys

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, dict) else {"code": str(exc.detail)}
        return JSONResponse(detail, status_code=exc.status_code)

    app.include_router(gateway_routes(gateway))
    app.include_router(buyer_routes(gateway))
    app.include_router(emulator_routes(gateway))
    return app


def app_from_env() -> FastAPI:
    """The emulator standalone: port KASSA_ALIPAY_PORT (8002), public URL KASSA_ALIPAY_URL,
    keys under $KASSA_DATA_DIR/keys/alipay (.kassa by default)."""
    port = int(os.environ.get("KASSA_ALIPAY_PORT", DEFAULT_PORT))
    data_dir = Path(os.environ.get("KASSA_DATA_DIR", ".kassa"))
    return create_app(
        AlipayConfig(
            public_url=os.environ.get("KASSA_ALIPAY_URL", f"http://127.0.0.1:{port}"),
            keys_dir=data_dir / "keys" / "alipay",
        )
    )


# ---- the buyer --------------------------------------------------------------------------------

_PAGE = jinja2.Environment(autoescape=True).from_string(
    """<!doctype html>
<html><head><meta charset="utf-8"><title>Alipay (emulated) cashier</title>
<style>body{font-family:sans-serif;max-width:28rem;margin:3rem auto}
.amount{font-size:2rem;margin:1rem 0}button{font-size:1.1rem;margin-right:.5rem}</style></head>
<body>
<h1>支付宝 Alipay (emulator)</h1>
<p>{{ t.subject }}</p>
<p>Order <code>{{ t.out_trade_no }}</code></p>
<div class="amount" id="amount">¥ {{ t.total_amount }}</div>
{% if payable %}
<form method="post">
  <button name="outcome" value="succeeded" id="pay">Pay</button>
  <button name="outcome" value="declined" id="decline">Decline</button>
</form>
{% if t.declines %}<p id="declined">The payment did not go through; try again.</p>{% endif %}
{% else %}
<p id="status">Trade {{ t.status }}{% if t.dead %} (closed){% endif %}.</p>
{% if t.return_url and paid %}<p><a href="{{ t.return_url }}">Back to the shop</a></p>{% endif %}
{% endif %}
</body></html>"""
)


def _render(trade: dict, status_code: int = 200) -> HTMLResponse:
    payable = not trade["dead"] and trade["status"] not in (*PAID, "TRADE_CLOSED")
    html = _PAGE.render(t=trade, payable=payable, paid=trade["status"] in PAID)
    return HTMLResponse(html, status_code=status_code)


def buyer_routes(gateway: Gateway) -> APIRouter:
    router = APIRouter()

    def by_token(token: str) -> dict:
        out_trade_no = gateway.state.by_token.get(token)
        if out_trade_no is None:
            raise HTTPException(404, detail={"code": "unknown_qr_code"})
        return gateway.state.trades[out_trade_no]

    @router.get("/qr/{token}", response_class=HTMLResponse)
    async def scanned(token: str):
        """Scanning the QR code (or opening the cashier): the trade exists from now on."""
        trade = by_token(token)
        refused = gateway.buyer_acts(trade, "scanned")
        return _render(trade, status_code=409 if refused else 200)

    @router.post("/qr/{token}", response_class=HTMLResponse)
    async def pressed(token: str, outcome: Annotated[Literal["succeeded", "declined"], Form()]):
        trade = by_token(token)
        refused = gateway.buyer_acts(trade, outcome)
        return _render(trade, status_code=409 if refused else 200)

    return router


# ---- the controls -----------------------------------------------------------------------------


class BuyerIn(BaseModel):
    # The QR content or page.pay URL the adapter returned.
    payment: str = Field(min_length=1, max_length=8192)
    # succeeded: scan and pay. declined: scan, and the payment fails at the cashier (the
    # trade stays WAIT_BUYER_PAY: Alipay has no decline). scanned: scan only.
    outcome: Literal["succeeded", "declined", "scanned"]


def emulator_routes(gateway: Gateway) -> APIRouter:
    router = APIRouter(prefix="/_emulator")
    state = gateway.state

    def trade_of(payment: str) -> dict:
        url = urlsplit(payment)
        if url.path.endswith("/gateway.do"):  # a page.pay URL: the browser opens it
            try:
                result = gateway.page_pay(dict(parse_qsl(url.query, keep_blank_values=True)))
            except Refused as refused:
                raise HTTPException(400, detail=refused.content) from None
            if "trade" not in result:
                raise HTTPException(409, detail=result)
            return result["trade"]
        token = url.path.rstrip("/").rpartition("/qr/")[2]
        out_trade_no = state.by_token.get(token)
        if not token or out_trade_no is None:
            raise HTTPException(404, detail={"code": "unknown_payment"})
        return state.trades[out_trade_no]

    @router.post("/buyer")
    async def buyer(body: BuyerIn):
        """Act as the buyer (the same control on every emulator); 409 when the trade can no
        longer be paid."""
        trade = trade_of(body.payment)
        refused = gateway.buyer_acts(trade, body.outcome)
        if refused:
            return JSONResponse(
                {"code": "not_payable", "reason": refused, "status": trade["status"]}, 409
            )
        return trade

    @router.post("/trades/{out_trade_no}/finish")
    async def finish(out_trade_no: str):
        """The refund window ends: TRADE_SUCCESS becomes TRADE_FINISHED (notified)."""
        trade = state.trades.get(out_trade_no)
        if trade is None or trade["status"] != "TRADE_SUCCESS":
            raise HTTPException(409, detail={"code": "not_finishable"})
        trade["status"] = TRADE_FINISHED
        gateway.notifier.notify(trade)
        return trade

    @router.put("/faults")
    async def set_faults(body: FaultsIn):
        state.faults = body.faults()
        return body

    @router.get("/faults")
    async def injected():
        return {"settings": state.faults.settings(), "injected": state.faults.counts}

    @router.get("/state")
    async def inspect():
        """What the gateway saw: trades and every notify attempt."""
        gateway.expire_due()
        return {"app_id": gateway.keys.app_id, "trades": state.trades, "notifies": state.notifies}

    return router
