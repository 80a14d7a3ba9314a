"""Why an order ended, as each side is told: the storefront gets a stable reason code and its
short fixed text, in the API's answers and in its webhooks; the details (risk thresholds,
support's notes, the gateway's own errors) are support's (GET /v1/orders/{id}/details)."""

from __future__ import annotations

import json
import uuid

import httpx

from activities.risk import amount_limit
from gateways.sandbox import SandboxGateway, sandbox_reference
from kassa.money import format_amount
from kassa.reasons import ReasonCode
from kassa.settings import DEV_SUPPORT_KEY
from tests.e2e.test_purchase import checkout_body, post_checkout
from tests.support import eventually, new_payment


async def told(stack, storefront, order_id: str, *answers: httpx.Response) -> str:
    """Everything the storefront was told about the order: the answers it got, the order as
    it reads it now, and its webhook for the order's end, as one text."""
    async with stack.http() as api:
        order = await api.get(f"/v1/orders/{order_id}")
    webhooks = await eventually(lambda: storefront.for_order(order_id))
    return "\n".join([*(a.text for a in (*answers, order)), json.dumps(webhooks)])


async def support_reads(stack, order_id: str) -> dict:
    async with stack.http(DEV_SUPPORT_KEY) as support:
        details = await support.get(f"/v1/orders/{order_id}/details")
    assert details.status_code == 200, details.text
    return details.json()


def says(answer: httpx.Response, code: ReasonCode) -> None:
    assert (answer.json()["reason_code"], answer.json()["reason"]) == (code, code.text)


async def test_a_risk_rejection_names_no_threshold(stack, storefront, settings):
    limit = format_amount(amount_limit(settings, "CNY"), "CNY")
    item = {"sku": "course-all", "title": "Everything", "unit_amount": 5_000_001, "quantity": 1}
    async with stack.http() as api:
        rejected = await post_checkout(api, checkout_body(items=[item]))
    order_id = rejected.json()["order_id"]

    says(rejected, ReasonCode.RISK_REJECTED)
    storefront_was_told = await told(stack, storefront, order_id, rejected)
    assert limit not in storefront_was_told and "over the limit" not in storefront_was_told
    assert f"over the limit of {limit}" in (await support_reads(stack, order_id))["reason_detail"]


async def test_a_support_cancel_keeps_its_note_from_the_storefront(stack, storefront):
    note = "buyer is on the chargeback watch list"
    async with stack.http() as api:
        order_id = (await post_checkout(api, checkout_body())).json()["order_id"]
    async with stack.http(DEV_SUPPORT_KEY) as support:
        cancelled = await support.post(f"/v1/orders/{order_id}/cancel", json={"reason": note})
    assert cancelled.status_code == 200, cancelled.text

    async with stack.http() as api:
        order = await api.get(f"/v1/orders/{order_id}")
    says(order, ReasonCode.CANCELLED_BY_SUPPORT)
    assert "watch list" not in await told(stack, storefront, order_id, cancelled)
    assert (await support_reads(stack, order_id))["reason_detail"] == note


async def test_a_gateway_error_opening_the_payment_stays_with_support(stack, storefront, settings):
    """The sandbox refuses the payment for good: its merchant reference is taken by a payment
    of another amount (as after a restore from an old backup)."""
    body = checkout_body(order_id=f"shop-taken-{uuid.uuid4().hex[:10]}")
    async with httpx.AsyncClient() as http:
        sandbox = SandboxGateway(
            http,
            settings.sandbox_url,
            settings.sandbox_api_key.get_secret_value(),
            [s.get_secret_value() for s in settings.sandbox_webhook_secrets],
        )
        await sandbox.create_payment(
            new_payment(merchant_order_id=sandbox_reference(body["order_id"]), amount=1)
        )
    async with stack.http() as api:
        failed = await post_checkout(api, body)

    assert (failed.status_code, failed.json()["status"]) == (201, "failed")
    says(failed, ReasonCode.PAYMENT_FAILED)
    assert "merchant_order_id_reused" not in await told(stack, storefront, body["order_id"], failed)
    detail = (await support_reads(stack, body["order_id"]))["reason_detail"]
    assert detail.startswith("could not open the payment") and "merchant_order_id_reused" in detail
