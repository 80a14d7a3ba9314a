"""Kassa's adapter for the sandbox gateway (its emulator lives in gateways/emulators/)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Literal
from urllib.parse import quote

import httpx
from pydantic import BaseModel, Field, ValidationError

from gateways import sandbox_protocol
from gateways.base import (
    CallbackReply,
    GatewayError,
    GatewayPayment,
    GatewayRefund,
    NewPayment,
    NewRefund,
    PaymentWord,
    shorten,
)
from kassa.contracts import PaymentSession, RefundEvent
from kassa.errors import GatewayRejected, InvalidSignature, MalformedCallback
from kassa.statuses import PaymentOutcome, RefundStatus

_OUTCOMES = {
    "pending": PaymentOutcome.PENDING,
    "succeeded": PaymentOutcome.SUCCEEDED,
    "declined": PaymentOutcome.DECLINED,
    "closed": PaymentOutcome.CLOSED,
    "expired": PaymentOutcome.CLOSED,
}
_REFUND_STATUSES = {
    "processing": RefundStatus.PENDING,
    "succeeded": RefundStatus.SUCCEEDED,
    "failed": RefundStatus.FAILED,
}


def sandbox_reference(order_id: str, attempt: int = 1) -> str:
    """The sandbox's merchant order id of an order's `attempt`-th payment: the order id
    itself, `~n` appended for a retry (order ids never contain `~`)."""
    return order_id if attempt == 1 else f"{order_id}~{attempt}"


def order_of_sandbox_reference(reference: str) -> str:
    """The order a sandbox merchant order id belongs to (for tools that read its state)."""
    return reference.partition("~")[0]


DESCRIPTION_MAX = 256  # what the sandbox takes

# Refusals that say "not now" rather than "never": retried like a 5xx, same idempotency key.
RETRY_LATER = {408, 425, 429}  # request timeout, too early, too many requests


class SandboxGateway:
    name = "sandbox"
    currencies = None  # any ISO-4217 currency
    callback_reply = CallbackReply('{"received": true}')

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        api_key: str,
        webhook_secrets: list[str],
        tolerance_seconds: int = 300,
    ) -> None:
        self._http = http
        self._base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._secrets = webhook_secrets
        self._tolerance = tolerance_seconds

    def reference(self, order_id: str, attempt: int) -> str:
        return sandbox_reference(order_id, attempt)

    async def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        try:
            response = await self._http.request(
                method, self._base_url + path, json=body, headers=self._headers, timeout=10
            )
        except httpx.HTTPError as exc:  # timeouts included: the outcome is unknown
            raise GatewayError(f"sandbox {method} {path}: {exc!r}") from exc
        if response.status_code >= 500 or response.status_code in RETRY_LATER:
            raise GatewayError(f"sandbox {method} {path}: HTTP {response.status_code}")
        data = response.json()
        if response.status_code >= 400 and data.get("code") != "payment_already_paid":
            raise GatewayRejected(f"sandbox {method} {path}: {data.get('code')}: {data}")
        return data

    async def create_payment(self, payment: NewPayment) -> PaymentSession:
        data = await self._call(
            "POST",
            "/v1/payments",
            {
                "merchant_order_id": payment.merchant_order_id,
                "amount": payment.amount,
                "currency": payment.currency,
                "description": shorten(payment.description, DESCRIPTION_MAX),
                "expires_at": payment.expires_at.isoformat(),
                "notify_url": payment.notify_url,
                "return_url": payment.return_url,
            },
        )
        return PaymentSession(
            gateway=self.name,
            payment_id=data["id"],
            payment_url=data["payment_url"],
            expires_at=datetime.fromisoformat(data["expires_at"]),
        )

    async def get_payment(self, merchant_order_id: str) -> GatewayPayment:
        try:
            data = await self._call("GET", "/v1/payments/by-order/" + quote(merchant_order_id))
        except GatewayRejected as err:
            if "payment_not_found" not in err.message:
                raise
            return GatewayPayment(merchant_order_id, PaymentOutcome.NOT_FOUND)
        return _payment(data)

    async def close_payment(self, merchant_order_id: str) -> GatewayPayment:
        path = f"/v1/payments/by-order/{quote(merchant_order_id)}/close"
        try:
            await self._call("POST", path)  # answers 409 payment_already_paid when paid
        except GatewayRejected as err:
            if "payment_not_found" not in err.message:
                raise
        return await self.get_payment(merchant_order_id)  # how it stands after the close

    async def list_payments(self, merchant_order_id: str) -> list[GatewayPayment]:
        data = await self._call("GET", "/v1/payments?merchant_order_id=" + quote(merchant_order_id))
        return [_payment(p) for p in data["payments"]]

    async def refund(self, refund: NewRefund) -> GatewayRefund:
        payment_id = (
            refund.payment_id or (await self.get_payment(refund.merchant_order_id)).payment_id
        )
        return _refund(
            await self._call(
                "POST",
                "/v1/refunds",
                {
                    "payment_id": payment_id,
                    "refund_request_no": refund.refund_no,
                    "amount": refund.amount,
                    "reason": refund.reason,
                },
            )
        )

    async def get_refund(self, refund_no: str, merchant_order_id: str) -> GatewayRefund:
        try:
            return _refund(await self._call("GET", f"/v1/refunds/{quote(refund_no)}"))
        except GatewayRejected as err:
            if "refund_not_found" not in err.message:
                raise
            return GatewayRefund(refund_no, None)

    def parse_callback(
        self, headers: Mapping[str, str], body: bytes
    ) -> PaymentWord | RefundEvent | None:
        try:
            sandbox_protocol.verify(
                self._secrets,
                headers.get(sandbox_protocol.SIGNATURE_HEADER),
                body,
                self._tolerance,
            )
        except ValueError as exc:
            raise InvalidSignature(str(exc)) from exc
        try:
            event = _Event.model_validate_json(body)
            if _has_nul(json.loads(body)):
                # Refused, not stripped: the body is the gateway's signed word, and the inbox
                # keeps it as it came. No field of the protocol has a NUL, so one is a gateway
                # bug (or a forgery with our secret) that stripping would hide, and would change
                # what was signed (a reference less its NUL may name another payment).
                # PostgreSQL cannot store it (text and JSONB refuse \u0000), so without this
                # every delivery would be a 500; a 400 says plainly what is wrong, and the
                # payment is not lost: the checkout's status checks ask the gateway.
                raise MalformedCallback("a string in the callback contains NUL (\\u0000)")
            if event.type.startswith("refund."):
                refund = _refund(_RefundData.model_validate(event.data).model_dump())
                return RefundEvent(self.name, event.id, refund.refund_no, refund.status)
            if not event.type.startswith("payment."):
                return None
            payment = _payment(_PaymentData.model_validate(event.data).model_dump())
        except ValidationError as exc:
            raise MalformedCallback(str(exc)) from exc
        return PaymentWord(
            event_id=event.id,
            merchant_order_id=payment.merchant_order_id,
            payment_id=payment.payment_id,
            outcome=payment.outcome,
            amount=payment.amount,
            currency=payment.currency,
        )


def _has_nul(value: object) -> bool:
    """Whether a NUL character is in any string (key or value) of a parsed JSON body."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(map(_has_nul, value))
    return False


