"""The emulator's own controls (/_emulator): what tests and demos make the gateway do or
tell, beyond what the merchant's API offers."""

from __future__ import annotations

import secrets
from typing import Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from gateways.emulators.faults import Faults, FaultsIn
from gateways.emulators.sandbox.api import error, settle
from gateways.emulators.sandbox.outbox import Outbox
from gateways.emulators.sandbox.page import buyer_pays
from gateways.emulators.sandbox.state import SandboxBehaviour, SandboxConfig, SandboxState, now


class SettleIn(BaseModel):
    outcome: Literal["succeeded", "failed"]


class BuyerIn(BaseModel):
    payment: str = Field(min_length=1, max_length=2048)  # the payment_url the adapter returned
    outcome: Literal["succeeded", "declined"]
    amount: int | None = Field(None, gt=0, le=10**15)  # pay another amount than asked


class BehaviourIn(BaseModel):
    refunds_settle: Literal["instant", "later"] = "instant"
    fail_next_refund_calls: int = Field(0, ge=0)
    faults: FaultsIn = FaultsIn()


def emulator_routes(config: SandboxConfig, state: SandboxState, outbox: Outbox) -> APIRouter:
    router = APIRouter(prefix="/_emulator")

    @router.post("/buyer")
    async def buyer(body: BuyerIn):
        """Act as the buyer on a payment page (the same control on every emulator): pay or
        decline the payment whose `payment_url` is given; 409 when it is no longer pending."""
        payment_id = urlsplit(body.payment).path.rstrip("/").rpartition("/pay/")[2]
        payment = state.lookup(payment_id or None)
        if not buyer_pays(outbox, payment, body.outcome, body.amount):
            return error(409, "payment_not_pending", status=payment["status"])
        return payment

    @router.post("/refunds/{refund_request_no}/settle")
    async def settle_refund(refund_request_no: str, body: SettleIn):
        """The gateway finishes a refund it had accepted for processing."""
        refund = state.refunds.get(refund_request_no)
        if refund is None:
            raise HTTPException(404, detail={"code": "refund_not_found"})
        if refund["status"] != "processing":
            return error(409, "refund_already_settled", status=refund["status"])
        settle(state, outbox, refund, body.outcome)
        return refund

    @router.post("/payments/{payment_id}/late-capture")
    async def late_capture(payment_id: str):
        """The buyer's money is captured although the payment was closed, had expired (the
        buyer paid while the merchant's close was on its way) or was declined (the buyer's
        bank approved it after all)."""
        payment = state.lookup(payment_id)
        if payment["status"] not in ("closed", "expired", "declined"):
            return error(409, "payment_not_closed", status=payment["status"])
        payment["status"] = "succeeded"
        outbox.save_and_emit("payment.succeeded", payment, payment["notify_url"])
        return payment

    @router.post("/payments/{payment_id}/capture-again")
    async def capture_again(payment_id: str):
        """The buyer pays the same order a second time (another device, another channel)."""
        first = state.lookup(payment_id)
        second_id = "pay_" + secrets.token_hex(12)
        second = {
            **first,
            "id": second_id,
            "status": "succeeded",
            "refunded_amount": 0,
            "payment_url": config.payment_url(second_id),
            "created_at": now().isoformat(),
        }
        state.payments[second_id] = second
        outbox.save_and_emit("payment.succeeded", second, second["notify_url"])
        return second

    @router.get("/faults")
    async def injected():
        """The faults in force and how many of each were injected."""
        faults = state.behaviour.faults
        return {"settings": faults.settings(), "injected": faults.counts}

    @router.put("/behaviour")
    async def set_behaviour(body: BehaviourIn):
        state.behaviour = SandboxBehaviour(
            refunds_settle=body.refunds_settle,
            fail_next_refund_calls=body.fail_next_refund_calls,
            faults=Faults(**body.faults.model_dump()),
        )
        return body

    @router.get("/calls")
    async def calls():
        """How many calls the gateway received, by route ("POST /v1/payments"), and what the
        acting ones did ("close: closed a pending payment", "close: already paid", …)."""
        return {"calls": dict(state.calls), "outcomes": dict(state.outcomes)}

    @router.get("/state")
    async def inspect():
        """What the gateway saw: payments, refunds and every callback attempt."""
        return {"payments": state.payments, "refunds": state.refunds, "callbacks": state.callbacks}

    return router
