"""The buyer's payment page: the amount, and Pay or Decline."""

from __future__ import annotations

from typing import Annotated, Literal

import jinja2
from fastapi import APIRouter, Form
from fastapi.responses import HTMLResponse

from gateways.emulators.sandbox.outbox import Outbox
from gateways.emulators.sandbox.state import SandboxState
from kassa.money import format_amount

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


def buyer_routes(state: SandboxState, outbox: Outbox) -> APIRouter:
    router = APIRouter()

    @router.get("/pay/{payment_id}", response_class=HTMLResponse)
    async def payment_page(payment_id: str):
        return _render(state.lookup(payment_id))

    @router.post("/pay/{payment_id}", response_class=HTMLResponse)
    async def buyer_acts(
        payment_id: str,
        outcome: Annotated[Literal["succeeded", "declined"], Form()],
        amount: Annotated[int | None, Form(gt=0, le=10**15)] = None,
    ):
        """The buyer presses Pay or Decline. Like a bank transfer or an editable QR code, a
        buyer can pay another `amount` than asked (the field is not on the page)."""
        payment = state.lookup(payment_id)
        acted = buyer_pays(outbox, payment, outcome, amount)
        return _render(payment, status_code=200 if acted else 409)

    return router


def buyer_pays(outbox: Outbox, payment: dict, outcome: str, amount: int | None = None) -> bool:
    """The buyer pays (another `amount`, maybe) or declines a pending payment, and the
    merchant is told; False, and nothing happens, when the payment is no longer pending."""
    if payment["status"] != "pending":
        return False
    payment["status"] = outcome
    if amount is not None and outcome == "succeeded":
        payment["amount"] = amount
    outbox.save_and_emit(f"payment.{outcome}", payment, payment["notify_url"])
    return True


def _render(payment: dict, status_code: int = 200) -> HTMLResponse:
    amount = format_amount(payment["amount"], payment["currency"])
    return HTMLResponse(_PAGE.render(p=payment, amount=amount), status_code=status_code)