class _Event(BaseModel):
    id: str = Field(min_length=1, max_length=128)
    type: str = Field(max_length=64)
    data: dict


class _PaymentData(BaseModel):
    id: str = Field(min_length=1, max_length=128)
    merchant_order_id: str = Field(min_length=1, max_length=64)
    status: Literal["pending", "succeeded", "declined", "closed", "expired"]
    amount: int = Field(gt=0, le=10**15)  # no payment is for nothing
    currency: str = Field(pattern="^[A-Z]{3}$")
    refunded_amount: int = Field(0, ge=0, le=10**15)


class _RefundData(BaseModel):
    refund_request_no: str = Field(min_length=1, max_length=64)
    status: Literal["processing", "succeeded", "failed"]
    amount: int = Field(gt=0, le=10**15)


def _payment(data: dict) -> GatewayPayment:
    return GatewayPayment(
        payment_id=data["id"],
        merchant_order_id=data["merchant_order_id"],
        outcome=_OUTCOMES[data["status"]],
        amount=int(data["amount"]),
        currency=data["currency"],
        refunded_amount=int(data.get("refunded_amount", 0)),
    )


def _refund(data: dict) -> GatewayRefund:
    return GatewayRefund(
        refund_no=data["refund_request_no"],
        status=_REFUND_STATUSES[data["status"]],
        amount=int(data["amount"]),
    )
