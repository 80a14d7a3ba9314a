"""The merchant's API (/v1): create, query and close payments, refund them."""

from __future__ import annotations

import asyncio
import hmac
import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, Field

from gateways.emulators.sandbox.outbox import Outbox
from gateways.emulators.sandbox.state import SandboxConfig, SandboxState, now


class PaymentIn(BaseModel):
    merchant_order_id: str = Field(min_length=1, max_length=80)  # order id + "~n" for a retry
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


def error(http_status: int, code: str, **extra) -> JSONResponse:
    return JSONResponse({"code": code, **extra}, status_code=http_status)


def settle(state: SandboxState, outbox: Outbox, refund: dict, outcome: str) -> None:
    """The refund succeeds or fails, and the merchant is told."""
    refund["status"] = outcome
    payment = state.payments[refund["payment_id"]]
    if outcome == "failed":
        payment["refunded_amount"] -= refund["amount"]
    outbox.save_and_emit(f"refund.{outcome}", refund, payment["notify_url"])


def merchant_routes(config: SandboxConfig, state: SandboxState, outbox: Outbox) -> APIRouter:
    def authorized(authorization: Annotated[str | None, Header()] = None) -> None:
        expected = f"Bearer {config.api_key}".encode()
        if not hmac.compare_digest((authorization or "").encode(), expected):
            raise HTTPException(401, detail={"code": "unauthorized"})

    router = APIRouter(dependencies=[Depends(authorized)])

    async def api_fault() -> JSONResponse | None:
        """Before an API call's effect: maybe slow, maybe a 500 with no effect."""
        faults = state.behaviour.faults
        if faults.slow_seconds:
            await asyncio.sleep(faults.slow_seconds)
        if faults.call_fails():
            return error(500, "internal_error")
        return None

    def answer(body: dict, status_code: int = 200) -> JSONResponse:
        """After an API call's effect: maybe the answer is lost (the caller sees a 504)."""
        faults = state.behaviour.faults
        if faults.answer_lost():
            return error(504, "upstream_timeout")
        return JSONResponse(body, status_code=status_code)

    @router.post("/v1/payments", status_code=201)
    async def create_payment(body: PaymentIn, traceparent: Annotated[str | None, Header()] = None):
        if traceparent is not None:
            state.traceparents[body.merchant_order_id] = traceparent
        if (failure := await api_fault()) is not None:
            return failure
        existing = state.by_order.get(body.merchant_order_id)
        if existing is not None:
            payment = state.current(state.payments[existing])
            if (payment["amount"], payment["currency"]) != (body.amount, body.currency):
                return error(409, "merchant_order_id_reused", payment_id=existing)
            return answer(payment)
        if body.expires_at <= now():
            return error(400, "expires_at_in_past")
        payment_id = "pay_" + secrets.token_hex(12)
        payment = {
            "id": payment_id,
            **body.model_dump(mode="json"),
            "status": "pending",
            "payment_url": config.payment_url(payment_id),
            "refunded_amount": 0,
            "created_at": now().isoformat(),
        }
        state.payments[payment_id] = payment
        state.by_order[body.merchant_order_id] = payment_id
        state.save()
        return answer(payment, 201)

    @router.get("/v1/payments/by-order/{merchant_order_id}")
    async def get_payment_by_order(merchant_order_id: str):
        if (failure := await api_fault()) is not None:
            return failure
        return answer(state.lookup(order_id=merchant_order_id))

    @router.get("/v1/payments")
    async def list_payments(merchant_order_id: str):
        """Every capture attempt for a merchant order, the extra ones included."""
        if (failure := await api_fault()) is not None:
            return failure
        found = [
            state.current(p)
            for p in state.payments.values()
            if p["merchant_order_id"] == merchant_order_id
        ]
        return answer({"payments": found})

    @router.get("/v1/payments/{payment_id}")
    async def get_payment(payment_id: str):
        return state.lookup(payment_id)

    @router.post("/v1/payments/by-order/{merchant_order_id}/close")
    async def close_payment(merchant_order_id: str):
        if (failure := await api_fault()) is not None:
            return failure
        payment = state.lookup(order_id=merchant_order_id)
        faults = state.behaviour.faults
        if payment["status"] == "pending" and faults.roll(
            "paid_before_close", faults.pay_before_close
        ):  # the buyer pays while the close is on its way
            payment["status"] = "succeeded"
            outbox.save_and_emit("payment.succeeded", payment, payment["notify_url"])
        if payment["status"] == "succeeded":
            state.outcomes["close: already paid"] += 1
            return error(409, "payment_already_paid", status="succeeded", id=payment["id"])
        if payment["status"] == "pending":
            payment["status"] = "closed"
            state.outcomes["close: closed a pending payment"] += 1
            state.save()
        else:
            state.outcomes[f"close: was {payment['status']}"] += 1
        return answer(payment)

    @router.post("/v1/refunds", status_code=201)
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
        payment = state.lookup(body.payment_id)
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
            "created_at": now().isoformat(),
        }
        state.refunds[body.refund_request_no] = refund
        if state.behaviour.refunds_settle == "instant":
            settle(state, outbox, refund, "succeeded")
        state.save()
        return answer(refund, 201)

    @router.get("/v1/refunds/{refund_request_no}")
    async def get_refund(refund_request_no: str):
        if refund_request_no not in state.refunds:
            raise HTTPException(404, detail={"code": "refund_not_found"})
        return state.refunds[refund_request_no]

    return router
